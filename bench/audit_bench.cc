// audit_bench: how many batch entries per second the audit log makes durable (group commit +
// fdatasync on a real file system), with checkpoint signing never, every 1000 entries (the
// default) or after every group; appenders blocking (AppendAndWait, one batch in flight per
// appender) or pipelined like a session (Append with a callback, bounded in flight). The mirror
// needs ~100 batch entries/s per direction (100 000 records/s in batches of 1000); a receipt
// entry on the owner doubles that.
//   audit_bench --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
// Set AUDIT_BENCH_DIR to a directory on the disk to measure (default: ./audit-bench-data).
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include <benchmark/benchmark.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "audit/audit_log.h"
#include "audit/entry.h"
#include "audit/receipt.h"

namespace {

using uop::audit::AuditLog;
using uop::audit::Entry;
using uop::audit::EntryType;

std::string BenchDir() {
  const char* d = std::getenv("AUDIT_BENCH_DIR");
  return d != nullptr ? d : "audit-bench-data";
}

std::shared_ptr<const uop::audit::Signer> Key() {
  static std::shared_ptr<const uop::audit::Signer> key = *uop::audit::Signer::Generate("helsinki");
  return key;
}

// A batch_sent entry of a 1000-record batch: what the owner logs per batch.
Entry BatchSent(int64_t first) {
  Entry e;
  e.type = EntryType::kBatchSent;
  e.peer = "tallinn";
  e.dataset = "noise";
  e.topic = "noise.observations";
  e.partition = 3;
  e.first_offset = first;
  e.last_offset = first + 999;
  e.record_count = 1000;
  e.byte_count = 212000;
  e.batch_sha256 = std::string(32, '\x5a');
  e.policy_version = "sha256:5be1c0de";
  return e;
}

// 0: never sign; N: every N entries; 1: after every group.
uint64_t CheckpointEvery(int64_t arg) { return arg == 0 ? UINT64_MAX : static_cast<uint64_t>(arg); }

std::unique_ptr<AuditLog> OpenFresh(int64_t checkpoint_arg, const std::string& name) {
  const std::string dir = absl::StrCat(BenchDir(), "/", name, "-", ::getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(BenchDir());
  uop::audit::AuditLogOptions o;
  o.checkpoint_every_entries = CheckpointEvery(checkpoint_arg);
  o.checkpoint_interval = absl::InfiniteDuration();
  return *AuditLog::Open(dir, Key(), o);
}

AuditLog* shared_log = nullptr;

// Each benchmark thread is one appender that waits for durability before its next batch, as a
// receiver's record stage does per partition.
void BM_AppendAndWait(benchmark::State& state) {
  if (state.thread_index() == 0) shared_log = OpenFresh(state.range(0), "wait").release();
  int64_t offset = state.thread_index() * 1'000'000'000LL;
  for (auto _ : state) {
    if (!shared_log->AppendAndWait(BatchSent(offset)).ok()) state.SkipWithError("append failed");
    offset += 1000;
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    const std::string dir = shared_log->dir();
    delete shared_log;
    std::filesystem::remove_all(dir);
  }
}
BENCHMARK(BM_AppendAndWait)
    ->ArgName("checkpoint_every")
    ->Arg(0)
    ->Arg(1000)
    ->Arg(1)
    ->ThreadRange(1, 16)
    ->UseRealTime();

// One thread keeps `inflight` appends outstanding (sessions post and continue on the callback).
void BM_AppendPipelined(benchmark::State& state) {
  std::unique_ptr<AuditLog> log = OpenFresh(state.range(0), "pipe");
  const int64_t inflight = state.range(1);
  absl::Mutex mu;
  int64_t outstanding = 0;
  std::atomic<bool> failed{false};
  int64_t offset = 0;
  struct Window {
    int64_t* outstanding;
    int64_t limit;
  } window{&outstanding, inflight};
  for (auto _ : state) {
    {
      absl::MutexLock lock(&mu);
      mu.Await(absl::Condition(
          +[](Window* w) { return *w->outstanding < w->limit; }, &window));
      ++outstanding;
    }
    log->Append(BatchSent(offset), [&](absl::StatusOr<uop::audit::AppendResult> r) {
      if (!r.ok()) failed = true;
      absl::MutexLock lock(&mu);
      --outstanding;
    });
    offset += 1000;
  }
  {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(
        +[](int64_t* n) { return *n == 0; }, &outstanding));
  }
  if (failed) state.SkipWithError("append failed");
  state.SetItemsProcessed(state.iterations());
  const std::string dir = log->dir();
  log.reset();
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_AppendPipelined)
    ->ArgNames({"checkpoint_every", "inflight"})
    ->Args({0, 64})
    ->Args({1000, 64})
    ->Args({1, 64})
    ->UseRealTime();

// CPU cost of the signatures alone.
void BM_SignCheckpoint(benchmark::State& state) {
  uop::audit::Checkpoint c{"helsinki", 123456, uop::audit::LeafHash("x"), 1796225041};
  for (auto _ : state) benchmark::DoNotOptimize(uop::audit::SignCheckpoint(c, *Key()));
}
BENCHMARK(BM_SignCheckpoint);

void BM_SignAndVerifyReceipt(benchmark::State& state) {
  auto tallinn = *uop::audit::Signer::Generate("tallinn");
  Entry e = BatchSent(0);
  e.type = EntryType::kBatchReceived;
  e.peer = "helsinki";
  e.index = 77;
  uop::audit::Receipt r = *uop::audit::ReceiptFor(e, "tallinn", "helsinki");
  for (auto _ : state) {
    std::string bytes = *uop::audit::SignReceipt(r, *tallinn);
    benchmark::DoNotOptimize(uop::audit::VerifyReceipt(bytes, tallinn->verifier()));
  }
}
BENCHMARK(BM_SignAndVerifyReceipt);

}  // namespace

BENCHMARK_MAIN();
