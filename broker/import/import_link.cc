// Receiver side: transactional, resumable import of a peer's dataset into our Kafka.
#include "broker/import/import_link.h"

#include <deque>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "broker/export/export_service.h"
#include "broker/grpc_status.h"
#include "broker/import/kafka_transactional_sink.h"
#include "core/backoff.h"
#include "core/log.h"
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

std::string HeaderString(rd_kafka_headers_t* headers, absl::string_view name) {
  const void* value = nullptr;
  size_t size = 0;
  if (headers == nullptr ||
      rd_kafka_header_get_last(headers, std::string(name).c_str(), &value, &size) !=
          RD_KAFKA_RESP_ERR_NO_ERROR ||
      value == nullptr) {
    return {};
  }
  return std::string(static_cast<const char*>(value), size);
}

}  // namespace

ImportSubscription::ImportSubscription(const NodeConfig& config, const PeerConfig& peer,
                                       std::shared_ptr<grpc::Channel> channel,
                                       fed::DatasetOffer offer, int32_t partition,
                                       kafka::Env* kafka, core::Metrics* metrics,
                                       std::string group_id,
                                       std::function<std::string()> group_metadata)
    : config_(config),
      peer_(peer),
      channel_(std::move(channel)),
      offer_(std::move(offer)),
      partition_(partition),
      target_topic_(core::MirrorTopicName(peer.name, offer_.topic())),
      deadletter_topic_(core::DeadLetterTopicName(peer.name, offer_.topic())),
      kafka_(kafka),
      metrics_(metrics),
      group_id_(std::move(group_id)),
      group_metadata_(std::move(group_metadata)) {
  const core::Labels labels = {{"peer", peer_.name}, {"topic", offer_.topic()}};
  records_written_ = metrics_->Counter("uop_import_records_total",
                                       "Records written to our Kafka from a peer", labels);
  batches_written_ = metrics_->Counter("uop_import_batches_total", "Batches written", labels);
  duplicates_dropped_ = metrics_->Counter("uop_import_duplicates_dropped_total",
                                          "Replayed records dropped (already held)", labels);
  deadlettered_ = metrics_->Counter("uop_import_deadletter_total",
                                    "Records written to the dead-letter topic", labels);
  reconnects_ = metrics_->Counter("uop_import_reconnects_total",
                                  "Subscription restarts after an error", labels);
  transactions_ =
      metrics_->Counter("uop_import_transactions_total", "Kafka transactions committed", labels);
}

ImportSubscription::~ImportSubscription() { Stop(); }

void ImportSubscription::Start() {
  thread_ = std::thread([this] { Run(); });
}

void ImportSubscription::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (active_context_ != nullptr) active_context_->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
}

void ImportSubscription::Run() {
  core::Backoff backoff(config_.link.reconnect_backoff_initial, config_.link.reconnect_backoff_max);
  while (true) {
    bool progressed = false;
    absl::Status status = RunOnce(&progressed);
    streaming_.store(false);
    absl::MutexLock lock(&mu_);
    if (stopping_) break;
    if (progressed) backoff.Reset();
    const std::chrono::milliseconds delay = backoff.Next();
    reconnects_->Add(1);
    log::Warn("import_subscription_retry", {{"peer", peer_.name},
                                            {"topic", offer_.topic()},
                                            {"partition", std::to_string(partition_)},
                                            {"reason", std::string(status.message())},
                                            {"retry_in_ms", std::to_string(delay.count())}});
    auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
    if (mu_.AwaitWithTimeout(absl::Condition(&stopping), absl::FromChrono(delay))) break;
  }
}

