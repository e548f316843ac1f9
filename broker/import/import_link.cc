// Receiver side: transactional, resumable import of a peer's datasets into our Kafka.
#include "broker/import/import_link.h"

#include <algorithm>
#include <deque>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "broker/export/export_service.h"
#include "broker/grpc_status.h"
#include "broker/import/recovery.h"
#include "core/check.h"
#include "core/log.h"
#include "core/status_macros.h"
#include "kafka/status.h"

namespace uop::broker {

namespace fed = uop::federation::v1;

namespace {

fed::Hello MakeHello(const std::string& node) {
  fed::Hello hello;
  hello.set_node(node);
  hello.set_protocol_version(kProtocolVersion);
  hello.set_software(std::string(kSoftware));
  return hello;
}

// How long a stream waits for the owner's Subscribed: the owner positions a consumer first.
constexpr absl::Duration kSubscribeTimeout = absl::Seconds(30);
// How long recovery waits for an open transaction on its partitions to end: a zombie's or a
// stuck one ends at the latest when the coordinator times it out (transaction.timeout.ms 60 s).
constexpr absl::Duration kOpenTransactionWait = absl::Seconds(75);
// How soon the offers are listed again when some datasets' topics were not usable yet.
constexpr absl::Duration kTopicRetry = absl::Seconds(2);

}  // namespace

// One attempt's Replicate call through gRPC's callback API. Its callbacks run on gRPC's
// threads; every gRPC operation is started without the stream's lock held (gRPC may run a
// reaction inline). A hold keeps the call from finishing while a write may still be started.
class ReplicateCall final
    : public grpc::ClientBidiReactor<fed::ReceiverMessage, fed::OwnerMessage> {
 public:
  ReplicateCall(ImportStream* stream, std::shared_ptr<grpc::Channel> channel, uint64_t attempt)
      : attempt(attempt), stream_(stream), stub_(std::move(channel)) {}

  const uint64_t attempt;  // which attempt of the stream this call is

  // Starts the call with `subscribe` as its first message.
  void Begin(fed::ReceiverMessage subscribe) {
    write_ = std::move(subscribe);
    stub_.async()->Replicate(&context_, this);
    AddHold();
    StartWrite(&write_);
    StartRead(&read_);
    StartCall();
  }
  void Cancel() { context_.TryCancel(); }

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnDone(const grpc::Status& status) override { stream_->OnCallDone(status); }

  // The call's own state has a mutex of its own, taken after the stream's: gRPC's callbacks must
  // never wait for the stream's mutex, which the link's writer holds while it produces a
  // stream's batches into Kafka (seconds under load). A callback that waited there would hold
  // one of gRPC's few callback threads, and with them every stream of the channel.
  // Queues `message` unless the call is ending; false if it is.
  bool Enqueue(fed::ReceiverMessage message) ABSL_LOCKS_EXCLUDED(mu_);
  void MarkEnding() ABSL_LOCKS_EXCLUDED(mu_);
  // Takes nothing new, writes what is queued (Acks of transactions that committed: the owner
  // needs their receipts), then cancels the call. Kick() to start.
  void MarkEndingAfterWrites() ABSL_LOCKS_EXCLUDED(mu_);
  // Nothing queued and no write in flight.
  bool Idle() ABSL_LOCKS_EXCLUDED(mu_);

  // Starts the next queued write, or releases the hold once the call is ending and nothing is in
  // flight. Call without the stream's lock.
  void Kick() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  absl::Mutex mu_;
  std::deque<fed::ReceiverMessage> outbox_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = true;  // the Subscribe is in flight from Begin()
  bool ending_ ABSL_GUARDED_BY(mu_) = false;
  bool flush_then_end_ ABSL_GUARDED_BY(mu_) = false;
  bool held_ ABSL_GUARDED_BY(mu_) = true;

  ImportStream* const stream_;
  fed::Federation::Stub stub_;
  grpc::ClientContext context_;
  fed::OwnerMessage read_;
  fed::ReceiverMessage write_;
};

bool ReplicateCall::Enqueue(fed::ReceiverMessage message) {
  absl::MutexLock lock(&mu_);
  if (ending_ || flush_then_end_) return false;
  outbox_.push_back(std::move(message));
  return true;
}

void ReplicateCall::MarkEnding() {
  absl::MutexLock lock(&mu_);
  ending_ = true;
  flush_then_end_ = false;  // over already: nothing more can be written
}

void ReplicateCall::MarkEndingAfterWrites() {
  absl::MutexLock lock(&mu_);
  if (!ending_) flush_then_end_ = true;
}

bool ReplicateCall::Idle() {
  absl::MutexLock lock(&mu_);
  return outbox_.empty() && !writing_;
}

void ReplicateCall::Kick() {
  bool write = false, release = false, cancel = false;
  {
    absl::MutexLock lock(&mu_);
    if (flush_then_end_ && !writing_ && outbox_.empty()) {
      flush_then_end_ = false;
      ending_ = true;
      cancel = true;
    }
    if (!writing_ && (!ending_ || flush_then_end_) && !outbox_.empty()) {
      write_ = std::move(outbox_.front());
      outbox_.pop_front();
      writing_ = true;
      write = true;
    } else if (ending_ && !writing_ && held_) {
      held_ = false;
      release = true;
    }
  }
  if (cancel) Cancel();
  if (write) StartWrite(&write_);
  if (release) RemoveHold();
}

void ReplicateCall::OnReadDone(bool ok) {
  if (!ok) {
    MarkEnding();  // the call's status says why (OnDone)
    Kick();
    return;
  }
  stream_->OnMessage(attempt, std::move(read_));
  bool more = false;
  {
    absl::MutexLock lock(&mu_);
    more = !ending_;
  }
  if (more) {
    StartRead(&read_);
  } else {
    Kick();
  }
}

void ReplicateCall::OnWriteDone(bool ok) {
  {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    // A failed write means the call is over; OnDone brings its status.
    if (!ok) {
      ending_ = true;
      flush_then_end_ = false;
    }
  }
  if (!ok) Cancel();
  Kick();
}

// ---------------------------------------------------------------------------------------------

ImportStream::ImportStream(const LinkContext& link, fed::DatasetOffer offer,
                           std::vector<int32_t> partitions)
    : link_(link),
      offer_(std::move(offer)),
      partitions_(std::move(partitions)),
      mirror_topic_(core::MirrorTopicName(link.peer->name, offer_.topic())),
      deadletter_topic_(core::DeadLetterTopicName(link.peer->name, offer_.topic())),
      partitions_label_(absl::StrJoin(partitions_, ",")),
      backoff_(link.config->link.reconnect_backoff_initial,
               link.config->link.reconnect_backoff_max) {
  const core::Labels labels = {{"peer", link_.peer->name}, {"topic", offer_.topic()}};
  core::Metrics* m = link_.metrics;
  records_written_ =
      m->Counter("uop_import_records_total", "Records written to our Kafka from a peer", labels);
  batches_written_ = m->Counter("uop_import_batches_total", "Batches written", labels);
  duplicates_dropped_ = m->Counter("uop_import_duplicates_dropped_total",
                                   "Replayed records dropped (already held)", labels);
  deadlettered_ =
      m->Counter("uop_import_deadletter_total", "Records written to the dead-letter topic", labels);
  reconnects_ = m->Counter("uop_import_reconnects_total", "Stream restarts after an error", labels);
  transactions_ =
      m->Counter("uop_import_transactions_total",
                 "Kafka transactions committed that held records of this dataset", labels);
}

ImportStream::~ImportStream() { Stop(); }

void ImportStream::Start() {
  link_.writer->Register(this);
  {
    absl::MutexLock lock(&mu_);
    if (state_ != State::kIdle) return;
    state_ = State::kRecovering;
    setup_running_ = true;
  }
  link_.setup->Post([this] { Setup(); });
}

void ImportStream::Readmit() {
  // Called for every offered dataset under the link's mutex: a stream that is not withdrawn may
  // be held by the writer for as long as Kafka takes, and waiting for it here would stop the
  // link's ticks, and with them every stream's heartbeats (seen at 100 datasets).
  if (!withdrawn_.load()) return;
  absl::MutexLock lock(&mu_);
  if (!withdrawn_.load() || stopping_) return;
  withdrawn_.store(false);
  backoff_.Reset();
  retry_at_ = absl::Now();
  log::Info(
      "import_share_back",
      {{"peer", link_.peer->name}, {"topic", offer_.topic()}, {"partitions", partitions_label_}});
}

int64_t ImportStream::WindowBytes() const {
  // A stream's share of the link's receive buffer, by partitions, within window_bytes per
  // partition; never below 256 KiB (the owner may overshoot by a batch), so that every stream
  // moves however many share the buffer.
  constexpr int64_t kMinWindowBytes = 256 << 10;
  const LinkTuning& tuning = link_.config->link;
  const auto n = static_cast<int64_t>(partitions_.size());
  const int64_t all =
      std::max<int64_t>(n, link_.link_partitions == nullptr ? 0 : link_.link_partitions->load());
  const int64_t wanted = tuning.window_bytes * n;
  const int64_t share = tuning.receive_buffer_bytes / all * n;
  return std::min(wanted, std::max(share, kMinWindowBytes));
}

void ImportStream::Stop() {
  std::shared_ptr<ReplicateCall> cancel;
  {
    absl::MutexLock lock(&mu_);
    if (state_ == State::kStopped && call_ == nullptr) return;
    stopping_ = true;
    if (call_ != nullptr && state_ != State::kBackoff) {
      FailLocked(absl::CancelledError("stopping"));
    }
    cancel = call_;
  }
  if (cancel != nullptr) {
    cancel->Cancel();
    cancel->Kick();
  }
  {
    absl::MutexLock lock(&mu_);
    auto quiet = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !setup_running_ &&
             (state_ == State::kBackoff || state_ == State::kStopped || state_ == State::kIdle);
    };
    mu_.Await(absl::Condition(&quiet));
  }
  link_.writer->Unregister(this);  // waits for a transaction holding our batches to end
  std::unique_ptr<ImportSession> session;
  std::shared_ptr<ReplicateCall> call;
  {
    absl::MutexLock write(&link_.writer->write_mutex());
    absl::MutexLock lock(&mu_);
    state_ = State::kStopped;
    session = std::move(session_);
    call = std::move(call_);
    streaming_.store(false);
  }
}

