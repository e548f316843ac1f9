// The node's audit log as the broker uses it (docs/audit.md): opens the log with the node's key,
// knows the peers' audit keys, counts appends and failures in metrics, logs when the log stops or
// resumes being writable (the log probes by itself), and runs the log's timer (checkpoints every T
// seconds, checks of an idle log). Sessions write through the audit::AuditSink interface it
// implements.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "audit/audit_log.h"
#include "audit/keys.h"
#include "broker/checkpoint_exchange.h"
#include "broker/config.h"
#include "core/metrics.h"
#include "google/protobuf/repeated_ptr_field.h"

namespace uop::broker {

// Thread-safe.
class NodeAudit final : public audit::AuditSink, public WitnessedLog {
 public:
  // Opens (or creates) the log of `config.audit`, which must be set.
  static absl::StatusOr<std::unique_ptr<NodeAudit>> Open(const NodeConfig& config,
                                                         core::Metrics* metrics);
  ~NodeAudit() override;

  // `done` never runs on the calling thread (an immediate failure is reported from the timer
  // thread), so callers may append while holding locks their `done` takes.
  void Append(audit::Entry entry, Done done) override;
  absl::Status Health() const override;
  // Blocks until durable; not for reactor threads.
  absl::StatusOr<audit::AppendResult> AppendAndWait(audit::Entry entry);
  // Appends and does not wait; a failure is counted and logged, nothing else.
  void AppendAsync(audit::Entry entry);
  // For evidence that must reach the log although the exchange stops (a verified receipt of a
  // batch the receiver has already committed): when the log cannot write, keeps `entry` in
  // memory (up to kMaxRetained) and appends it once the log can write again; `done` runs then.
  // `done` fails only if the node stops first or too many entries wait.
  void AppendRetained(audit::Entry entry, Done done);
  static constexpr size_t kMaxRetained = 1 << 14;

  const audit::Signer& signer() const { return *signer_; }
  audit::AuditLog* log() { return log_.get(); }
  // The configured audit key of `peer`, or null.
  const audit::Verifier* PeerKey(const std::string& peer) const;
  // Receipts sent again (docs/protocol.md, Subscribe.committed_receipts). Receiver side: the
  // receipts of our latest committed batches of `owner`'s partition (at most kResendPerPartition,
  // ending at or below `held_through`, the highest origin offset our Kafka holds), signed now
  // from their batch_received entries; none without the owner's audit key.
  std::vector<std::string> ResendableReceipts(const std::string& owner, const std::string& topic,
                                              int32_t partition, int64_t held_through);
  // Owner side: logs each receipt of `receipts` from `peer` that verifies and names a batch_sent
  // of ours without a receipt entry; ignores the others (logged already, or unknown). Blocks on
  // the log. Returns how many it logged.
  size_t AcceptResentReceipts(const std::string& peer, const std::string& topic,
                              const google::protobuf::RepeatedPtrField<std::string>& receipts);
  static constexpr size_t kResendPerPartition = 64;
  static constexpr size_t kUnreceiptedPerPartition = 256;

  // Checkpoint witnessing with the peers whose audit key is configured (state restored from the
  // log at Open).
  CheckpointExchange* exchange() { return exchange_.get(); }

  // WitnessedLog
  std::optional<audit::SignedCheckpoint> LatestCheckpoint() const override;
  absl::StatusOr<std::vector<audit::Hash>> ConsistencyProof(uint64_t old_size,
                                                            uint64_t new_size) const override;
  std::optional<uint64_t> LastActivity() const override;

 private:
  NodeAudit(std::shared_ptr<const audit::Signer> signer, core::Metrics* metrics);
  void Run();  // the timer thread
  void Observe(audit::EntryType type, const absl::StatusOr<audit::AppendResult>& result);
  // On the log's commit thread, whenever its health changes: metrics and logs at once.
  void HealthChanged(const absl::Status& health);
  void RunDeferred();  // runs what deferred_ holds, without mu_

  std::shared_ptr<const audit::Signer> signer_;
  std::map<std::string, audit::Verifier> peer_keys_;
  std::unique_ptr<audit::AuditLog> log_;
  std::unique_ptr<CheckpointExchange> exchange_;
  // Per peer: entries of ours other than witnessing that it has not cosigned yet, from the
  // exchange's gauge of what it cosigned (lock-free: updated on the commit thread too).
  struct WitnessGauges {
    core::MetricValue* cosigned;
    core::MetricValue* unwitnessed;
  };
  std::map<std::string, WitnessGauges> witness_gauges_;
  void RefreshUnwitnessed();
  std::atomic<int64_t> last_activity_{-1};  // index of the latest non-witnessing entry; -1 none
  core::MetricValue* writable_;
  core::MetricValue* entries_;
  core::MetricValue* errors_;
  core::MetricValue* outages_;
  core::MetricValue* size_;
  bool unwritable_ = false;  // owned by the log's commit thread (HealthChanged)

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Completions the log reported on the appending thread (an immediate failure): run on the
  // timer thread instead, since callers append while holding their own locks.
  std::vector<absl::AnyInvocable<void() &&>> deferred_ ABSL_GUARDED_BY(mu_);
  struct Retained {
    audit::Entry entry;
    Done done;
  };
  std::vector<Retained> retained_ ABSL_GUARDED_BY(mu_);  // AppendRetained while unwritable

  // What re-sending receipts needs, per (peer, origin topic, partition), by first offset: the
  // owner's batch_sent entries that have no receipt entry yet, and the receiver's latest
  // batch_received entries. Bounded; filled from the log at Open and by Append.
  void NoteInBook(const audit::Entry& entry);
  using BookKey = std::tuple<std::string, std::string, int32_t>;
  absl::Mutex book_mu_;
  std::map<BookKey, std::map<int64_t, audit::Entry>> unreceipted_ ABSL_GUARDED_BY(book_mu_);
  std::map<BookKey, std::map<int64_t, audit::Entry>> received_ ABSL_GUARDED_BY(book_mu_);
  std::thread thread_;
};

}  // namespace uop::broker
