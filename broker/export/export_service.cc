// Owner side on gRPC's callback API: authenticate, authorize by policy, then one reactor per
// stream drives an ExportSession over a source on its peer's shared consumer (ConsumerPool).
// Reactor callbacks never block: Kafka setup runs on the setup workers, reading and batch
// cutting on the export workers.
#include "broker/export/export_service.h"

#include <algorithm>
#include <deque>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "broker/export/export_session.h"
#include "broker/export/policy_transform.h"
#include "broker/export/shared_consumer.h"
#include "core/log.h"
#include "core/provenance.h"

namespace uop::broker {

namespace fed = uop::federation::v1;

namespace {
// Long enough for a receiver to read what is in flight; then a finished stream that gRPC still
// holds (its peer stopped reading) is cancelled.
constexpr absl::Duration kFinishGrace = absl::Seconds(5);
// A receiver asks for its offers and then opens its streams, all within a second or two: they
// share one metadata snapshot. A partition count that grows is seen this much later at most.
constexpr absl::Duration kPartitionCountsMaxAge = absl::Seconds(2);
// A peer's consumer that no stream uses is kept this long for the peer's reconnect, then closed.
constexpr absl::Duration kIdleConsumerClose = absl::Seconds(30);
}  // namespace

// One Replicate stream. Owned by itself (self_) from Replicate() until OnDone, and by any task
// that runs for it; the last owner frees it on a worker thread, never inside a gRPC callback.
class ExportStream final : public grpc::ServerBidiReactor<fed::ReceiverMessage, fed::OwnerMessage>,
                           public std::enable_shared_from_this<ExportStream> {
 public:
  ExportStream(ExportService* service, grpc::CallbackServerContext* context)
      : service_(service), context_(context) {}

  void Begin() {
    self_ = shared_from_this();
    service_->Register(self_);
    StartRead(&read_msg_);
  }

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

  // Runs on an export worker: sends what the session has, or ends the stream.
  void Pump();
  // Schedules Pump() on an export worker unless one is pending.
  void Schedule();
  // Cancels a stream that was finished long ago but that gRPC could not close (peer not reading).
  void CancelIfStuck(absl::Time now);

 private:
  void Subscribe();  // runs on a setup worker
  absl::Status SetUp(const fed::Subscribe& sub);
  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EndLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CheckShare() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NoteRefusalsLocked(const fed::Ack& ack) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  ExportService* const service_;
  grpc::CallbackServerContext* const context_;
  std::shared_ptr<ExportStream> self_;
  fed::ReceiverMessage read_msg_;  // touched by gRPC read callbacks and Subscribe only
  bool subscribe_seen_ = false;    // read callbacks only
  std::atomic<bool> pump_pending_{false};

  absl::Mutex mu_;
  std::string peer_ ABSL_GUARDED_BY(mu_);
  std::string topic_ ABSL_GUARDED_BY(mu_);
  int partition_count_ ABSL_GUARDED_BY(mu_) = 0;
  std::shared_ptr<const policy::PolicySnapshot> snapshot_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<RecordSource> source_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<RecordTransform> transform_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<ExportSession> session_ ABSL_GUARDED_BY(mu_);
  fed::OwnerMessage write_msg_ ABSL_GUARDED_BY(mu_);
  uint64_t wire_seq_ ABSL_GUARDED_BY(mu_) = 0;  // the last batch started on the wire
  // Fail closed: the first batch_sent that failed, and until when Acks are still awaited.
  absl::Status audit_failure_ ABSL_GUARDED_BY(mu_);
  absl::Time drain_until_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  // With an audit log, batches wait here, in order with everything sent after them, until their
  // batch_sent entry is durable.
  struct Outgoing {
    uint64_t id;
    bool ready;
    fed::OwnerMessage message;
  };
  std::deque<Outgoing> outbox_ ABSL_GUARDED_BY(mu_);
  uint64_t outbox_ids_ ABSL_GUARDED_BY(mu_) = 0;
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time finished_at_ ABSL_GUARDED_BY(mu_);
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;        // OnDone ran: the call and its context are gone
  bool setting_up_ ABSL_GUARDED_BY(mu_) = false;  // Subscribe() runs and uses context_
  grpc::Status deferred_status_ ABSL_GUARDED_BY(mu_);  // an end that came during setting_up_
  core::MetricValue* streams_gauge_ ABSL_GUARDED_BY(mu_) = nullptr;
};

void ExportStream::OnReadDone(bool ok) {
  if (!ok) {  // the receiver half-closed its side, or the call is gone
    absl::MutexLock lock(&mu_);
    if (context_->IsCancelled()) {
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the peer cancelled the stream"));
    } else if (!subscribe_seen_) {
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "no subscribe"));
    } else if (session_ != nullptr) {
      FinishLocked(grpc::Status::OK);  // a half-close ends the stream normally
    }
    // else: Subscribe() is still setting up; it sees the end through the failing write.
    return;
  }
  if (!subscribe_seen_) {
    subscribe_seen_ = true;
    if (!read_msg_.has_subscribe()) {
      absl::MutexLock lock(&mu_);
      FinishLocked(
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "first message must be subscribe"));
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      setting_up_ = true;
    }
    service_->setup_workers_.Post([self = shared_from_this()] { self->Subscribe(); });
    return;  // the next read starts once the session exists
  }
  absl::MutexLock lock(&mu_);
  if (finished_) return;
  std::vector<audit::Entry> to_log;
  absl::Status s = session_->OnReceiverMessage(read_msg_, &to_log);
  if (!to_log.empty() && service_->audit_ != nullptr) {
    const uint64_t through = session_->acked_through();
    const bool receipts = s.ok();
    auto remaining = std::make_shared<std::atomic<size_t>>(to_log.size());
    auto failed = std::make_shared<std::atomic<bool>>(false);
    // Retained while the log cannot write: the receiver has committed these batches, and their
    // receipts are the owner's only proof of it (the next stream will not send them again).
    for (audit::Entry& e : to_log) {
      service_->audit_->AppendRetained(
          std::move(e), [self = shared_from_this(), through, receipts, remaining,
                         failed](const absl::StatusOr<audit::AppendResult>& r) {
            if (!r.ok()) failed->store(true);
            if (remaining->fetch_sub(1) != 1) return;
            absl::MutexLock lock(&self->mu_);
            if (failed->load()) {
              self->FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                              "audit log cannot write: receipts not logged"));
            } else if (receipts && self->session_ != nullptr) {
              self->session_->ReceiptsLogged(through);  // delivered from here on
            }
          });
    }
  }
  if (!s.ok()) {
    log::Warn("export_protocol_violation",
              {{"peer", peer_}, {"topic", topic_}, {"reason", std::string(s.message())}});
    FinishLocked(ToGrpcStatus(s));
    return;
  }
  if (read_msg_.has_ack() && read_msg_.ack().refusals_size() > 0)
    NoteRefusalsLocked(read_msg_.ack());
  StartRead(&read_msg_);
  if (!write_in_flight_) Schedule();
}