absl::StatusOr<std::map<int32_t, core::PartitionCheckpoint>> ImportStream::Recover() {
  RecoveryTarget target{mirror_topic_, deadletter_topic_, partitions_};
  auto stopping = [this] {
    if (link_.link_stopping != nullptr && link_.link_stopping->load()) return true;
    absl::MutexLock lock(&mu_);
    return stopping_;
  };
  if (stopping()) return absl::CancelledError("stopping");
  ASSIGN_OR_RETURN(TopicPartitions open, link_.recovery->OpenTransactions(target, stopping));
  bool fenced = false;
  if (!open.empty()) {
    // A transaction is open on our partitions. Ours (records a broker restart left open although
    // the coordinator finished the transaction: the next commit of our producer would make them
    // visible, found by the fault rounds, seed 165847882) is closed by aborting a transaction of
    // our producer on those partitions; anyone else's (a zombie, a node that just lost the
    // partition) ends by itself. Recovery reads only once none is open.
    std::vector<std::string> names;
    for (const auto& [topic, p] : open) names.push_back(absl::StrCat(topic, "[", p, "]"));
    log::Warn("import_hanging_transaction",
              {{"peer", link_.peer->name}, {"partitions", absl::StrJoin(names, ",")}});
    RETURN_IF_ERROR(link_.writer->RunBetweenTransactions(
        [&open](KafkaTransactionalSink* sink) { return sink->Fence(open); }));
    fenced = true;
    const absl::Time deadline = absl::Now() + kOpenTransactionWait;
    while (true) {
      ASSIGN_OR_RETURN(TopicPartitions still, link_.recovery->OpenTransactions(target, stopping));
      if (still.empty()) break;
      if (stopping()) return absl::CancelledError("stopping");
      if (absl::Now() > deadline) {
        return absl::FailedPreconditionError(absl::StrCat(
            still.front().first, "[", still.front().second,
            "] still has an open transaction after ", absl::FormatDuration(kOpenTransactionWait),
            "; inspect it with kafka-transactions.sh find-hanging"));
      }
      absl::SleepFor(absl::Milliseconds(200));  // poll interval for the markers to land
    }
  }
  return link_.recovery->RecoverPositions(target, fenced, stopping);
}

void ImportStream::Setup() {
  absl::StatusOr<std::map<int32_t, core::PartitionCheckpoint>> checkpoints =
      absl::UnavailableError("not recovered");
  if (link_.audit != nullptr && !link_.audit->Health().ok()) {
    // Fail closed: no stream while the audit log cannot write; retried after the backoff.
    checkpoints = absl::UnavailableError(link_.audit->Health().message());
  } else {
    // A barrier: a transaction of the link's writer that still carries batches of our previous
    // attempt (staged before it ended) commits or aborts before we read what Kafka holds, or
    // recovery would miss what it writes and the owner would send it again. Later transactions
    // leave this stream out (it is not streaming). An attempt with nothing staged (the first,
    // or one whose transaction is over) does not wait for the writer: under a backlog its rounds
    // take seconds, and 100 streams setting up one per round took a minute to start.
    bool staged = false;
    {
      absl::MutexLock lock(&mu_);
      staged = session_ != nullptr && session_->has_staged();
    }
    if (staged) {
      absl::MutexLock write(&link_.writer->write_mutex());
    }
    checkpoints = Recover();
  }
  std::shared_ptr<ReplicateCall> begin;
  fed::ReceiverMessage subscribe;
  std::unique_ptr<ImportSession> old_session;
  std::shared_ptr<ReplicateCall> old_call;
  {
    absl::MutexLock lock(&mu_);
    // The writer stages only streams that are streaming, and this one is not: what the old
    // session had staged was over once the barrier passed, so it is replaced under our mutex.
    UOP_CHECK(session_ == nullptr || !session_->has_staged(),
              "a stream being set up has batches in the writer's transaction");
    setup_running_ = false;
    old_session = std::move(session_);
    old_call = std::move(call_);
    if (stopping_) {
      state_ = State::kStopped;
      return;
    }
    if (!checkpoints.ok()) {
      failure_ = checkpoints.status();
      state_ = State::kEnding;
      FinishAttemptLocked(grpc::Status::OK);  // logs why and schedules the retry
      return;
    }
    const int n = static_cast<int>(partitions_.size());
    const LinkTuning& tuning = link_.config->link;
    session_ = std::make_unique<ImportSession>(
        ImportSession::Options{tuning.window_batches * n, WindowBytes(), link_.audit != nullptr,
                               link_.policies},
        link_.peer->name, offer_.topic(), *std::move(checkpoints), core::Clock::Real());
    reported_ = ImportSession::Stats();
    failure_ = absl::OkStatus();
    progressed_ = false;
    call_ = std::make_shared<ReplicateCall>(this, link_.channel, ++attempts_);
    state_ = State::kSubscribing;
    subscribe_deadline_ = absl::Now() + kSubscribeTimeout;
    last_heard_ = last_sent_ = absl::Now();
    begin = call_;
    subscribe = session_->SubscribeMessage(MakeHello(link_.config->node));
    if (link_.audit != nullptr) {
      // Our receipts of what we hold, in case the owner's log lost some (docs/protocol.md).
      for (const auto& [p, cp] : session_->checkpoints()) {
        for (std::string& r : link_.audit->ResendableReceipts(link_.peer->name, offer_.topic(), p,
                                                              cp.last_offset())) {
          subscribe.mutable_subscribe()->add_committed_receipts(std::move(r));
        }
      }
    }
  }
  begin->Begin(std::move(subscribe));
}

