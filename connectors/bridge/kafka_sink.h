// RecordSink over a librdkafka idempotent producer, with an optional embedded mock cluster
// (librdkafka's rdkafka_mock) for the demo and tests. Minimal on purpose: to be replaced by the
// shared Kafka adapter library once it exists outside broker/ (see docs/connectors.md).
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include <librdkafka/rdkafka.h>

#include "absl/status/statusor.h"
#include "connectors/bridge/record_sink.h"

typedef struct rd_kafka_mock_cluster_s rd_kafka_mock_cluster_t;

namespace uop::sta_bridge {

struct KafkaSinkOptions {
  std::string bootstrap;  // empty: start an embedded mock cluster
  int embedded_brokers = 1;
  std::map<std::string, int> embedded_topics;  // topic -> partitions, created at start
  std::map<std::string, std::string> properties;
  int max_in_flight = 100000;  // queue.buffering.max.messages
};

class KafkaSink final : public RecordSink {
 public:
  static absl::StatusOr<std::unique_ptr<KafkaSink>> Create(const KafkaSinkOptions& options);
  ~KafkaSink() override;

  absl::Status Send(OutRecord record, Done done) override;
  int InFlight() const override { return in_flight_.load(std::memory_order_relaxed); }

  // Waits up to `timeout_ms` for every queued record to be reported.
  absl::Status Flush(int timeout_ms);
  const std::string& bootstrap() const { return bootstrap_; }
  // The embedded cluster, or nullptr (tests use it to take brokers down).
  rd_kafka_mock_cluster_t* mock_cluster() const { return mock_; }

 private:
  KafkaSink() = default;
  static void OnDelivery(rd_kafka_t* rk, const rd_kafka_message_t* msg, void* opaque);

  std::string bootstrap_;
  rd_kafka_t* mock_host_ = nullptr;
  rd_kafka_mock_cluster_t* mock_ = nullptr;
  rd_kafka_t* producer_ = nullptr;
  std::atomic<int> in_flight_{0};
  std::atomic<bool> stop_{false};
  std::thread poller_;
};

}  // namespace uop::sta_bridge