void ExportStream::NoteRefusalsLocked(const fed::Ack& ack) {
  // The receiver's accept rules refused these records: counted, logged and audited here, so the
  // owner's admins see what their peer would not take (docs/protocol.md).
  std::map<std::string, int> by_reason;
  for (const fed::RecordRefusal& r : ack.refusals()) {
    ++by_reason[r.reason()];
    if (service_->audit_ != nullptr) {
      audit::Entry e;
      e.type = audit::EntryType::kBatchRefused;
      e.peer = peer_;
      e.dataset = topic_;
      e.topic = topic_;
      e.partition = r.partition();
      e.first_offset = r.offset();
      e.last_offset = r.offset();
      e.record_count = 1;
      e.policy_version = snapshot_->version();
      e.reason = absl::StrCat("refused by the receiver's accept rule: ", r.reason(),
                              r.detail().empty() ? "" : ": ", r.detail());
      service_->audit_->AppendAsync(std::move(e));
    }
  }
  for (const auto& [reason, n] : by_reason) {
    service_->metrics_
        ->Counter("uop_export_refused_by_peer_total",
                  "Records the peer's accept rules refused (they went to its dead-letter topic)",
                  {{"peer", peer_}, {"topic", topic_}, {"reason", reason}})
        ->Add(n);
  }
  const fed::RecordRefusal& first = ack.refusals(0);
  log::Warn("export_refused_by_peer", {{"peer", peer_},
                                       {"topic", topic_},
                                       {"records", std::to_string(ack.refusals_size())},
                                       {"first_partition", std::to_string(first.partition())},
                                       {"first_offset", std::to_string(first.offset())},
                                       {"reason", first.reason()},
                                       {"detail", first.detail()}});
}