void ImportStream::OnMessage(uint64_t attempt, fed::OwnerMessage&& message) {
  {
    absl::MutexLock lock(&inbox_mu_);
    inbox_.emplace_back(attempt, std::move(message));
  }
  // Applied now if the stream is free, never by waiting here on a gRPC thread. Else the writer
  // applies it: whoever holds the stream may have drained the inbox already, and the writer's
  // next round drains every stream's inbox (HasQueued).
  if (!mu_.TryLock()) {
    link_.writer->Wake();
    return;
  }
  Drained drained = DrainInboxLocked();
  mu_.Unlock();
  AfterDrain(drained);
}

void ImportStream::AfterDrain(const Drained& drained) {
  if (drained.cancel != nullptr) drained.cancel->Cancel();
  if (drained.wake) link_.writer->Wake();
}

ImportStream::Drained ImportStream::DrainInboxLocked() {
  Drained out;
  std::deque<std::pair<uint64_t, fed::OwnerMessage>> inbox;
  {
    absl::MutexLock lock(&inbox_mu_);
    inbox.swap(inbox_);
  }
  for (auto& [attempt, message] : inbox) {
    // A message of an earlier attempt's call belongs to no session of ours any more.
    if (call_ == nullptr || attempt != call_->attempt) continue;
    ApplyLocked(std::move(message), &out);
  }
  return out;
}

void ImportStream::ApplyLocked(fed::OwnerMessage&& message, Drained* out) {
  bool& wake = out->wake;
  std::shared_ptr<ReplicateCall>& cancel = out->cancel;
  {
    last_heard_ = absl::Now();
    if (state_ == State::kSubscribing) {
      if (absl::Status s = session_->OnSubscribed(message, offer_.partitions()); !s.ok()) {
        FailLocked(s);
        cancel = call_;
      } else {
        state_ = State::kStreaming;
        streaming_.store(true);
        log::Info("import_stream_started", {{"peer", link_.peer->name},
                                            {"topic", offer_.topic()},
                                            {"target", mirror_topic_},
                                            {"partitions", partitions_label_},
                                            {"policy", session_->policy_version()}});
      }
    } else if (state_ == State::kStreaming) {
      if (absl::Status s = session_->OnOwnerMessage(std::move(message)); !s.ok()) {
        log::Warn("import_protocol_violation", {{"peer", link_.peer->name},
                                                {"topic", offer_.topic()},
                                                {"partitions", partitions_label_},
                                                {"reason", std::string(s.message())}});
        FailLocked(s);
        cancel = call_;
      } else {
        wake = wake || session_->has_queued();
        PublishLocked();
      }
    }
  }
}

void ImportStream::FailLocked(const absl::Status& cause, bool flush_acks) {
  if (failure_.ok()) failure_ = cause;
  if (state_ == State::kSubscribing || state_ == State::kStreaming) state_ = State::kEnding;
  streaming_.store(false);
  if (call_ == nullptr) return;
  if (flush_acks) {
    call_->MarkEndingAfterWrites();
  } else {
    call_->MarkEnding();
  }
}

void ImportStream::OnCallDone(const grpc::Status& status) {
  absl::MutexLock lock(&mu_);
  FinishAttemptLocked(status);
}

void ImportStream::FinishAttemptLocked(const grpc::Status& status) {
  {
    absl::Status reason = failure_;
    if (reason.ok()) {
      reason = status.ok()
                   ? absl::UnavailableError("stream ended by the owner")
                   : absl::Status(FromGrpcStatus(status).code(),
                                  absl::StrCat(link_.peer->name, ": ", status.error_message()));
    }
    streaming_.store(false);
    if (stopping_) {
      state_ = State::kBackoff;
      return;
    }
    if (failure_.ok() && (status.error_code() == grpc::StatusCode::PERMISSION_DENIED ||
                          status.error_code() == grpc::StatusCode::FAILED_PRECONDITION)) {
      // The owner revoked the share, or it is outside its validity window: stop asking until
      // the owner offers it again (PeerLink::RunOffers calls Readmit).
      state_ = State::kBackoff;
      retry_at_ = absl::InfiniteFuture();
      withdrawn_.store(true);
      log::Warn("import_share_withdrawn", {{"peer", link_.peer->name},
                                           {"topic", offer_.topic()},
                                           {"partitions", partitions_label_},
                                           {"code", absl::StatusCodeToString(reason.code())},
                                           {"reason", std::string(reason.message())}});
      return;
    }
    if (progressed_) backoff_.Reset();
    const std::chrono::milliseconds delay = backoff_.Next();
    retry_at_ = absl::Now() + absl::FromChrono(delay);
    state_ = State::kBackoff;
    reconnects_->Add(1);
    log::Warn("import_subscription_retry", {{"peer", link_.peer->name},
                                            {"topic", offer_.topic()},
                                            {"partitions", partitions_label_},
                                            {"reason", std::string(reason.message())},
                                            {"code", absl::StatusCodeToString(reason.code())},
                                            {"retry_in_ms", std::to_string(delay.count())}});
  }
}

void ImportStream::Tick(absl::Time now) {
  std::shared_ptr<ReplicateCall> cancel, kick;
  bool post = false;
  Drained drained;
  // The writer may hold the stream while it produces its batches: skip this tick (the next
  // comes within 100 ms) rather than stall the timers of the link's other streams.
  if (!mu_.TryLock()) return;
  {
    drained = DrainInboxLocked();
    const LinkTuning& tuning = link_.config->link;
    switch (state_) {
      case State::kSubscribing:
        if (now > subscribe_deadline_) {
          FailLocked(absl::DeadlineExceededError(
              absl::StrCat("no answer to subscribe from ", link_.peer->name, " within ",
                           absl::FormatDuration(kSubscribeTimeout))));
          cancel = call_;
        }
        break;
      case State::kStreaming:
        if (now - last_heard_ > absl::FromChrono(tuning.dead_peer_timeout)) {
          FailLocked(absl::UnavailableError(
              absl::StrCat("no message from ", link_.peer->name, " within the dead-peer timeout")));
          cancel = call_;
        } else if (now - last_sent_ >= absl::FromChrono(tuning.heartbeat_interval) &&
                   call_->Idle()) {
          fed::ReceiverMessage hb;
          hb.mutable_heartbeat()->set_sent_unix_ms(absl::ToUnixMillis(now));
          SendLocked(std::move(hb));
          kick = call_;
        }
        PublishLocked();
        break;
      case State::kBackoff:
        if (!stopping_ && now >= retry_at_ && !setup_running_) {
          state_ = State::kRecovering;
          setup_running_ = true;
          post = true;
        }
        break;
      default:
        break;
    }
  }
  mu_.Unlock();
  AfterDrain(drained);
  if (cancel != nullptr) {
    cancel->Cancel();
    cancel->Kick();
  }
  if (kick != nullptr) kick->Kick();
  if (post) link_.setup->Post([this] { Setup(); });
}

