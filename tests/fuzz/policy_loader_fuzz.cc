// Fuzzes the policy loader with arbitrary YAML: it must return a Status, never crash, and what
// it accepts must have a version and a canonical form that never holds the key.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "policy/policy_snapshot.h"

namespace {
const char kKey[] = "fuzz-key-0123456789abcdef0123456789";
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const std::map<std::string, std::string> files = {
      {"p/rules.yaml", text},
      {"keys/k.key", kKey},
      {"p/areas/a.geojson",
       R"({"type":"Polygon","coordinates":[[[0,0],[10,0],[10,10],[0,10],[0,0]],)"
       R"([[4,4],[4,6],[6,6],[6,4],[4,4]]]})"},
  };
  auto snapshot = uop::policy::PolicySnapshot::FromFiles(files, {"tallinn", "riga"});
  // The key may only show up in a message if the policy text itself holds it.
  const bool text_has_key = text.find(kKey) != std::string::npos;
  if (!snapshot.ok()) {
    if (!text_has_key && snapshot.status().message().find(kKey) != std::string::npos) {
      std::abort();
    }
    return 0;
  }
  const auto& s = **snapshot;
  if (s.version().size() != 23) std::abort();
  if (!text_has_key && s.canonical().find(kKey) != std::string::npos) std::abort();
  for (const auto& w : s.warnings()) {
    if (!text_has_key && w.ToString().find(kKey) != std::string::npos) std::abort();
  }
  for (const uop::policy::Share* share : s.Shares()) {
    if (!s.Allows(share->dataset, share->peer)) std::abort();
  }
  return 0;
}
