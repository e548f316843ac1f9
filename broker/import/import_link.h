// The receiver side of federation: one PeerLink per peer we pull from. Its cost grows with peers
// and datasets, not with partitions:
//  - one Kafka consumer group per link (`uop-import.<node>.<peer>`) on all its mirror topics,
//    whose assignment says which origin partitions this node pulls (the nodes of a city that
//    share a node name share the work; partitions are paused and never read);
//  - one gRPC stream per dataset, covering every partition of it this node holds, driven by
//    gRPC's callback API (no thread per stream);
//  - one transactional producer per link (LinkWriter), whose transactions carry the batches of
//    all datasets queued at that moment, with the positions as the group's offsets: a writer
//    whose group generation is gone cannot commit (KIP-447);
//  - a fixed handful of threads per link: offers, group + timers, writer, two setup workers.
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "broker/config.h"
#include "broker/import/import_audit.h"
#include "broker/import/import_session.h"
#include "broker/import/kafka_transactional_sink.h"
#include "broker/node_audit.h"
#include "broker/peer_identity.h"
#include "core/backoff.h"
#include "core/metrics.h"
#include "core/thread_pool.h"
#include "kafka/client.h"
#include "policy/policy_snapshot.h"
#include "uop/federation/v1/federation.grpc.pb.h"

namespace uop::broker {

class LinkWriter;
class RecoveryReader;
class ReplicateCall;

// What a stream needs from its link; all outlive the stream.
struct LinkContext {
  const NodeConfig* config = nullptr;
  const PeerConfig* peer = nullptr;
  std::shared_ptr<grpc::Channel> channel;
  kafka::Env* kafka = nullptr;
  core::Metrics* metrics = nullptr;
  LinkWriter* writer = nullptr;
  core::ThreadPool* setup = nullptr;   // recovery and subscription work
  RecoveryReader* recovery = nullptr;  // the link's recovery clients
  // Set once the link stops: recoveries still queued or retrying end at once, so that stopping a
  // hundred streams one after the other does not wait for each one's lookups.
  const std::atomic<bool>* link_stopping = nullptr;
  NodeAudit* audit = nullptr;  // null: no audit log
  // This node's rules in force (the accept stage); null: accept everything offered.
  std::function<std::shared_ptr<const policy::PolicySnapshot>()> policies;
  // Origin partitions the link pulls, all datasets together: streams share the link's receive
  // buffer (link.receive_buffer_bytes) by partitions. Null: a stream has the buffer to itself.
  const std::atomic<int>* link_partitions = nullptr;
};

// One Replicate stream: one dataset, the partitions of it this node holds. Attempts follow each
// other until Stop(): recover (setup pool) -> subscribe -> stream; an attempt that ends waits out
// a jittered backoff, then starts over from recovery. Thread-safe.
class ImportStream {
 public:
  ImportStream(const LinkContext& link, uop::federation::v1::DatasetOffer offer,
               std::vector<int32_t> partitions);
  ~ImportStream();
  ImportStream(const ImportStream&) = delete;
  ImportStream& operator=(const ImportStream&) = delete;

  void Start();
  // Returns when no attempt runs any more and the writer no longer touches this stream: a
  // transaction being committed is finished first (bounded by the Kafka timeouts).
  void Stop();
  // Timers (heartbeats, dead peer, subscribe deadline, restart after backoff); called often.
  void Tick(absl::Time now);

  const std::vector<int32_t>& partitions() const { return partitions_; }
  int streaming_partitions() const {
    return streaming_.load() ? static_cast<int>(partitions_.size()) : 0;
  }
  // The owner ended the stream because the share was revoked or is outside its validity window:
  // no new attempt until Readmit().
  bool withdrawn() const { return withdrawn_.load(); }
  // The owner offers the dataset again: the next attempt starts now.
  void Readmit();
  int64_t lag_records() const { return lag_records_.load(); }
  double lag_seconds() const { return lag_seconds_.load(); }

