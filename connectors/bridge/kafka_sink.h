// RecordSink over an idempotent librdkafka producer made by the shared Kafka library
// (kafka/client.h: embedded mock cluster or real bootstrap servers, errors as Status).
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "connectors/bridge/record_sink.h"
#include "kafka/client.h"
#include "kafka/cluster_config.h"

namespace uop::sta_bridge {

struct KafkaSinkOptions {
  kafka::ClusterConfig cluster;  // embedded set: a mock cluster in this process
  int max_in_flight = 100000;    // queue.buffering.max.messages
};

class KafkaSink final : public RecordSink {
 public:
  static absl::StatusOr<std::unique_ptr<KafkaSink>> Create(const KafkaSinkOptions& options);
  ~KafkaSink() override;

  absl::Status Send(const OutRecord& record, Done done) override;
  int InFlight() const override { return in_flight_.load(std::memory_order_relaxed); }

  // Waits up to `timeout_ms` for every queued record to be reported.
  absl::Status Flush(int timeout_ms);
  const std::string& bootstrap() const { return env_->bootstrap(); }

 private:
  KafkaSink() = default;
  static void OnDelivery(rd_kafka_t* rk, const rd_kafka_message_t* msg, void* opaque);

  std::unique_ptr<kafka::Env> env_;
  kafka::Handle producer_;
  std::atomic<int> in_flight_{0};
  std::atomic<bool> stop_{false};
  std::thread poller_;
};

}  // namespace uop::sta_bridge
