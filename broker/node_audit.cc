// The node's audit log: opening with the node's key, metrics, health reporting and the timer.
#include "broker/node_audit.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "audit/loaded_log.h"
#include "audit/receipt.h"
#include "core/log.h"

namespace uop::broker {

namespace {

// Entries of the exchange of checkpoints themselves: they do not call for a new exchange.
bool IsWitnessing(audit::EntryType type) {
  return type == audit::EntryType::kCheckpoint || type == audit::EntryType::kCosignature ||
         type == audit::EntryType::kPeerCheckpoint || type == audit::EntryType::kWitnessRefused;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot read"));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

}  // namespace

NodeAudit::NodeAudit(std::shared_ptr<const audit::Signer> signer, core::Metrics* metrics)
    : signer_(std::move(signer)),
      writable_(metrics->Gauge("uop_audit_writable",
                               "1 while the audit log can write; 0: the node does not exchange")),
      entries_(metrics->Counter("uop_audit_entries_total", "Audit log entries made durable")),
      errors_(metrics->Counter("uop_audit_errors_total",
                               "Audit log appends that failed (the exchange stopped for them)")),
      outages_(metrics->Counter("uop_audit_unwritable_total",
                                "Times the audit log stopped being writable")),
      size_(metrics->Gauge("uop_audit_log_entries", "Durable entries in the audit log")) {}

absl::StatusOr<std::unique_ptr<NodeAudit>> NodeAudit::Open(const NodeConfig& config,
                                                           core::Metrics* metrics) {
  const AuditConfig& cfg = *config.audit;
  absl::StatusOr<std::string> pem = ReadFile(cfg.key_file);
  if (!pem.ok()) return pem.status();
  absl::StatusOr<std::unique_ptr<audit::Signer>> signer = audit::Signer::FromPem(config.node, *pem);
  if (!signer.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(cfg.key_file, " (audit.key): ", signer.status().message()));
  }
  std::unique_ptr<NodeAudit> out(
      new NodeAudit(std::shared_ptr<const audit::Signer>(*std::move(signer)), metrics));
  for (const PeerConfig& peer : config.peers) {
    if (peer.audit_vkey.empty()) continue;
    absl::StatusOr<audit::Verifier> v = audit::Verifier::FromVkey(peer.audit_vkey);
    if (!v.ok()) return v.status();  // checked when the config was parsed
    out->peer_keys_.emplace(peer.name, *std::move(v));
  }
  std::error_code ec;
  std::filesystem::create_directories(cfg.dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("audit.dir ", cfg.dir, ": cannot create: ", ec.message()));
  }
  audit::AuditLogOptions options;
  options.checkpoint_every_entries = cfg.checkpoint_every_entries;
  options.checkpoint_interval = absl::FromChrono(cfg.checkpoint_interval);
  options.max_segment_bytes = cfg.max_segment_bytes;
  options.on_health_change = [raw = out.get()](const absl::Status& health) {
    raw->HealthChanged(health);
  };
  out->writable_->Set(1);  // before the log's thread may report otherwise
  absl::StatusOr<std::unique_ptr<audit::AuditLog>> log =
      audit::AuditLog::Open(cfg.dir, out->signer_, options);
  if (!log.ok()) {
    return absl::Status(log.status().code(),
                        absl::StrCat("audit.dir ", cfg.dir, ": ", log.status().message()));
  }
  out->log_ = *std::move(log);
  if (const auto& r = out->log_->recovery(); r.has_value()) {
    log::Warn("audit_recovered", {{"segment", r->segment},
                                  {"truncated_at", std::to_string(r->truncated_at)},
                                  {"dropped_bytes", std::to_string(r->dropped_bytes)},
                                  {"reason", r->reason}});
  }
  out->size_->Set(static_cast<double>(out->log_->size()));
  // What each peer last cosigned of ours and we of theirs: a witness must not forget, or a
  // peer's rewritten log would be cosigned after our restart.
  out->exchange_ = std::make_unique<CheckpointExchange>(&*out->signer_, out->peer_keys_, out.get(),
                                                        out.get(), metrics);
  absl::StatusOr<audit::LoadResult> loaded = audit::LoadDir(cfg.dir);
  if (!loaded.ok()) {
    return absl::Status(loaded.status().code(),
                        absl::StrCat("audit.dir ", cfg.dir, ": ", loaded.status().message()));
  }
  if (loaded->failure.has_value()) {
    return absl::DataLossError(
        absl::StrCat("audit.dir ", cfg.dir, ": ", loaded->failure->ToString()));
  }
  for (const auto& [peer, key] : out->peer_keys_) {
    out->witness_gauges_[peer] = WitnessGauges{
        metrics->Gauge("uop_audit_cosigned_entries",
                       "Entries of our audit log the peer last cosigned", {{"peer", peer}}),
        metrics->Gauge(
            "uop_audit_unwitnessed_entries",
            "Entries of our audit log (other than witnessing) up to the latest one that the peer "
            "has not cosigned yet: what a rewrite could still change unnoticed by that peer",
            {{"peer", peer}})};
  }
  for (const audit::LoadedEntry& le : loaded->log.entries) {
    out->exchange_->Restore(le.entry);
    out->NoteInBook(le.entry);
    if (!IsWitnessing(le.entry.type)) out->last_activity_.store(static_cast<int64_t>(le.position));
  }
  log::Info("audit_log_open", {{"dir", cfg.dir},
                               {"entries", std::to_string(out->log_->size())},
                               {"key", out->signer_->verifier().Vkey()}});
  out->thread_ = std::thread([raw = out.get()] { raw->Run(); });
  return out;
}

