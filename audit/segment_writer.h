// Appends entries to one audit segment in LevelDB's log format (see segment_format.h).
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "audit/file_system.h"

namespace uop::audit {

// Frames entries into `*dest`, which must remain live while this SegmentWriter is in use and
// already holds `dest_length` bytes of a segment. Stops at the first failure: after an error the
// caller must discard the writer (and truncate the file back to its last durable length). Not
// thread-safe.
class SegmentWriter {
 public:
  SegmentWriter(WritableFile* dest, uint64_t dest_length);
  SegmentWriter(const SegmentWriter&) = delete;
  SegmentWriter& operator=(const SegmentWriter&) = delete;

  absl::Status AddEntry(absl::string_view entry);
  // Bytes in the segment including everything added (durable or not).
  uint64_t length() const { return length_; }

 private:
  absl::Status EmitPhysicalRecord(uint8_t type, const char* ptr, size_t length);

  WritableFile* const dest_;
  int block_offset_;
  uint64_t length_;
  uint32_t type_crc_[5];  // CRC of each record type byte, the start of every record's CRC
};

}  // namespace uop::audit