void ExportStream::OnWriteDone(bool ok) {
  absl::MutexLock lock(&mu_);
  write_in_flight_ = false;
  if (!ok) {
    FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the peer cancelled the stream"));
    return;
  }
  Schedule();
}

void ExportStream::OnCancel() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the peer cancelled the stream"));
}

void ExportStream::OnDone() {
  {
    absl::MutexLock lock(&mu_);
    done_ = true;  // context_ is gone from here on
  }
  service_->Unregister(this);
  // The last reference may own a Kafka consumer whose close blocks: drop it on a worker.
  service_->setup_workers_.Post([self = std::move(self_)] {});
}

void ExportStream::Schedule() {
  if (pump_pending_.exchange(true)) return;
  service_->workers_.Post([self = shared_from_this()] { self->Pump(); });
}

void ExportStream::CancelIfStuck(absl::Time now) {
  absl::MutexLock lock(&mu_);
  if (finished_ && !done_ && !cancelled_ && now - finished_at_ > kFinishGrace) {
    cancelled_ = true;
    context_->TryCancel();
  }
}

void ExportStream::FinishLocked(const grpc::Status& status) {
  if (finished_) return;
  finished_ = true;
  finished_at_ = absl::Now();
  if (setting_up_) {
    // Subscribe() is still using context_ on a setup worker: gRPC frees the call (OnDone) once
    // it is finished, so Finish waits until Subscribe() is done with it.
    deferred_status_ = status;
    return;
  }
  EndLocked(status);
}

void ExportStream::EndLocked(const grpc::Status& status) {
  Finish(status);
  if (streams_gauge_ != nullptr) streams_gauge_->Add(-1);
  if (!peer_.empty()) {
    log::Info("export_stream_ended", {{"peer", peer_},
                                      {"topic", topic_},
                                      {"code", std::to_string(status.error_code())},
                                      {"status", status.ok() ? "ok" : status.error_message()}});
  }
}

absl::Status ExportStream::CheckShare() {
  // At a record boundary: nothing after this is read under rules no longer in force.
  std::shared_ptr<const policy::PolicySnapshot> current = service_->policies_();
  const policy::Share* now_share = current->FindShare(topic_, peer_);
  if (now_share == nullptr) {
    return absl::PermissionDeniedError(absl::StrCat("dataset '", topic_,
                                                    "' is no longer shared with peer '", peer_,
                                                    "' (policy ", current->version(), ")"));
  }
  const absl::Time now = absl::Now();
  switch (current->StateAt(topic_, peer_, now)) {
    case policy::ShareState::kActive:
      break;
    case policy::ShareState::kExpired:
      return absl::FailedPreconditionError(absl::StrCat(
          "the share of dataset '", topic_, "' with peer '", peer_, "' expired at ",
          absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", *now_share->valid_until, absl::UTCTimeZone()),
          " (policy ", current->version(), ")"));
    default:
      return absl::FailedPreconditionError(
          absl::StrCat("the share of dataset '", topic_, "' with peer '", peer_,
                       "' is not valid now (policy ", current->version(), ")"));
  }
  if (current == snapshot_) return absl::OkStatus();
  const policy::Share* mine = snapshot_->FindShare(topic_, peer_);
  if (mine != nullptr && mine->canonical == now_share->canonical) {
    // Other rules changed, not this share's: the stream goes on under identical rules.
    return absl::OkStatus();
  }
  return absl::AbortedError(absl::StrCat("the sharing rules of dataset '", topic_, "' with peer '",
                                         peer_, "' changed (policy ", snapshot_->version(), " -> ",
                                         current->version(),
                                         "): subscribe again to resume under the new rules"));
}

