// AuditLog: durability, group commit, checkpoints, disk failures (fail closed, resume by
// itself), segments, and detection of entries reordered, deleted, inserted or re-signed.
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "audit/audit_log.h"
#include "audit/loaded_log.h"
#include "audit/log_check.h"
#include "audit/segment_writer.h"
#include "gtest/gtest.h"
#include "tests/unit/audit_test_util.h"

namespace uop::audit {
namespace {

using testing::BatchEntry;
using testing::FakeClock;
using testing::MemFileSystem;

constexpr char kDir[] = "/audit";

std::shared_ptr<const Signer> Key(const std::string& name) {
  static auto* keys = new std::map<std::string, std::shared_ptr<const Signer>>();
  auto& k = (*keys)[name];
  if (k == nullptr) k = *Signer::Generate(name);
  return k;
}

class AuditLogTest : public ::testing::Test {
 protected:
  AuditLogOptions Options() {
    AuditLogOptions o;
    o.fs = &fs_;
    o.clock = &clock_;
    o.checkpoint_every_entries = 10;
    o.checkpoint_interval = absl::Seconds(30);
    return o;
  }
  std::unique_ptr<AuditLog> Open(AuditLogOptions o) {
    absl::StatusOr<std::unique_ptr<AuditLog>> log = AuditLog::Open(kDir, Key("helsinki"), o);
    EXPECT_TRUE(log.ok()) << log.status();
    return log.ok() ? *std::move(log) : nullptr;
  }
  std::unique_ptr<AuditLog> Open() { return Open(Options()); }

  LoadedLog Load() {
    absl::StatusOr<LoadResult> r = LoadDir(kDir, &fs_);
    EXPECT_TRUE(r.ok()) << r.status();
    EXPECT_FALSE(r->failure.has_value()) << r->failure->ToString();
    return r->log;
  }
  CheckReport Check(const LoadedLog& log) {
    CheckOptions o;
    o.log_key = Key("helsinki")->verifier();
    return CheckLog(log, o);
  }
  // Rewrites segment 1 from `entries` with valid framing, as an operator with file access can.
  void Rewrite(const std::vector<std::string>& entries) {
    class Buffer final : public WritableFile {
     public:
      absl::Status Append(absl::string_view d) override {
        s.append(d.data(), d.size());
        return absl::OkStatus();
      }
      absl::Status Sync() override { return absl::OkStatus(); }
      absl::Status Close() override { return absl::OkStatus(); }
      absl::Status CheckLinked() override { return absl::OkStatus(); }
      std::string s;
    } out;
    SegmentWriter w(&out, 0);
    for (const std::string& e : entries) ASSERT_TRUE(w.AddEntry(e).ok());
    fs_.Set(absl::StrCat(kDir, "/", SegmentFileName(1)), out.s);
  }
  std::vector<std::string> EntryBytes() {
    std::vector<std::string> out;
    for (const LoadedEntry& e : Load().entries) out.push_back(e.bytes);
    return out;
  }
  std::string Reencoded(const std::string& bytes, const std::function<void(Entry&)>& edit) {
    Entry e = *DecodeEntry(bytes);
    edit(e);
    return EncodeEntry(e);
  }
  // 25 batches with checkpoints after every 10: entries 0-9, checkpoint 10, 11-20, checkpoint
  // 21, 22-26 and (closing) checkpoint 27.
  void WriteTwentyFive() {
    auto log = Open();
    for (int i = 0; i < 25; ++i) {
      ASSERT_TRUE(
          log->AppendAndWait(BatchEntry(EntryType::kBatchSent, "tallinn", i * 10, 10)).ok());
    }
  }

