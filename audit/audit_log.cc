// The commit thread of the audit log: a LevelDB-style group commit (everything queued while
// the previous fsync ran is written and covered by the next single fsync), checkpoint signing,
// and fail-closed handling of write errors with automatic resumption.
#include "audit/audit_log.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "audit/loaded_log.h"
#include "audit/segment_reader.h"
#include "audit/segment_writer.h"

namespace uop::audit {
namespace {

constexpr size_t kMaxGroup = 4096;

absl::Status CannotWrite(const absl::Status& s) {
  return absl::Status(s.code(),
                      absl::StrCat("audit log cannot write, exchange must stop: ", s.message()));
}

class RealClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
};

std::string JoinPath(const std::string& dir, absl::string_view name) {
  return absl::StrCat(dir, "/", name);
}

}  // namespace

Clock* Clock::Real() {
  static Clock* clock = new RealClock();
  return clock;
}

std::string SegmentFileName(uint64_t number) { return absl::StrFormat("audit-%06d.log", number); }

bool ParseSegmentFileName(absl::string_view name, uint64_t* number) {
  if (!absl::ConsumePrefix(&name, "audit-") || !absl::ConsumeSuffix(&name, ".log") ||
      name.size() < 6) {
    return false;
  }
  for (char c : name) {
    if (c < '0' || c > '9') return false;
  }
  return absl::SimpleAtoi(name, number) && *number > 0;
}

AuditLog::AuditLog(std::string dir, std::shared_ptr<const Signer> signer, AuditLogOptions options)
    : dir_(std::move(dir)),
      signer_(std::move(signer)),
      options_(std::move(options)),
      fs_(options_.fs != nullptr ? options_.fs : FileSystem::Default()),
      clock_(options_.clock != nullptr ? options_.clock : Clock::Real()) {}

absl::StatusOr<std::unique_ptr<AuditLog>> AuditLog::Open(const std::string& dir,
                                                         std::shared_ptr<const Signer> signer,
                                                         AuditLogOptions options) {
  if (signer == nullptr) return absl::InvalidArgumentError("audit log needs a signer");
  if (options.origin.empty()) options.origin = signer->name();
  if (options.checkpoint_every_entries == 0) options.checkpoint_every_entries = 1;
  std::unique_ptr<AuditLog> log(new AuditLog(dir, std::move(signer), std::move(options)));
  if (absl::Status s = log->Recover(); !s.ok()) return s;
  log->last_checkpoint_time_ = log->clock_->Now();
  log->committer_ = std::thread([raw = log.get()] { raw->CommitLoop(); });
  return log;
}

AuditLog::~AuditLog() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (committer_.joinable()) committer_.join();
  if (file_ != nullptr) file_->Close().IgnoreError();
}