void ImportStream::SendLocked(fed::ReceiverMessage message) {
  if (call_ == nullptr || !call_->Enqueue(std::move(message))) return;
  last_sent_ = absl::Now();
}

void ImportStream::PublishLocked() {
  if (session_ == nullptr) return;
  lag_records_.store(session_->lag_records());
  lag_seconds_.store(session_->lag_seconds());
}

bool ImportStream::HasQueued() {
  Drained drained;
  bool queued = false;
  {
    absl::MutexLock lock(&mu_);
    drained = DrainInboxLocked();  // messages that found the stream held (OnMessage)
    queued = state_ == State::kStreaming && session_ != nullptr && session_->has_queued() &&
             !session_->has_staged();
  }
  if (drained.cancel != nullptr) drained.cancel->Cancel();
  return queued;
}

absl::Status ImportStream::Stage(TransactionalSink* sink, Positions* positions) {
  absl::Status staged;
  Drained drained;
  {
    absl::MutexLock lock(&mu_);
    if (state_ != State::kStreaming || session_ == nullptr) return absl::OkStatus();
    staged = session_->Stage(sink, refused_, positions);
    drained = DrainInboxLocked();  // what arrived while we produced
  }
  AfterDrain(drained);
  return staged;
}

absl::Status ImportStream::Record(AuditSink* audit) {
  absl::MutexLock lock(&mu_);
  // A session with staged batches is not replaced before their transaction ends (Setup waits
  // for the writer's mutex, which the caller holds, and Stop takes it).
  if (session_ == nullptr || !session_->has_staged()) return absl::OkStatus();
  absl::Status s = session_->Record(audit);
  if (!s.ok()) {
    // Produced but not recorded: the transaction is aborted, nothing is acknowledged, and the
    // next attempt waits until the audit log can write.
    log::Error("import_audit_failed", {{"peer", link_.peer->name},
                                       {"topic", offer_.topic()},
                                       {"reason", std::string(s.message())}});
  }
  return s;
}

void ImportStream::Committed() {
  std::shared_ptr<ReplicateCall> kick;
  Drained drained;
  {
    absl::MutexLock lock(&mu_);
    if (session_ == nullptr || !session_->has_staged()) return;
    session_->SetWindowBytes(WindowBytes());  // follows the link's partitions
    absl::StatusOr<std::vector<fed::ReceiverMessage>> replies = session_->Committed(&refused_);
    UOP_CHECK(replies.ok(), "Committed() of a recorded transaction cannot fail");
    progressed_ = true;
    for (const RefusedRecord& r : session_->last_deadletters()) {
      log::Warn("import_deadletter", {{"peer", link_.peer->name},
                                      {"topic", offer_.topic()},
                                      {"partition", std::to_string(r.partition)},
                                      {"offset", std::to_string(r.offset)},
                                      {"reason", r.reason}});
    }
    const ImportSession::Stats& now = session_->stats();
    records_written_->Add(static_cast<double>(now.written - reported_.written));
    deadlettered_->Add(static_cast<double>(now.deadletters - reported_.deadletters));
    for (const RefusedRecord& r : session_->last_deadletters()) {
      if (absl::StartsWith(r.reason, "refused by accept rule: ")) {
        const std::string_view rest = std::string_view(r.reason).substr(24);
        link_.metrics
            ->Counter("uop_import_refused_records_total",
                      "Records our accept rules refused (to the dead-letter topic), by reason",
                      {{"peer", link_.peer->name},
                       {"topic", offer_.topic()},
                       {"reason", std::string(rest.substr(0, rest.find(':')))}})
            ->Add(1);
      }
    }
    duplicates_dropped_->Add(static_cast<double>(now.duplicates - reported_.duplicates));
    batches_written_->Add(static_cast<double>(now.batches - reported_.batches));
    transactions_->Add(static_cast<double>(now.transactions - reported_.transactions));
    reported_ = now;
    PublishLocked();
    for (fed::ReceiverMessage& reply : *replies) SendLocked(std::move(reply));
    kick = call_;
    drained = DrainInboxLocked();
  }
  AfterDrain(drained);
  if (kick != nullptr) kick->Kick();
}

void ImportStream::StageFailed(const absl::Status& cause, const std::vector<RefusedRecord>& late) {
  std::shared_ptr<ReplicateCall> call;
  {
    absl::MutexLock lock(&mu_);
    if (session_ == nullptr) return;
    session_->StageFailed(late, &refused_);
    // Whether an uncertain commit landed is read back from Kafka by the next attempt. Acks still
    // queued are of earlier transactions, committed and logged: they go out before the call is
    // cancelled, or the owner would never log their receipts.
    FailLocked(cause, /*flush_acks=*/true);
    call = call_;
  }
  if (call != nullptr) call->Kick();
}

// ---------------------------------------------------------------------------------------------

LinkWriter::LinkWriter(const NodeConfig& config, const PeerConfig& peer, kafka::Env* kafka,
                       core::Metrics* metrics, KafkaTransactionalSink::GroupMetadata group_metadata,
                       AuditSink* audit)
    : config_(config),
      peer_(peer),
      kafka_(kafka),
      group_metadata_(std::move(group_metadata)),
      audit_(audit),
      transactional_id_(
          absl::StrCat("uop-import.", config.node, ".", peer.name, ".", config.instance)) {
  transactions_ = metrics->Counter("uop_import_link_transactions_total",
                                   "Kafka transactions committed on the link (all datasets)",
                                   {{"peer", peer.name}});
  transaction_failures_ = metrics->Counter(
      "uop_import_link_transaction_failures_total",
      "Kafka transactions of the link that failed (their streams restart from recovery)",
      {{"peer", peer.name}});
}

LinkWriter::~LinkWriter() { Stop(); }

void LinkWriter::Start() {
  thread_ = std::thread([this] { Run(); });
}

void LinkWriter::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void LinkWriter::Register(ImportStream* stream) {
  absl::MutexLock lock(&mu_);
  streams_.insert(stream);
}

void LinkWriter::Unregister(ImportStream* stream) {
  absl::MutexLock write(&write_mu_);
  absl::MutexLock lock(&mu_);
  streams_.erase(stream);
}

void LinkWriter::Wake() {
  absl::MutexLock lock(&mu_);
  wake_ = true;
}

absl::Status LinkWriter::RunBetweenTransactions(
    std::function<absl::Status(KafkaTransactionalSink*)> fn) {
  Job job{std::move(fn), std::nullopt};
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::CancelledError("stopping");
  jobs_.push_back(&job);
  auto done = [&job]() { return job.result.has_value(); };
  mu_.Await(absl::Condition(&done));
  return *job.result;
}

absl::Status LinkWriter::EnsureSink() {
  if (sink_ != nullptr) return absl::OkStatus();
  // init_transactions fences an earlier incarnation of this node (same transactional.id) and
  // aborts what it left open.
  ASSIGN_OR_RETURN(sink_, KafkaTransactionalSink::Create(kafka_, transactional_id_, group_metadata_,
                                                         config_.link.receive_buffer_bytes));
  log::Info("import_producer_ready",
            {{"peer", peer_.name}, {"transactional_id", transactional_id_}});
  return absl::OkStatus();
}