  MemFileSystem fs_;
  FakeClock clock_;
};

TEST_F(AuditLogTest, AppendIsDurableWhenItCompletes) {
  auto log = Open();
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<AppendResult> index =
        log->AppendAndWait(BatchEntry(EntryType::kBatchReceived, "helsinki", i, 1));
    ASSERT_TRUE(index.ok()) << index.status();
    EXPECT_EQ(index->index, static_cast<uint64_t>(i));
  }
  fs_.Crash();  // kill -9 right after the last acknowledgement: nothing acknowledged is lost
  log.reset();
  fs_.Crash();
  auto reopened = Open();
  EXPECT_GE(reopened->size(), 5u);
  LoadedLog loaded = Load();
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(loaded.entries[i].entry.first_offset, i);
    EXPECT_EQ(loaded.entries[i].entry.time_micros, absl::ToUnixMicros(clock_.Now()));
  }
}

TEST_F(AuditLogTest, OneFsyncCoversEveryAppendQueuedDuringThePrevious) {
  auto log = Open();
  absl::Notification first_sync_started, release;
  std::atomic<int> syncs_seen{0};
  fs_.set_before_sync([&] {
    if (syncs_seen.fetch_add(1) == 0) {
      first_sync_started.Notify();
      release.WaitForNotification();
    }
  });
  std::atomic<int> done{0};
  absl::Notification all_done;
  constexpr int kAppends = 200;
  auto callback = [&](absl::StatusOr<AppendResult> index) {
    EXPECT_TRUE(index.ok());
    if (done.fetch_add(1) + 1 == kAppends) all_done.Notify();
  };
  log->Append(BatchEntry(EntryType::kBatchSent, "tallinn", 0, 1), callback);
  first_sync_started.WaitForNotification();  // the commit thread is inside fsync
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < (kAppends - 1) / 4 + (t < (kAppends - 1) % 4); ++i) {
        log->Append(BatchEntry(EntryType::kBatchSent, "tallinn", 1 + t * 1000 + i, 1), callback);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(done.load(), 0);  // nothing completes before its fsync
  release.Notify();
  all_done.WaitForNotification();
  EXPECT_EQ(fs_.syncs(), 2);  // the first entry's, then one for the 199 queued behind it
  EXPECT_EQ(log->size(), kAppends + 1u);  // and one checkpoint, due after the second group
  log.reset();                            // before the hook's captures go out of scope
}

TEST_F(AuditLogTest, CheckpointsEveryNEntriesAndOnClose) {
  WriteTwentyFive();
  LoadedLog loaded = Load();
  ASSERT_EQ(loaded.entries.size(), 28u);
  std::vector<uint64_t> at;
  for (const LoadedEntry& e : loaded.entries) {
    if (e.entry.type == EntryType::kCheckpoint) at.push_back(e.position);
  }
  EXPECT_EQ(at, (std::vector<uint64_t>{10, 21, 27}));
  CheckReport report = Check(loaded);
  EXPECT_TRUE(report.ok()) << report.failure->ToString();
  EXPECT_EQ(report.checkpoints, 3u);
  EXPECT_EQ(report.signed_size, 27u);
  EXPECT_TRUE(report.warnings.empty());
  absl::StatusOr<Checkpoint> c =
      VerifyCheckpoint(loaded.entries[27].entry.payload, Key("helsinki")->verifier());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->origin, "helsinki");
  EXPECT_EQ(c->time_seconds, absl::ToUnixSeconds(clock_.Now()));
}

TEST_F(AuditLogTest, CheckpointsAfterTheIntervalAndOnRequest) {
  AuditLogOptions o = Options();
  o.checkpoint_every_entries = 1000;
  auto log = Open(o);
  ASSERT_TRUE(log->AppendAndWait(BatchEntry(EntryType::kBatchSent, "tallinn", 0, 1)).ok());
  EXPECT_FALSE(log->LatestCheckpoint().has_value());
  clock_.Advance(absl::Seconds(30));
  ASSERT_TRUE(log->AppendAndWait(BatchEntry(EntryType::kBatchSent, "tallinn", 1, 1)).ok());
  ASSERT_TRUE(log->LatestCheckpoint().has_value());
  EXPECT_EQ(log->LatestCheckpoint()->checkpoint.size, 2u);
  ASSERT_TRUE(log->AppendAndWait(BatchEntry(EntryType::kBatchSent, "tallinn", 2, 1)).ok());
  absl::StatusOr<SignedCheckpoint> now = log->CheckpointNow();
  ASSERT_TRUE(now.ok()) << now.status();
  EXPECT_EQ(now->checkpoint.size, 4u);  // entries 0, 1, checkpoint 2, entry 3
  const std::vector<Hash> leaves = Load().leaves;
  EXPECT_EQ(now->checkpoint.root, RootOf(std::span(leaves).first(4)));
}