absl::StatusOr<std::map<int32_t, core::PartitionCheckpoint>> ImportSubscription::Recover() {
  std::map<int32_t, core::PartitionCheckpoint> checkpoints;
  checkpoints[partition_] = core::PartitionCheckpoint();
  auto consumer_or = kafka_->NewClient(RD_KAFKA_CONSUMER,
                                       {{"group.id", absl::StrCat("uop-recover.", config_.node)},
                                        {"enable.auto.commit", "false"},
                                        {"enable.auto.offset.store", "false"},
                                        {"isolation.level", "read_committed"},
                                        {"enable.partition.eof", "true"}});
  if (!consumer_or.ok()) return consumer_or.status();
  kafka::Handle consumer = *std::move(consumer_or);
  // The last records of each partition of the mirror topic and its dead-letter topic tell
  // exactly which origin offsets we hold: records are written in origin order.
  for (const std::string& topic : {target_topic_, deadletter_topic_}) {
    std::map<int32_t, std::pair<int64_t, int64_t>> ranges;  // partition -> [low, high)
    for (int p : {partition_}) {
      int64_t low = 0, high = 0;
      rd_kafka_resp_err_t err =
          rd_kafka_query_watermark_offsets(consumer.get(), topic.c_str(), p, &low, &high, 10000);
      if (err) {
        return absl::UnavailableError(
            absl::StrCat("recover: watermarks of ", topic, "[", p, "]: ", rd_kafka_err2str(err)));
      }
      if (high > low) ranges[p] = {low, high};
    }
    int64_t window = 64;
    while (!ranges.empty()) {
      kafka::PartitionList list(rd_kafka_topic_partition_list_new(static_cast<int>(ranges.size())));
      std::map<int32_t, int64_t> starts;
      for (const auto& [p, range] : ranges) {
        starts[p] = std::max(range.first, range.second - window);
        rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), p)->offset = starts[p];
      }
      if (rd_kafka_resp_err_t err = rd_kafka_assign(consumer.get(), list.get()); err) {
        return absl::UnavailableError(absl::StrCat("recover: assign: ", rd_kafka_err2str(err)));
      }
      std::set<int32_t> open;
      for (const auto& [p, range] : ranges) open.insert(p);
      std::set<int32_t> found;
      const absl::Time deadline = absl::Now() + absl::Seconds(60);
      while (!open.empty()) {
        if (absl::Now() > deadline) {
          return absl::DeadlineExceededError(
              absl::StrCat("recover: reading the tail of ", topic, " took more than 60 s"));
        }
        kafka::Message m(rd_kafka_consumer_poll(consumer.get(), 200));
        if (!m) continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
          open.erase(m->partition);
          continue;
        }
        if (m->err) {
          return absl::UnavailableError(
              absl::StrCat("recover: reading ", topic, ": ", rd_kafka_message_errstr(m.get())));
        }
        rd_kafka_headers_t* headers = nullptr;
        rd_kafka_message_headers(m.get(), &headers);
        int64_t origin_offset = -1;
        if (!absl::SimpleAtoi(HeaderString(headers, core::kHeaderOriginOffset), &origin_offset))
          continue;
        checkpoints[m->partition].Advance(origin_offset,
                                          HeaderString(headers, core::kHeaderResume));
        found.insert(m->partition);
      }
      rd_kafka_assign(consumer.get(), nullptr);
      // Partitions whose window held no mirrored record (only transaction markers or aborted
      // data) are read again with a wider window, down to the start of the partition.
      for (auto it = ranges.begin(); it != ranges.end();) {
        if (found.contains(it->first) || starts[it->first] <= it->second.first) {
          it = ranges.erase(it);
        } else {
          ++it;
        }
      }
      window *= 16;
    }
  }
  rd_kafka_consumer_close(consumer.get());

  // The position committed with the last transaction, as the import group's offset: it
  // survives a mirror partition emptied by retention or delete-records, where the tails above
  // hold no record. It is used only then: when the tails hold records they decide, as before,
  // and never after CloseHangingTransactions aborted records, since the offset of that very
  // transaction may have committed while its records were aborted. (librdkafka's mock cluster
  // accepts but does not keep transactional offsets: there, the tails always decide.)
  if (checkpoints[partition_].last_offset() >= 0 || closed_hanging_) return checkpoints;
  auto group = kafka_->NewClient(RD_KAFKA_CONSUMER, {{"group.id", group_id_},
                                                     {"enable.auto.commit", "false"},
                                                     {"isolation.level", "read_committed"}});
  if (!group.ok()) return group.status();
  kafka::PartitionList committed(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(committed.get(), target_topic_.c_str(), partition_);
  // read_committed: the fetch waits for a pending transactional commit (require_stable).
  if (absl::Status s = kafka::FromCode(rd_kafka_committed(group->get(), committed.get(), 10000),
                                       "recover: committed position");
      !s.ok()) {
    return s;
  }
  const rd_kafka_topic_partition_t& tp = committed->elems[0];
  if (absl::Status s = kafka::FromCode(tp.err, "recover: committed position of the partition");
      !s.ok()) {
    return s;  // never fall back to "nothing held" on an error: that would rewrite everything
  }
  if (tp.offset >= 0 || tp.metadata_size > 0) {
    std::optional<core::PartitionCheckpoint> position = core::DecodePositionMetadata(
        absl::string_view(static_cast<const char*>(tp.metadata), tp.metadata_size));
    core::PartitionCheckpoint& cp = checkpoints[partition_];
    if (!position.has_value()) {
      // Not ours (e.g. kafka-consumer-groups --reset-offsets): say so, start from the tails.
      log::Warn("import_position_unreadable", {{"topic", target_topic_},
                                               {"partition", std::to_string(partition_)},
                                               {"group", group_id_},
                                               {"offset", std::to_string(tp.offset)}});
    } else if (position->last_offset() > cp.last_offset()) {
      log::Warn("import_position_from_group",
                {{"topic", target_topic_},
                 {"partition", std::to_string(partition_)},
                 {"tail_offset", std::to_string(cp.last_offset())},
                 {"group_offset", std::to_string(position->last_offset())}});
      cp.Advance(position->last_offset(), position->token());
    }
  }
  rd_kafka_consumer_close(group->get());
  return checkpoints;
}