  // For the LinkWriter, which serialises these (one transaction at a time).
  bool HasQueued();
  absl::Status Stage(TransactionalSink* sink, Positions* positions);
  absl::Status Record(AuditSink* audit);
  void Committed();
  void StageFailed(const absl::Status& cause, const std::vector<RefusedRecord>& late);

 private:
  friend class ReplicateCall;
  enum class State { kIdle, kRecovering, kSubscribing, kStreaming, kEnding, kBackoff, kStopped };

  void Setup();  // on the setup pool
  // The byte window this stream grants now (docs/configuration.md, link.receive_buffer_bytes).
  int64_t WindowBytes() const;
  absl::StatusOr<std::map<int32_t, core::PartitionCheckpoint>> Recover();
  // From the call's callbacks: queued in the inbox, applied at once only if the stream's mutex
  // is free (gRPC's callback threads never wait for it).
  void OnMessage(uint64_t attempt, uop::federation::v1::OwnerMessage&& message)
      ABSL_LOCKS_EXCLUDED(mu_, inbox_mu_);
  struct Drained {
    bool wake = false;                      // batches queued: wake the writer
    std::shared_ptr<ReplicateCall> cancel;  // a violation ended the call
  };
  // Applies every queued owner message of the current attempt; the caller acts on the result
  // with AfterDrain once it has released mu_.
  Drained DrainInboxLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) ABSL_LOCKS_EXCLUDED(inbox_mu_);
  void ApplyLocked(uop::federation::v1::OwnerMessage&& message, Drained* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AfterDrain(const Drained& drained) ABSL_LOCKS_EXCLUDED(mu_);
  void OnCallDone(const grpc::Status& status);
  // The attempt is over: logs why and schedules the next one (unless stopping).
  void FinishAttemptLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends the current attempt with `cause` (first cause wins). Requires mu_.
  // Ends the attempt; `flush_acks`: after writing what is queued (see StageFailed).
  void FailLocked(const absl::Status& cause, bool flush_acks = false)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendLocked(uop::federation::v1::ReceiverMessage message) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PublishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const LinkContext link_;
  const uop::federation::v1::DatasetOffer offer_;
  const std::vector<int32_t> partitions_;
  const std::string mirror_topic_;
  const std::string deadletter_topic_;
  const std::string partitions_label_;

  core::MetricValue* records_written_;
  core::MetricValue* batches_written_;
  core::MetricValue* duplicates_dropped_;
  core::MetricValue* deadlettered_;
  core::MetricValue* reconnects_;
  core::MetricValue* transactions_;
  std::atomic<bool> streaming_{false};
  std::atomic<bool> withdrawn_{false};
  std::atomic<int64_t> lag_records_{0};
  std::atomic<double> lag_seconds_{0};

  absl::Mutex mu_;
  State state_ ABSL_GUARDED_BY(mu_) = State::kIdle;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool setup_running_ ABSL_GUARDED_BY(mu_) = false;
  core::Backoff backoff_ ABSL_GUARDED_BY(mu_);
  absl::Time retry_at_ ABSL_GUARDED_BY(mu_);
  absl::Status failure_ ABSL_GUARDED_BY(mu_);  // why the current attempt ends
  bool progressed_ ABSL_GUARDED_BY(mu_) = false;
  // The session of the current attempt; replaced only with the writer's lock held too.
  std::unique_ptr<ImportSession> session_ ABSL_GUARDED_BY(mu_);
  ImportSession::Stats reported_ ABSL_GUARDED_BY(mu_);
  RefusedRecords refused_ ABSL_GUARDED_BY(mu_);  // across attempts
  std::shared_ptr<ReplicateCall> call_ ABSL_GUARDED_BY(mu_);
  uint64_t attempts_ ABSL_GUARDED_BY(mu_) = 0;
  // Owner messages not yet applied, tagged with their call's attempt. Taken after mu_.
  absl::Mutex inbox_mu_ ABSL_ACQUIRED_AFTER(mu_);
  std::deque<std::pair<uint64_t, uop::federation::v1::OwnerMessage>> inbox_
      ABSL_GUARDED_BY(inbox_mu_);
  absl::Time subscribe_deadline_ ABSL_GUARDED_BY(mu_);
  absl::Time last_heard_ ABSL_GUARDED_BY(mu_);
  absl::Time last_sent_ ABSL_GUARDED_BY(mu_);
};

// The link's transactional producer and the thread that writes: whenever streams have batches
// queued it begins one transaction, stages every such stream, commits with all their positions,
// then lets each record and acknowledge. Batches that arrive during a commit go into the next
// one, so transactions grow with load. Thread-safe.
class LinkWriter {
 public:
  LinkWriter(const NodeConfig& config, const PeerConfig& peer, kafka::Env* kafka,
             core::Metrics* metrics, KafkaTransactionalSink::GroupMetadata group_metadata,
             AuditSink* audit);
  ~LinkWriter();
  void Start();
  void Stop();