TEST_F(AuditLogTest, WriteFailureFailsClosedAndResumesByItself) {
  std::vector<absl::Status> changes;
  AuditLogOptions o = Options();
  o.on_health_change = [&changes](const absl::Status& s) { changes.push_back(s); };
  auto log = Open(o);
  ASSERT_TRUE(log->AppendAndWait(BatchEntry(EntryType::kBatchSent, "tallinn", 0, 1)).ok());
  fs_.set_fail_writes(true);
  absl::StatusOr<AppendResult> r =
      log->AppendAndWait(BatchEntry(EntryType::kBatchSent, "tallinn", 1, 1));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(r.status().message(),
            "audit log cannot write, exchange must stop: write /audit/audit-000001.log: No space "
            "left on device");
  EXPECT_EQ(log->Health(), r.status());

  // Until the first probe (100 ms later) appends fail at once, without touching the disk.
  fs_.set_fail_writes(false);
  const int syncs = fs_.syncs();
  r = log->AppendAndWait(BatchEntry(EntryType::kBatchSent, "tallinn", 1, 1));
  EXPECT_EQ(r.status(), log->Health());
  EXPECT_EQ(fs_.syncs(), syncs);

  clock_.Advance(absl::Milliseconds(100));
  r = log->AppendAndWait(BatchEntry(EntryType::kBatchSent, "tallinn", 1, 1));
  ASSERT_TRUE(r.ok()) << r.status();
  // The failed append left nothing behind; the probe wrote a checkpoint (entry 1).
  EXPECT_EQ(r->index, 2u);
  EXPECT_TRUE(log->Health().ok());
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(changes[0].code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(changes[1].ok());
  log.reset();
  LoadedLog loaded = Load();
  ASSERT_EQ(loaded.entries.size(), 4u);  // 0, the probe's checkpoint, 2, the closing checkpoint
  EXPECT_EQ(loaded.entries[1].entry.type, EntryType::kCheckpoint);
  EXPECT_TRUE(Check(loaded).ok());
}

TEST_F(AuditLogTest, FailedProbesBackOffUpToTheMaximum) {
  AuditLogOptions o = Options();
  o.retry_initial = absl::Milliseconds(100);
  o.retry_max = absl::Milliseconds(250);
  auto log = Open(o);
  ASSERT_TRUE(log->AppendAndWait(BatchEntry(EntryType::kBatchSent, "tallinn", 0, 1)).ok());
  fs_.set_fail_syncs(true);
  absl::StatusOr<AppendResult> r =
      log->AppendAndWait(BatchEntry(EntryType::kBatchSent, "tallinn", 1, 1));
  EXPECT_EQ(r.status().message(),
            "audit log cannot write, exchange must stop: fdatasync /audit/audit-000001.log: "
            "Input/output error");
  // Probes at +100 ms, then +200 ms, then every 250 ms: each one fsyncs once (and fails).
  auto probes_after = [&](absl::Duration d) {
    const int before = fs_.syncs_attempted();
    clock_.Advance(d);
    EXPECT_FALSE(log->AppendAndWait(BatchEntry(EntryType::kBatchSent, "tallinn", 1, 1)).ok());
    return fs_.syncs_attempted() - before;
  };
  EXPECT_EQ(probes_after(absl::Milliseconds(99)), 0);
  EXPECT_EQ(probes_after(absl::Milliseconds(1)), 1);
  EXPECT_EQ(probes_after(absl::Milliseconds(199)), 0);
  EXPECT_EQ(probes_after(absl::Milliseconds(1)), 1);
  EXPECT_EQ(probes_after(absl::Milliseconds(249)), 0);
  EXPECT_EQ(probes_after(absl::Milliseconds(1)), 1);
  EXPECT_EQ(probes_after(absl::Milliseconds(250)), 1);
  fs_.set_fail_syncs(false);
  clock_.Advance(absl::Milliseconds(250));
  r = log->AppendAndWait(BatchEntry(EntryType::kBatchSent, "tallinn", 1, 1));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->index, 2u);
}