// A broker restart can make the transaction coordinator skip the markers of a transaction whose
// partition had no leader at that moment (single-broker clusters): the client was told
// "committed", yet the records stay open in the partition, behind the last stable offset. A
// read_committed recovery would not see them, and our next commit (same producer id) would make
// them visible: written twice (found by the fault rounds, seed 165847882). So when the last
// stable offset lags the high watermark after init_transactions, we abort a transaction on that
// partition: its marker closes the hanging records as aborted, and recovery rewrites them once.
absl::Status ImportSubscription::CloseHangingTransactions(rd_kafka_t* producer) {
  auto committed = kafka_->NewClient(RD_KAFKA_CONSUMER,
                                     {{"group.id", absl::StrCat("uop-recover.", config_.node)},
                                      {"isolation.level", "read_committed"}});
  auto uncommitted = kafka_->NewClient(RD_KAFKA_CONSUMER,
                                       {{"group.id", absl::StrCat("uop-recover.", config_.node)},
                                        {"isolation.level", "read_uncommitted"}});
  if (!committed.ok()) return committed.status();
  if (!uncommitted.ok()) return uncommitted.status();
  auto ends = [&](const std::string& topic) -> absl::StatusOr<std::pair<int64_t, int64_t>> {
    int64_t low = 0, stable = 0, high = 0;
    rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(committed->get(), topic.c_str(),
                                                               partition_, &low, &stable, 10000);
    if (!err) {
      err = rd_kafka_query_watermark_offsets(uncommitted->get(), topic.c_str(), partition_, &low,
                                             &high, 10000);
    }
    if (err) {
      return absl::UnavailableError(
          absl::StrCat("watermarks of ", topic, "[", partition_, "]: ", rd_kafka_err2str(err)));
    }
    return std::make_pair(stable, high);
  };
  for (const std::string& topic : {target_topic_, deadletter_topic_}) {
    auto before = ends(topic);
    if (!before.ok()) return before.status();
    if (before->first >= before->second) continue;
    closed_hanging_ = true;
    log::Warn("import_hanging_transaction", {{"topic", topic},
                                             {"partition", std::to_string(partition_)},
                                             {"last_stable_offset", std::to_string(before->first)},
                                             {"high_watermark", std::to_string(before->second)}});
    if (absl::Status s = kafka::FromError(rd_kafka_begin_transaction(producer), "begin"); !s.ok()) {
      return s;
    }
    // A record nobody will see (aborted) puts the partition into the transaction.
    absl::Status fence =
        kafka::FromCode(rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(topic.c_str()),
                                          RD_KAFKA_V_PARTITION(partition_),
                                          RD_KAFKA_V_KEY("uop.fence", 9), RD_KAFKA_V_END),
                        "fence record");
    if (fence.ok()) fence = kafka::FromCode(rd_kafka_flush(producer, 30000), "flush fence record");
    absl::Status abort = kafka::FromError(rd_kafka_abort_transaction(producer, 30000), "abort");
    if (!fence.ok()) {
      return abort.ok() ? fence
                        : absl::Status(fence.code(),
                                       absl::StrCat(fence.message(), " (", abort.message(), ")"));
    }
    if (!abort.ok()) return abort;
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (true) {
      auto after = ends(topic);
      if (!after.ok()) return after.status();
      if (after->first >= after->second) break;
      if (absl::Now() > deadline) {
        return absl::FailedPreconditionError(
            absl::StrCat(topic, "[", partition_, "] still has an open transaction below offset ",
                         after->second, " (last stable ", after->first,
                         "); inspect it with kafka-transactions.sh find-hanging"));
      }
      absl::SleepFor(absl::Milliseconds(200));  // poll interval for the markers to land
    }
  }
  return absl::OkStatus();
}