void ExportStream::Pump() {
  pump_pending_.store(false);
  absl::MutexLock lock(&mu_);
  if (finished_ || session_ == nullptr) return;
  if (service_->stopping()) {
    FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "owner node is shutting down"));
    return;
  }
  if (absl::Status s = CheckShare(); !s.ok()) {
    const char* event = s.code() == absl::StatusCode::kPermissionDenied ? "export_share_revoked"
                        : s.code() == absl::StatusCode::kAborted        ? "export_share_changed"
                                                                        : "export_share_stopped";
    log::Warn(event, {{"peer", peer_}, {"topic", topic_}, {"reason", std::string(s.message())}});
    FinishLocked(ToGrpcStatus(s));
    return;
  }
  NodeAudit* audit = service_->audit_;
  if (audit != nullptr) {
    absl::Status h = audit_failure_.ok() ? audit->Health() : audit_failure_;
    if (!h.ok()) {
      // Fail closed: nothing more goes out unrecorded. The Acks of batches already on the wire
      // are still read (up to the dead-peer timeout): the receiver may have committed them, and
      // their receipts, kept until the log can write, are the only proof of it.
      const absl::Time now = absl::Now();
      if (drain_until_ == absl::InfiniteFuture()) {
        drain_until_ = now + absl::FromChrono(service_->config_.link.dead_peer_timeout);
        log::Warn("export_audit_unwritable",
                  {{"peer", peer_}, {"topic", topic_}, {"reason", std::string(h.message())}});
      }
      if (session_->acked_through() < wire_seq_ && now < drain_until_) return;
      FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, std::string(h.message())));
      return;
    }
  }
  if (write_in_flight_) return;  // OnWriteDone schedules the next round
  if (!outbox_.empty() && outbox_.front().ready) {
    write_msg_ = std::move(outbox_.front().message);
    outbox_.pop_front();
    if (write_msg_.has_batch()) wire_seq_ = write_msg_.batch().batch_seq();
    write_in_flight_ = true;
    StartWrite(&write_msg_);
    return;
  }
  std::optional<audit::Entry> sent;
  absl::StatusOr<std::optional<fed::OwnerMessage>> next =
      session_->Next(audit != nullptr ? &sent : nullptr);
  if (!next.ok()) {
    log::Warn(
        "export_stream_failed",
        {{"peer", peer_}, {"topic", topic_}, {"reason", std::string(next.status().message())}});
    FinishLocked(ToGrpcStatus(next.status()));
    return;
  }
  if (!next->has_value()) return;  // idle: a record, a read or the ticker schedules us again
  if (sent.has_value()) {
    // The batch goes out once its batch_sent entry is durable; meanwhile the next is cut.
    const uint64_t id = ++outbox_ids_;
    outbox_.push_back({id, false, std::move(**next)});
    audit->Append(*std::move(sent),
                  [self = shared_from_this(), id](const absl::StatusOr<audit::AppendResult>& r) {
                    absl::MutexLock lock(&self->mu_);
                    if (!r.ok()) {
                      // Not sent, nor anything after it; Pump ends the stream once the
                      // batches already sent are acknowledged.
                      if (self->audit_failure_.ok()) self->audit_failure_ = r.status();
                      self->Schedule();
                      return;
                    }
                    for (Outgoing& o : self->outbox_) {
                      if (o.id == id) o.ready = true;
                    }
                    self->Schedule();
                  });
    Schedule();
    return;
  }
  if (!outbox_.empty()) {
    // After batches still waiting for the log (a heartbeat must not overtake them).
    outbox_.push_back({++outbox_ids_, true, std::move(**next)});
    return;
  }
  write_msg_ = std::move(**next);
  write_in_flight_ = true;
  StartWrite(&write_msg_);
}

void ExportStream::Subscribe() {
  const fed::Subscribe& sub = read_msg_.subscribe();
  absl::Status status = SetUp(sub);
  absl::MutexLock lock(&mu_);
  setting_up_ = false;
  if (finished_) {  // ended (cancelled, stopping) while we set up: finish it now
    EndLocked(deferred_status_);
    return;
  }
  if (!status.ok()) {
    FinishLocked(ToGrpcStatus(status));
    return;
  }
  if (service_->stopping()) {
    FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "owner node is shutting down"));
    return;
  }
  fed::OwnerMessage subscribed;
  fed::Subscribed* s = subscribed.mutable_subscribed();
  s->mutable_hello()->set_node(service_->config_.node);
  s->mutable_hello()->set_protocol_version(kProtocolVersion);
  s->mutable_hello()->set_software(std::string(kSoftware));
  s->set_topic(topic_);
  s->set_partitions(partition_count_);
  s->set_policy_version(snapshot_->version());
  write_msg_ = std::move(subscribed);
  write_in_flight_ = true;
  StartWrite(&write_msg_);
  StartRead(&read_msg_);  // from now on: credit, acks and heartbeats
}