TEST_F(AuditLogTest, TickResumesWithoutAnAppend) {
  auto log = Open();
  fs_.set_fail_syncs(true);
  EXPECT_FALSE(log->AppendAndWait(BatchEntry(EntryType::kBatchSent, "tallinn", 0, 1)).ok());
  fs_.set_fail_syncs(false);
  clock_.Advance(absl::Milliseconds(100));
  log->Tick();
  // CheckpointNow is served after the probe (due now), so the log has resumed when it returns.
  EXPECT_EQ(log->CheckpointNow().status().message(), "the audit log is empty");
  EXPECT_TRUE(log->Health().ok());
}

TEST_F(AuditLogTest, UnwritableDirectoryFailsTheNextGroupCommitNotOnlyARotation) {
  auto log = Open();
  ASSERT_TRUE(log->AppendAndWait(BatchEntry(EntryType::kBatchSent, "tallinn", 0, 1)).ok());
  fs_.set_fail_creates(true);  // chmod a-w on the directory: appends to the open file still work
  absl::StatusOr<AppendResult> r =
      log->AppendAndWait(BatchEntry(EntryType::kBatchSent, "tallinn", 1, 1));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "audit log cannot write, exchange must stop: cannot create files in /audit: "
            "Permission denied");
  EXPECT_EQ(log->Health().code(), absl::StatusCode::kPermissionDenied);
  fs_.set_fail_creates(false);
  clock_.Advance(absl::Milliseconds(100));
  r = log->AppendAndWait(BatchEntry(EntryType::kBatchSent, "tallinn", 1, 1));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->index, 2u);  // the entry written before the check was cut off again
  log.reset();
  EXPECT_TRUE(Check(Load()).ok());
}

TEST_F(AuditLogTest, AnIdleLogNoticesAtTheNextTick) {
  auto log = Open();
  ASSERT_TRUE(log->AppendAndWait(BatchEntry(EntryType::kBatchSent, "tallinn", 0, 1)).ok());
  fs_.set_fail_creates(true);
  log->Tick();
  EXPECT_EQ(log->CheckpointNow().status().message(),
            "audit log cannot write, exchange must stop: cannot create files in /audit: "
            "Permission denied");
  EXPECT_EQ(log->Health().code(), absl::StatusCode::kPermissionDenied);
}

TEST_F(AuditLogTest, DeletedSegmentFailsClosedUntilItIsRestored) {
  auto log = Open();
  const std::string segment = absl::StrCat(kDir, "/", SegmentFileName(1));
  ASSERT_TRUE(log->AppendAndWait(BatchEntry(EntryType::kBatchSent, "tallinn", 0, 1)).ok());
  const std::string saved = fs_.Get(segment);
  fs_.Remove(segment);  // rm: appends to the open file succeed, and are lost
  absl::StatusOr<AppendResult> r =
      log->AppendAndWait(BatchEntry(EntryType::kBatchSent, "tallinn", 1, 1));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(r.status().message(),
            "audit log cannot write, exchange must stop: /audit/audit-000001.log was deleted: "
            "what the log appends to it would be lost");
  // Starting the segment afresh would leave a hole in the log: it stays closed.
  clock_.Advance(absl::Milliseconds(100));
  r = log->AppendAndWait(BatchEntry(EntryType::kBatchSent, "tallinn", 1, 1));
  EXPECT_EQ(r.status().message(),
            absl::StrCat("audit log cannot write, exchange must stop: /audit/audit-000001.log is "
                         "gone (",
                         saved.size(), " bytes were durable): restore the audit directory"));
  fs_.Set(segment, saved);
  clock_.Advance(absl::Milliseconds(200));
  r = log->AppendAndWait(BatchEntry(EntryType::kBatchSent, "tallinn", 1, 1));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->index, 2u);
  log.reset();
  EXPECT_TRUE(Check(Load()).ok());
}