absl::Status ImportSubscription::RunOnce(bool* progressed) {
  // 1. (Our topics exist: ImportDataset made them.) 2. Fence any earlier writer of this
  // partition: init_transactions aborts a restarted or zombie instance's open transaction.
  absl::StatusOr<std::unique_ptr<KafkaTransactionalSink>> sink_or = KafkaTransactionalSink::Create(
      kafka_, absl::StrCat("uop-import.", config_.node, ".", target_topic_, ".", partition_),
      target_topic_, deadletter_topic_, group_metadata_);
  if (!sink_or.ok()) return sink_or.status();
  std::unique_ptr<KafkaTransactionalSink> sink = *std::move(sink_or);
  closed_hanging_ = false;
  if (absl::Status s = CloseHangingTransactions(sink->producer()); !s.ok()) return s;
  // 3. Where we are, from our own Kafka only.
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::CancelledError("stopping");
  }
  auto checkpoints = Recover();
  if (!checkpoints.ok()) return checkpoints.status();
  ImportSession session({config_.link.window_batches, config_.link.window_bytes}, peer_.name,
                        offer_.topic(), *std::move(checkpoints), core::Clock::Real());

  // 4. Subscribe from there.
  grpc::ClientContext context;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::CancelledError("stopping");
    active_context_ = &context;
  }
  auto clear_context = [this] {
    absl::MutexLock lock(&mu_);
    active_context_ = nullptr;
  };
  fed::Federation::Stub stub(channel_);
  std::unique_ptr<grpc::ClientReaderWriter<fed::ReceiverMessage, fed::OwnerMessage>> stream =
      stub.Replicate(&context);
  fed::OwnerMessage first;
  if (!stream->Write(session.SubscribeMessage(MakeHello(config_.node))) || !stream->Read(&first)) {
    absl::Status st = FromGrpcStatus(stream->Finish());
    clear_context();
    return absl::Status(st.code(), absl::StrCat("subscribe to ", peer_.name, "/", offer_.topic(),
                                                ": ", st.message()));
  }
  if (absl::Status s = session.OnSubscribed(first, offer_.partitions()); !s.ok()) {
    context.TryCancel();
    stream->Finish();
    clear_context();
    return s;
  }
  streaming_.store(true);
  log::Info("import_stream_started", {{"peer", peer_.name},
                                      {"topic", offer_.topic()},
                                      {"target", target_topic_},
                                      {"partition", std::to_string(partition_)},
                                      {"policy", session.policy_version()}});

  // 5. Reader thread: owner messages into the session (its queue is bounded by our credit).
  // The writer holds `session_mu` while it writes a transaction, so the reader waits then.
  absl::Mutex session_mu;
  bool reader_done = false;  // guarded by session_mu
  absl::Status violation;    // guarded by session_mu
  std::atomic<int64_t> last_heard_ms{absl::ToUnixMillis(absl::Now())};
  std::thread reader([&] {
    fed::OwnerMessage msg;
    while (stream->Read(&msg)) {
      last_heard_ms.store(absl::ToUnixMillis(absl::Now()));
      absl::MutexLock lock(&session_mu);
      if (absl::Status s = session.OnOwnerMessage(std::move(msg)); !s.ok()) {
        violation = s;
        break;
      }
    }
    absl::MutexLock lock(&session_mu);
    reader_done = true;
  });

  absl::Status result = absl::OkStatus();
  const absl::Duration heartbeat_interval = absl::FromChrono(config_.link.heartbeat_interval);
  const absl::Duration dead_peer_timeout = absl::FromChrono(config_.link.dead_peer_timeout);
  // Writes to the stream come from this thread (acks, credit) and from the heartbeat thread,
  // which keeps the owner informed while a long Kafka transaction blocks this one.
  absl::Mutex write_mu;
  absl::Time last_sent = absl::Now();
  bool write_failed = false;
  auto write = [&](const fed::ReceiverMessage& msg) {
    absl::MutexLock lock(&write_mu);
    if (write_failed) return false;
    write_failed = !stream->Write(msg);
    last_sent = absl::Now();
    return !write_failed;
  };
  absl::Notification heartbeats_done;
  std::thread heartbeats([&] {
    while (!heartbeats_done.WaitForNotificationWithTimeout(heartbeat_interval / 4)) {
      bool due = false;
      {
        absl::MutexLock lock(&write_mu);
        due = !write_failed && absl::Now() - last_sent >= heartbeat_interval;
      }
      if (!due) continue;
      fed::ReceiverMessage hb;
      hb.mutable_heartbeat()->set_sent_unix_ms(absl::ToUnixMillis(absl::Now()));
      if (!write(hb)) return;
    }
  });
  NoAuditSink audit;
  ImportSession::Stats reported;
  // While we write a transaction the reader is held up, so silence is counted from the later of
  // the last message and the end of the last write.
  absl::Time last_write_end = absl::Now();
  while (true) {
    absl::StatusOr<std::vector<fed::ReceiverMessage>> replies;
    {
      absl::MutexLock lock(&session_mu);
      auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(session_mu) {
        return session.has_queued() || reader_done;
      };
      session_mu.AwaitWithTimeout(absl::Condition(&ready), heartbeat_interval / 4);
      if (!violation.ok()) {
        log::Warn("import_protocol_violation", {{"peer", peer_.name},
                                                {"topic", offer_.topic()},
                                                {"partition", std::to_string(partition_)},
                                                {"reason", std::string(violation.message())}});
        result = violation;
        break;
      }
      if (reader_done) {
        result = absl::UnavailableError("stream ended by the owner");
        break;
      }
      const absl::Time heard = std::max(absl::FromUnixMillis(last_heard_ms.load()), last_write_end);
      if (absl::Now() - heard > dead_peer_timeout) {
        result = absl::UnavailableError(
            absl::StrCat("no message from ", peer_.name, " within the dead-peer timeout"));
        break;
      }
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) {
          result = absl::CancelledError("stopping");
          break;
        }
      }
      if (session.has_queued()) {
        replies = session.WriteQueued(sink.get(), &audit, &refused_);
        last_write_end = absl::Now();
        if (!replies.ok()) {
          result = replies.status();
          break;
        }
        for (const RefusedRecord& r : session.last_deadletters()) {
          log::Warn("import_deadletter", {{"peer", peer_.name},
                                          {"topic", offer_.topic()},
                                          {"partition", std::to_string(r.partition)},
                                          {"offset", std::to_string(r.offset)},
                                          {"reason", r.reason}});
        }
      }
      const ImportSession::Stats& now = session.stats();
      records_written_->Add(static_cast<double>(now.written - reported.written));
      deadlettered_->Add(static_cast<double>(now.deadletters - reported.deadletters));
      duplicates_dropped_->Add(static_cast<double>(now.duplicates - reported.duplicates));
      batches_written_->Add(static_cast<double>(now.batches - reported.batches));
      transactions_->Add(static_cast<double>(now.transactions - reported.transactions));
      reported = now;
      lag_records_.store(session.lag_records());
      lag_seconds_.store(session.lag_seconds());
    }
    if (replies.ok() && !replies->empty()) {
      *progressed = true;
      for (const fed::ReceiverMessage& reply : *replies) {
        if (!write(reply)) {
          result = absl::UnavailableError("stream to owner closed");
          break;
        }
      }
      if (!result.ok()) break;
    }
  }
  heartbeats_done.Notify();
  heartbeats.join();
  context.TryCancel();
  reader.join();
  grpc::Status final_status = stream->Finish();
  clear_context();
  if (!final_status.ok() && final_status.error_code() != grpc::StatusCode::CANCELLED) {
    result = absl::Status(static_cast<absl::StatusCode>(final_status.error_code()),
                          absl::StrCat(peer_.name, ": ", final_status.error_message()));
  }
  return result;
}

