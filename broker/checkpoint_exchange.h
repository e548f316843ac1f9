// Checkpoint witnessing over the federation protocol (docs/audit.md section 5, docs/protocol.md
// section 13): offers this node's signed checkpoints to its peers with a consistency proof from
// the last one each cosigned, cosigns theirs after audit::WitnessCheckpoint, and logs both sides
// (peer_checkpoint, cosignature, witness_refused). Sans-I/O: the gRPC service and the link only
// carry its requests and responses.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "audit/audit_log.h"
#include "audit/checkpoint.h"
#include "audit/entry.h"
#include "audit/keys.h"
#include "audit/merkle.h"
#include "core/metrics.h"
#include "uop/federation/v1/federation.pb.h"

namespace uop::broker {

// What the exchange reads of the node's own log, so that it is tested without files.
class WitnessedLog {
 public:
  virtual ~WitnessedLog() = default;
  virtual std::optional<audit::SignedCheckpoint> LatestCheckpoint() const = 0;
  // PROOF(old_size, new_size) over the log's entries (audit::AuditLog::ConsistencyProof).
  virtual absl::StatusOr<std::vector<audit::Hash>> ConsistencyProof(uint64_t old_size,
                                                                    uint64_t new_size) const = 0;
  // Index of the latest durable entry that is not witnessing (checkpoint, cosignature,
  // peer_checkpoint, witness_refused), if any: a checkpoint is offered only when it covers
  // something new, so that two idle nodes do not cosign each other's cosignatures for ever.
  virtual std::optional<uint64_t> LastActivity() const = 0;
};

// Limits on what a peer's offer may hold; beyond them the offer is refused unread.
inline constexpr size_t kMaxCheckpointNoteBytes = 8192;
inline constexpr int kMaxConsistencyProofHashes = 64;

// Thread-safe; the calls that append (Serve, OnResponse) block until the entries are durable,
// so they run on worker threads, never on gRPC reactor threads. `self`, `sink`, `log`, `metrics`
// and `clock` must outlive it.
class CheckpointExchange {
 public:
  CheckpointExchange(const audit::Signer* self, std::map<std::string, audit::Verifier> peer_keys,
                     audit::AuditSink* sink, const WitnessedLog* log, core::Metrics* metrics,
                     audit::Clock* clock = audit::Clock::Real());

  // Replays one entry of the node's own log at start (in log order): what each peer last
  // cosigned of ours (cosignature) and what we last cosigned of theirs (peer_checkpoint).
  void Restore(const audit::Entry& entry);

  bool HasPeer(const std::string& peer) const { return peer_keys_.contains(peer); }

  // Owner side: the answer to `request` from `peer` (whose audit key must be configured).
  // Fails only when our own log cannot record the exchange.
  absl::StatusOr<uop::federation::v1::WitnessResponse> Serve(
      const std::string& peer, const uop::federation::v1::WitnessRequest& request);

  // Receiver side: the request that opens a round with `peer` (the owner).
  uop::federation::v1::WitnessRequest Request(const std::string& peer);
  // Receiver side: handles the owner's answer; returns the request that completes the round (our
  // cosignature of its checkpoint, or our offer again after a conflict), if one is needed.
  absl::StatusOr<std::optional<uop::federation::v1::WitnessRequest>> OnResponse(
      const std::string& peer, const uop::federation::v1::WitnessResponse& response);

  // Sizes, for tests and status: of our log that `peer` last cosigned, of its log we did.
  uint64_t CosignedBy(const std::string& peer) const;
  uint64_t WitnessedOf(const std::string& peer) const;

 private:
  struct PeerState {
    uint64_t cosigned_by = 0;                        // size of our log the peer last cosigned
    std::optional<audit::Checkpoint> witnessed;      // the peer's checkpoint we last cosigned
    std::optional<audit::SignedCheckpoint> offered;  // ours, awaiting the peer's cosignature
    core::MetricValue* refusals_by_us = nullptr;
    core::MetricValue* refusals_by_peer = nullptr;
    core::MetricValue* cosigned_gauge = nullptr;
    core::MetricValue* witnessed_gauge = nullptr;
    core::MetricValue* healthy = nullptr;
  };
  struct Verdict {
    std::string cosigned;
    std::optional<uint64_t> conflict_size;
    std::string refusal;
  };

  PeerState& StateLocked(const std::string& peer) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Our latest checkpoint for `peer` when it covers new activity, proved from old_size.
  std::optional<uop::federation::v1::CheckpointOffer> OfferLocked(const std::string& peer,
                                                                  uint64_t old_size)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Verdict> WitnessLocked(const std::string& peer,
                                        const uop::federation::v1::CheckpointOffer& offer)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status AcceptCosignatureLocked(const std::string& peer, const std::string& note)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status PeerRefusedLocked(const std::string& peer, const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status AppendDurable(audit::Entry entry);

  const audit::Signer* self_;
  const std::map<std::string, audit::Verifier> peer_keys_;
  audit::AuditSink* sink_;
  const WitnessedLog* log_;
  core::Metrics* metrics_;
  audit::Clock* clock_;

  // Held across appends: one exchange step at a time, so state and log stay in step.
  mutable absl::Mutex mu_;
  std::map<std::string, PeerState> peers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace uop::broker