absl::Status AuditLog::Recover() {
  if (absl::Status s = fs_->CreateDir(dir_); !s.ok()) return s;
  const std::string key_path = JoinPath(dir_, kKeyFileName);
  const std::string vkey = signer_->verifier().Vkey() + "\n";
  if (fs_->Exists(key_path)) {
    absl::StatusOr<std::string> existing = fs_->ReadFile(key_path);
    if (!existing.ok()) return existing.status();
    if (*existing != vkey) {
      return absl::FailedPreconditionError(
          absl::StrCat(key_path, " holds another key (", absl::StripAsciiWhitespace(*existing),
                       "): this audit log was written by a different node key"));
    }
  } else if (absl::Status s = fs_->WriteFileAtomically(key_path, vkey); !s.ok()) {
    return s;
  }

  absl::StatusOr<std::vector<std::string>> names = fs_->ListDir(dir_);
  if (!names.ok()) return names.status();
  std::vector<uint64_t> numbers;
  for (const std::string& name : *names) {
    uint64_t n = 0;
    if (ParseSegmentFileName(name, &n)) numbers.push_back(n);
  }
  std::sort(numbers.begin(), numbers.end());
  for (size_t i = 0; i < numbers.size(); ++i) {
    if (numbers[i] != i + 1) {
      return absl::DataLossError(
          absl::StrCat("segment ", SegmentFileName(i + 1), " is missing in ", dir_));
    }
  }

  uint64_t length = 0;
  for (size_t i = 0; i < numbers.size(); ++i) {
    const std::string name = SegmentFileName(numbers[i]);
    const std::string path = JoinPath(dir_, name);
    absl::StatusOr<std::string> contents = fs_->ReadFile(path);
    if (!contents.ok()) return contents.status();
    SegmentReader reader(*contents);
    absl::string_view bytes;
    std::string scratch;
    uint64_t offset = 0;
    while (reader.ReadEntry(&bytes, &scratch, &offset)) {
      absl::StatusOr<Entry> entry = DecodeEntry(bytes);
      if (!entry.ok()) {
        return absl::DataLossError(absl::StrCat(name, " offset ", offset, ": entry ", tree_.size(),
                                                ": ", entry.status().message()));
      }
      if (entry->index != tree_.size()) {
        return absl::DataLossError(absl::StrCat(name, " offset ", offset, ": entry ", tree_.size(),
                                                " has index ", entry->index));
      }
      if (entry->type == EntryType::kCheckpoint) {
        absl::StatusOr<struct Checkpoint> c = VerifyCheckpoint(entry->payload, signer_->verifier());
        if (!c.ok() || c->size != tree_.size() || c->root != tree_.Root()) {
          return absl::DataLossError(absl::StrCat(name, " offset ", offset, ": entry ",
                                                  tree_.size(),
                                                  ": checkpoint does not match the log"));
        }
        absl::MutexLock lock(&mu_);  // no other thread yet; for the analysis
        latest_ = SignedCheckpoint{*c, entry->payload};
        unsigned_entries_ = 0;
      } else {
        ++unsigned_entries_;
      }
      last_time_micros_ = std::max(last_time_micros_, entry->time_micros);
      tree_.Append(LeafHash(bytes));
    }
    length = reader.end_of_last_entry();
    if (const std::optional<FramingError>& e = reader.error(); e.has_value()) {
      const bool last = i + 1 == numbers.size();
      if (!last || !e->at_tail) {
        return absl::DataLossError(
            absl::StrCat(name, " offset ", e->offset, ": entry ", tree_.size(), ": ", e->reason));
      }
      RecoveryReport report{name, e->entry_start, contents->size() - e->entry_start, e->reason};
      if (absl::Status s = fs_->Truncate(path, e->entry_start); !s.ok()) return s;
      length = e->entry_start;
      recovery_ = std::move(report);
    } else {
      length = contents->size();
    }
  }
  segment_number_ = numbers.empty() ? 1 : numbers.back();
  {
    absl::MutexLock lock(&mu_);
    size_ = tree_.size();
  }
  return OpenSegmentForAppend(segment_number_, numbers.empty() ? 0 : length);
}

absl::Status AuditLog::OpenSegmentForAppend(uint64_t number, uint64_t length) {
  const std::string path = JoinPath(dir_, SegmentFileName(number));
  const bool existed = fs_->Exists(path);
  absl::StatusOr<std::unique_ptr<WritableFile>> file = fs_->OpenAppendable(path);
  if (!file.ok()) return file.status();
  if (!existed) {
    if (absl::Status s = fs_->SyncDir(dir_); !s.ok()) return s;
  }
  file_ = std::move(*file);
  writer_ = std::make_unique<SegmentWriter>(file_.get(), length);
  durable_length_ = length;
  return absl::OkStatus();
}

absl::Status AuditLog::Probe() {
  if (file_ != nullptr) file_->Close().IgnoreError();
  writer_.reset();
  file_.reset();
  const std::string path = JoinPath(dir_, SegmentFileName(segment_number_));
  if (fs_->Exists(path)) {
    absl::StatusOr<uint64_t> length = fs_->FileSize(path);
    if (!length.ok()) return length.status();
    if (*length < durable_length_) {
      // Written and fsynced, then gone: resuming would leave a hole in the log.
      return absl::DataLossError(absl::StrCat(path, " holds ", *length, " bytes, ", durable_length_,
                                              " were durable: restore the audit directory"));
    }
    if (absl::Status s = fs_->Truncate(path, durable_length_); !s.ok()) return s;
  } else if (durable_length_ > 0) {
    return absl::DataLossError(absl::StrCat(path, " is gone (", durable_length_,
                                            " bytes were durable): restore the audit directory"));
  }
  if (absl::Status s = OpenSegmentForAppend(segment_number_, durable_length_); !s.ok()) return s;
  std::vector<Pending> none;
  return CommitGroup(none, CheckpointWhen::kAlways);
}

void AuditLog::Broke() {
  retry_delay_ = broken_ ? std::min(2 * retry_delay_, options_.retry_max) : options_.retry_initial;
  broken_ = true;
  next_probe_ = clock_->Now() + retry_delay_;
}

