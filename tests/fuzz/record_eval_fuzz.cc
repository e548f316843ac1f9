// Fuzzes record evaluation: input lines are records of one partition, run through shares with
// every kind of rule. Whatever comes in, a JSON share must put out valid JSON, and a
// pseudonymised identifier that leaves must be a 64-digit hex pseudonym.
#include <simdjson.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "policy/share_transform.h"

namespace {

using uop::policy::PolicySnapshot;

std::shared_ptr<const PolicySnapshot> Policies() {
  static const auto* snapshot = [] {
    auto s = PolicySnapshot::FromFiles(
        {{"identity.yaml", "dataset: identity\nshares:\n  - peer: tallinn\n"},
         {"fields.yaml", R"(dataset: fields
format: sensorthings-observation
shares:
  - peer: tallinn
    fields:
      keep: [result, phenomenonTime, Datastream.@iot.id, FeatureOfInterest, a.b.c]
      drop: [FeatureOfInterest.description]
      pseudonymise: [Datastream.@iot.id]
      pseudonym_key: k
      record_key: pseudonymise
    spatial:
      within: {bbox: [-10, -10, 30, 70]}
      generalise: {grid_m: 250}
)"},
         {"hole.yaml", R"(dataset: hole
format: json
location: g
shares:
  - peer: tallinn
    fields: {drop: [x.y]}
    spatial:
      within: {polygon: areas/a.geojson}
      generalise: {decimals: 2}
      no_location: allow
)"},
         {"agg.yaml", R"(dataset: agg
format: sensorthings-observation
shares:
  - peer: tallinn
    fields: {pseudonymise: [Datastream.@iot.id], pseudonym_key: k, record_key: drop}
    aggregate: {window: 1m, lateness: 10s, values: [count, mean, max, min, sum], min_count: 1}
)"},
         {"keys/k.key", "fuzz-key-0123456789abcdef0123456789"},
         {"areas/a.geojson",
          R"({"type":"Polygon","coordinates":[[[0,0],[10,0],[10,10],[0,10],[0,0]],)"
          R"([[4,4],[4,6],[6,6],[6,4],[4,4]]]})"}},
        {"tallinn"});
    if (!s.ok()) std::abort();
    return new std::shared_ptr<const PolicySnapshot>(*s);
  }();
  return *snapshot;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> records;
  for (size_t start = 0; start <= input.size();) {
    size_t end = input.find('\n', start);
    if (end == std::string_view::npos) end = input.size();
    records.push_back(input.substr(start, end - start));
    start = end + 1;
  }
  // The receiver orders tokens from the owner (records that share an offset): any two lines as
  // tokens must compare consistently, never crash.
  if (records.size() >= 2) {
    const absl::string_view a(records[0].data(), records[0].size());
    const absl::string_view b(records[1].data(), records[1].size());
    const auto ab = uop::policy::CompareResumeTokens(a, b);
    const auto ba = uop::policy::CompareResumeTokens(b, a);
    if (ab.has_value() != ba.has_value()) std::abort();
    if (ab.has_value() &&
        (*ab == std::strong_ordering::less) != (*ba == std::strong_ordering::greater)) {
      std::abort();
    }
  }
  simdjson::dom::parser checker;
  for (const char* dataset : {"identity", "fields", "hole", "agg"}) {
    // The first line doubles as a resume token: foreign tokens must be refused, not trusted.
    auto t = uop::policy::ShareTransform::Resume(
        Policies(), dataset, "tallinn", 0, absl::string_view(records[0].data(), records[0].size()));
    if (!t.ok()) t = uop::policy::ShareTransform::Resume(Policies(), dataset, "tallinn", 0, "");
    if (!t.ok()) std::abort();
    uop::policy::TransformOutput out;
    int64_t offset = 0;
    for (std::string_view r : records) {
      uop::policy::SourceRecord rec{0, offset++, 1772366400000, r.substr(0, 8), r, {}};
      (*t)->Apply(rec, absl::FromUnixSeconds(1772366400), &out);
    }
    (*t)->Advance(absl::FromUnixSeconds(1772366400 + 86400 * 365), &out);
    // What one partition releases is strictly ordered by its tokens (the receiver's filter).
    for (size_t i = 1; i < out.records.size(); ++i) {
      if (out.records[i].source_offset < out.records[i - 1].source_offset) std::abort();
      if (out.records[i].source_offset == out.records[i - 1].source_offset &&
          uop::policy::CompareResumeTokens(out.records[i].resume_token,
                                           out.records[i - 1].resume_token) !=
              std::strong_ordering::greater) {
        std::abort();
      }
    }
    for (const auto& o : out.records) {
      if (std::string_view(dataset) == "identity") continue;
      simdjson::dom::element e;
      if (checker.parse(o.value.data(), o.value.size()).get(e) != simdjson::SUCCESS) std::abort();
      if (o.resume_token.empty()) std::abort();
      std::string_view id;
      if (std::string_view(dataset) == "fields" &&
          e.at_pointer("/Datastream/@iot.id").get(id) == simdjson::SUCCESS &&
          (id.size() != 64 || id.find_first_not_of("0123456789abcdef") != std::string_view::npos)) {
        std::abort();
      }
    }
  }
  return 0;
}
