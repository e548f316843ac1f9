// LevelDB's db/log_writer.cc, adapted to absl::Status and a byte counter.
#include "audit/segment_writer.h"

#include "audit/crc32c.h"
#include "audit/segment_format.h"

namespace uop::audit {

using segment::kBlockSize;
using segment::kHeaderSize;

SegmentWriter::SegmentWriter(WritableFile* dest, uint64_t dest_length)
    : dest_(dest), block_offset_(static_cast<int>(dest_length % kBlockSize)), length_(dest_length) {
  for (int i = 0; i <= segment::kMaxRecordType; ++i) {
    char t = static_cast<char>(i);
    type_crc_[i] = crc32c::Value(&t, 1);
  }
}

absl::Status SegmentWriter::AddEntry(absl::string_view entry) {
  const char* ptr = entry.data();
  size_t left = entry.size();
  bool begin = true;
  do {
    const int leftover = kBlockSize - block_offset_;
    if (leftover < kHeaderSize) {
      if (leftover > 0) {
        static constexpr char kZeros[kHeaderSize] = {};
        if (absl::Status s = dest_->Append(absl::string_view(kZeros, leftover)); !s.ok()) return s;
        length_ += leftover;
      }
      block_offset_ = 0;
    }
    const size_t avail = kBlockSize - block_offset_ - kHeaderSize;
    const size_t fragment_length = (left < avail) ? left : avail;
    const bool end = (left == fragment_length);
    uint8_t type;
    if (begin && end) {
      type = segment::kFullType;
    } else if (begin) {
      type = segment::kFirstType;
    } else if (end) {
      type = segment::kLastType;
    } else {
      type = segment::kMiddleType;
    }
    if (absl::Status s = EmitPhysicalRecord(type, ptr, fragment_length); !s.ok()) return s;
    ptr += fragment_length;
    left -= fragment_length;
    begin = false;
  } while (left > 0);
  return absl::OkStatus();
}

absl::Status SegmentWriter::EmitPhysicalRecord(uint8_t type, const char* ptr, size_t length) {
  char header[kHeaderSize];
  uint32_t crc = crc32c::Mask(crc32c::Extend(type_crc_[type], ptr, length));
  for (int i = 0; i < 4; ++i) header[i] = static_cast<char>((crc >> (8 * i)) & 0xff);
  header[4] = static_cast<char>(length & 0xff);
  header[5] = static_cast<char>(length >> 8);
  header[6] = static_cast<char>(type);
  absl::Status s = dest_->Append(absl::string_view(header, kHeaderSize));
  if (s.ok()) s = dest_->Append(absl::string_view(ptr, length));
  if (!s.ok()) return s;
  block_offset_ += static_cast<int>(kHeaderSize + length);
  length_ += kHeaderSize + length;
  return absl::OkStatus();
}

}  // namespace uop::audit
