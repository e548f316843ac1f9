// The reader side of segment_format.h, stricter than LevelDB's (which skips damage): an audit
// log must not skip anything, so the first damaged byte ends the read with its position.
#include "audit/segment_reader.h"

#include "absl/strings/str_cat.h"
#include "audit/crc32c.h"
#include "audit/segment_format.h"

namespace uop::audit {

using segment::kBlockSize;
using segment::kHeaderSize;

namespace {

bool AllZero(absl::string_view s) {
  for (char c : s) {
    if (c != 0) return false;
  }
  return true;
}

uint32_t DecodeFixed32(const char* p) {
  const auto* u = reinterpret_cast<const uint8_t*>(p);
  return uint32_t{u[0]} | (uint32_t{u[1]} << 8) | (uint32_t{u[2]} << 16) | (uint32_t{u[3]} << 24);
}

}  // namespace

bool SegmentReader::Fail(uint64_t offset, uint64_t entry_start, std::string reason,
                         uint64_t damage_end) {
  FramingError e;
  e.offset = offset;
  e.entry_start = entry_start;
  e.reason = std::move(reason);
  e.at_tail = damage_end >= contents_.size() || AllZero(contents_.substr(damage_end));
  error_ = std::move(e);
  return false;
}

bool SegmentReader::ReadEntry(absl::string_view* entry, std::string* scratch, uint64_t* offset) {
  if (error_.has_value()) return false;
  const uint64_t size = contents_.size();
  bool in_fragment = false;
  uint64_t entry_start = pos_;
  scratch->clear();
  while (true) {
    const uint64_t block_left = kBlockSize - pos_ % kBlockSize;
    if (block_left < kHeaderSize) {
      const uint64_t trailer_end = std::min<uint64_t>(pos_ + block_left, size);
      absl::string_view trailer = contents_.substr(pos_, trailer_end - pos_);
      for (size_t i = 0; i < trailer.size(); ++i) {
        if (trailer[i] != 0) {
          return Fail(pos_ + i, in_fragment ? entry_start : pos_ + i,
                      "non-zero byte in block trailer", pos_ + i + 1);
        }
      }
      pos_ = trailer_end;
      continue;
    }
    if (pos_ == size) {
      if (in_fragment) {
        return Fail(pos_, entry_start, "segment ends inside an entry split over blocks", size);
      }
      return false;
    }
    if (!in_fragment) entry_start = pos_;
    const uint64_t record = pos_;
    if (size - record < kHeaderSize) {
      return Fail(record, entry_start, "segment ends inside a record header", size);
    }
    const char* header = contents_.data() + record;
    const uint32_t length = static_cast<uint8_t>(header[4]) |
                            (static_cast<uint32_t>(static_cast<uint8_t>(header[5])) << 8);
    const uint8_t type = static_cast<uint8_t>(header[6]);
    if (kHeaderSize + length > block_left) {
      if (record + kHeaderSize + length > size && size - record < block_left) {
        return Fail(record, entry_start, "segment ends inside a record", size);
      }
      return Fail(record, entry_start,
                  absl::StrCat("record length ", length, " crosses the block boundary"),
                  record + kHeaderSize);
    }
    if (record + kHeaderSize + length > size) {
      return Fail(record, entry_start, "segment ends inside a record", size);
    }
    const uint64_t record_end = record + kHeaderSize + length;
    if (type == segment::kZeroType || type > segment::kMaxRecordType) {
      return Fail(record, entry_start, absl::StrCat("unknown record type ", type), record_end);
    }
    const uint32_t expected = crc32c::Unmask(DecodeFixed32(header));
    const uint32_t actual = crc32c::Value(header + 6, 1 + length);
    if (expected != actual) {
      return Fail(record, entry_start, "checksum mismatch", record_end);
    }
    absl::string_view payload(header + kHeaderSize, length);
    pos_ = record_end;
    switch (type) {
      case segment::kFullType:
        if (in_fragment) {
          return Fail(record, entry_start, "entry split over blocks has no last fragment",
                      record_end);
        }
        *entry = payload;
        *offset = entry_start;
        end_of_last_entry_ = pos_;
        return true;
      case segment::kFirstType:
        if (in_fragment) {
          return Fail(record, entry_start, "entry split over blocks has no last fragment",
                      record_end);
        }
        in_fragment = true;
        scratch->assign(payload.data(), payload.size());
        break;
      case segment::kMiddleType:
      case segment::kLastType:
        if (!in_fragment) {
          return Fail(record, record, "fragment without a first fragment", record_end);
        }
        scratch->append(payload.data(), payload.size());
        if (type == segment::kLastType) {
          *entry = *scratch;
          *offset = entry_start;
          end_of_last_entry_ = pos_;
          return true;
        }
        break;
    }
  }
}

}  // namespace uop::audit
