// A node's audit log: entries appended to segment files with group commit, leaves of an
// RFC 9162 Merkle tree, with checkpoints signed by the node's audit key every N entries or
// T seconds. The broker's sessions write through the AuditSink interface.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "audit/checkpoint.h"
#include "audit/entry.h"
#include "audit/file_system.h"
#include "audit/keys.h"
#include "audit/merkle.h"

namespace uop::audit {

// Where the log takes the time it stamps on entries and checkpoints. Implementations must be
// thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
  static Clock* Real();  // absl::Now(); never deleted
};

// Where a committed entry is: its leaf index and the time the log stamped on it (both go into
// a receipt, see receipt.h).
struct AppendResult {
  uint64_t index = 0;
  int64_t time_micros = 0;
};

// What sessions need from an audit log, so that they can be tested against a fake.
class AuditSink {
 public:
  // Called exactly once: with the entry's position once it is durable (fsynced), or with the
  // error that kept it from the log. Runs on the log's commit thread, or on the calling thread
  // when Append fails at once; it must not block.
  using Done = absl::AnyInvocable<void(absl::StatusOr<AppendResult> result) &&>;

  virtual ~AuditSink() = default;
  // Appends `entry` (its index and time are assigned by the log). A node must not act on an
  // exchange (acknowledge a batch, count it as delivered) before `done` reports success.
  virtual void Append(Entry entry, Done done) = 0;
  // OK while the log can write. Otherwise why not (the path and the system error): the node
  // stops exchanging and reports it on /readyz until the log finds it can write again.
  virtual absl::Status Health() const = 0;
};

struct AuditLogOptions {
  // Checkpoint origin line; the signer's name when empty.
  std::string origin;
  uint64_t checkpoint_every_entries = 1000;
  absl::Duration checkpoint_interval = absl::Seconds(10);
  uint64_t max_segment_bytes = uint64_t{64} << 20;
  // Appends waiting for the commit thread beyond this fail with ResourceExhausted.
  size_t max_queued = 1 << 16;
  // After a write failure appends fail at once, without touching the disk, and the log probes
  // (cuts the segment back to its last durable byte, reopens it, writes and fsyncs a
  // checkpoint) after retry_initial, doubling up to retry_max, until a probe succeeds.
  absl::Duration retry_initial = absl::Milliseconds(100);
  absl::Duration retry_max = absl::Seconds(5);
  // Called on the commit thread each time Health() changes; must not block or call the log.
  std::function<void(const absl::Status& health)> on_health_change;
  FileSystem* fs = nullptr;  // FileSystem::Default() when null; must outlive the log
  Clock* clock = nullptr;    // Clock::Real() when null; must outlive the log
};

// What Open found and repaired at the end of the last segment (a torn write at a crash).
struct RecoveryReport {
  std::string segment;        // file name, e.g. "audit-000003.log"
  uint64_t truncated_at = 0;  // byte offset the segment was cut back to
  uint64_t dropped_bytes = 0;
  std::string reason;
};

struct SignedCheckpoint {
  Checkpoint checkpoint;
  std::string note;  // the signed note text
};

// The audit log of one node in directory `dir`. Thread-safe: any thread may Append, Tick and
// read health and checkpoints; one internal thread writes, fsyncs and signs. Destroying the log
// commits what is queued, signs a final checkpoint (if it can write) and joins that thread.
class AuditLog final : public AuditSink {
 public:
  // Opens or creates the log in `dir`: reads every segment, cuts a torn tail back to the last
  // complete entry (see recovery()), rebuilds the tree and checks the directory's key matches
  // `signer`. Fails with DataLoss naming segment, offset and reason on any other damage.
  static absl::StatusOr<std::unique_ptr<AuditLog>> Open(const std::string& dir,
                                                        std::shared_ptr<const Signer> signer,
                                                        AuditLogOptions options = {});
  ~AuditLog() override;
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  void Append(Entry entry, Done done) override;
  absl::Status Health() const override;
  // Blocks until durable; for node start/stop, tools and tests. Not for reactor threads.
  absl::StatusOr<AppendResult> AppendAndWait(Entry entry);
  // Call periodically (e.g. every second): signs a checkpoint if checkpoint_interval has passed
  // and entries were added since the last one, and checks that the segment is still where it is
  // written and its directory still writable, so that an idle log notices a failure too. Never
  // blocks on the disk.
  void Tick();
  // Blocks until everything appended before the call is committed or failed, then signs a
  // checkpoint of all durable entries (if any are unsigned); returns it or why not.
  absl::StatusOr<SignedCheckpoint> CheckpointNow();

