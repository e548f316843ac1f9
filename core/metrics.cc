// Prometheus text format 0.0.4.
#include "core/metrics.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace uop::core {

MetricValue* Metrics::Counter(const std::string& name, const std::string& help,
                              const Labels& labels) {
  return Get(name, "counter", help, labels);
}

MetricValue* Metrics::Gauge(const std::string& name, const std::string& help,
                            const Labels& labels) {
  return Get(name, "gauge", help, labels);
}

MetricValue* Metrics::Get(const std::string& name, const std::string& type, const std::string& help,
                          const Labels& labels) {
  std::string rendered;
  for (const auto& [k, v] : labels) {
    absl::StrAppend(&rendered, rendered.empty() ? "" : ",", k, "=\"",
                    absl::StrReplaceAll(v, {{"\\", "\\\\"}, {"\"", "\\\""}, {"\n", "\\n"}}), "\"");
  }
  absl::MutexLock lock(&mu_);
  Family& family = families_[name];
  family.type = type;
  family.help = help;
  std::unique_ptr<MetricValue>& value = family.series[rendered];
  if (!value) value = std::make_unique<MetricValue>();
  return value.get();
}

std::string Metrics::Render() const {
  std::string out;
  absl::MutexLock lock(&mu_);
  for (const auto& [name, family] : families_) {
    absl::StrAppend(&out, "# HELP ", name, " ", family.help, "\n# TYPE ", name, " ", family.type,
                    "\n");
    for (const auto& [labels, value] : family.series) {
      const double v = value->Get();
      std::string number = (std::floor(v) == v && std::fabs(v) < 1e15)
                               ? absl::StrCat(static_cast<int64_t>(v))
                               : absl::StrCat(v);
      absl::StrAppend(&out, name, labels.empty() ? "" : "{", labels, labels.empty() ? "" : "}", " ",
                      number, "\n");
    }
  }
  return out;
}

}  // namespace uop::core