void LinkWriter::Run() {
  core::Backoff backoff(config_.link.reconnect_backoff_initial, config_.link.reconnect_backoff_max);
  absl::Time not_before = absl::InfinitePast();
  while (true) {
    std::vector<Job*> jobs;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return wake_ || stopping_ || !jobs_.empty();
      };
      mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Milliseconds(250));
      if (stopping_) {
        for (Job* job : jobs_) job->result = absl::CancelledError("stopping");
        jobs_.clear();
        break;
      }
      if (absl::Now() < not_before) continue;
      wake_ = false;
      jobs.swap(jobs_);
    }
    absl::MutexLock write(&write_mu_);
    absl::Status ready = EnsureSink();
    if (!ready.ok()) {
      log::Warn("import_producer_retry",
                {{"peer", peer_.name}, {"reason", std::string(ready.message())}});
      not_before = absl::Now() + absl::FromChrono(backoff.Next());
      absl::MutexLock lock(&mu_);
      for (Job* job : jobs) job->result = ready;
      wake_ = true;  // queued batches wait for the producer
      continue;
    }
    backoff.Reset();
    for (Job* job : jobs) {
      absl::Status s = job->fn(sink_.get());
      if (kafka::IsFatal(s)) sink_.reset();
      absl::MutexLock lock(&mu_);
      job->result = s;
    }
    if (sink_ != nullptr) WriteRound();
  }
  absl::MutexLock write(&write_mu_);
  sink_.reset();
}

void LinkWriter::WriteRound() {
  std::vector<ImportStream*> streams;
  {
    absl::MutexLock lock(&mu_);
    streams.assign(streams_.begin(), streams_.end());
  }
  std::vector<ImportStream*> ready;
  for (ImportStream* s : streams) {
    if (s->HasQueued()) ready.push_back(s);
  }
  if (ready.empty()) return;
  auto failed = [&](const absl::Status& s, const std::vector<ImportStream*>& staged,
                    const std::vector<RefusedRecord>& late)
                    ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_) {
                      transaction_failures_->Add(1);
                      log::Warn("import_transaction_failed",
                                {{"peer", peer_.name}, {"reason", std::string(s.message())}});
                      for (ImportStream* stream : staged) stream->StageFailed(s, late);
                      // A producer in a fatal state (fenced by a newer instance with our
                      // transactional.id, or an abort that failed) is replaced: init_transactions
                      // starts clean.
                      if (kafka::IsFatal(s) || !kafka::RequiresAbort(s)) sink_.reset();
                    };
  // The open transaction is aborted; the abort's own failure joins the cause.
  auto abort_and_fail =
      [&](const absl::Status& s, const std::vector<ImportStream*>& staged)
          ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_) {
            absl::Status abort = sink_->Abort();
            failed(abort.ok()
                       ? s
                       : absl::Status(s.code(),
                                      absl::StrCat(s.message(), " (abort: ", abort.message(), ")")),
                   staged, {});
          };
  if (absl::Status s = sink_->Begin(); !s.ok()) {
    failed(s, ready, {});
    return;
  }
  Positions positions;
  std::vector<ImportStream*> staged;
  for (ImportStream* stream : ready) {
    staged.push_back(stream);
    if (absl::Status s = stream->Stage(sink_.get(), &positions); !s.ok()) {
      abort_and_fail(s, staged);
      return;
    }
  }
  // In the audit log before the commit (docs/audit.md section 6): killed after the commit, the
  // log still holds every batch that Kafka does.
  for (ImportStream* stream : staged) {
    if (absl::Status s = stream->Record(audit_); !s.ok()) {
      abort_and_fail(s, staged);
      return;
    }
  }
  std::vector<RefusedRecord> late;
  if (absl::Status s = sink_->Commit(positions, &late); !s.ok()) {
    failed(s, staged, late);
    return;
  }
  transactions_->Add(1);
  for (ImportStream* stream : staged) stream->Committed();
  // Batches that arrived during the commit go into the next transaction at once.
  for (ImportStream* stream : staged) {
    if (stream->HasQueued()) {
      absl::MutexLock lock(&mu_);
      wake_ = true;
      break;
    }
  }
}

// ---------------------------------------------------------------------------------------------

PeerLink::PeerLink(const NodeConfig& config, const PeerConfig& peer,
                   const std::shared_ptr<const PeerAuthenticator>& auth, kafka::Env* kafka,
                   core::Metrics* metrics, NodeAudit* audit,
                   std::function<std::shared_ptr<const policy::PolicySnapshot>()> policies)
    : config_(config),
      peer_(peer),
      kafka_(kafka),
      metrics_(metrics),
      group_id_(absl::StrCat("uop-import.", config.node, ".", peer.name)),
      audit_(audit),
      policies_(std::move(policies)) {
  if (audit_ != nullptr) {
    // Receipts only for an owner whose audit key we have: it has ours too (docs/protocol.md).
    log_audit_ = std::make_unique<LogImportAudit>(
        audit_, audit_->PeerKey(peer.name) != nullptr ? &audit_->signer() : nullptr);
  }
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              static_cast<int>(config.link.reconnect_backoff_initial.count()));
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
              static_cast<int>(config.link.reconnect_backoff_initial.count()));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
              static_cast<int>(config.link.reconnect_backoff_max.count()));
  args.SetMaxReceiveMessageSize(256 << 20);
  args.SetMaxSendMessageSize(256 << 20);
  channel_ = grpc::CreateCustomChannel(peer.address, MakeChannelCredentials(auth, peer), args);
  link_up_ =
      metrics_->Gauge("uop_link_up", "1 while the peer answers our calls", {{"peer", peer.name}});
  offers_ =
      metrics_->Gauge("uop_link_offers", "Datasets the peer offers us", {{"peer", peer.name}});
  writer_ = std::make_unique<LinkWriter>(
      config_, peer_, kafka_, metrics_,
      [this] {
        absl::MutexLock lock(&metadata_mu_);
        return group_metadata_;
      },
      log_audit_ != nullptr ? static_cast<AuditSink*>(log_audit_.get()) : &no_audit_);
  recovery_ = std::make_unique<RecoveryReader>(kafka_, config_.node, group_id_);
  setup_ = std::make_unique<core::ThreadPool>(2);
}

PeerLink::~PeerLink() { Stop(); }

void PeerLink::Start() {
  writer_->Start();
  offers_thread_ = std::thread([this] { RunOffers(); });
  group_thread_ = std::thread([this] { RunGroup(); });
  if (audit_ != nullptr && audit_->exchange()->HasPeer(peer_.name)) {
    witness_thread_ = std::thread([this] { RunWitness(); });
  }
}

bool PeerLink::Stopping() {
  absl::MutexLock lock(&mu_);
  return stopping_;
}

void PeerLink::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ && !offers_thread_.joinable() && !group_thread_.joinable() &&
        !witness_thread_.joinable()) {
      return;
    }
    stopping_ = true;
    stopping_flag_.store(true);
    for (grpc::ClientContext* context : in_flight_) context->TryCancel();
  }
  if (offers_thread_.joinable()) offers_thread_.join();
  if (group_thread_.joinable()) group_thread_.join();
  if (witness_thread_.joinable()) witness_thread_.join();
  {
    absl::MutexLock lock(&mu_);
    for (auto& [topic, ds] : datasets_) {
      if (ds.stream != nullptr) ds.stream->Stop();
      ds.stream.reset();
    }
  }
  if (setup_ != nullptr) setup_.reset();  // runs what is queued (setups see stopping), joins
  writer_->Stop();
}

PeerLink::InFlight::InFlight(PeerLink* link, grpc::ClientContext* context)
    : link_(link), context_(context) {
  absl::MutexLock lock(&link_->mu_);
  link_->in_flight_.insert(context_);
  if (link_->stopping_) context_->TryCancel();
}