ImportDataset::ImportDataset(const NodeConfig& config, const PeerConfig& peer,
                             std::shared_ptr<grpc::Channel> channel, fed::DatasetOffer offer,
                             kafka::Env* kafka, core::Metrics* metrics)
    : config_(config),
      peer_(peer),
      channel_(std::move(channel)),
      offer_(std::move(offer)),
      target_topic_(core::MirrorTopicName(peer.name, offer_.topic())),
      kafka_(kafka),
      metrics_(metrics),
      group_id_(absl::StrCat("uop-import.", config.node, ".", target_topic_)) {
  const core::Labels labels = {{"peer", peer_.name}, {"topic", offer_.topic()}};
  assigned_ = metrics_->Gauge("uop_import_partitions_assigned",
                              "Origin partitions this node pulls (Kafka group assignment)", labels);
  stream_up_ = metrics_->Gauge("uop_import_stream_up",
                               "Partition streams currently flowing from the peer", labels);
  lag_records_ = metrics_->Gauge("uop_import_lag_records",
                                 "Records the owner holds that we have not written yet", labels);
  lag_seconds_ = metrics_->Gauge(
      "uop_import_lag_seconds",
      "Age of the newest written record of the most lagging partition; 0 when caught up", labels);
}

ImportDataset::~ImportDataset() { Stop(); }