  void Register(ImportStream* stream);
  // Waits for a transaction that may include `stream` to finish.
  void Unregister(ImportStream* stream);
  // Something was queued.
  void Wake();
  // Runs `fn` on the writer thread between transactions (no transaction open, the producer
  // ready), and returns its result: for fencing partitions before recovery.
  absl::Status RunBetweenTransactions(std::function<absl::Status(KafkaTransactionalSink*)> fn);
  // Held while a transaction includes streams, and by whoever replaces a stream's session.
  absl::Mutex& write_mutex() ABSL_LOCK_RETURNED(write_mu_) { return write_mu_; }

 private:
  void Run();
  absl::Status EnsureSink() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  void WriteRound() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);

  const NodeConfig& config_;
  const PeerConfig& peer_;
  kafka::Env* kafka_;
  KafkaTransactionalSink::GroupMetadata group_metadata_;
  AuditSink* audit_;
  const std::string transactional_id_;
  core::MetricValue* transactions_;
  core::MetricValue* transaction_failures_;

  absl::Mutex write_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  std::unique_ptr<KafkaTransactionalSink> sink_ ABSL_GUARDED_BY(write_mu_);

  absl::Mutex mu_;
  std::set<ImportStream*> streams_ ABSL_GUARDED_BY(mu_);
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  struct Job {
    std::function<absl::Status(KafkaTransactionalSink*)> fn;
    std::optional<absl::Status> result;
  };
  std::vector<Job*> jobs_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

// Link to one peer that has an address: lists its offers, holds the import group, and runs an
// ImportStream per dataset with partitions assigned to this node.
class PeerLink {
 public:
  // `audit` (null: none) must outlive the link. `policies` gives this node's rules in force (its
  // accept rules' max_retention lowers the owner's retention).
  PeerLink(const NodeConfig& config, const PeerConfig& peer,
           const std::shared_ptr<const PeerAuthenticator>& auth, kafka::Env* kafka,
           core::Metrics* metrics, NodeAudit* audit,
           std::function<std::shared_ptr<const policy::PolicySnapshot>()> policies);
  ~PeerLink();
  void Start();
  void Stop();
  // GET /datasets: one JSON object per dataset this link receives, with the owner's terms.
  std::vector<std::string> DatasetsJson();

 private:
  struct Dataset {
    uop::federation::v1::DatasetOffer offer;
    std::set<int32_t> assigned;
    std::unique_ptr<ImportStream> stream;
    core::MetricValue* assigned_gauge;
    core::MetricValue* stream_up;
    core::MetricValue* lag_records;
    core::MetricValue* lag_seconds;
    bool offered = true;  // in the owner's last offers (a share that stopped is not)
    // retention.ms in force on the mirror topic: unset until applied; nullopt inside: default.
    std::optional<std::optional<int64_t>> retention_applied;
    std::string retention_note;  // why it is not applied, if not
  };