TEST_F(AuditLogTest, UnwritableDirectoryAtRotationFailsClosedAndResumes) {
  AuditLogOptions o = Options();
  o.max_segment_bytes = 1;  // a new segment for every group
  auto log = Open(o);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(log->AppendAndWait(BatchEntry(EntryType::kBatchSent, "tallinn", i, 1)).ok());
  }
  fs_.set_fail_creates(true);
  absl::StatusOr<AppendResult> r =
      log->AppendAndWait(BatchEntry(EntryType::kBatchSent, "tallinn", 5, 1));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "audit log cannot write, exchange must stop: open /audit/audit-000006.log: "
            "Permission denied");
  EXPECT_EQ(log->Health().code(), absl::StatusCode::kPermissionDenied);
  fs_.set_fail_creates(false);
  clock_.Advance(absl::Milliseconds(100));
  ASSERT_TRUE(log->AppendAndWait(BatchEntry(EntryType::kBatchSent, "tallinn", 5, 1)).ok());
  log.reset();
  LoadedLog loaded = Load();
  EXPECT_GT(loaded.entries.back().file, SegmentFileName(1));
  EXPECT_TRUE(Check(loaded).ok());
}

TEST_F(AuditLogTest, QueueFullIsReportedAtOnce) {
  AuditLogOptions o = Options();
  o.max_queued = 1;
  auto log = Open(o);
  absl::Notification in_sync, release;
  std::atomic<int> n{0};
  fs_.set_before_sync([&] {
    if (n.fetch_add(1) == 0) {
      in_sync.Notify();
      release.WaitForNotification();
    }
  });
  absl::Notification first_done;
  log->Append(BatchEntry(EntryType::kBatchSent, "tallinn", 0, 1),
              [&](absl::StatusOr<AppendResult>) { first_done.Notify(); });
  in_sync.WaitForNotification();
  log->Append(BatchEntry(EntryType::kBatchSent, "tallinn", 1, 1),
              [](absl::StatusOr<AppendResult>) {});
  absl::StatusOr<AppendResult> third =
      log->AppendAndWait(BatchEntry(EntryType::kBatchSent, "t", 2, 1));
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  release.Notify();
  first_done.WaitForNotification();
  log.reset();  // before the hook's captures go out of scope
}

TEST_F(AuditLogTest, SegmentsRotateAndAMissingOneIsReported) {
  AuditLogOptions o = Options();
  o.max_segment_bytes = 2000;
  {
    auto log = Open(o);
    for (int i = 0; i < 40; ++i) {
      ASSERT_TRUE(log->AppendAndWait(BatchEntry(EntryType::kBatchSent, "tallinn", i, 1)).ok());
    }
  }
  LoadedLog loaded = Load();
  EXPECT_TRUE(Check(loaded).ok());
  ASSERT_GE(loaded.entries.back().file, SegmentFileName(4));
  fs_.Remove(absl::StrCat(kDir, "/", SegmentFileName(2)));
  absl::StatusOr<LoadResult> r = LoadDir(kDir, &fs_);
  ASSERT_TRUE(r->failure.has_value());
  EXPECT_EQ(r->failure->file, SegmentFileName(2));
  EXPECT_EQ(r->failure->reason, "segment is missing");
  absl::StatusOr<std::unique_ptr<AuditLog>> reopened = AuditLog::Open(kDir, Key("helsinki"), o);
  EXPECT_EQ(reopened.status().message(), "segment audit-000002.log is missing in /audit");
}

