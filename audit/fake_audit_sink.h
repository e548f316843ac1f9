// An AuditSink for tests of the broker's sessions: it keeps what was appended and completes
// appends when the test says so (or at once), so that a test decides exactly when an entry
// "becomes durable" or fails.
#pragma once

#include <deque>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "audit/audit_log.h"

namespace uop::audit {

// Thread-safe. Callbacks run on the thread that calls Complete/Fail (or Append, when
// auto-completing or when health is not OK, like AuditLog's immediate failures).
class FakeAuditSink final : public AuditSink {
 public:
  // With `auto_complete`, every Append succeeds at once with the next index.
  explicit FakeAuditSink(bool auto_complete = false) : auto_complete_(auto_complete) {}

  void Append(Entry entry, Done done) override {
    absl::Status refuse;
    {
      absl::MutexLock lock(&mu_);
      refuse = health_;
      if (refuse.ok()) {
        entry.index = next_index_++;
        entry.time_micros = time_micros_;
        if (!auto_complete_) {
          pending_.emplace_back(std::move(entry), std::move(done));
          return;
        }
        durable_.push_back(entry);
      }
    }
    if (!refuse.ok()) {
      std::move(done)(refuse);
      return;
    }
    std::move(done)(AppendResult{entry.index, entry.time_micros});
  }

  absl::Status Health() const override {
    absl::MutexLock lock(&mu_);
    return health_;
  }

  // Makes the oldest `n` pending appends durable, in order; returns how many there were.
  size_t Complete(size_t n = SIZE_MAX) {
    std::vector<std::pair<Entry, Done>> batch = Take(n);
    for (auto& [entry, done] : batch) {
      {
        absl::MutexLock lock(&mu_);
        durable_.push_back(entry);
      }
      std::move(done)(AppendResult{entry.index, entry.time_micros});
    }
    return batch.size();
  }
  // Fails the oldest `n` pending appends with `status` (their indices are not reused).
  size_t Fail(absl::Status status, size_t n = SIZE_MAX) {
    std::vector<std::pair<Entry, Done>> batch = Take(n);
    for (auto& [entry, done] : batch) std::move(done)(status);
    return batch.size();
  }
  // A non-OK health makes Append fail at once, as AuditLog does while it cannot write.
  void set_health(absl::Status s) {
    absl::MutexLock lock(&mu_);
    health_ = std::move(s);
  }
  void set_time_micros(int64_t t) {
    absl::MutexLock lock(&mu_);
    time_micros_ = t;
  }
  std::vector<Entry> durable() const {
    absl::MutexLock lock(&mu_);
    return durable_;
  }
  size_t pending() const {
    absl::MutexLock lock(&mu_);
    return pending_.size();
  }

 private:
  std::vector<std::pair<Entry, Done>> Take(size_t n) {
    absl::MutexLock lock(&mu_);
    std::vector<std::pair<Entry, Done>> out;
    while (!pending_.empty() && out.size() < n) {
      out.push_back(std::move(pending_.front()));
      pending_.pop_front();
    }
    return out;
  }

  const bool auto_complete_;
  mutable absl::Mutex mu_;
  absl::Status health_ ABSL_GUARDED_BY(mu_);
  uint64_t next_index_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t time_micros_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<std::pair<Entry, Done>> pending_ ABSL_GUARDED_BY(mu_);
  std::vector<Entry> durable_ ABSL_GUARDED_BY(mu_);
};

}  // namespace uop::audit
