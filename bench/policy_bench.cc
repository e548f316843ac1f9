// policy_bench: CPU cost of a share per record, for a typical ~300-byte SensorThings
// Observation (the shape `uopctl simulate` produces), through ShareTransform::Apply as the
// owner's transform stage calls it: a pass-through share (no rules: bytes are copied, not
// parsed) beside keep + pseudonymise + bbox + 250 m grid. items_per_second is records/s on one
// core. Target: >= 1 000 000 records/s with the policy.
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <simdjson.h>

#include "absl/strings/str_format.h"
#include "policy/share_transform.h"

namespace {

using uop::policy::PolicySnapshot;

constexpr int kSites = 64;
const absl::Time kNow = absl::FromUnixSeconds(1772366400);

std::vector<std::string>& Records() {
  static std::vector<std::string> records = [] {
    std::vector<std::string> out;
    for (int seq = 0; seq < 1024; ++seq) {
      const int site = seq % kSites;
      out.push_back(absl::StrFormat(
          R"j({"@iot.id":"hel-site-%02d-%d","phenomenonTime":"2026-03-01T12:%02d:%02d.%03dZ",)j"
          R"j("resultTime":"2026-03-01T12:%02d:%02d.%03dZ","result":%.1f,)j"
          R"j("Datastream":{"@iot.id":"hel-site-%02d-laeq","unitOfMeasurement":{"symbol":"dB(A)"}},)j"
          R"j("FeatureOfInterest":{"name":"Site %02d","feature":{"type":"Point","coordinates":[%.4f,%.4f]}},)j"
          R"j("parameters":{"seq":%d}})j",
          site, seq, seq % 60, seq % 60, seq % 1000, seq % 60, seq % 60, seq % 1000,
          55.0 + (seq % 200) / 10.0, site, site, 24.90 + site * 0.002, 60.15 + site * 0.001, seq));
    }
    return out;
  }();
  return records;
}

std::shared_ptr<const PolicySnapshot> Snapshot() {
  static auto snapshot = [] {
    auto s = PolicySnapshot::FromFiles(
        {{"plain.yaml", "dataset: plain\nshares:\n  - peer: tallinn\n"},
         {"noise.yaml", R"(dataset: noise.observations
format: sensorthings-observation
shares:
  - peer: tallinn
    fields:
      keep: [result, phenomenonTime, Datastream.@iot.id, FeatureOfInterest.feature]
      pseudonymise: [Datastream.@iot.id]
      pseudonym_key: bench
      record_key: pseudonymise
    spatial:
      within: {bbox: [24.5, 59.9, 25.3, 60.4]}
      generalise: {grid_m: 250}
)"},
         {"keys/bench.key", "bench-key-0123456789abcdef0123456789abcdef"}},
        {"tallinn"});
    if (!s.ok()) std::abort();
    return *s;
  }();
  return snapshot;
}

void Run(benchmark::State& state, const char* dataset) {
  auto t = uop::policy::ShareTransform::Resume(Snapshot(), dataset, "tallinn", 0, "");
  if (!t.ok()) {
    state.SkipWithError("no share");
    return;
  }
  const auto& records = Records();
  uop::policy::TransformOutput out;
  int64_t offset = 0;
  int64_t bytes = 0;
  for (auto _ : state) {
    const std::string& v = records[static_cast<size_t>(offset) % records.size()];
    uop::policy::SourceRecord rec{
        0, offset++, 1772366400000, "hel-site-00-laeq", v, {{"content-type", "application/json"}}};
    benchmark::DoNotOptimize((*t)->Apply(rec, kNow, &out));
    bytes += static_cast<int64_t>(v.size());
    if (out.records.size() >= 256) out.Clear();  // the stage hands batches on
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(bytes);
  state.counters["avg_record_bytes"] =
      static_cast<double>(bytes) / static_cast<double>(std::max<int64_t>(1, state.iterations()));
}

// For scale: simdjson's DOM parse alone, which any JSON rule needs once per record.
void BM_SimdjsonParseOnly(benchmark::State& state) {
  simdjson::dom::parser parser;
  const auto& records = Records();
  size_t i = 0;
  for (auto _ : state) {
    const std::string& v = records[i++ % records.size()];
    simdjson::dom::element e;
    benchmark::DoNotOptimize(parser.parse(v.data(), v.size()).get(e));
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_PassThrough(benchmark::State& state) { Run(state, "plain"); }
void BM_KeepPseudonymiseBboxGrid(benchmark::State& state) { Run(state, "noise.observations"); }

BENCHMARK(BM_SimdjsonParseOnly);
BENCHMARK(BM_PassThrough);
BENCHMARK(BM_KeepPseudonymiseBboxGrid);

}  // namespace

BENCHMARK_MAIN();