absl::Status ExportStream::SetUp(const fed::Subscribe& sub) {
  absl::StatusOr<std::string> peer = service_->AuthenticateCall(context_, sub.hello());
  if (!peer.ok()) {
    log::Warn("subscribe_refused",
              {{"client", context_->peer()}, {"reason", std::string(peer.status().message())}});
    service_->AuditRefused(context_, peer.status());
    return peer.status();
  }
  const std::string& topic = sub.topic();
  std::shared_ptr<const policy::PolicySnapshot> snapshot = service_->policies_();
  const core::Labels labels = {{"peer", *peer}, {"topic", topic}};
  core::Metrics* metrics = service_->metrics_;
  if (!snapshot->Allows(topic, *peer)) {
    metrics->Counter("uop_export_refused_total", "Subscriptions refused by policy", labels)->Add(1);
    log::Warn("subscribe_denied",
              {{"peer", *peer}, {"topic", topic}, {"policy", snapshot->version()}});
    return absl::PermissionDeniedError(
        absl::StrCat("dataset '", topic, "' is not shared with peer '", *peer, "'"));
  }
  absl::StatusOr<int> partition_count = service_->partition_counts_.Count(topic);
  if (!partition_count.ok()) return partition_count.status();

  const LinkTuning& tuning = service_->config_.link;
  ExportCounters counters{
      metrics->Counter("uop_export_records_total", "Records sent to peers", labels),
      metrics->Counter("uop_export_bytes_total", "Serialized record batch bytes sent to peers",
                       labels),
      metrics->Counter("uop_export_batches_total", "Batches sent", labels),
      metrics->Counter("uop_export_acked_records_total",
                       "Records the peer acknowledged as durably written", labels),
      metrics->Counter("uop_export_loop_skipped_total",
                       "Records not exported because they came from a peer", labels),
      metrics->Counter("uop_export_withheld_total", "Records the sharing rules withheld", labels)};
  // The share's rules for this stream, on the snapshot it was authorised under: a reload takes
  // effect on the next stream (at a record boundary, resumed from the receiver's tokens).
  std::unique_ptr<RecordTransform> transform;
  const policy::Share* share = snapshot->FindShare(topic, *peer);
  if (share == nullptr || (share->identity() && !share->valid_from.has_value() &&
                           !share->valid_until.has_value() && !share->retention.has_value())) {
    // Unchanged bytes (a rate limit is the session's, not the transform's).
    transform = std::make_unique<IdentityTransform>();
  } else {
    absl::StatusOr<std::unique_ptr<PolicyTransform>> t =
        PolicyTransform::Create(snapshot, topic, *peer, core::Clock::Real(), metrics);
    if (!t.ok()) return t.status();
    transform = *std::move(t);
  }
  std::vector<PartitionStartOffset> starts;
  std::vector<int32_t> partitions;
  if (sub.partitions().empty()) {
    for (int p = 0; p < *partition_count; ++p) {
      absl::StatusOr<int64_t> offset = transform->Start(p, "");
      if (!offset.ok()) return offset.status();
      starts.push_back({p, *offset});
    }
  }
  for (const fed::PartitionStart& start : sub.partitions()) {
    if (start.partition() < 0 || start.partition() >= *partition_count) {
      return absl::InvalidArgumentError(
          absl::StrCat("partition ", start.partition(), " out of range 0..", *partition_count - 1));
    }
    for (const PartitionStartOffset& s : starts) {
      if (s.partition == start.partition()) {
        return absl::InvalidArgumentError(
            absl::StrCat("partition ", start.partition(), " listed twice"));
      }
    }
    absl::StatusOr<int64_t> offset = transform->Start(start.partition(), start.resume_token());
    if (!offset.ok()) return offset.status();
    starts.push_back({start.partition(), *offset});
  }
  partitions.reserve(starts.size());
  for (const PartitionStartOffset& s : starts) partitions.push_back(s.partition);

  std::weak_ptr<ExportStream> weak = weak_from_this();
  core::ThreadPool* workers = &service_->workers_;
  absl::StatusOr<std::unique_ptr<RecordSource>> source =
      service_->consumers_.Open(*peer, topic, starts, [workers, weak] {
        // From a librdkafka thread: only hand over to a worker (which may free the stream).
        workers->Post([weak] {
          if (auto self = weak.lock()) self->Schedule();
        });
      });
  if (!source.ok()) return source.status();

  ExportSession::Options options;
  options.batch_max_records = tuning.batch_max_records;
  options.batch_max_bytes = tuning.batch_max_bytes;
  options.heartbeat_interval = absl::FromChrono(tuning.heartbeat_interval);
  options.dead_peer_timeout = absl::FromChrono(tuning.dead_peer_timeout);
  if (share != nullptr) options.records_per_s = share->records_per_s;
  if (NodeAudit* audit = service_->audit_; audit != nullptr) {
    if (absl::Status h = audit->Health(); !h.ok()) return absl::UnavailableError(h.message());
    options.audit = true;
    // Receipts are required from peers whose audit key we have (docs/protocol.md).
    options.receiver_key = audit->PeerKey(*peer);
    // Receipts of batches committed before a crash that our log has no receipt for.
    if (options.receiver_key != nullptr && sub.committed_receipts_size() > 0) {
      audit->AcceptResentReceipts(*peer, topic, sub.committed_receipts());
    }
    options.node = service_->config_.node;
    options.peer = *peer;
    options.topic = topic;
  }
  absl::MutexLock lock(&mu_);
  peer_ = *peer;
  topic_ = topic;
  partition_count_ = *partition_count;
  snapshot_ = snapshot;
  source_ = *std::move(source);
  transform_ = std::move(transform);
  session_ = std::make_unique<ExportSession>(options, snapshot->version(), partitions,
                                             sub.initial_credit(), source_.get(), transform_.get(),
                                             core::Clock::Real(), counters);
  streams_gauge_ = metrics->Gauge("uop_export_streams", "Open export streams", {{"peer", peer_}});
  streams_gauge_->Add(1);
  log::Info("export_stream_started", {{"peer", peer_},
                                      {"topic", topic_},
                                      {"partitions", std::to_string(partitions.size())},
                                      {"policy", snapshot->version()}});
  return absl::OkStatus();
}

