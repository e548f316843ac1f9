// Reads the entries of one audit segment held in memory and says exactly where and why the
// framing is broken. Strict: every byte of a segment is accounted for (headers, payloads, the
// zero-filled block trailers), so any single-byte change is reported.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace uop::audit {

struct FramingError {
  uint64_t offset = 0;       // byte offset in the segment of the offending physical record
  uint64_t entry_start = 0;  // offset of the first record of the entry it belongs to
  std::string reason;
  // True when the damage reaches the end of the segment (nothing complete follows it): what a
  // torn write at a crash leaves. Recovery truncates such a tail at entry_start.
  bool at_tail = false;
};

// Reads `contents`, which must remain live while this SegmentReader is in use. Not thread-safe.
class SegmentReader {
 public:
  explicit SegmentReader(absl::string_view contents) : contents_(contents) {}

  // Stores the next entry in *entry (a view into contents, or into *scratch for an entry split
  // over blocks) and its starting offset in *offset. Returns false at the end of the segment or
  // at the first framing error (then error() is set); nothing is read after an error.
  bool ReadEntry(absl::string_view* entry, std::string* scratch, uint64_t* offset);

  const std::optional<FramingError>& error() const { return error_; }
  // Offset just past the last complete entry read.
  uint64_t end_of_last_entry() const { return end_of_last_entry_; }

 private:
  bool Fail(uint64_t offset, uint64_t entry_start, std::string reason, uint64_t damage_end);

  const absl::string_view contents_;
  uint64_t pos_ = 0;
  uint64_t end_of_last_entry_ = 0;
  std::optional<FramingError> error_;
};

}  // namespace uop::audit
