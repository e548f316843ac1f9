// The on-disk framing of audit segments: LevelDB's log format (db/log_format.h), unchanged.
// A segment is a sequence of 32 KiB blocks; each entry is one or more physical records
//   checksum (4 bytes, little endian, masked CRC-32C of type and payload)
//   length   (2 bytes, little endian)
//   type     (1 byte: kFull, kFirst, kMiddle, kLast)
//   payload  (length bytes)
// A block never ends inside a record header: fewer than 7 bytes left are zero-filled.
#pragma once

#include <cstdint>

namespace uop::audit::segment {

enum RecordType : uint8_t {
  kZeroType = 0,  // never written; a zero-filled tail reads as this
  kFullType = 1,
  kFirstType = 2,
  kMiddleType = 3,
  kLastType = 4,
};
inline constexpr int kMaxRecordType = kLastType;

inline constexpr int kBlockSize = 32768;
inline constexpr int kHeaderSize = 4 + 2 + 1;

}  // namespace uop::audit::segment
