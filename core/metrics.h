// Counters and gauges with labels, rendered in the Prometheus text exposition format.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace uop::core {

using Labels = std::vector<std::pair<std::string, std::string>>;

// A value that lives as long as the Metrics that made it. Lock-free to update.
class MetricValue {
 public:
  void Add(double d) {
    double cur = value_.load(std::memory_order_relaxed);
    while (!value_.compare_exchange_weak(cur, cur + d, std::memory_order_relaxed)) {
    }
  }
  void Set(double d) { value_.store(d, std::memory_order_relaxed); }
  double Get() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Thread-safe registry. Returned pointers stay valid for the registry's lifetime.
class Metrics {
 public:
  MetricValue* Counter(const std::string& name, const std::string& help, const Labels& labels = {});
  MetricValue* Gauge(const std::string& name, const std::string& help, const Labels& labels = {});
  std::string Render() const;

 private:
  struct Family {
    std::string type;
    std::string help;
    std::map<std::string, std::unique_ptr<MetricValue>> series;  // rendered labels -> value
  };
  MetricValue* Get(const std::string& name, const std::string& type, const std::string& help,
                   const Labels& labels);
  mutable absl::Mutex mu_;
  std::map<std::string, Family> families_ ABSL_GUARDED_BY(mu_);
};

}  // namespace uop::core
