// Both roles of checkpoint witnessing, and what each step leaves in the node's audit log.
#include "broker/checkpoint_exchange.h"

#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "audit/witness.h"
#include "core/log.h"
#include "core/status_macros.h"

namespace uop::broker {

namespace fed = uop::federation::v1;

namespace {

constexpr size_t kMaxReasonBytes = 1024;  // of a refusal a peer sends us

std::optional<audit::Checkpoint> CheckpointIn(absl::string_view note_text) {
  absl::StatusOr<audit::SignedNote> note = audit::ParseNote(note_text);
  if (!note.ok()) return std::nullopt;
  absl::StatusOr<audit::Checkpoint> c = audit::ParseCheckpointBody(note->body);
  if (!c.ok()) return std::nullopt;
  return *c;
}

}  // namespace

CheckpointExchange::CheckpointExchange(const audit::Signer* self,
                                       std::map<std::string, audit::Verifier> peer_keys,
                                       audit::AuditSink* sink, const WitnessedLog* log,
                                       core::Metrics* metrics, audit::Clock* clock)
    : self_(self),
      peer_keys_(std::move(peer_keys)),
      sink_(sink),
      log_(log),
      metrics_(metrics),
      clock_(clock) {
  absl::MutexLock lock(&mu_);
  for (const auto& [name, key] : peer_keys_) StateLocked(name);
}

CheckpointExchange::PeerState& CheckpointExchange::StateLocked(const std::string& peer) {
  auto [it, added] = peers_.try_emplace(peer);
  PeerState& st = it->second;
  if (added) {
    const std::string help_refused =
        "Checkpoint witnessing refusals: by=us, we refused the peer's checkpoint (a bad signature "
        "or a rewritten log) or its cosignature; by=peer, the peer refused ours";
    st.refusals_by_us = metrics_->Counter("uop_audit_witness_refusals_total", help_refused,
                                          {{"peer", peer}, {"by", "us"}});
    st.refusals_by_peer = metrics_->Counter("uop_audit_witness_refusals_total", help_refused,
                                            {{"peer", peer}, {"by", "peer"}});
    st.cosigned_gauge =
        metrics_->Gauge("uop_audit_cosigned_entries",
                        "Entries of our audit log the peer last cosigned", {{"peer", peer}});
    st.witnessed_gauge =
        metrics_->Gauge("uop_audit_witnessed_entries",
                        "Entries of the peer's audit log we last cosigned", {{"peer", peer}});
    st.healthy = metrics_->Gauge(
        "uop_audit_witness_ok",
        "0 after a refused checkpoint exchange with the peer, 1 again after one that succeeds",
        {{"peer", peer}});
    st.healthy->Set(1);
  }
  return st;
}

void CheckpointExchange::Restore(const audit::Entry& entry) {
  if (entry.type != audit::EntryType::kCosignature &&
      entry.type != audit::EntryType::kPeerCheckpoint) {
    return;
  }
  std::optional<audit::Checkpoint> c = CheckpointIn(entry.payload);
  if (!c.has_value()) return;  // the log verified when it opened; nothing else writes these
  absl::MutexLock lock(&mu_);
  PeerState& st = StateLocked(entry.peer);
  if (entry.type == audit::EntryType::kCosignature) {
    st.cosigned_by = c->size;
    st.cosigned_gauge->Set(static_cast<double>(c->size));
  } else {
    st.witnessed = *c;
    st.witnessed_gauge->Set(static_cast<double>(c->size));
  }
}

absl::Status CheckpointExchange::AppendDurable(audit::Entry entry) {
  absl::Notification done;
  absl::Status status;
  sink_->Append(std::move(entry), [&](const absl::StatusOr<audit::AppendResult>& r) {
    status = r.status();
    done.Notify();
  });
  done.WaitForNotification();
  return status;
}

std::optional<fed::CheckpointOffer> CheckpointExchange::OfferLocked(const std::string& peer,
                                                                    uint64_t old_size) {
  std::optional<audit::SignedCheckpoint> latest = log_->LatestCheckpoint();
  if (!latest.has_value()) return std::nullopt;
  const uint64_t size = latest->checkpoint.size;
  if (size == old_size) return std::nullopt;
  if (size > old_size) {
    std::optional<uint64_t> activity = log_->LastActivity();
    if (!activity.has_value() || *activity < old_size) return std::nullopt;  // nothing new
  }
  fed::CheckpointOffer offer;
  offer.set_old_size(old_size);
  offer.set_checkpoint(latest->note);
  if (old_size > 0 && old_size < size) {
    absl::StatusOr<std::vector<audit::Hash>> proof = log_->ConsistencyProof(old_size, size);
    if (proof.ok()) {
      for (const audit::Hash& h : *proof) {
        offer.add_consistency_proof(std::string(reinterpret_cast<const char*>(h.data()), h.size()));
      }
    } else {
      log::Error("audit_consistency_proof_failed",
                 {{"peer", peer},
                  {"from", std::to_string(old_size)},
                  {"to", std::to_string(size)},
                  {"reason", std::string(proof.status().message())}});
    }
  } else if (old_size > size) {
    // The peer cosigned more of our log than the log now holds: it will refuse, and say so.
    log::Error("audit_log_shorter_than_witnessed", {{"peer", peer},
                                                    {"witnessed", std::to_string(old_size)},
                                                    {"entries", std::to_string(size)}});
  }
  StateLocked(peer).offered = *latest;
  return offer;
}

absl::StatusOr<CheckpointExchange::Verdict> CheckpointExchange::WitnessLocked(
    const std::string& peer, const fed::CheckpointOffer& offer) {
  const audit::Verifier& key = peer_keys_.at(peer);
  PeerState& st = StateLocked(peer);
  const uint64_t last_size = st.witnessed.has_value() ? st.witnessed->size : 0;
  auto refuse = [&](const std::string& why) -> absl::StatusOr<Verdict> {
    audit::Entry e;
    e.type = audit::EntryType::kWitnessRefused;
    e.peer = peer;
    e.reason = why;
    if (!offer.checkpoint().empty() && offer.checkpoint().size() <= kMaxCheckpointNoteBytes) {
      e.payload = offer.checkpoint();
    }
    st.refusals_by_us->Add(1);
    st.healthy->Set(0);
    log::Error("audit_witness_refused", {{"peer", peer}, {"reason", why}});
    if (absl::Status s = AppendDurable(std::move(e)); !s.ok()) return s;
    Verdict v;
    v.refusal = why;
    return v;
  };
  if (offer.checkpoint().size() > kMaxCheckpointNoteBytes) {
    return refuse(absl::StrCat(peer, "'s checkpoint note has ", offer.checkpoint().size(),
                               " bytes, at most ", kMaxCheckpointNoteBytes, " are accepted"));
  }
  if (offer.consistency_proof_size() > kMaxConsistencyProofHashes) {
    return refuse(absl::StrCat(peer, "'s consistency proof has ", offer.consistency_proof_size(),
                               " hashes, at most ", kMaxConsistencyProofHashes));
  }
  std::vector<audit::Hash> proof;
  for (int i = 0; i < offer.consistency_proof_size(); ++i) {
    const std::string& h = offer.consistency_proof(i);
    if (h.size() != audit::Hash().size()) {
      return refuse(
          absl::StrCat(peer, "'s consistency proof hash ", i, " has ", h.size(), " bytes, not 32"));
    }
    audit::Hash hash;
    std::memcpy(hash.data(), h.data(), hash.size());
    proof.push_back(hash);
  }
  if (offer.old_size() != last_size) {
    Verdict v;
    v.conflict_size = last_size;
    return v;
  }
  const int64_t now = absl::ToUnixSeconds(clock_->Now());
  absl::StatusOr<std::string> cosigned =
      audit::WitnessCheckpoint(offer.checkpoint(), key, st.witnessed, proof, *self_, now);
  if (!cosigned.ok()) {
    return refuse(absl::StrCat(peer, "'s checkpoint: ", cosigned.status().message()));
  }
  std::optional<audit::Checkpoint> c = CheckpointIn(*cosigned);
  if (!c.has_value()) return absl::InternalError("a checkpoint we cosigned does not parse");
  audit::Entry e;
  e.type = audit::EntryType::kPeerCheckpoint;
  e.peer = peer;
  e.payload = *cosigned;
  if (absl::Status s = AppendDurable(std::move(e)); !s.ok()) return s;
  st.witnessed = *c;
  st.witnessed_gauge->Set(static_cast<double>(c->size));
  st.healthy->Set(1);
  Verdict v;
  v.cosigned = *std::move(cosigned);
  return v;
}

absl::Status CheckpointExchange::AcceptCosignatureLocked(const std::string& peer,
                                                         const std::string& note) {
  PeerState& st = StateLocked(peer);
  absl::StatusOr<audit::Checkpoint> c =
      note.size() > kMaxCheckpointNoteBytes
          ? absl::InvalidArgumentError(absl::StrCat("note has ", note.size(), " bytes"))
          : audit::VerifyCosigned(note, self_->verifier(), peer_keys_.at(peer));
  if (c.ok() && (!st.offered.has_value() || st.offered->checkpoint != *c)) {
    c = absl::FailedPreconditionError(absl::StrCat("it cosigns a checkpoint of ", c->size,
                                                   " entries, which is not the one we offered"));
  }
  if (!c.ok()) {
    // Nothing of it is logged: a cosignature that does not verify is no evidence of anything.
    st.refusals_by_us->Add(1);
    st.healthy->Set(0);
    log::Error("audit_cosignature_refused",
               {{"peer", peer}, {"reason", std::string(c.status().message())}});
    return absl::OkStatus();
  }
  audit::Entry e;
  e.type = audit::EntryType::kCosignature;
  e.peer = peer;
  e.payload = note;
  RETURN_IF_ERROR(AppendDurable(std::move(e)));
  st.cosigned_by = c->size;
  st.cosigned_gauge->Set(static_cast<double>(c->size));
  st.offered.reset();
  st.healthy->Set(1);
  return absl::OkStatus();
}

absl::Status CheckpointExchange::PeerRefusedLocked(const std::string& peer,
                                                   const std::string& reason) {
  PeerState& st = StateLocked(peer);
  const std::string why = reason.substr(0, kMaxReasonBytes);
  audit::Entry e;
  e.type = audit::EntryType::kWitnessRefused;
  e.peer = peer;
  e.reason = absl::StrCat(peer, " refused to cosign our checkpoint: ", why);
  if (st.offered.has_value()) e.payload = st.offered->note;
  st.refusals_by_peer->Add(1);
  st.healthy->Set(0);
  log::Error("audit_witness_refused_by_peer", {{"peer", peer}, {"reason", why}});
  st.offered.reset();
  return AppendDurable(std::move(e));
}

absl::StatusOr<fed::WitnessResponse> CheckpointExchange::Serve(const std::string& peer,
                                                               const fed::WitnessRequest& request) {
  absl::MutexLock lock(&mu_);
  fed::WitnessResponse response;
  if (request.has_offer()) {
    ASSIGN_OR_RETURN(Verdict v, WitnessLocked(peer, request.offer()));
    if (!v.cosigned.empty()) response.set_cosigned(v.cosigned);
    if (v.conflict_size.has_value()) response.set_conflict_size(*v.conflict_size);
    if (!v.refusal.empty()) response.set_refusal(v.refusal);
  }
  if (!request.cosigned().empty()) {
    RETURN_IF_ERROR(AcceptCosignatureLocked(peer, request.cosigned()));
  } else if (!request.refusal().empty()) {
    RETURN_IF_ERROR(PeerRefusedLocked(peer, request.refusal()));
  }
  if (request.want_offer()) {
    std::optional<fed::CheckpointOffer> offer = OfferLocked(peer, request.witnessed_size());
    if (offer.has_value()) *response.mutable_offer() = *std::move(offer);
  }
  return response;
}

fed::WitnessRequest CheckpointExchange::Request(const std::string& peer) {
  absl::MutexLock lock(&mu_);
  PeerState& st = StateLocked(peer);
  fed::WitnessRequest request;
  std::optional<fed::CheckpointOffer> offer = OfferLocked(peer, st.cosigned_by);
  if (offer.has_value()) *request.mutable_offer() = *std::move(offer);
  request.set_want_offer(true);
  request.set_witnessed_size(st.witnessed.has_value() ? st.witnessed->size : 0);
  return request;
}

absl::StatusOr<std::optional<fed::WitnessRequest>> CheckpointExchange::OnResponse(
    const std::string& peer, const fed::WitnessResponse& response) {
  absl::MutexLock lock(&mu_);
  PeerState& st = StateLocked(peer);
  fed::WitnessRequest next;
  bool send = false;
  if (!response.cosigned().empty()) {
    RETURN_IF_ERROR(AcceptCosignatureLocked(peer, response.cosigned()));
  } else if (response.has_conflict_size()) {
    // The owner last cosigned another size of our log than we knew (we restarted, or it
    // did): offer again, proved from there.
    st.cosigned_by = response.conflict_size();
    std::optional<fed::CheckpointOffer> offer = OfferLocked(peer, st.cosigned_by);
    if (offer.has_value()) {
      *next.mutable_offer() = *std::move(offer);
      send = true;
    }
  } else if (!response.refusal().empty()) {
    RETURN_IF_ERROR(PeerRefusedLocked(peer, response.refusal()));
  }
  if (response.has_offer()) {
    ASSIGN_OR_RETURN(Verdict v, WitnessLocked(peer, response.offer()));
    if (!v.cosigned.empty()) {
      next.set_cosigned(v.cosigned);
      send = true;
    } else if (!v.refusal.empty()) {
      next.set_refusal(v.refusal);
      send = true;
    } else if (v.conflict_size.has_value()) {
      log::Warn("audit_witness_offer_conflict",
                {{"peer", peer},
                 {"offered_from", std::to_string(response.offer().old_size())},
                 {"we_cosigned", std::to_string(*v.conflict_size)}});
    }
  }
  if (!send) return std::nullopt;
  next.set_witnessed_size(st.witnessed.has_value() ? st.witnessed->size : 0);
  return next;
}

uint64_t CheckpointExchange::CosignedBy(const std::string& peer) const {
  absl::MutexLock lock(&mu_);
  auto it = peers_.find(peer);
  return it == peers_.end() ? 0 : it->second.cosigned_by;
}

uint64_t CheckpointExchange::WitnessedOf(const std::string& peer) const {
  absl::MutexLock lock(&mu_);
  auto it = peers_.find(peer);
  return it == peers_.end() || !it->second.witnessed.has_value() ? 0 : it->second.witnessed->size;
}

}  // namespace uop::broker
