// The read stage on the owner's Kafka: one read_committed consumer per Replicate stream, assigned
// to the subscribed partitions at their resume offsets. Reads never block.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "broker/export/export_session.h"
#include "kafka/client.h"

namespace uop::broker {

// Not thread-safe except where noted; `env` must outlive it. `on_ready` is called from a
// librdkafka thread whenever records arrive on an empty queue: it must only schedule work.
class KafkaRecordSource final : public RecordSource {
 public:
  struct Start {
    int32_t partition;
    int64_t offset;  // RD_KAFKA_OFFSET_BEGINNING for "from the start"
  };
  static absl::StatusOr<std::unique_ptr<KafkaRecordSource>> Open(kafka::Env* env,
                                                                 const std::string& group_id,
                                                                 const std::string& topic,
                                                                 const std::vector<Start>& starts,
                                                                 std::function<void()> on_ready);
  ~KafkaRecordSource() override;

  absl::Status Read(size_t max, std::vector<SourceRecord>* out) override;
  Progress PartitionProgress(int32_t partition) override;
  void CommitForMonitoring(const std::map<int32_t, int64_t>& next_offsets) override;

 private:
  KafkaRecordSource() = default;
  static void OnQueueEvent(rd_kafka_t* rk, void* opaque);

  std::string topic_;
  kafka::Handle consumer_;
  kafka::Queue queue_;
  std::function<void()> on_ready_;
  std::vector<rd_kafka_message_t*> messages_;
  std::map<int32_t, int64_t> eof_offsets_;  // partition -> offset at which it was read to the end
};

}  // namespace uop::broker