void AuditLog::Append(Entry entry, Done done) {
  if (entry.payload.size() + entry.reason.size() + entry.peer.size() + entry.dataset.size() +
          entry.topic.size() + entry.identity.size() + entry.policy_version.size() >
      kMaxEntryBytes - 1024) {
    std::move(done)(absl::InvalidArgumentError("audit entry larger than 1 MiB"));
    return;
  }
  absl::Status refused;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      refused = absl::FailedPreconditionError("audit log is closing");
    } else if (queue_.size() >= options_.max_queued) {
      refused = absl::ResourceExhaustedError(
          absl::StrCat("audit log queue is full (", options_.max_queued, " entries waiting)"));
    } else {
      queue_.push_back(Pending{std::move(entry), std::move(done)});
      return;
    }
  }
  std::move(done)(std::move(refused));
}

absl::StatusOr<AppendResult> AuditLog::AppendAndWait(Entry entry) {
  absl::Notification done;
  absl::StatusOr<AppendResult> result;
  Append(std::move(entry), [&](absl::StatusOr<AppendResult> r) {
    result = std::move(r);
    done.Notify();
  });
  done.WaitForNotification();
  return result;
}

absl::Status AuditLog::Health() const {
  absl::MutexLock lock(&mu_);
  return health_;
}

void AuditLog::Tick() {
  absl::MutexLock lock(&mu_);
  tick_ = true;
}

absl::StatusOr<SignedCheckpoint> AuditLog::CheckpointNow() {
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::FailedPreconditionError("audit log is closing");
  struct Want {
    AuditLog* log;
    uint64_t generation;
  } want{this, checkpoint_generation_ + 1};
  ++checkpoint_requests_;
  mu_.Await(absl::Condition(
      +[](Want* w) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return w->log->checkpoint_generation_ >= w->generation;
      },
      &want));
  if (!checkpoint_status_.ok()) return checkpoint_status_;
  if (!latest_.has_value()) return absl::FailedPreconditionError("the audit log is empty");
  return *latest_;
}

std::optional<SignedCheckpoint> AuditLog::LatestCheckpoint() const {
  absl::MutexLock lock(&mu_);
  return latest_;
}

absl::StatusOr<std::vector<Hash>> AuditLog::ConsistencyProof(uint64_t old_size,
                                                             uint64_t new_size) const {
  if (old_size > new_size || new_size > size()) {
    return absl::InvalidArgumentError(absl::StrCat("no consistency proof from ", old_size, " to ",
                                                   new_size, " entries in a log of ", size()));
  }
  // The tail may be mid-write (a framing error there is expected); the durable prefix is whole.
  absl::StatusOr<LoadResult> loaded = LoadDir(dir_, fs_);
  if (!loaded.ok()) return loaded.status();
  if (loaded->log.leaves.size() < new_size) {
    return absl::DataLossError(absl::StrCat("audit log reads back only ", loaded->log.leaves.size(),
                                            " of ", new_size,
                                            " entries: ", loaded->failure->ToString()));
  }
  std::span<const Hash> leaves(loaded->log.leaves);
  return ::uop::audit::ConsistencyProof(leaves.first(new_size), old_size);
}

uint64_t AuditLog::size() const {
  absl::MutexLock lock(&mu_);
  return size_;
}

