// The node's policy set over time. Loads the policy directory, publishes each good snapshot whole
// (readers load it without taking a lock of ours), and reloads it when a file changes (polled),
// on SIGHUP, or on POST /policy/reload. A bad edit is refused and reported (log, metric, audit,
// /policy/status); the last good set stays. It also watches each share's validity window and logs
// (and audits) the moment a share stops or starts by itself.
//
// What a new snapshot does to open streams is the export stream's business: it compares its
// share's canonical block with the new one at the next record boundary (docs/design.md).
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "audit/audit_log.h"
#include "core/metrics.h"
#include "core/periodic_thread.h"
#include "policy/policy_snapshot.h"

namespace uop::broker {

class PolicyManager {
 public:
  struct Options {
    std::string dir;
    std::set<std::string> peers;  // the peers of the node's config
    // How often the directory is looked at (and validity windows checked). A change is loaded
    // once two looks in a row agree, so a file caught half-written is not reported as an error.
    absl::Duration poll_interval = absl::Seconds(1);
  };

  // What one reload did.
  struct Result {
    bool ok = false;
    bool changed = false;  // ok and a different version from before
    std::string version;   // the version in force afterwards
    std::string error;     // !ok: why the new set was refused (file:line:column: ...)
    std::vector<std::string> warnings;
  };

  // Loads the directory once; an error here stops the node from starting. `audit` may be null.
  static absl::StatusOr<std::unique_ptr<PolicyManager>> Load(Options options,
                                                             core::Metrics* metrics,
                                                             audit::AuditSink* audit);
  ~PolicyManager();
  PolicyManager(const PolicyManager&) = delete;
  PolicyManager& operator=(const PolicyManager&) = delete;

  std::shared_ptr<const policy::PolicySnapshot> Current() const { return current_.load(); }

  // Reads the directory again; `trigger` ("file change", "SIGHUP", "admin") goes into the logs.
  Result Reload(absl::string_view trigger) ABSL_LOCKS_EXCLUDED(reload_mu_, mu_);

  // Polls the directory and the validity windows on a thread of its own until Stop().
  void StartWatching();
  void Stop();
  // One look, as the watcher takes it (tests drive this with their own clock).
  void Poll(absl::Time now) ABSL_LOCKS_EXCLUDED(reload_mu_, mu_);

  // /policy/status as JSON: version, when loaded and why, the last attempt and its error,
  // warnings, and every share with its state now. Never key bytes.
  std::string StatusJson(absl::Time now) const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  PolicyManager(Options options, core::Metrics* metrics, audit::AuditSink* audit);
  absl::StatusOr<std::shared_ptr<const policy::PolicySnapshot>> Read() const;
  // Size, mtime and inode of every file under the directory (keys and areas included).
  std::string Fingerprint() const;
  void Audit(audit::Entry entry);
  void CheckWindows(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  core::Metrics* const metrics_;
  audit::AuditSink* const audit_;
  std::atomic<std::shared_ptr<const policy::PolicySnapshot>> current_;

  core::MetricValue* reloads_ok_;
  core::MetricValue* reloads_unchanged_;
  core::MetricValue* reloads_rejected_;
  core::MetricValue* last_ok_;
  core::MetricValue* loaded_at_;
  core::MetricValue* shares_active_;

  absl::Mutex reload_mu_;  // one reload at a time (watcher, signal, admin)
  mutable absl::Mutex mu_;
  std::string loaded_trigger_ ABSL_GUARDED_BY(mu_);
  absl::Time loaded_at_time_ ABSL_GUARDED_BY(mu_);
  absl::Time attempt_at_ ABSL_GUARDED_BY(mu_);
  std::string attempt_trigger_ ABSL_GUARDED_BY(mu_);
  std::string last_error_ ABSL_GUARDED_BY(mu_);          // empty: the last attempt loaded
  std::string seen_fingerprint_ ABSL_GUARDED_BY(mu_);    // of the last look
  std::string loaded_fingerprint_ ABSL_GUARDED_BY(mu_);  // of the last attempt
  // The state each (dataset, peer) share was in at the last look.
  std::map<std::pair<std::string, std::string>, policy::ShareState> states_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<core::PeriodicThread> watcher_;  // Poll(), from StartWatching until Stop
};

}  // namespace uop::broker