int64_t StreamReadAhead(const LinkTuning& link, size_t shared_datasets) {
  constexpr int64_t kMinReadAhead = 1 << 20;
  const auto n = static_cast<int64_t>(std::max<size_t>(1, shared_datasets));
  return std::min(link.read_ahead_bytes, std::max(link.export_buffer_bytes / n, kMinReadAhead));
}

ExportService::ExportService(const NodeConfig& config,
                             std::shared_ptr<const PeerAuthenticator> auth, PolicyProvider policies,
                             kafka::Env* kafka, core::Metrics* metrics, NodeAudit* audit)
    : config_(config),
      auth_(std::move(auth)),
      policies_(std::move(policies)),
      metrics_(metrics),
      audit_(audit),
      partition_counts_([kafka] { return kafka->AllPartitionCounts(); },
                        [kafka](const std::string& topic) { return kafka->PartitionCount(topic); },
                        kPartitionCountsMaxAge, core::Clock::Real()),
      consumers_(
          [this,
           kafka](const std::string& peer) -> absl::StatusOr<std::unique_ptr<PartitionConsumer>> {
            // The group names the peer, for kafka-consumer-groups; nothing reads its offsets.
            return KafkaPartitionConsumer::Open(
                kafka, absl::StrCat("uop-export.", config_.node, ".", peer),
                StreamReadAhead(config_.link, policies_()->TopicsFor(peer).size()));
          },
          kIdleConsumerClose, core::Clock::Real()),
      consumers_gauge_(metrics->Gauge("uop_export_kafka_consumers",
                                      "Kafka consumers the owner reads exported datasets with")),
      workers_(config.link.export_workers),
      setup_workers_(2) {
  ticker_ = std::make_unique<core::PeriodicThread>(
      std::min(absl::Milliseconds(100), absl::FromChrono(config_.link.heartbeat_interval) / 4),
      [this] { Tick(); });
}