void AuditLog::CommitLoop() {
  while (true) {
    std::vector<Pending> group;
    bool tick = false;
    bool checkpoint_requested = false;
    bool stop = false;
    absl::Status health;
    {
      absl::MutexLock lock(&mu_);
      absl::Condition work(
          +[](AuditLog* log) ABSL_NO_THREAD_SAFETY_ANALYSIS {
            return !log->queue_.empty() || log->tick_ || log->checkpoint_requests_ > 0 ||
                   log->stopping_;
          },
          this);
      if (broken_) {
        // Wakes for the next probe by itself (the node's timer need not tick for it).
        mu_.AwaitWithTimeout(work, std::max(absl::ZeroDuration(), next_probe_ - clock_->Now()));
      } else {
        mu_.Await(work);
      }
      while (!queue_.empty() && group.size() < kMaxGroup) {
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      tick = tick_;
      tick_ = false;
      // A checkpoint request covers everything queued before it, so serve it only once the
      // queue is drained.
      if (queue_.empty() && checkpoint_requests_ > 0) {
        checkpoint_requested = true;
        checkpoint_requests_ = 0;
      }
      stop = stopping_ && queue_.empty();
      health = health_;
    }
    absl::Status status;
    if (broken_ && (stop || clock_->Now() >= next_probe_)) {
      status = Probe();
      if (status.ok()) {
        broken_ = false;
      } else {
        Broke();
        status = CannotWrite(status);
      }
    } else if (broken_) {
      status = health;  // fail at once until the next probe
    }
    if (status.ok() && (!group.empty() || tick || checkpoint_requested || stop)) {
      status = CommitGroup(
          group, checkpoint_requested || stop ? CheckpointWhen::kUnsigned : CheckpointWhen::kDue);
      if (!status.ok()) {
        Broke();
        status = CannotWrite(status);
      }
    }
    bool changed = false;
    {
      absl::MutexLock lock(&mu_);
      changed = health_ != status;
      health_ = status;
      size_ = tree_.size();
      if (checkpoint_requested) {
        checkpoint_status_ = status;
        ++checkpoint_generation_;
      }
    }
    if (changed && options_.on_health_change) options_.on_health_change(status);
    for (size_t i = 0; i < group.size(); ++i) {
      if (status.ok()) {
        std::move(group[i].done)(AppendResult{group[i].entry.index, group[i].entry.time_micros});
      } else {
        std::move(group[i].done)(status);
      }
    }
    if (stop) {
      // Callers blocked in Checkpoint() after stop was requested are released too.
      absl::MutexLock lock(&mu_);
      if (checkpoint_requests_ > 0) {
        checkpoint_status_ = absl::FailedPreconditionError("audit log is closing");
        ++checkpoint_generation_;
      }
      return;
    }
  }
}

absl::Status AuditLog::WriteEntry(Entry& entry, CompactTree& tree) {
  entry.index = tree.size();
  std::string bytes = EncodeEntry(entry);
  if (absl::Status s = writer_->AddEntry(bytes); !s.ok()) return s;
  tree.Append(LeafHash(bytes));
  return absl::OkStatus();
}

absl::Status AuditLog::CheckStillWritable() {
  if (absl::Status s = file_->CheckLinked(); !s.ok()) return s;
  return fs_->CheckWritableDir(dir_);
}

absl::Status AuditLog::CommitGroup(std::vector<Pending>& group, CheckpointWhen when) {
  const absl::Time now = clock_->Now();
  const int64_t now_micros = std::max(absl::ToUnixMicros(now), last_time_micros_);
  CompactTree tree = tree_;
  uint64_t unsigned_entries = unsigned_entries_;

  if (!group.empty() && writer_->length() >= options_.max_segment_bytes) {
    if (absl::Status s = file_->Close(); !s.ok()) return s;
    writer_.reset();
    file_.reset();
    ++segment_number_;
    durable_length_ = 0;
    if (absl::Status s = OpenSegmentForAppend(segment_number_, 0); !s.ok()) return s;
  }

  for (Pending& p : group) {
    p.entry.time_micros = now_micros;
    if (absl::Status s = WriteEntry(p.entry, tree); !s.ok()) return s;
    ++unsigned_entries;
  }
  bool due = false;
  switch (when) {
    case CheckpointWhen::kDue:
      due = unsigned_entries > 0 && (unsigned_entries >= options_.checkpoint_every_entries ||
                                     now - last_checkpoint_time_ >= options_.checkpoint_interval);
      break;
    case CheckpointWhen::kUnsigned:
      due = unsigned_entries > 0;
      break;
    case CheckpointWhen::kAlways:
      due = tree.size() > 0;
      break;
  }
  std::optional<SignedCheckpoint> signed_checkpoint;
  if (due) {
    struct Checkpoint c;
    c.origin = options_.origin;
    c.size = tree.size();
    c.root = tree.Root();
    c.time_seconds = absl::ToUnixSeconds(now);
    Entry e;
    e.type = EntryType::kCheckpoint;
    e.time_micros = now_micros;
    e.payload = SignCheckpoint(c, *signer_);
    signed_checkpoint = SignedCheckpoint{c, e.payload};
    if (absl::Status s = WriteEntry(e, tree); !s.ok()) return s;
  }
  // Nothing to write (a tick): still look, so that an idle log reports a failure too.
  if (group.empty() && !due) return CheckStillWritable();
  if (absl::Status s = file_->Sync(); !s.ok()) return s;
  // After the fsync: an entry that is durable in a file nobody can find is not in the log.
  if (absl::Status s = CheckStillWritable(); !s.ok()) return s;

  tree_ = tree;
  last_time_micros_ = now_micros;
  durable_length_ = writer_->length();
  unsigned_entries_ = due ? 0 : unsigned_entries;
  if (due) {
    last_checkpoint_time_ = now;
    absl::MutexLock lock(&mu_);
    latest_ = std::move(signed_checkpoint);
  }
  return absl::OkStatus();
}

}  // namespace uop::audit
