// The read stage on the owner's Kafka: one read_committed consumer shared by many streams, each
// stream reading its own partitions through a queue of its own. Reads never block.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "broker/export/consumer_pool.h"
#include "kafka/client.h"

namespace uop::broker {

// One librdkafka consumer (group `group_id`, for monitoring commits only). Partitions are
// started and stopped one by one with librdkafka's per-partition consume API
// (rd_kafka_consume_start_queue / rd_kafka_consume_stop) rather than through the group's
// assignment: a start points the partition's fetch queue at the stream's queue, and a stop
// returns only once the partition has stopped and its forwarding is undone, so a partition can
// go from one stream to the next without a window in which its records land elsewhere.
// Thread-safe; `env` must outlive it.
class KafkaPartitionConsumer final : public PartitionConsumer {
 public:
  // `read_ahead_bytes`: what one stream's queue holds at most (librdkafka's
  // queued.max.messages.kbytes, which with a queue per stream bounds each stream's queue, and
  // which a stream must not reach in normal flow: docs/librdkafka.md).
  static absl::StatusOr<std::unique_ptr<KafkaPartitionConsumer>> Open(kafka::Env* env,
                                                                      const std::string& group_id,
                                                                      int64_t read_ahead_bytes);
  ~KafkaPartitionConsumer() override;

  absl::StatusOr<std::unique_ptr<RecordSource>> Start(
      const std::string& topic, const std::vector<PartitionStartOffset>& starts,
      std::function<void()> on_ready) override;
  void Poll() override;

 private:
  KafkaPartitionConsumer() = default;
  std::string group_id_;
  kafka::Handle consumer_;
  kafka::Queue group_queue_;  // the group's own events (coordinator errors); records never
};

}  // namespace uop::broker