ExportService::~ExportService() { ticker_.reset(); }

void ExportService::Register(const std::shared_ptr<ExportStream>& stream) {
  absl::MutexLock lock(&mu_);
  streams_[stream.get()] = stream;
}

void ExportService::Unregister(const ExportStream* stream) {
  absl::MutexLock lock(&mu_);
  streams_.erase(stream);
}

void ExportService::Tick() {
  std::vector<std::shared_ptr<ExportStream>> streams;
  {
    absl::MutexLock lock(&mu_);
    streams.reserve(streams_.size());
    for (const auto& [ptr, weak] : streams_) {
      if (auto s = weak.lock()) streams.push_back(std::move(s));
    }
  }
  const absl::Time now = absl::Now();
  for (const std::shared_ptr<ExportStream>& s : streams) {
    s->CancelIfStuck(now);
    s->Schedule();
  }
  std::vector<std::shared_ptr<PartitionConsumer>> idle = consumers_.Maintain();
  consumers_gauge_->Set(consumers_.consumers());
  // The last reference to a stream may be here, and closing a consumer blocks: hand both to a
  // worker to free.
  if (!streams.empty() || !idle.empty()) {
    setup_workers_.Post([streams = std::move(streams), idle = std::move(idle)] {});
  }
}

void ExportService::AuditRefused(grpc::CallbackServerContext* context, const absl::Status& why) {
  if (audit_ == nullptr) return;
  audit::Entry e;
  e.type = audit::EntryType::kLinkRefused;
  // What the caller presented: its address and, when it has one, its certificate's SAN.
  std::string identity = context->peer();
  if (std::shared_ptr<const grpc::AuthContext> auth = context->auth_context(); auth) {
    for (const grpc::string_ref& san : auth->FindPropertyValues("x509_subject_alternative_name")) {
      identity.append(" san=").append(san.data(), san.size());
    }
  }
  e.identity = identity;
  e.reason = std::string(why.message());
  audit_->AppendAsync(std::move(e));
}

void ExportService::Stop() {
  stopping_.store(true);
  Tick();
}

grpc::ServerBidiReactor<fed::ReceiverMessage, fed::OwnerMessage>* ExportService::Replicate(
    grpc::CallbackServerContext* context) {
  auto stream = std::make_shared<ExportStream>(this, context);
  stream->Begin();
  return stream.get();
}

absl::StatusOr<std::string> ExportService::AuthenticateCall(grpc::CallbackServerContext* context,
                                                            const fed::Hello& hello) {
  std::shared_ptr<const grpc::AuthContext> auth_context = context->auth_context();
  std::string chain;
  if (auth_context) {
    // The connection's own (leaf) certificate first, then whatever chain the peer sent, so that
    // certificates from an intermediate CA verify (the chain property may omit the leaf).
    for (const char* property : {"x509_pem_cert", "x509_pem_cert_chain"}) {
      for (const grpc::string_ref& pem : auth_context->FindPropertyValues(property)) {
        chain.append(pem.data(), pem.size());
      }
    }
  }
  absl::StatusOr<std::string> peer = auth_->Authenticate(chain, std::nullopt);
  if (!peer.ok()) return peer.status();
  if (hello.node() != *peer) {
    return absl::PermissionDeniedError(absl::StrCat("hello names node '", hello.node(),
                                                    "' but the certificate is peer '", *peer, "'"));
  }
  if (hello.protocol_version() != kProtocolVersion) {
    return absl::FailedPreconditionError(absl::StrCat("protocol version ", hello.protocol_version(),
                                                      " not supported; this node speaks ",
                                                      kProtocolVersion));
  }
  return peer;
}