TEST_F(AuditLogTest, AnotherNodesKeyIsRefused) {
  WriteTwentyFive();
  absl::StatusOr<std::unique_ptr<AuditLog>> log = AuditLog::Open(kDir, Key("intruder"), Options());
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(log.status().message(), "written by a different node key"));
}

TEST_F(AuditLogTest, ReorderedEntriesAreDetected) {
  WriteTwentyFive();
  std::vector<std::string> e = EntryBytes();
  std::swap(e[3], e[4]);
  Rewrite(e);
  CheckReport r = Check(Load());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.failure->entry, 3u);
  EXPECT_EQ(r.failure->reason,
            "entry at position 3 says it is entry 4 (entries deleted, inserted or reordered)");
}

TEST_F(AuditLogTest, DeletedEntryIsDetected) {
  WriteTwentyFive();
  std::vector<std::string> e = EntryBytes();
  e.erase(e.begin() + 12);
  Rewrite(e);
  CheckReport r = Check(Load());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.failure->file, SegmentFileName(1));
  EXPECT_EQ(r.failure->entry, 12u);
  EXPECT_EQ(r.failure->reason,
            "entry at position 12 says it is entry 13 (entries deleted, inserted or reordered)");
}

TEST_F(AuditLogTest, DeletedAndRenumberedEntryBreaksTheNextCheckpoint) {
  WriteTwentyFive();
  std::vector<std::string> e = EntryBytes();
  e.erase(e.begin() + 12);
  for (size_t i = 12; i < e.size(); ++i) e[i] = Reencoded(e[i], [&](Entry& x) { x.index = i; });
  Rewrite(e);
  CheckReport r = Check(Load());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.failure->entry, 20u);
  EXPECT_EQ(r.failure->reason, "checkpoint of size 21 stored at position 20");
}

TEST_F(AuditLogTest, InsertedEntryIsDetected) {
  WriteTwentyFive();
  std::vector<std::string> e = EntryBytes();
  Entry forged = BatchEntry(EntryType::kBatchSent, "tallinn", 5000, 10);
  forged.index = 5;
  forged.time_micros = DecodeEntry(e[5])->time_micros;
  e.insert(e.begin() + 5, EncodeEntry(forged));
  for (size_t i = 6; i < e.size(); ++i) e[i] = Reencoded(e[i], [&](Entry& x) { x.index = i; });
  Rewrite(e);
  CheckReport r = Check(Load());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.failure->entry, 11u);
  EXPECT_EQ(r.failure->reason, "checkpoint of size 10 stored at position 11");
}

TEST_F(AuditLogTest, ChangedEntryBreaksTheCheckpointThatCoversIt) {
  WriteTwentyFive();
  std::vector<std::string> e = EntryBytes();
  e[14] = Reencoded(e[14], [](Entry& x) { x.record_count = 9; });
  Rewrite(e);
  LoadedLog loaded = Load();
  CheckReport r = Check(loaded);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.failure->entry, 21u);
  EXPECT_EQ(r.failure->offset, loaded.entries[21].offset);
  EXPECT_TRUE(absl::StartsWith(r.failure->reason, "checkpoint signs root ")) << r.failure->reason;
  EXPECT_TRUE(absl::StrContains(r.failure->reason, " for 21 entries, the entries hash to "));
}

TEST_F(AuditLogTest, CheckpointReSignedWithAnotherKeyIsDetected) {
  WriteTwentyFive();
  std::vector<std::string> e = EntryBytes();
  auto impostor = *Signer::Generate("helsinki");  // same name, other key
  e[10] = Reencoded(e[10], [&](Entry& x) {
    x.payload =
        SignCheckpoint(*VerifyCheckpoint(x.payload, Key("helsinki")->verifier()), *impostor);
  });
  Rewrite(e);
  CheckReport r = Check(Load());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.failure->entry, 10u);
  EXPECT_EQ(r.failure->reason, absl::StrCat("checkpoint has no signature by key ",
                                            Key("helsinki")->verifier().Vkey()));
}

}  // namespace
}  // namespace uop::audit
