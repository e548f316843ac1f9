// Fuzzes what an auditor's tools read from disk: a segment (framing and entries) and a bundle
// (manifest, leaves, entries, then the full offline check with a fixed key).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "audit/entry.h"
#include "audit/keys.h"
#include "audit/loaded_log.h"
#include "audit/log_check.h"
#include "audit/segment_reader.h"

namespace {

const uop::audit::Verifier& FixedKey() {
  // The key of the seed corpus (written by `uopctl audit demo`), so that seeds reach the
  // checks behind the signatures.
  static const uop::audit::Verifier key = *uop::audit::Verifier::FromVkey(
      "helsinki+c354e400+AbiX/Hdcv1Tn9rJUgW//m5cRA9SoyGY2EAqjr80CSXi5");
  return key;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  uop::audit::SegmentReader reader(input);
  absl::string_view entry;
  std::string scratch;
  uint64_t offset = 0, last = 0;
  while (reader.ReadEntry(&entry, &scratch, &offset)) {
    if (offset > size || (offset < last && last != 0)) std::abort();
    last = offset;
    absl::StatusOr<uop::audit::Entry> e = uop::audit::DecodeEntry(entry);
    // The encoding is canonical: what decodes re-encodes to the same bytes.
    if (e.ok() && uop::audit::EncodeEntry(*e) != entry) std::abort();
  }
  if (reader.end_of_last_entry() > size) std::abort();
  if (reader.error().has_value() && reader.error()->offset > size) std::abort();

  uop::audit::LoadResult bundle = uop::audit::LoadBundle(input, "fuzz.bundle");
  if (!bundle.failure.has_value()) {
    uop::audit::CheckOptions options;
    options.log_key = FixedKey();
    uop::audit::CheckReport report = uop::audit::CheckLog(bundle.log, options);
    (void)report;
  }
  return 0;
}