grpc::ServerUnaryReactor* ExportService::ListOffers(grpc::CallbackServerContext* context,
                                                    const fed::ListOffersRequest* request,
                                                    fed::ListOffersResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  // Topic metadata may take a Kafka round trip: never in a gRPC callback.
  setup_workers_.Post([this, context, request, response, reactor] {
    absl::StatusOr<std::string> peer = AuthenticateCall(context, request->hello());
    if (!peer.ok()) {
      log::Warn("offers_refused",
                {{"client", context->peer()}, {"reason", std::string(peer.status().message())}});
      AuditRefused(context, peer.status());
      reactor->Finish(ToGrpcStatus(peer.status()));
      return;
    }
    std::shared_ptr<const policy::PolicySnapshot> snapshot = policies_();
    response->mutable_hello()->set_node(config_.node);
    response->mutable_hello()->set_protocol_version(kProtocolVersion);
    response->mutable_hello()->set_software(std::string(kSoftware));
    // Only shares valid now: the receiver stops asking for one that stopped until it is back.
    const absl::Time now = absl::Now();
    std::vector<std::string> topics;
    for (const std::string& topic : snapshot->TopicsFor(*peer)) {
      if (snapshot->StateAt(topic, *peer, now) == policy::ShareState::kActive) {
        topics.push_back(topic);
      }
    }
    // One metadata request for all of them (or a snapshot of a moment ago), not one per topic.
    absl::StatusOr<std::map<std::string, int>> counts = partition_counts_.ForTopics(topics);
    for (const std::string& topic : topics) {
      std::optional<int> partitions;
      if (counts.ok()) {
        if (auto it = counts->find(topic); it != counts->end()) partitions = it->second;
      }
      if (!partitions.has_value()) {
        log::Warn("offer_topic_unavailable",
                  {{"peer", *peer},
                   {"topic", topic},
                   {"reason", counts.ok() ? absl::StrCat("topic ", topic, " not found")
                                          : std::string(counts.status().message())}});
        continue;
      }
      fed::DatasetOffer* offer = response->add_offers();
      offer->set_topic(topic);
      offer->set_partitions(*partitions);
      offer->set_policy_version(snapshot->version());
      if (const policy::Share* share = snapshot->FindShare(topic, *peer); share != nullptr) {
        fed::ShareTerms* terms = offer->mutable_terms();
        terms->set_purpose(share->purpose);
        terms->set_licence(share->licence);
        terms->set_owner_organisation(share->owner_organisation);
        terms->set_owner_contact(share->owner_contact);
        if (share->valid_from)
          terms->set_valid_from_unix_ms(absl::ToUnixMillis(*share->valid_from));
        if (share->valid_until) {
          terms->set_valid_until_unix_ms(absl::ToUnixMillis(*share->valid_until));
        }
        if (share->retention) {
          terms->set_retention_ms(absl::ToInt64Milliseconds(*share->retention));
        }
      }
    }
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerUnaryReactor* ExportService::Witness(grpc::CallbackServerContext* context,
                                                 const fed::WitnessRequest* request,
                                                 fed::WitnessResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  setup_workers_.Post([this, context, request, response, reactor] {
    absl::StatusOr<std::string> peer = AuthenticateCall(context, request->hello());
    if (!peer.ok()) {
      log::Warn("witness_refused",
                {{"client", context->peer()}, {"reason", std::string(peer.status().message())}});
      AuditRefused(context, peer.status());
      reactor->Finish(ToGrpcStatus(peer.status()));
      return;
    }
    absl::Status refused;
    if (audit_ == nullptr) {
      refused = absl::UnimplementedError(
          absl::StrCat("node '", config_.node, "' keeps no audit log: it witnesses nothing"));
    } else if (!audit_->exchange()->HasPeer(*peer)) {
      refused = absl::FailedPreconditionError(absl::StrCat(
          "node '", config_.node, "' has no audit key of peer '", *peer, "' configured"));
    } else if (absl::Status h = audit_->Health(); !h.ok()) {
      refused = absl::UnavailableError(absl::StrCat("audit log cannot write: ", h.message()));
    }
    if (!refused.ok()) {
      reactor->Finish(ToGrpcStatus(refused));
      return;
    }
    absl::StatusOr<fed::WitnessResponse> answer = audit_->exchange()->Serve(*peer, *request);
    if (!answer.ok()) {
      log::Error("witness_failed",
                 {{"peer", *peer}, {"reason", std::string(answer.status().message())}});
      reactor->Finish(ToGrpcStatus(absl::UnavailableError(
          absl::StrCat("audit log cannot record the exchange: ", answer.status().message()))));
      return;
    }
    *response = *std::move(answer);
    response->mutable_hello()->set_node(config_.node);
    response->mutable_hello()->set_protocol_version(kProtocolVersion);
    response->mutable_hello()->set_software(std::string(kSoftware));
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

}  // namespace uop::broker