PeerLink::InFlight::~InFlight() {
  absl::MutexLock lock(&link_->mu_);
  link_->in_flight_.erase(context_);
}

bool PeerLink::Accepts(const std::string& dataset) {
  const std::shared_ptr<const policy::PolicySnapshot> rules =
      policies_ != nullptr ? policies_() : nullptr;
  if (rules == nullptr || rules->FindAccept(peer_.name, dataset) != nullptr) return true;
  if (!rules->HasAcceptRulesFor(peer_.name)) return true;  // accepted as offered
  if (not_accepted_logged_.insert(dataset).second) {
    log::Warn("import_not_accepted", {{"peer", peer_.name},
                                      {"topic", dataset},
                                      {"policy", rules->version()},
                                      {"reason", "no accept rule of ours for this dataset"}});
  }
  return false;
}

std::optional<int64_t> PeerLink::EffectiveRetentionMs(const fed::DatasetOffer& offer) {
  std::optional<absl::Duration> owner;
  if (offer.terms().has_retention_ms()) owner = absl::Milliseconds(offer.terms().retention_ms());
  std::optional<absl::Duration> effective =
      policies_ != nullptr ? policies_()->EffectiveRetention(peer_.name, offer.topic(), owner)
                           : owner;
  if (!effective.has_value()) return std::nullopt;
  return absl::ToInt64Milliseconds(*effective);
}

void PeerLink::ApplyRetention(const fed::ListOffersResponse& offers) {
  for (const fed::DatasetOffer& offer : offers.offers()) {
    const std::optional<int64_t> wanted = EffectiveRetentionMs(offer);
    {
      absl::MutexLock lock(&mu_);
      auto it = datasets_.find(offer.topic());
      if (it == datasets_.end()) continue;
      if (it->second.retention_applied.has_value() && *it->second.retention_applied == wanted) {
        continue;
      }
      if (!it->second.retention_note.empty() && absl::Now() < retention_retry_at_) continue;
    }
    absl::Status s;
    for (const std::string& topic : {core::MirrorTopicName(peer_.name, offer.topic()),
                                     core::DeadLetterTopicName(peer_.name, offer.topic())}) {
      if (s.ok()) s = kafka_->SetTopicRetention(topic, wanted);
    }
    const std::string shown = wanted.has_value() ? std::to_string(*wanted) : "cluster default";
    absl::MutexLock lock(&mu_);
    auto it = datasets_.find(offer.topic());
    if (it == datasets_.end()) continue;
    if (s.ok()) {
      it->second.retention_applied = wanted;
      it->second.retention_note.clear();
      log::Info("import_retention_set",
                {{"peer", peer_.name}, {"topic", offer.topic()}, {"retention_ms", shown}});
    } else {
      // Kafka without topic configs (a mock cluster) or an admin API we may not use: said once
      // per dataset, tried again in ten minutes.
      it->second.retention_note = std::string(s.message());
      retention_retry_at_ = absl::Now() + absl::Minutes(10);
      log::Warn("import_retention_not_set", {{"peer", peer_.name},
                                             {"topic", offer.topic()},
                                             {"retention_ms", shown},
                                             {"reason", std::string(s.message())}});
    }
  }
}

std::vector<std::string> PeerLink::DatasetsJson() {
  auto str = [](absl::string_view v) { return absl::StrCat("\"", log::JsonEscape(v), "\""); };
  auto opt_ms = [](bool has, int64_t ms) { return has ? absl::StrCat(ms) : std::string("null"); };
  auto opt_time = [&](bool has, int64_t ms) {
    return has ? str(absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixMillis(ms),
                                      absl::UTCTimeZone()))
               : std::string("null");
  };
  std::vector<std::string> out;
  absl::MutexLock lock(&mu_);
  for (const auto& [topic, ds] : datasets_) {
    const fed::ShareTerms& t = ds.offer.terms();
    std::string state = !ds.offered                                      ? "withdrawn"
                        : ds.stream != nullptr && ds.stream->withdrawn() ? "withdrawn"
                        : ds.stream != nullptr && ds.stream->streaming_partitions() > 0
                            ? "streaming"
                        : ds.assigned.empty() ? "not_assigned_here"
                                              : "connecting";
    std::string retention = "null";
    if (ds.retention_applied.has_value() && ds.retention_applied->has_value()) {
      retention = absl::StrCat(**ds.retention_applied);
    }
    out.push_back(absl::StrCat(
        "{\"peer\":", str(peer_.name), ",\"dataset\":", str(topic),
        ",\"mirror_topic\":", str(core::MirrorTopicName(peer_.name, topic)),
        ",\"dead_letter_topic\":", str(core::DeadLetterTopicName(peer_.name, topic)),
        ",\"partitions\":", ds.offer.partitions(), ",\"state\":", str(state),
        ",\"policy_version\":", str(ds.offer.policy_version()), ",\"purpose\":", str(t.purpose()),
        ",\"licence\":", str(t.licence()), ",\"owner\":{\"organisation\":",
        str(t.owner_organisation()), ",\"contact\":", str(t.owner_contact()),
        "},\"valid_from\":", opt_time(t.has_valid_from_unix_ms(), t.valid_from_unix_ms()),
        ",\"valid_until\":", opt_time(t.has_valid_until_unix_ms(), t.valid_until_unix_ms()),
        ",\"owner_retention_ms\":", opt_ms(t.has_retention_ms(), t.retention_ms()),
        ",\"retention_ms_applied\":", retention,
        ds.retention_note.empty() ? std::string()
                                  : absl::StrCat(",\"retention_note\":", str(ds.retention_note)),
        "}"));
  }
  return out;
}

