// The segment format under damage, in the manner of LevelDB's log_test.cc: flip every byte,
// cut the tail at every position, and assert exactly what is reported.
#include <vector>

#include "absl/strings/str_cat.h"
#include "audit/audit_log.h"
#include "audit/loaded_log.h"
#include "audit/log_check.h"
#include "audit/segment_format.h"
#include "audit/segment_reader.h"
#include "audit/segment_writer.h"
#include "gtest/gtest.h"
#include "tests/unit/audit_test_util.h"

namespace uop::audit {
namespace {

using testing::BatchEntry;
using testing::FakeClock;
using testing::MemFileSystem;

constexpr char kDir[] = "/audit";

class StringFile final : public WritableFile {
 public:
  absl::Status Append(absl::string_view data) override {
    contents.append(data.data(), data.size());
    return absl::OkStatus();
  }
  absl::Status Sync() override { return absl::OkStatus(); }
  absl::Status Close() override { return absl::OkStatus(); }
  absl::Status CheckLinked() override { return absl::OkStatus(); }
  std::string contents;
};

// One physical record of a segment, as the writer laid it out.
struct Record {
  uint64_t start;
  uint32_t length;
  uint8_t type;
  uint64_t entry;  // logical entry it belongs to
};

struct Layout {
  std::vector<Record> records;
  std::vector<uint64_t> entry_first;  // offset of each entry's first record
  std::vector<uint64_t> entry_end;    // offset just past each entry's last record
};

Layout LayoutOf(const std::string& s) {
  Layout layout;
  uint64_t pos = 0;
  uint64_t entry = 0;
  while (pos < s.size()) {
    const uint64_t left = segment::kBlockSize - pos % segment::kBlockSize;
    if (left < segment::kHeaderSize) {
      pos += left;
      continue;
    }
    Record r;
    r.start = pos;
    r.length = static_cast<uint8_t>(s[pos + 4]) | (static_cast<uint8_t>(s[pos + 5]) << 8);
    r.type = static_cast<uint8_t>(s[pos + 6]);
    r.entry = entry;
    if (r.type == segment::kFullType || r.type == segment::kFirstType) {
      layout.entry_first.push_back(pos);
    }
    pos += segment::kHeaderSize + r.length;
    if (r.type == segment::kFullType || r.type == segment::kLastType) {
      layout.entry_end.push_back(pos);
      ++entry;
    }
    layout.records.push_back(r);
  }
  return layout;
}

std::shared_ptr<const Signer> HelsinkiKey() {
  static std::shared_ptr<const Signer> key = *Signer::Generate("helsinki");
  return key;
}

// A finished log: batches, one entry split over two blocks, a final checkpoint.
std::string BuildSegment(MemFileSystem& fs, FakeClock& clock) {
  AuditLogOptions options;
  options.fs = &fs;
  options.clock = &clock;
  options.checkpoint_every_entries = 1000;
  auto log = *AuditLog::Open(kDir, HelsinkiKey(), options);
  for (int i = 0; i < 30; ++i) {
    EXPECT_TRUE(
        log->AppendAndWait(BatchEntry(EntryType::kBatchSent, "tallinn", i * 1000, 1000)).ok());
  }
  Entry big;
  big.type = EntryType::kConfigChange;
  big.reason = "reload";
  big.payload = std::string(33000, 'c');
  EXPECT_TRUE(log->AppendAndWait(big).ok());
  for (int i = 30; i < 40; ++i) {
    EXPECT_TRUE(
        log->AppendAndWait(BatchEntry(EntryType::kBatchSent, "tallinn", i * 1000, 1000)).ok());
  }
  log.reset();  // signs the final checkpoint
  return fs.Get(absl::StrCat(kDir, "/", SegmentFileName(1)));
}

std::optional<Finding> Verify(MemFileSystem& fs) {
  absl::StatusOr<LoadResult> loaded = LoadDir(kDir, &fs);
  EXPECT_TRUE(loaded.ok()) << loaded.status();
  if (loaded->failure.has_value()) return loaded->failure;
  CheckOptions options;
  options.log_key = HelsinkiKey()->verifier();
  return CheckLog(loaded->log, options).failure;
}

TEST(AuditSegmentTest, WriterAndReaderAgreeOnEveryEntry) {
  StringFile file;
  SegmentWriter writer(&file, 0);
  std::vector<std::string> entries;
  for (int i = 0; i < 200; ++i) {
    // Sizes around the block and header boundaries, and entries spanning several blocks.
    entries.push_back(std::string(i % 50 == 49 ? 70000 + i : (i * 331) % 32800, 'a' + i % 26));
    ASSERT_TRUE(writer.AddEntry(entries.back()).ok());
  }
  EXPECT_EQ(writer.length(), file.contents.size());
  SegmentReader reader(file.contents);
  absl::string_view entry;
  std::string scratch;
  uint64_t offset = 0;
  for (const std::string& want : entries) {
    ASSERT_TRUE(reader.ReadEntry(&entry, &scratch, &offset));
    EXPECT_EQ(entry, want);
  }
  EXPECT_FALSE(reader.ReadEntry(&entry, &scratch, &offset));
  EXPECT_FALSE(reader.error().has_value());
}

TEST(AuditSegmentTest, WriterResumesInTheMiddleOfABlock) {
  StringFile file;
  {
    SegmentWriter writer(&file, 0);
    ASSERT_TRUE(writer.AddEntry(std::string(32760, 'x')).ok());  // leaves a 1-byte trailer
  }
  SegmentWriter writer(&file, file.contents.size());
  ASSERT_TRUE(writer.AddEntry("after").ok());
  EXPECT_EQ(file.contents.size(), 32768u + 7 + 5);
  SegmentReader reader(file.contents);
  absl::string_view entry;
  std::string scratch;
  uint64_t offset = 0;
  ASSERT_TRUE(reader.ReadEntry(&entry, &scratch, &offset));
  ASSERT_TRUE(reader.ReadEntry(&entry, &scratch, &offset));
  EXPECT_EQ(entry, "after");
  EXPECT_EQ(offset, 32768u);
}

TEST(AuditSegmentTest, VerifyReportsEveryFlippedByte) {
  MemFileSystem fs;
  FakeClock clock;
  const std::string original = BuildSegment(fs, clock);
  const std::string segment = SegmentFileName(1);
  const std::string path = absl::StrCat(kDir, "/", segment);
  ASSERT_FALSE(Verify(fs).has_value());
  const Layout layout = LayoutOf(original);
  ASSERT_EQ(layout.entry_end.size(), 42u);  // 40 batches, the big entry, the checkpoint
  ASSERT_GT(original.size(), segment::kBlockSize + 0u);  // the big entry spans two blocks

  size_t r = 0;
  for (uint64_t p = 0; p < original.size(); ++p) {
    while (r + 1 < layout.records.size() && layout.records[r + 1].start <= p) ++r;
    const Record& rec = layout.records[r];
    const uint64_t rec_end = rec.start + segment::kHeaderSize + rec.length;
    std::string damaged = original;
    damaged[p] = static_cast<char>(damaged[p] ^ 0xff);
    fs.Set(path, damaged);
    Finding want;
    want.file = segment;
    if (p >= rec_end) {  // zero-filled trailer after this record
      want.offset = p;
      want.entry = rec.entry + (rec.type == segment::kFullType || rec.type == segment::kLastType);
      want.reason = "non-zero byte in block trailer";
    } else {
      want.offset = rec.start;
      want.entry = rec.entry;
      const uint64_t at = p - rec.start;
      // Where the damage ends decides whether it reads as a torn tail (segment_reader.cc).
      uint64_t damage_end = rec_end;
      if (at == 6) {
        want.reason = absl::StrCat("unknown record type ", rec.type ^ 0xff);
      } else if (at == 4 || at == 5) {
        uint32_t length = rec.length ^ (at == 4 ? 0xffu : 0xff00u);
        const uint64_t block_left = segment::kBlockSize - rec.start % segment::kBlockSize;
        damage_end = rec.start + segment::kHeaderSize + length;
        if (segment::kHeaderSize + length > block_left) {
          if (rec.start + segment::kHeaderSize + length > original.size() &&
              original.size() - rec.start < block_left) {
            want.reason = "segment ends inside a record";
          } else {
            want.reason = absl::StrCat("record length ", length, " crosses the block boundary");
            damage_end = rec.start + segment::kHeaderSize;
          }
        } else if (rec.start + segment::kHeaderSize + length > original.size()) {
          want.reason = "segment ends inside a record";
        } else {
          want.reason = "checksum mismatch";
        }
      } else {
        want.reason = "checksum mismatch";
      }
      bool at_tail = damage_end >= original.size();
      if (!at_tail) {
        at_tail = true;
        for (uint64_t i = damage_end; i < damaged.size(); ++i) at_tail &= damaged[i] == 0;
      }
      if (at_tail) {
        absl::StrAppend(&want.reason, " (torn tail: opening the log would cut it at offset ",
                        layout.entry_first[rec.entry], ")");
      }
    }
    std::optional<Finding> got = Verify(fs);
    ASSERT_TRUE(got.has_value()) << "flip at " << p << " not reported";
    ASSERT_EQ(*got, want) << "flip at " << p << ": " << got->ToString();
  }
}

TEST(AuditSegmentTest, RecoveryKeepsEveryCompleteEntryAtEveryTruncation) {
  MemFileSystem fs;
  FakeClock clock;
  const std::string original = BuildSegment(fs, clock);
  const std::string segment = SegmentFileName(1);
  const std::string path = absl::StrCat(kDir, "/", segment);
  const Layout layout = LayoutOf(original);
  AuditLogOptions options;
  options.fs = &fs;
  options.clock = &clock;
  options.checkpoint_every_entries = 1000;
  size_t complete = 0;
  for (uint64_t p = 0; p <= original.size(); ++p) {
    while (complete < layout.entry_end.size() && layout.entry_end[complete] <= p) ++complete;
    fs.Set(path, original.substr(0, p));
    absl::StatusOr<std::unique_ptr<AuditLog>> log = AuditLog::Open(kDir, HelsinkiKey(), options);
    ASSERT_TRUE(log.ok()) << "cut at " << p << ": " << log.status();
    ASSERT_EQ((*log)->size(), complete) << "cut at " << p;
    // Bytes past the last complete entry are either a torn entry (cut off and reported) or the
    // zero trailer of its block (kept: the next entry starts at the next block).
    const uint64_t kept_end = complete == 0 ? 0 : layout.entry_end[complete - 1];
    const uint64_t block_left = segment::kBlockSize - kept_end % segment::kBlockSize;
    const bool only_trailer = block_left < segment::kHeaderSize && p <= kept_end + block_left;
    if (p == kept_end || only_trailer) {
      EXPECT_FALSE((*log)->recovery().has_value()) << "cut at " << p;
    } else {
      ASSERT_TRUE((*log)->recovery().has_value()) << "cut at " << p;
      EXPECT_EQ((*log)->recovery()->segment, segment);
      EXPECT_EQ((*log)->recovery()->truncated_at, layout.entry_first[complete]) << "cut at " << p;
      EXPECT_EQ((*log)->recovery()->dropped_bytes, p - layout.entry_first[complete]);
    }
    if (p % 997 == 0 || p + 8 > original.size()) {
      // The recovered log takes new entries and verifies as a whole.
      ASSERT_TRUE((*log)->AppendAndWait(BatchEntry(EntryType::kBatchSent, "tallinn", 99, 1)).ok());
      log->reset();
      std::optional<Finding> finding = Verify(fs);
      EXPECT_FALSE(finding.has_value()) << "cut at " << p << ": " << finding->ToString();
    }
  }
}

TEST(AuditSegmentTest, DamageBeforeTheTailStopsOpen) {
  MemFileSystem fs;
  FakeClock clock;
  std::string original = BuildSegment(fs, clock);
  const Layout layout = LayoutOf(original);
  const uint64_t at = layout.records[5].start + segment::kHeaderSize + 3;
  original[at] ^= 0x01;
  fs.Set(absl::StrCat(kDir, "/", SegmentFileName(1)), original);
  AuditLogOptions options;
  options.fs = &fs;
  options.clock = &clock;
  absl::StatusOr<std::unique_ptr<AuditLog>> log = AuditLog::Open(kDir, HelsinkiKey(), options);
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(log.status().message(),
            absl::StrCat("audit-000001.log offset ", layout.records[5].start,
                         ": entry 5: checksum mismatch"));
}

}  // namespace
}  // namespace uop::audit
