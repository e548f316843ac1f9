// The bridge's counters, rendered as Prometheus text on /metrics. Thread-safe.
#pragma once

#include <atomic>
#include <map>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace uop::sta_bridge {

class BridgeMetrics {
 public:
  void Accepted(absl::string_view via, int64_t n = 1);
  void Rejected(absl::string_view via, absl::string_view reason, int64_t n = 1);
  void DeadLettered(int64_t n = 1) { dead_lettered_.fetch_add(n); }
  void KafkaRetry() { kafka_retries_.fetch_add(1); }
  void Unavailable(absl::string_view via);  // 503s and MQTT waits for Kafka
  void Reconnected() { mqtt_connects_.fetch_add(1); }
  void MqttBatch() { mqtt_batches_.fetch_add(1); }

  int64_t accepted(absl::string_view via) const;
  int64_t rejected(absl::string_view via, absl::string_view reason) const;

  // `in_flight` is the sink's current queue depth.
  std::string Render(int in_flight) const;

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, int64_t> accepted_ ABSL_GUARDED_BY(mu_);
  std::map<std::pair<std::string, std::string>, int64_t> rejected_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> unavailable_ ABSL_GUARDED_BY(mu_);
  std::atomic<int64_t> dead_lettered_{0};
  std::atomic<int64_t> kafka_retries_{0};
  std::atomic<int64_t> mqtt_connects_{0};
  std::atomic<int64_t> mqtt_batches_{0};
};

}  // namespace uop::sta_bridge
