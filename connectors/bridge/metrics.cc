// Prometheus text exposition of the bridge's counters.
#include "connectors/bridge/metrics.h"

#include "absl/strings/str_cat.h"

namespace uop::sta_bridge {

void BridgeMetrics::Accepted(absl::string_view via, int64_t n) {
  absl::MutexLock l(&mu_);
  accepted_[std::string(via)] += n;
}

void BridgeMetrics::Rejected(absl::string_view via, absl::string_view reason, int64_t n) {
  absl::MutexLock l(&mu_);
  rejected_[{std::string(via), std::string(reason)}] += n;
}

void BridgeMetrics::Unavailable(absl::string_view via) {
  absl::MutexLock l(&mu_);
  unavailable_[std::string(via)] += 1;
}

int64_t BridgeMetrics::accepted(absl::string_view via) const {
  absl::MutexLock l(&mu_);
  auto it = accepted_.find(std::string(via));
  return it == accepted_.end() ? 0 : it->second;
}

int64_t BridgeMetrics::rejected(absl::string_view via, absl::string_view reason) const {
  absl::MutexLock l(&mu_);
  auto it = rejected_.find({std::string(via), std::string(reason)});
  return it == rejected_.end() ? 0 : it->second;
}

std::string BridgeMetrics::Render(int in_flight) const {
  std::string out;
  absl::MutexLock l(&mu_);
  out += "# HELP uop_sta_accepted_total Observations written to Kafka.\n";
  out += "# TYPE uop_sta_accepted_total counter\n";
  for (const auto& [via, n] : accepted_) {
    absl::StrAppend(&out, "uop_sta_accepted_total{via=\"", via, "\"} ", n, "\n");
  }
  out += "# HELP uop_sta_rejected_total Observations refused, by reason.\n";
  out += "# TYPE uop_sta_rejected_total counter\n";
  for (const auto& [k, n] : rejected_) {
    absl::StrAppend(&out, "uop_sta_rejected_total{via=\"", k.first, "\",reason=\"", k.second,
                    "\"} ", n, "\n");
  }
  out += "# HELP uop_sta_unavailable_total Requests answered 503 (http) or waits for Kafka.\n";
  out += "# TYPE uop_sta_unavailable_total counter\n";
  for (const auto& [via, n] : unavailable_) {
    absl::StrAppend(&out, "uop_sta_unavailable_total{via=\"", via, "\"} ", n, "\n");
  }
  absl::StrAppend(&out, "# TYPE uop_sta_dead_lettered_total counter\nuop_sta_dead_lettered_total ",
                  dead_lettered_.load(), "\n");
  absl::StrAppend(&out, "# TYPE uop_sta_kafka_retries_total counter\nuop_sta_kafka_retries_total ",
                  kafka_retries_.load(), "\n");
  absl::StrAppend(&out, "# TYPE uop_sta_mqtt_connects_total counter\nuop_sta_mqtt_connects_total ",
                  mqtt_connects_.load(), "\n");
  absl::StrAppend(&out, "# TYPE uop_sta_mqtt_batches_total counter\nuop_sta_mqtt_batches_total ",
                  mqtt_batches_.load(), "\n");
  absl::StrAppend(&out, "# TYPE uop_sta_kafka_in_flight gauge\nuop_sta_kafka_in_flight ", in_flight,
                  "\n");
  return out;
}

}  // namespace uop::sta_bridge