  void RunOffers();
  void RunGroup();
  // A unary call to the owner in flight, for its duration: Stop cancels it, so that a peer that
  // is slow to answer (up to the call's deadline) does not hold up our shutdown.
  class InFlight {
   public:
    InFlight(PeerLink* link, grpc::ClientContext* context) ABSL_LOCKS_EXCLUDED(link->mu_);
    ~InFlight() ABSL_LOCKS_EXCLUDED(link_->mu_);
    InFlight(const InFlight&) = delete;
    InFlight& operator=(const InFlight&) = delete;

   private:
    PeerLink* link_;
    grpc::ClientContext* context_;
  };
  // Checkpoint witnessing with the owner (when both keep audit logs): a round every
  // checkpoint_interval, carried by our Witness calls in both directions.
  void RunWitness();
  absl::Status GroupOnce();
  void OnAssigned(rd_kafka_t* consumer, rd_kafka_topic_partition_list_t* partitions);
  void OnRevoked(rd_kafka_t* consumer, rd_kafka_topic_partition_list_t* partitions);
  // Adds (`assigned`) or removes `partitions` from the datasets' assignments, and restarts the
  // stream of each dataset whose assignment changed.
  void ChangeAssignment(const rd_kafka_topic_partition_list_t& partitions, bool assigned)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Restarts the dataset's stream on its current assignment (none: no stream).
  void Reassign(Dataset* dataset) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PublishGroupMetadata(rd_kafka_t* consumer);
  void PublishMetrics() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The lower of the owner's retention and our max_retention, as retention.ms of the mirror and
  // dead-letter topics; set when it changes.
  void ApplyRetention(const uop::federation::v1::ListOffersResponse& offers)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Whether our accept rules take `dataset` from this peer: yes if one names it, or if none names
  // this peer at all (docs/policy.md). Logs a refusal once per dataset.
  bool Accepts(const std::string& dataset) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::optional<int64_t> EffectiveRetentionMs(const uop::federation::v1::DatasetOffer& offer);
  bool Stopping();

  const NodeConfig& config_;
  const PeerConfig& peer_;
  std::shared_ptr<grpc::Channel> channel_;
  kafka::Env* kafka_;
  core::Metrics* metrics_;
  const std::string group_id_;
  core::MetricValue* link_up_;
  core::MetricValue* offers_;
  NodeAudit* audit_;
  std::function<std::shared_ptr<const policy::PolicySnapshot>()> policies_;
  NoAuditSink no_audit_;
  std::unique_ptr<LogImportAudit> log_audit_;

  absl::Mutex metadata_mu_;
  std::string group_metadata_ ABSL_GUARDED_BY(metadata_mu_);

  std::unique_ptr<LinkWriter> writer_;
  std::unique_ptr<RecoveryReader> recovery_;  // outlives setup_, whose tasks use it
  std::unique_ptr<core::ThreadPool> setup_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<bool> stopping_flag_{false};  // stopping_, readable without mu_ (LinkContext)
  std::atomic<int> link_partitions_{0};     // assigned, all datasets (LinkContext)
  // Offered datasets whose topics exist, by origin topic; the group subscribes their mirrors.
  std::map<std::string, Dataset> datasets_ ABSL_GUARDED_BY(mu_);
  bool subscription_changed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time retention_retry_at_ ABSL_GUARDED_BY(mu_);  // after a failed AlterConfigs
  std::set<std::string> not_accepted_logged_ ABSL_GUARDED_BY(mu_);
  std::set<grpc::ClientContext*> in_flight_ ABSL_GUARDED_BY(mu_);  // see InFlight
  std::thread offers_thread_;
  std::thread group_thread_;
  std::thread witness_thread_;
};

}  // namespace uop::broker