void ImportDataset::Start() {
  thread_ = std::thread([this] { Run(); });
}

void ImportDataset::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void ImportDataset::Run() {
  core::Backoff backoff(config_.link.reconnect_backoff_initial, config_.link.reconnect_backoff_max);
  while (true) {
    absl::Status status = RunGroup();
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    const std::chrono::milliseconds delay = backoff.Next();
    log::Warn("import_dataset_retry", {{"peer", peer_.name},
                                       {"topic", offer_.topic()},
                                       {"reason", std::string(status.message())},
                                       {"retry_in_ms", std::to_string(delay.count())}});
    auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
    if (mu_.AwaitWithTimeout(absl::Condition(&stopping), absl::FromChrono(delay))) return;
  }
}

absl::Status ImportDataset::RunGroup() {
  // Our topics, with the origin's partitioning (origin partition p is mirror partition p).
  if (absl::Status s = kafka_->EnsureTopic(target_topic_, offer_.partitions()); !s.ok()) return s;
  if (absl::Status s = kafka_->EnsureTopic(core::DeadLetterTopicName(peer_.name, offer_.topic()),
                                           offer_.partitions());
      !s.ok()) {
    return s;
  }
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
                                auto* self = static_cast<ImportDataset*>(opaque);
                                if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
                                  self->OnAssigned(rk, partitions);
                                } else {
                                  self->OnRevoked(rk, partitions);
                                }
                              });
                        });
  if (!consumer_or.ok()) return consumer_or.status();
  kafka::Handle consumer = *std::move(consumer_or);
  rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(topics, target_topic_.c_str(), RD_KAFKA_PARTITION_UA);
  rd_kafka_resp_err_t err = rd_kafka_subscribe(consumer.get(), topics);
  rd_kafka_topic_partition_list_destroy(topics);
  if (err) return absl::UnavailableError(absl::StrCat("subscribe: ", rd_kafka_err2str(err)));
  absl::Status result = absl::OkStatus();
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
    }
    // Serves group heartbeats and rebalance callbacks; records never come (paused).
    kafka::Message m(rd_kafka_consumer_poll(consumer.get(), 200));
    if (m && m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      log::Warn("import_group_error",
                {{"topic", target_topic_}, {"error", rd_kafka_message_errstr(m.get())}});
      if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
        result = absl::UnavailableError(rd_kafka_message_errstr(m.get()));
        break;
      }
    }
    PublishMetrics();
  }
  // Leaving the group revokes our partitions (stopping their subscriptions) so that the other
  // nodes of this city take them over at once.
  rd_kafka_consumer_close(consumer.get());
  for (auto& [p, sub] : partitions_) sub->Stop();
  partitions_.clear();
  PublishMetrics();
  return result;
}

