// Policy reloads and validity windows; see policy_manager.h.
#include "broker/policy_manager.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/log.h"

namespace uop::broker {

namespace {

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone());
}

std::string Quoted(absl::string_view s) { return absl::StrCat("\"", log::JsonEscape(s), "\""); }

}  // namespace

PolicyManager::PolicyManager(Options options, core::Metrics* metrics, audit::AuditSink* audit)
    : options_(std::move(options)), metrics_(metrics), audit_(audit) {
  const char* help =
      "Policy reloads by result (ok: a new version; unchanged; rejected: a bad "
      "edit, the last good set stays)";
  reloads_ok_ = metrics_->Counter("uop_policy_reloads_total", help, {{"result", "ok"}});
  reloads_unchanged_ =
      metrics_->Counter("uop_policy_reloads_total", help, {{"result", "unchanged"}});
  reloads_rejected_ = metrics_->Counter("uop_policy_reloads_total", help, {{"result", "rejected"}});
  last_ok_ = metrics_->Gauge("uop_policy_last_reload_ok",
                             "1 if the last policy load succeeded, 0 if it was refused");
  loaded_at_ = metrics_->Gauge("uop_policy_loaded_timestamp_seconds",
                               "When the policy set in force was loaded (Unix time)");
  shares_active_ = metrics_->Gauge("uop_policy_shares_active",
                                   "Shares inside their validity window at the last look");
}

PolicyManager::~PolicyManager() { Stop(); }

absl::StatusOr<std::shared_ptr<const policy::PolicySnapshot>> PolicyManager::Read() const {
  return policy::PolicySnapshot::LoadDirectory(options_.dir, options_.peers);
}

absl::StatusOr<std::unique_ptr<PolicyManager>> PolicyManager::Load(Options options,
                                                                   core::Metrics* metrics,
                                                                   audit::AuditSink* audit) {
  std::unique_ptr<PolicyManager> m(new PolicyManager(std::move(options), metrics, audit));
  const std::string fingerprint = m->Fingerprint();
  absl::StatusOr<std::shared_ptr<const policy::PolicySnapshot>> snapshot = m->Read();
  if (!snapshot.ok()) {
    audit::Entry rejected;
    rejected.type = audit::EntryType::kPolicyRejected;
    rejected.reason = std::string(snapshot.status().message());
    m->Audit(std::move(rejected));
    return snapshot.status();
  }
  m->current_.store(*snapshot);
  const absl::Time now = absl::Now();
  {
    absl::MutexLock lock(&m->mu_);
    m->loaded_trigger_ = "start";
    m->loaded_at_time_ = now;
    m->attempt_at_ = now;
    m->attempt_trigger_ = "start";
    m->seen_fingerprint_ = fingerprint;
    m->loaded_fingerprint_ = fingerprint;
    for (const policy::Share* s : (*snapshot)->Shares()) {
      m->states_[{s->dataset, s->peer}] = (*snapshot)->StateAt(s->dataset, s->peer, now);
    }
  }
  m->last_ok_->Set(1);
  m->loaded_at_->Set(static_cast<double>(absl::ToUnixSeconds(now)));
  log::Info("policies_loaded", {{"dir", m->options_.dir},
                                {"version", (*snapshot)->version()},
                                {"trigger", "start"},
                                {"warnings", std::to_string((*snapshot)->warnings().size())}});
  for (const policy::Warning& w : (*snapshot)->warnings()) {
    log::Warn("policy_warning", {{"warning", w.ToString()}});
  }
  audit::Entry load;
  load.type = audit::EntryType::kPolicyLoad;
  load.policy_version = (*snapshot)->version();
  load.reason = m->options_.dir;
  m->Audit(std::move(load));
  return m;
}

void PolicyManager::Audit(audit::Entry entry) {
  if (audit_ == nullptr) return;
  const std::string type(audit::EntryTypeName(entry.type));
  audit_->Append(std::move(entry), [type](const absl::StatusOr<audit::AppendResult>& r) {
    if (!r.ok()) {
      log::Error("audit_append_failed",
                 {{"type", type}, {"reason", std::string(r.status().message())}});
    }
  });
}

PolicyManager::Result PolicyManager::Reload(absl::string_view trigger) {
  absl::MutexLock reload_lock(&reload_mu_);
  const std::string fingerprint = Fingerprint();
  absl::StatusOr<std::shared_ptr<const policy::PolicySnapshot>> snapshot = Read();
  const absl::Time now = absl::Now();
  const std::shared_ptr<const policy::PolicySnapshot> before = Current();
  Result result;
  {
    absl::MutexLock lock(&mu_);
    attempt_at_ = now;
    attempt_trigger_ = std::string(trigger);
    loaded_fingerprint_ = fingerprint;
    seen_fingerprint_ = fingerprint;
    last_error_ = snapshot.ok() ? "" : std::string(snapshot.status().message());
  }
  if (!snapshot.ok()) {
    reloads_rejected_->Add(1);
    last_ok_->Set(0);
    result.version = before->version();
    result.error = std::string(snapshot.status().message());
    log::Error("policy_rejected", {{"dir", options_.dir},
                                   {"trigger", std::string(trigger)},
                                   {"error", result.error},
                                   {"in_force", before->version()}});
    audit::Entry rejected;
    rejected.type = audit::EntryType::kPolicyRejected;
    rejected.policy_version = before->version();  // what stays in force
    rejected.reason = result.error;
    Audit(std::move(rejected));
    return result;
  }
  result.ok = true;
  result.version = (*snapshot)->version();
  for (const policy::Warning& w : (*snapshot)->warnings()) result.warnings.push_back(w.ToString());
  last_ok_->Set(1);
  if ((*snapshot)->version() == before->version()) {
    reloads_unchanged_->Add(1);
    log::Info("policies_unchanged",
              {{"version", result.version}, {"trigger", std::string(trigger)}});
    return result;
  }
  result.changed = true;
  current_.store(*snapshot);
  reloads_ok_->Add(1);
  loaded_at_->Set(static_cast<double>(absl::ToUnixSeconds(now)));
  {
    absl::MutexLock lock(&mu_);
    loaded_trigger_ = std::string(trigger);
    loaded_at_time_ = now;
  }
  log::Info("policies_loaded", {{"dir", options_.dir},
                                {"version", result.version},
                                {"previous", before->version()},
                                {"trigger", std::string(trigger)},
                                {"warnings", std::to_string(result.warnings.size())}});
  for (const std::string& w : result.warnings) log::Warn("policy_warning", {{"warning", w}});
  audit::Entry load;
  load.type = audit::EntryType::kPolicyLoad;
  load.policy_version = result.version;
  load.reason = absl::StrCat(options_.dir, " (", trigger, ", was ", before->version(), ")");
  Audit(std::move(load));
  return result;
}

