// policy_bench: CPU cost of a share per record, for a typical ~300-byte SensorThings
// Observation (the shape `uopctl simulate` produces), through ShareTransform::Apply as the
// owner's transform stage calls it: a pass-through share (no rules: bytes are copied, not
// parsed) beside keep + pseudonymise + bbox + 250 m grid. items_per_second is records/s on one
// core. Target: >= 1 000 000 records/s with the policy.
#include <map>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <simdjson.h>

#include "absl/strings/str_format.h"
#include "policy/share_transform.h"

namespace {

using uop::policy::PolicySnapshot;

const absl::Time kNow = absl::FromUnixSeconds(1772366400);

struct Record {
  std::string key;  // the Datastream id, as `uopctl simulate` keys records
  std::string value;
};

// 1024 observations from `sites` sensors (Datastreams). With 64 sites identifiers repeat as in a
// city's feed; with 1024 every one misses the transform's 256-slot pseudonym cache.
const std::vector<Record>& Records(int sites) {
  static std::map<int, std::vector<Record>> cache;
  auto [it, inserted] = cache.try_emplace(sites);
  if (!inserted) return it->second;
  for (int seq = 0; seq < 1024; ++seq) {
    const int site = seq % sites;
    Record r;
    r.key = absl::StrFormat("hel-site-%04d-laeq", site);
    r.value = absl::StrFormat(
        R"j({"@iot.id":"hel-site-%04d-%d","phenomenonTime":"2026-03-01T12:%02d:%02d.%03dZ",)j"
        R"j("resultTime":"2026-03-01T12:%02d:%02d.%03dZ","result":%.1f,)j"
        R"j("Datastream":{"@iot.id":"%s","unitOfMeasurement":{"symbol":"dB(A)"}},)j"
        R"j("FeatureOfInterest":{"name":"Site %04d","feature":{"type":"Point","coordinates":[%.4f,%.4f]}},)j"
        R"j("parameters":{"seq":%d}})j",
        site, seq, seq % 60, seq % 60, seq % 1000, seq % 60, seq % 60, seq % 1000,
        55.0 + (seq % 200) / 10.0, r.key, site, 24.90 + (site % 64) * 0.002,
        60.15 + (site % 64) * 0.001, seq);
    it->second.push_back(std::move(r));
  }
  return it->second;
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
         // One rule each, to see what each costs.
         {"keep.yaml",
          "dataset: keep\nformat: sensorthings-observation\nshares:\n  - peer: "
          "tallinn\n    fields: {keep: [result, phenomenonTime, Datastream.@iot.id, "
          "FeatureOfInterest.feature]}\n"},
         {"pseudo.yaml",
          "dataset: pseudo\nformat: sensorthings-observation\nshares:\n  - peer: "
          "tallinn\n    fields: {pseudonymise: [Datastream.@iot.id], "
          "pseudonym_key: bench, record_key: pseudonymise}\n"},
         {"bbox.yaml",
          "dataset: bbox\nformat: sensorthings-observation\nshares:\n  - peer: "
          "tallinn\n    spatial: {within: {bbox: [24.5, 59.9, 25.3, 60.4]}}\n"},
         {"grid.yaml",
          "dataset: grid\nformat: sensorthings-observation\nshares:\n  - peer: "
          "tallinn\n    spatial: {generalise: {grid_m: 250}}\n"},
         {"keys/bench.key", "bench-key-0123456789abcdef0123456789abcdef"}},
        {"tallinn"});
    if (!s.ok()) std::abort();
    return *s;
  }();
  return snapshot;
}

void Run(benchmark::State& state, const char* dataset, int sites) {
  auto t = uop::policy::ShareTransform::Resume(Snapshot(), dataset, "tallinn", 0, "");
  if (!t.ok()) {
    state.SkipWithError("no share");
    return;
  }
  const auto& records = Records(sites);
  uop::policy::TransformOutput out;
  int64_t offset = 0;
  int64_t bytes = 0;
  for (auto _ : state) {
    const Record& r = records[static_cast<size_t>(offset) % records.size()];
    const std::string& v = r.value;
    uop::policy::SourceRecord rec{0,     offset++, 1772366400000,
                                  r.key, v,        {{"content-type", "application/json"}}};
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
  const auto& records = Records(64);
  size_t i = 0;
  for (auto _ : state) {
    const std::string& v = records[i++ % records.size()].value;
    simdjson::dom::element e;
    benchmark::DoNotOptimize(parser.parse(v.data(), v.size()).get(e));
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_PassThrough(benchmark::State& state) { Run(state, "plain", 64); }
void BM_KeepPseudonymiseBboxGrid(benchmark::State& state) { Run(state, "noise.observations", 64); }
void BM_KeepPseudonymiseBboxGrid_DistinctIds(benchmark::State& state) {
  Run(state, "noise.observations", 1024);
}

void BM_OnlyKeep(benchmark::State& state) { Run(state, "keep", 64); }
void BM_OnlyPseudonymise(benchmark::State& state) { Run(state, "pseudo", 64); }
void BM_OnlyBbox(benchmark::State& state) { Run(state, "bbox", 64); }
void BM_OnlyGrid(benchmark::State& state) { Run(state, "grid", 64); }

BENCHMARK(BM_SimdjsonParseOnly);
BENCHMARK(BM_PassThrough);
BENCHMARK(BM_KeepPseudonymiseBboxGrid);
BENCHMARK(BM_KeepPseudonymiseBboxGrid_DistinctIds);
BENCHMARK(BM_OnlyKeep);
BENCHMARK(BM_OnlyPseudonymise);
BENCHMARK(BM_OnlyBbox);
BENCHMARK(BM_OnlyGrid);

}  // namespace

BENCHMARK_MAIN();