NodeAudit::~NodeAudit() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
  std::vector<Retained> retained;
  {
    absl::MutexLock lock(&mu_);
    retained.swap(retained_);
  }
  for (Retained& r : retained) {
    std::move(r.done)(
        absl::FailedPreconditionError("the node stopped before the audit log could write again"));
  }
  log_.reset();  // commits what is queued and signs a final checkpoint
  RunDeferred();
}

void NodeAudit::HealthChanged(const absl::Status& health) {
  // Runs on the log's commit thread, also while log_ is being set or reset: not through log_.
  writable_->Set(health.ok() ? 1 : 0);
  if (health.ok()) {
    unwritable_ = false;
    log::Info("audit_log_writable");
  } else if (unwritable_) {
    // Still unwritable, for another reason (a probe failed differently).
    log::Warn("audit_log_unwritable", {{"reason", std::string(health.message())}});
  } else {
    unwritable_ = true;
    outages_->Add(1);
    log::Error("audit_log_unwritable", {{"reason", std::string(health.message())}});
  }
}

void NodeAudit::Observe(audit::EntryType type, const absl::StatusOr<audit::AppendResult>& result) {
  if (result.ok()) {
    entries_->Add(1);
    if (!IsWitnessing(type)) {
      const auto index = static_cast<int64_t>(result->index);
      int64_t seen = last_activity_.load();
      while (seen < index && !last_activity_.compare_exchange_weak(seen, index)) {
      }
      RefreshUnwitnessed();
    }
  } else {
    errors_->Add(1);
  }
}

void NodeAudit::Append(audit::Entry entry, Done done) {
  const std::thread::id caller = std::this_thread::get_id();
  const audit::EntryType type = entry.type;
  std::optional<audit::Entry> booked;
  if (type == audit::EntryType::kBatchSent || type == audit::EntryType::kBatchReceived ||
      type == audit::EntryType::kReceipt) {
    booked = entry;
  }
  log_->Append(std::move(entry),
               [this, caller, type, booked = std::move(booked),
                done = std::move(done)](absl::StatusOr<audit::AppendResult> r) mutable {
                 Observe(type, r);
                 if (r.ok() && booked.has_value()) {
                   booked->index = r->index;
                   booked->time_micros = r->time_micros;
                   NoteInBook(*booked);
                 }
                 if (std::this_thread::get_id() != caller) {
                   std::move(done)(std::move(r));
                   return;
                 }
                 absl::MutexLock lock(&mu_);
                 deferred_.emplace_back([done = std::move(done), r = std::move(r)]() mutable {
                   std::move(done)(std::move(r));
                 });
               });
}