void PeerLink::RunOffers() {
  core::Backoff backoff(config_.link.reconnect_backoff_initial, config_.link.reconnect_backoff_max);
  fed::Federation::Stub stub(channel_);
  int audited_state = -1;  // what the audit log last heard: -1 nothing, 0 down, 1 up
  while (true) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    fed::ListOffersRequest request;
    *request.mutable_hello() = MakeHello(config_.node);
    fed::ListOffersResponse response;
    grpc::Status status;
    {
      InFlight in_flight(this, &context);
      status = stub.ListOffers(&context, request, &response);
    }
    if (!status.ok() && stopping_flag_.load()) return;  // cancelled by Stop: not a link down
    absl::Duration wait;
    if (status.ok() && response.hello().node() != peer_.name) {
      status = grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                            absl::StrCat("peer says it is '", response.hello().node(), "'"));
    }
    if (status.ok()) {
      if (link_up_->Get() == 0) {
        log::Info("link_up", {{"peer", peer_.name},
                              {"address", peer_.address},
                              {"offers", std::to_string(response.offers_size())}});
        if (audit_ != nullptr) {
          audit::Entry up;
          up.type = audit::EntryType::kLinkUp;
          up.peer = peer_.name;
          up.identity = peer_.identity;  // the certificate was checked against it
          up.reason = absl::StrCat("receiver link to ", peer_.address);
          audit_->AppendAsync(up);
        }
      }
      link_up_->Set(1);
      audited_state = 1;
      offers_->Set(response.offers_size());
      backoff.Reset();
      std::map<std::string, int> topics;  // of offers we have no dataset for yet
      {
        absl::MutexLock lock(&mu_);
        for (const fed::DatasetOffer& offer : response.offers()) {
          if (datasets_.contains(offer.topic())) continue;
          if (!Accepts(offer.topic())) continue;  // our accept rules do not take it
          // Our topics, with the origin's partitioning (origin partition p is mirror
          // partition p).
          topics[core::MirrorTopicName(peer_.name, offer.topic())] = offer.partitions();
          topics[core::DeadLetterTopicName(peer_.name, offer.topic())] = offer.partitions();
        }
      }
      const std::map<std::string, absl::Status> ensured =
          topics.empty() ? std::map<std::string, absl::Status>() : kafka_->EnsureTopics(topics);
      bool topics_pending = false;  // some datasets' topics are not usable yet
      for (const fed::DatasetOffer& offer : response.offers()) {
        const std::string mirror = core::MirrorTopicName(peer_.name, offer.topic());
        const std::string deadletter = core::DeadLetterTopicName(peer_.name, offer.topic());
        if (!topics.contains(mirror)) continue;
        absl::Status s = ensured.at(mirror);
        if (s.ok()) s = ensured.at(deadletter);
        if (!s.ok()) {
          log::Warn("import_topic_unavailable", {{"peer", peer_.name},
                                                 {"topic", offer.topic()},
                                                 {"reason", std::string(s.message())}});
          topics_pending = true;
          continue;  // tried again with the next offers
        }
        const core::Labels labels = {{"peer", peer_.name}, {"topic", offer.topic()}};
        Dataset ds;
        ds.offer = offer;
        ds.assigned_gauge =
            metrics_->Gauge("uop_import_partitions_assigned",
                            "Origin partitions this node pulls (Kafka group assignment)", labels);
        ds.stream_up = metrics_->Gauge(
            "uop_import_stream_up", "Origin partitions currently streaming from the peer", labels);
        ds.lag_records =
            metrics_->Gauge("uop_import_lag_records",
                            "Records the owner holds that we have not written yet", labels);
        ds.lag_seconds = metrics_->Gauge(
            "uop_import_lag_seconds",
            "Age of the newest written record while lagging; 0 when caught up", labels);
        absl::MutexLock lock(&mu_);
        datasets_.emplace(offer.topic(), std::move(ds));
        subscription_changed_ = true;
      }
      {
        // Terms and versions follow the owner; a withdrawn share that is offered again resumes.
        absl::MutexLock lock(&mu_);
        for (const fed::DatasetOffer& offer : response.offers()) {
          auto it = datasets_.find(offer.topic());
          if (it == datasets_.end()) continue;
          it->second.offer = offer;
          it->second.offered = true;
          if (it->second.stream != nullptr) it->second.stream->Readmit();
        }
        for (auto& [topic, ds] : datasets_) {
          bool offered = false;
          for (const fed::DatasetOffer& offer : response.offers()) {
            offered = offered || offer.topic() == topic;
          }
          ds.offered = offered;
        }
      }
      ApplyRetention(response);
      // Offers are re-read to pick up new shares; sooner while a stream is down, so the link
      // state follows the peer within seconds.
      bool all_streaming = true;
      {
        absl::MutexLock lock(&mu_);
        // Nothing to import yet: no share, or an owner whose Kafka metadata timed out and who
        // therefore left every topic out (seen at 100 datasets on a loaded owner). Asked again
        // after the dead-peer timeout, not 15 s.
        if (datasets_.empty()) all_streaming = false;
        for (const auto& [topic, ds] : datasets_) {
          if (ds.stream != nullptr && ds.stream->withdrawn()) all_streaming = false;
          if (!ds.assigned.empty() &&
              (ds.stream == nullptr ||
               ds.stream->streaming_partitions() < static_cast<int>(ds.assigned.size()))) {
            all_streaming = false;
          }
        }
      }
      wait = all_streaming ? absl::Seconds(15) : absl::FromChrono(config_.link.dead_peer_timeout);
      // A loaded broker can take longer than EnsureTopics waits to show 200 new topics (seen at
      // 100 datasets): their datasets are tried again soon, not a dead-peer timeout later.
      if (topics_pending) wait = std::min(wait, kTopicRetry);
    } else {
      log::Warn("link_down", {{"peer", peer_.name},
                              {"address", peer_.address},
                              {"reason", status.error_message()},
                              {"code", std::to_string(status.error_code())}});
      if (audit_ != nullptr && audited_state != 0) {
        audit::Entry down;
        down.type = status.error_code() == grpc::StatusCode::PERMISSION_DENIED ||
                            status.error_code() == grpc::StatusCode::UNAUTHENTICATED
                        ? audit::EntryType::kLinkRefused
                        : audit::EntryType::kLinkDown;
        down.peer = peer_.name;
        down.identity = peer_.identity;
        down.reason = status.error_message().empty() ? absl::StrCat("code ", status.error_code())
                                                     : status.error_message();
        audit_->AppendAsync(down);
      }
      audited_state = 0;
      link_up_->Set(0);
      wait = absl::FromChrono(backoff.Next());
    }
    absl::MutexLock lock(&mu_);
    auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
    if (mu_.AwaitWithTimeout(absl::Condition(&stopping), wait)) return;
  }
}

void PeerLink::RunWitness() {
  CheckpointExchange* exchange = audit_->exchange();
  fed::Federation::Stub stub(channel_);
  const absl::Duration every = absl::FromChrono(config_.audit->checkpoint_interval);
  bool failing = false;  // log a failing call once, not every round
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), every)) return;
    }
    // A round: our offer and a request for the owner's; then at most our cosignature of the
    // owner's checkpoint, or our offer again after a conflict (and its answer).
    fed::WitnessRequest request = exchange->Request(peer_.name);
    for (int call = 0; call < 3; ++call) {
      *request.mutable_hello() = MakeHello(config_.node);
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      fed::WitnessResponse response;
      grpc::Status status;
      {
        InFlight in_flight(this, &context);
        status = stub.Witness(&context, request, &response);
      }
      if (!status.ok() && stopping_flag_.load()) return;  // cancelled by Stop
      if (status.ok() && response.hello().node() != peer_.name) {
        status = grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                              absl::StrCat("peer says it is '", response.hello().node(), "'"));
      }
      if (!status.ok()) {
        if (!failing) {
          log::Warn("witness_call_failed", {{"peer", peer_.name},
                                            {"code", std::to_string(status.error_code())},
                                            {"reason", status.error_message()}});
        }
        failing = true;
        break;
      }
      failing = false;
      absl::StatusOr<std::optional<fed::WitnessRequest>> next =
          exchange->OnResponse(peer_.name, response);
      if (!next.ok()) {
        log::Error("witness_failed",
                   {{"peer", peer_.name}, {"reason", std::string(next.status().message())}});
        break;
      }
      if (!next->has_value()) break;
      request = **std::move(next);
    }
  }
}

void PeerLink::RunGroup() {
  core::Backoff backoff(config_.link.reconnect_backoff_initial, config_.link.reconnect_backoff_max);
  while (true) {
    absl::Status status = GroupOnce();
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    const std::chrono::milliseconds delay = backoff.Next();
    log::Warn("import_group_retry", {{"peer", peer_.name},
                                     {"reason", std::string(status.message())},
                                     {"retry_in_ms", std::to_string(delay.count())}});
    auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
    if (mu_.AwaitWithTimeout(absl::Condition(&stopping), absl::FromChrono(delay))) return;
  }
}