void ImportDataset::OnAssigned(rd_kafka_t* consumer, rd_kafka_topic_partition_list_t* partitions) {
  const bool cooperative = std::string_view(rd_kafka_rebalance_protocol(consumer)) == "COOPERATIVE";
  if (cooperative) {
    kafka::Error err(rd_kafka_incremental_assign(consumer, partitions));
  } else {
    rd_kafka_assign(consumer, partitions);
  }
  rd_kafka_pause_partitions(consumer, partitions);
  PublishGroupMetadata(consumer);
  std::string list;
  for (int i = 0; i < partitions->cnt; ++i) {
    const int32_t p = partitions->elems[i].partition;
    absl::StrAppend(&list, list.empty() ? "" : ",", p);
    if (partitions_.contains(p)) continue;
    auto sub = std::make_unique<ImportSubscription>(config_, peer_, channel_, offer_, p, kafka_,
                                                    metrics_, group_id_, [this] {
                                                      absl::MutexLock lock(&metadata_mu_);
                                                      return group_metadata_;
                                                    });
    sub->Start();
    partitions_[p] = std::move(sub);
  }
  log::Info("import_partitions_assigned",
            {{"peer", peer_.name}, {"topic", offer_.topic()}, {"partitions", list}});
  PublishMetrics();
}