void NodeAudit::RunDeferred() {
  std::vector<absl::AnyInvocable<void() &&>> run;
  {
    absl::MutexLock lock(&mu_);
    run.swap(deferred_);
  }
  for (auto& f : run) std::move(f)();
}

absl::Status NodeAudit::Health() const { return log_->Health(); }

absl::StatusOr<audit::AppendResult> NodeAudit::AppendAndWait(audit::Entry entry) {
  audit::Entry booked = entry;
  absl::StatusOr<audit::AppendResult> r = log_->AppendAndWait(std::move(entry));
  Observe(booked.type, r);
  if (r.ok()) {
    booked.index = r->index;
    booked.time_micros = r->time_micros;
    NoteInBook(booked);
  }
  return r;
}

void NodeAudit::AppendAsync(audit::Entry entry) {
  const audit::EntryType type = entry.type;
  Append(std::move(entry), [type](const absl::StatusOr<audit::AppendResult>& r) {
    if (!r.ok()) {
      log::Error("audit_append_failed", {{"type", std::string(audit::EntryTypeName(type))},
                                         {"reason", std::string(r.status().message())}});
    }
  });
}

void NodeAudit::AppendRetained(audit::Entry entry, Done done) {
  // A verified receipt held here until the log can take it must not be logged a second time
  // when the receiver sends it again at its next Subscribe (AcceptResentReceipts).
  if (entry.type == audit::EntryType::kReceipt) NoteInBook(entry);
  audit::Entry copy = entry;
  Append(std::move(entry), [this, copy = std::move(copy),
                            done = std::move(done)](absl::StatusOr<audit::AppendResult> r) mutable {
    // An entry too large, or a log that is closing, will not get better by waiting.
    if (r.ok() || absl::IsInvalidArgument(r.status()) || absl::IsFailedPrecondition(r.status())) {
      std::move(done)(std::move(r));
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      if (!stopping_ && retained_.size() < kMaxRetained) {
        retained_.push_back(Retained{std::move(copy), std::move(done)});
        return;
      }
    }
    std::move(done)(std::move(r));
  });
}

const audit::Verifier* NodeAudit::PeerKey(const std::string& peer) const {
  auto it = peer_keys_.find(peer);
  return it == peer_keys_.end() ? nullptr : &it->second;
}

void NodeAudit::NoteInBook(const audit::Entry& e) {
  if (!e.partition.has_value() || !e.first_offset.has_value()) return;
  const BookKey key{e.peer, e.topic, *e.partition};
  absl::MutexLock lock(&book_mu_);
  switch (e.type) {
    case audit::EntryType::kBatchSent: {
      std::map<int64_t, audit::Entry>& m = unreceipted_[key];
      m[*e.first_offset] = e;
      if (m.size() > kUnreceiptedPerPartition) m.erase(m.begin());
      break;
    }
    case audit::EntryType::kReceipt:
      if (auto it = unreceipted_.find(key); it != unreceipted_.end()) {
        it->second.erase(*e.first_offset);
      }
      break;
    case audit::EntryType::kBatchReceived: {
      // The latest entry of a batch wins: a batch logged before a commit that did not happen is
      // logged again when it is received again.
      std::map<int64_t, audit::Entry>& m = received_[key];
      m[*e.first_offset] = e;
      if (m.size() > kResendPerPartition) m.erase(m.begin());
      break;
    }
    default:
      break;
  }
}

std::vector<std::string> NodeAudit::ResendableReceipts(const std::string& owner,
                                                       const std::string& topic, int32_t partition,
                                                       int64_t held_through) {
  std::vector<std::string> out;
  if (PeerKey(owner) == nullptr) return out;
  std::vector<audit::Entry> entries;
  {
    absl::MutexLock lock(&book_mu_);
    auto it = received_.find(BookKey{owner, topic, partition});
    if (it == received_.end()) return out;
    for (const auto& [first, e] : it->second) {
      // Only what our Kafka holds: an entry above it is of a transaction that did not commit.
      if (e.last_offset.has_value() && *e.last_offset <= held_through) entries.push_back(e);
    }
  }
  for (const audit::Entry& e : entries) {
    absl::StatusOr<std::string> receipt =
        audit::SignReceiptFor(e, e.index, e.time_micros, *signer_, owner);
    if (receipt.ok()) out.push_back(*std::move(receipt));
  }
  return out;
}