absl::Status PeerLink::GroupOnce() {
  // The group only assigns partitions: they are paused at once and never read.
  auto consumer_or =
      kafka_->NewClient(RD_KAFKA_CONSUMER,
                        {{"group.id", group_id_},
                         {"partition.assignment.strategy", "cooperative-sticky"},
                         {"session.timeout.ms", "6000"},
                         {"heartbeat.interval.ms", "1000"},
                         {"enable.auto.commit", "false"},
                         {"auto.offset.reset", "latest"},
                         {"allow.auto.create.topics", "false"}},
                        [this](rd_kafka_conf_t* conf) {
                          rd_kafka_conf_set_opaque(conf, this);
                          rd_kafka_conf_set_rebalance_cb(
                              conf, [](rd_kafka_t* rk, rd_kafka_resp_err_t err,
                                       rd_kafka_topic_partition_list_t* partitions, void* opaque) {
                                auto* self = static_cast<PeerLink*>(opaque);
                                if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
                                  self->OnAssigned(rk, partitions);
                                } else {
                                  self->OnRevoked(rk, partitions);
                                }
                              });
                        });
  if (!consumer_or.ok()) return consumer_or.status();
  kafka::Handle consumer = *std::move(consumer_or);
  {
    absl::MutexLock lock(&mu_);
    subscription_changed_ = true;
  }
  absl::Status result = absl::OkStatus();
  while (true) {
    std::vector<std::string> topics;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
      if (subscription_changed_ && !datasets_.empty()) {
        subscription_changed_ = false;
        for (const auto& [topic, ds] : datasets_) {
          topics.push_back(core::MirrorTopicName(peer_.name, topic));
        }
      }
    }
    if (!topics.empty()) {
      kafka::PartitionList list(rd_kafka_topic_partition_list_new(static_cast<int>(topics.size())));
      for (const std::string& t : topics) {
        rd_kafka_topic_partition_list_add(list.get(), t.c_str(), RD_KAFKA_PARTITION_UA);
      }
      if (rd_kafka_resp_err_t err = rd_kafka_subscribe(consumer.get(), list.get()); err) {
        result = absl::UnavailableError(absl::StrCat("subscribe: ", rd_kafka_err2str(err)));
        break;
      }
    }
    // Serves group heartbeats and rebalance callbacks; records never come (paused).
    kafka::Message m(rd_kafka_consumer_poll(consumer.get(), 100));
    if (m && m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      log::Warn("import_group_error",
                {{"peer", peer_.name}, {"error", rd_kafka_message_errstr(m.get())}});
      if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
        result = absl::UnavailableError(rd_kafka_message_errstr(m.get()));
        break;
      }
    }
    const absl::Time now = absl::Now();
    absl::MutexLock lock(&mu_);
    for (auto& [topic, ds] : datasets_) {
      if (ds.stream != nullptr) ds.stream->Tick(now);
    }
    PublishMetrics();
  }
  // Leaving the group revokes our partitions (stopping their streams) so that the other nodes
  // of this city take them over at once.
  rd_kafka_consumer_close(consumer.get());
  absl::MutexLock lock(&mu_);
  for (auto& [topic, ds] : datasets_) {
    ds.assigned.clear();
    Reassign(&ds);
  }
  PublishMetrics();
  return result;
}

void PeerLink::Reassign(Dataset* ds) {
  int partitions = 0;
  for (const auto& [topic, d] : datasets_) partitions += static_cast<int>(d.assigned.size());
  link_partitions_.store(partitions);
  if (ds->stream != nullptr) {
    // Its transaction ends before another node may take the partitions.
    ds->stream->Stop();
    ds->stream.reset();
  }
  if (ds->assigned.empty() || stopping_) return;
  LinkContext link{&config_,        &peer_,        channel_,     kafka_,
                   metrics_,        writer_.get(), setup_.get(), recovery_.get(),
                   &stopping_flag_, audit_,        policies_,    &link_partitions_};
  ds->stream = std::make_unique<ImportStream>(
      link, ds->offer, std::vector<int32_t>(ds->assigned.begin(), ds->assigned.end()));
  ds->stream->Start();
}

void PeerLink::OnAssigned(rd_kafka_t* consumer, rd_kafka_topic_partition_list_t* partitions) {
  if (std::string_view(rd_kafka_rebalance_protocol(consumer)) == "COOPERATIVE") {
    kafka::Error err(rd_kafka_incremental_assign(consumer, partitions));
  } else {
    rd_kafka_assign(consumer, partitions);
  }
  rd_kafka_pause_partitions(consumer, partitions);
  PublishGroupMetadata(consumer);
  absl::MutexLock lock(&mu_);
  ChangeAssignment(*partitions, /*assigned=*/true);
}

void PeerLink::OnRevoked(rd_kafka_t* consumer, rd_kafka_topic_partition_list_t* partitions) {
  {
    // The streams stop (their transactions end) before the partitions are given up.
    absl::MutexLock lock(&mu_);
    ChangeAssignment(*partitions, /*assigned=*/false);
  }
  if (std::string_view(rd_kafka_rebalance_protocol(consumer)) == "COOPERATIVE") {
    kafka::Error err(rd_kafka_incremental_unassign(consumer, partitions));
  } else {
    rd_kafka_assign(consumer, nullptr);
  }
  PublishGroupMetadata(consumer);
}

void PeerLink::ChangeAssignment(const rd_kafka_topic_partition_list_t& partitions, bool assigned) {
  std::map<std::string, std::string> origin_of;  // mirror topic -> dataset
  for (const auto& [origin, ds] : datasets_) {
    origin_of[core::MirrorTopicName(peer_.name, origin)] = origin;
  }
  std::map<std::string, std::vector<int32_t>> changed;
  for (int i = 0; i < partitions.cnt; ++i) {
    auto it = origin_of.find(partitions.elems[i].topic);
    if (it == origin_of.end()) continue;
    std::set<int32_t>& held = datasets_[it->second].assigned;
    const int32_t p = partitions.elems[i].partition;
    if (assigned ? held.insert(p).second : held.erase(p) > 0) changed[it->second].push_back(p);
  }
  for (const auto& [origin, list] : changed) {
    log::Info(assigned ? "import_partitions_assigned" : "import_partitions_revoked",
              {{"peer", peer_.name}, {"topic", origin}, {"partitions", absl::StrJoin(list, ",")}});
    Reassign(&datasets_[origin]);
  }
  PublishMetrics();
}

void PeerLink::PublishGroupMetadata(rd_kafka_t* consumer) {
  rd_kafka_consumer_group_metadata_t* md = rd_kafka_consumer_group_metadata(consumer);
  if (md == nullptr) {
    // No group (any more): librdkafka answers NULL while the consumer closes. Transactions then
    // commit without positions until the next assignment.
    absl::MutexLock lock(&metadata_mu_);
    group_metadata_.clear();
    return;
  }
  void* buffer = nullptr;
  size_t size = 0;
  absl::Status s = kafka::FromError(rd_kafka_consumer_group_metadata_write(md, &buffer, &size),
                                    "group metadata");
  rd_kafka_consumer_group_metadata_destroy(md);
  std::string serialized;
  if (s.ok()) {
    serialized.assign(static_cast<const char*>(buffer), size);
    rd_kafka_mem_free(nullptr, buffer);
  } else {
    log::Warn("import_group_metadata",
              {{"peer", peer_.name}, {"reason", std::string(s.message())}});
  }
  absl::MutexLock lock(&metadata_mu_);
  group_metadata_ = std::move(serialized);
}

void PeerLink::PublishMetrics() {
  for (auto& [topic, ds] : datasets_) {
    const int up = ds.stream == nullptr ? 0 : ds.stream->streaming_partitions();
    ds.assigned_gauge->Set(static_cast<double>(ds.assigned.size()));
    ds.stream_up->Set(up);
    ds.lag_records->Set(ds.stream == nullptr ? 0 : static_cast<double>(ds.stream->lag_records()));
    ds.lag_seconds->Set(ds.stream == nullptr ? 0 : ds.stream->lag_seconds());
  }
}

}  // namespace uop::broker