void ImportDataset::OnRevoked(rd_kafka_t* consumer, rd_kafka_topic_partition_list_t* partitions) {
  std::string list;
  for (int i = 0; i < partitions->cnt; ++i) {
    const int32_t p = partitions->elems[i].partition;
    absl::StrAppend(&list, list.empty() ? "" : ",", p);
    auto it = partitions_.find(p);
    if (it == partitions_.end()) continue;
    it->second->Stop();  // its transaction ends before another node may take the partition
    partitions_.erase(it);
  }
  if (std::string_view(rd_kafka_rebalance_protocol(consumer)) == "COOPERATIVE") {
    kafka::Error err(rd_kafka_incremental_unassign(consumer, partitions));
  } else {
    rd_kafka_assign(consumer, nullptr);
  }
  PublishGroupMetadata(consumer);
  log::Info("import_partitions_revoked",
            {{"peer", peer_.name}, {"topic", offer_.topic()}, {"partitions", list}});
  PublishMetrics();
}

void ImportDataset::PublishGroupMetadata(rd_kafka_t* consumer) {
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
              {{"topic", target_topic_}, {"reason", std::string(s.message())}});
  }
  absl::MutexLock lock(&metadata_mu_);
  group_metadata_ = std::move(serialized);
}

void ImportDataset::PublishMetrics() {
  int64_t lag = 0, up = 0;
  double lag_seconds = 0;
  for (const auto& [p, sub] : partitions_) {
    lag += sub->lag_records();
    lag_seconds = std::max(lag_seconds, sub->lag_seconds());
    up += sub->streaming() ? 1 : 0;
  }
  assigned_->Set(static_cast<double>(partitions_.size()));
  stream_up_->Set(static_cast<double>(up));
  lag_records_->Set(static_cast<double>(lag));
  lag_seconds_->Set(lag_seconds);
  // A node with no partitions (more nodes than partitions) is not "down".
  streaming_.store(up == static_cast<int64_t>(partitions_.size()));
}

PeerLink::PeerLink(const NodeConfig& config, const PeerConfig& peer,
                   const std::shared_ptr<const PeerAuthenticator>& auth, kafka::Env* kafka,
                   core::Metrics* metrics)
    : config_(config), peer_(peer), kafka_(kafka), metrics_(metrics) {
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
}

PeerLink::~PeerLink() { Stop(); }

void PeerLink::Start() {
  thread_ = std::thread([this] { Run(); });
}

void PeerLink::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
  for (auto& [topic, dataset] : datasets_) dataset->Stop();
  datasets_.clear();
}

void PeerLink::Run() {
  core::Backoff backoff(config_.link.reconnect_backoff_initial, config_.link.reconnect_backoff_max);
  fed::Federation::Stub stub(channel_);
  while (true) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    fed::ListOffersRequest request;
    *request.mutable_hello() = MakeHello(config_.node);
    fed::ListOffersResponse response;
    grpc::Status status = stub.ListOffers(&context, request, &response);
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
      }
      link_up_->Set(1);
      offers_->Set(response.offers_size());
      backoff.Reset();
      for (const fed::DatasetOffer& offer : response.offers()) {
        if (datasets_.contains(offer.topic())) continue;
        auto dataset =
            std::make_unique<ImportDataset>(config_, peer_, channel_, offer, kafka_, metrics_);
        dataset->Start();
        datasets_[offer.topic()] = std::move(dataset);
      }
      // Offers are re-read to pick up new shares; sooner while a subscription is down, so the
      // link state follows the peer within seconds.
      bool all_streaming = true;
      for (const auto& [topic, dataset] : datasets_) all_streaming &= dataset->streaming();
      wait = all_streaming ? absl::Seconds(15) : absl::FromChrono(config_.link.dead_peer_timeout);
    } else {
      log::Warn("link_down", {{"peer", peer_.name},
                              {"address", peer_.address},
                              {"reason", status.error_message()},
                              {"code", std::to_string(status.error_code())}});
      link_up_->Set(0);
      wait = absl::FromChrono(backoff.Next());
    }
    absl::MutexLock lock(&mu_);
    auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
    if (mu_.AwaitWithTimeout(absl::Condition(&stopping), wait)) return;
  }
}

}  // namespace uop::broker