size_t NodeAudit::AcceptResentReceipts(
    const std::string& peer, const std::string& topic,
    const google::protobuf::RepeatedPtrField<std::string>& receipts) {
  const audit::Verifier* key = PeerKey(peer);
  if (key == nullptr) return 0;
  size_t logged = 0;
  for (const std::string& bytes : receipts) {
    absl::StatusOr<audit::Receipt> r = audit::ParseReceipt(bytes);
    if (!r.ok() || r->topic != topic) continue;
    std::optional<audit::Entry> sent;
    {
      absl::MutexLock lock(&book_mu_);
      auto it = unreceipted_.find(BookKey{peer, topic, r->partition});
      if (it != unreceipted_.end()) {
        if (auto s = it->second.find(r->first_offset); s != it->second.end()) sent = s->second;
      }
    }
    if (!sent.has_value()) continue;  // logged already, or not a batch we know of
    absl::StatusOr<audit::Entry> entry = audit::AcceptReceipt(bytes, *key, signer_->name(), *sent);
    if (!entry.ok()) {
      log::Warn("receipt_resent_refused", {{"peer", peer},
                                           {"topic", topic},
                                           {"partition", std::to_string(r->partition)},
                                           {"first_offset", std::to_string(r->first_offset)},
                                           {"reason", std::string(entry.status().message())}});
      continue;
    }
    absl::Notification done;
    absl::Status status;
    Append(*std::move(entry), [&](const absl::StatusOr<audit::AppendResult>& a) {
      status = a.status();
      done.Notify();
    });
    done.WaitForNotification();
    if (!status.ok()) {
      log::Error("audit_append_failed",
                 {{"type", "receipt"}, {"reason", std::string(status.message())}});
      break;
    }
    ++logged;
  }
  if (logged > 0) {
    log::Info("receipts_resent",
              {{"peer", peer}, {"topic", topic}, {"logged", std::to_string(logged)}});
  }
  return logged;
}

void NodeAudit::RefreshUnwitnessed() {
  const auto needed = static_cast<double>(last_activity_.load() + 1);
  for (const auto& [peer, g] : witness_gauges_) {
    g.unwitnessed->Set(std::max(0.0, needed - g.cosigned->Get()));
  }
}

std::optional<audit::SignedCheckpoint> NodeAudit::LatestCheckpoint() const {
  return log_->LatestCheckpoint();
}

absl::StatusOr<std::vector<audit::Hash>> NodeAudit::ConsistencyProof(uint64_t old_size,
                                                                     uint64_t new_size) const {
  return log_->ConsistencyProof(old_size, new_size);
}

std::optional<uint64_t> NodeAudit::LastActivity() const {
  const int64_t i = last_activity_.load();
  if (i < 0) return std::nullopt;
  return static_cast<uint64_t>(i);
}

void NodeAudit::Run() {
  absl::MutexLock lock(&mu_);
  auto wake = [this]()
                  ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || !deferred_.empty(); };
  while (true) {
    mu_.AwaitWithTimeout(absl::Condition(&wake), absl::Milliseconds(500));
    if (stopping_) break;
    if (!deferred_.empty()) {
      mu_.Unlock();
      RunDeferred();
      mu_.Lock();
      continue;
    }
    // Signs a checkpoint when one is due and checks an idle log can still write; the log
    // probes by itself after a failure and reports changes through HealthChanged.
    log_->Tick();
    size_->Set(static_cast<double>(log_->size()));
    RefreshUnwitnessed();
    if (!retained_.empty() && log_->Health().ok()) {
      std::vector<Retained> again;
      again.swap(retained_);
      mu_.Unlock();
      for (Retained& r : again) AppendRetained(std::move(r.entry), std::move(r.done));
      mu_.Lock();
    }
  }
}

}  // namespace uop::broker