std::string PolicyManager::Fingerprint() const {
  std::vector<std::string> files;
  std::error_code ec;
  std::filesystem::recursive_directory_iterator it(
      options_.dir, std::filesystem::directory_options::follow_directory_symlink, ec);
  if (ec) return absl::StrCat("unreadable: ", ec.message());
  for (const std::filesystem::recursive_directory_iterator end; it != end; it.increment(ec)) {
    if (ec) return absl::StrCat("unreadable: ", ec.message());
    struct stat st {};
    if (::stat(it->path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    files.push_back(absl::StrCat(it->path().string(), " ", st.st_size, " ", st.st_ino, " ",
                                 st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec));
  }
  std::sort(files.begin(), files.end());
  return absl::StrJoin(files, "\n");
}

void PolicyManager::Poll(absl::Time now) {
  const std::string fingerprint = Fingerprint();
  bool reload = false;
  {
    absl::MutexLock lock(&mu_);
    // Loaded once two looks agree: an editor's save caught half-way is not a rejection.
    reload = fingerprint == seen_fingerprint_ && fingerprint != loaded_fingerprint_;
    seen_fingerprint_ = fingerprint;
  }
  if (reload) Reload("file change");
  absl::MutexLock lock(&mu_);
  CheckWindows(now);
}

void PolicyManager::CheckWindows(absl::Time now) {
  const std::shared_ptr<const policy::PolicySnapshot> snapshot = Current();
  std::map<std::pair<std::string, std::string>, policy::ShareState> states;
  int active = 0;
  for (const policy::Share* s : snapshot->Shares()) {
    const policy::ShareState state = snapshot->StateAt(s->dataset, s->peer, now);
    if (state == policy::ShareState::kActive) ++active;
    auto key = std::make_pair(s->dataset, s->peer);
    auto before = states_.find(key);
    if (before != states_.end() && before->second != state) {
      const bool stopped = before->second == policy::ShareState::kActive;
      const bool started = state == policy::ShareState::kActive;
      if (stopped || started) {
        log::Info(stopped ? "share_stopped" : "share_started",
                  {{"dataset", s->dataset},
                   {"peer", s->peer},
                   {"state", policy::ShareStateName(state)},
                   {"policy", snapshot->version()}});
        audit::Entry e;
        e.type = audit::EntryType::kPolicyExpired;
        e.dataset = s->dataset;
        e.peer = s->peer;
        e.policy_version = snapshot->version();
        e.reason = stopped ? absl::StrCat("share stopped: ", policy::ShareStateName(state))
                           : "share started: inside its validity window";
        Audit(std::move(e));
      }
    }
    states[key] = state;
  }
  states_ = std::move(states);
  shares_active_->Set(active);
}

void PolicyManager::StartWatching() {
  watcher_ =
      std::make_unique<core::PeriodicThread>(options_.poll_interval, [this] { Poll(absl::Now()); });
}

void PolicyManager::Stop() { watcher_.reset(); }

std::string PolicyManager::StatusJson(absl::Time now) const {
  const std::shared_ptr<const policy::PolicySnapshot> snapshot = Current();
  std::string out = "{";
  absl::StrAppend(&out, "\"dir\":", Quoted(options_.dir),
                  ",\"version\":", Quoted(snapshot->version()));
  {
    absl::MutexLock lock(&mu_);
    absl::StrAppend(&out, ",\"loaded_at\":", Quoted(Rfc3339(loaded_at_time_)),
                    ",\"loaded_by\":", Quoted(loaded_trigger_),
                    ",\"last_attempt_at\":", Quoted(Rfc3339(attempt_at_)),
                    ",\"last_attempt_by\":", Quoted(attempt_trigger_),
                    ",\"last_attempt_ok\":", last_error_.empty() ? "true" : "false");
    if (!last_error_.empty()) absl::StrAppend(&out, ",\"last_error\":", Quoted(last_error_));
  }
  out += ",\"warnings\":[";
  bool first = true;
  for (const policy::Warning& w : snapshot->warnings()) {
    if (!first) out += ",";
    first = false;
    out += Quoted(w.ToString());
  }
  out += "],\"shares\":[";
  first = true;
  for (const policy::Share* s : snapshot->Shares()) {
    if (!first) out += ",";
    first = false;
    absl::StrAppend(
        &out, "{\"dataset\":", Quoted(s->dataset), ",\"peer\":", Quoted(s->peer),
        ",\"state\":", Quoted(policy::ShareStateName(snapshot->StateAt(s->dataset, s->peer, now))),
        ",\"file\":", Quoted(absl::StrCat(s->file, ":", s->line)), "}");
  }
  out += "]}\n";
  return out;
}

}  // namespace uop::broker