  std::optional<SignedCheckpoint> LatestCheckpoint() const;
  // PROOF(old_size, first new_size entries) for a witness (witness.h); new_size at most size().
  // Reads the segments: O(log size) I/O, so once per checkpoint exchange, never per batch.
  absl::StatusOr<std::vector<Hash>> ConsistencyProof(uint64_t old_size, uint64_t new_size) const;
  uint64_t size() const;  // durable entries
  const std::optional<RecoveryReport>& recovery() const { return recovery_; }
  const Signer& signer() const { return *signer_; }
  const std::string& dir() const { return dir_; }

 private:
  struct Pending {
    Entry entry;
    Done done;
  };
  enum class CheckpointWhen {
    kDue,       // every N entries or T seconds
    kUnsigned,  // now, if any entry is not signed yet (on request, at close)
    kAlways,    // now, unless the log is empty (a probe: proves a write and an fsync work)
  };

  AuditLog(std::string dir, std::shared_ptr<const Signer> signer, AuditLogOptions options);
  absl::Status Recover();
  absl::Status OpenSegmentForAppend(uint64_t number, uint64_t length);
  // After a failure: cuts the segment back to its last durable byte, reopens it and writes and
  // fsyncs a checkpoint. Errors are raw (the caller says what they mean).
  absl::Status Probe();
  void Broke();  // schedules the next probe
  void CommitLoop();
  // Writes, checkpoints and syncs one group, then checks the segment is still reachable. On
  // failure nothing of the group counts: the next probe cuts it off the segment.
  absl::Status CommitGroup(std::vector<Pending>& group, CheckpointWhen when);
  absl::Status CheckStillWritable();
  absl::Status WriteEntry(Entry& entry, CompactTree& tree);

  const std::string dir_;
  const std::shared_ptr<const Signer> signer_;
  const AuditLogOptions options_;
  FileSystem* const fs_;
  Clock* const clock_;
  std::optional<RecoveryReport> recovery_;

  mutable absl::Mutex mu_;
  std::deque<Pending> queue_ ABSL_GUARDED_BY(mu_);
  bool tick_ ABSL_GUARDED_BY(mu_) = false;
  int checkpoint_requests_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t checkpoint_generation_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status checkpoint_status_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status health_ ABSL_GUARDED_BY(mu_);
  uint64_t size_ ABSL_GUARDED_BY(mu_) = 0;
  std::optional<SignedCheckpoint> latest_ ABSL_GUARDED_BY(mu_);

  // Owned by the commit thread after Open.
  std::unique_ptr<WritableFile> file_;
  std::unique_ptr<class SegmentWriter> writer_;
  uint64_t segment_number_ = 0;
  uint64_t durable_length_ = 0;  // of the current segment
  CompactTree tree_;
  int64_t last_time_micros_ = 0;
  uint64_t unsigned_entries_ = 0;  // since the last checkpoint
  absl::Time last_checkpoint_time_ = absl::InfinitePast();
  bool broken_ = false;  // appends fail at once until a probe succeeds
  absl::Duration retry_delay_;
  absl::Time next_probe_ = absl::InfinitePast();

  std::thread committer_;
};

// Segment file name for segment `number`: "audit-%06d.log".
std::string SegmentFileName(uint64_t number);
// Parses a segment file name; false for any other file.
bool ParseSegmentFileName(absl::string_view name, uint64_t* number);
// The file in an audit directory holding the log's verifier key.
inline constexpr absl::string_view kKeyFileName = "audit.vkey";

}  // namespace uop::audit
