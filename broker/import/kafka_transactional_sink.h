// The write stage on the receiver's Kafka: one transactional producer per peer link, writing the
// mirror and dead-letter topics of every dataset this node imports from that peer.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "broker/import/import_session.h"
#include "kafka/client.h"

namespace uop::broker {

// Not thread-safe: one writer thread. `env` must outlive it.
class KafkaTransactionalSink final : public TransactionalSink {
 public:
  // The import group's metadata (rd_kafka_consumer_group_metadata_write), empty while there is
  // none. Called at each commit: the positions go into the transaction as the group's offsets,
  // which also fences a writer whose group generation is gone (KIP-447).
  using GroupMetadata = std::function<std::string()>;

  // Creates the producer and runs init_transactions, which fences any earlier producer with the
  // same `transactional_id` and aborts what it left open. `staged_bytes`: the most a
  // transaction may hold (the receive windows); the producer's queue is sized so that it never
  // binds first.
  static absl::StatusOr<std::unique_ptr<KafkaTransactionalSink>> Create(
      kafka::Env* env, const std::string& transactional_id, GroupMetadata group_metadata,
      int64_t staged_bytes);

  absl::Status Begin() override;
  absl::Status Produce(const OutRecord& record, std::string* refused) override;
  absl::Status Commit(const Positions& positions, std::vector<RefusedRecord>* refused) override;
  absl::Status Abort() override;

  // Outside any transaction: one transaction with a record in each of `partitions`, aborted.
  // Its markers close records of ours that a transaction left open there although its
  // coordinator finished it (see RecoverPositions).
  absl::Status Fence(const std::vector<std::pair<std::string, int32_t>>& partitions);

  rd_kafka_t* producer() { return producer_.get(); }

 private:
  KafkaTransactionalSink() = default;
  static void OnDelivery(rd_kafka_t* rk, const rd_kafka_message_t* m, void* opaque);
  absl::Status SendPositions(const Positions& positions);

  struct Failure {
    std::string topic;
    int32_t partition;
    int64_t offset;  // the origin offset
    rd_kafka_resp_err_t code;
  };
  std::string transactional_id_;
  GroupMetadata group_metadata_;
  // Delivery failures of the open transaction. Delivery reports run inside poll/flush/commit on
  // the writer thread.
  std::vector<Failure> failures_;
  // Last, so it is destroyed first: nothing it may still call back into is gone before it.
  kafka::Handle producer_;
};

}  // namespace uop::broker
