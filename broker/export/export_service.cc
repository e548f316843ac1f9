// Owner side: authenticate, authorize by policy, then stream a topic within the receiver's credit.
#include "broker/export/export_service.h"

#include <deque>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "core/log.h"
#include "core/provenance.h"

namespace uop::broker {

namespace fed = uop::federation::v1;

ExportService::ExportService(const NodeConfig& config,
                             std::shared_ptr<const PeerAuthenticator> auth, PolicyProvider policies,
                             kafka::Env* kafka, core::Metrics* metrics)
    : config_(config),
      auth_(std::move(auth)),
      policies_(std::move(policies)),
      kafka_(kafka),
      metrics_(metrics) {}

absl::StatusOr<std::string> ExportService::AuthenticateCall(grpc::ServerContext* context,
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

grpc::Status ExportService::ListOffers(grpc::ServerContext* context,
                                       const fed::ListOffersRequest* request,
                                       fed::ListOffersResponse* response) {
  absl::StatusOr<std::string> peer = AuthenticateCall(context, request->hello());
  if (!peer.ok()) {
    log::Warn("offers_refused",
              {{"client", context->peer()}, {"reason", std::string(peer.status().message())}});
    return ToGrpcStatus(peer.status());
  }
  std::shared_ptr<const policy::PolicySnapshot> snapshot = policies_();
  response->mutable_hello()->set_node(config_.node);
  response->mutable_hello()->set_protocol_version(kProtocolVersion);
  response->mutable_hello()->set_software(std::string(kSoftware));
  for (const std::string& topic : snapshot->TopicsFor(*peer)) {
    absl::StatusOr<int> partitions = kafka_->PartitionCount(topic);
    if (!partitions.ok()) {
      log::Warn("offer_topic_unavailable",
                {{"peer", *peer},
                 {"topic", topic},
                 {"reason", std::string(partitions.status().message())}});
      continue;
    }
    fed::DatasetOffer* offer = response->add_offers();
    offer->set_topic(topic);
    offer->set_partitions(*partitions);
    offer->set_policy_version(snapshot->version());
  }
  return grpc::Status::OK;
}

namespace {

// What the reader thread learns from the receiver, shared with the sending loop.
struct ReceiverState {
  absl::Mutex mu;
  int64_t batch_credit ABSL_GUARDED_BY(mu) = 0;
  int64_t byte_credit ABSL_GUARDED_BY(mu) = 0;
  uint64_t acked_through ABSL_GUARDED_BY(mu) = 0;
  bool done ABSL_GUARDED_BY(mu) = false;
  std::string protocol_error ABSL_GUARDED_BY(mu);
  absl::Time last_heard ABSL_GUARDED_BY(mu) = absl::Now();
};

struct SentBatch {
  uint64_t seq;
  int32_t partition;
  int64_t next_offset;
  int records;
};

}  // namespace

grpc::Status ExportService::Replicate(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<fed::OwnerMessage, fed::ReceiverMessage>* stream) {
  fed::ReceiverMessage first;
  if (!stream->Read(&first)) return grpc::Status(grpc::StatusCode::CANCELLED, "no subscribe");
  if (!first.has_subscribe()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "first message must be subscribe");
  }
  const fed::Subscribe& sub = first.subscribe();
  absl::StatusOr<std::string> peer_or = AuthenticateCall(context, sub.hello());
  if (!peer_or.ok()) {
    log::Warn("subscribe_refused",
              {{"client", context->peer()}, {"reason", std::string(peer_or.status().message())}});
    return ToGrpcStatus(peer_or.status());
  }
  const std::string peer = *peer_or;
  const std::string& topic = sub.topic();
  std::shared_ptr<const policy::PolicySnapshot> snapshot = policies_();
  const core::Labels labels = {{"peer", peer}, {"topic", topic}};
  if (!snapshot->Allows(topic, peer)) {
    metrics_->Counter("uop_export_refused_total", "Subscriptions refused by policy", labels)
        ->Add(1);
    log::Warn("subscribe_denied",
              {{"peer", peer}, {"topic", topic}, {"policy", snapshot->version()}});
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        absl::StrCat("dataset '", topic, "' is not shared with peer '", peer, "'"));
  }
  absl::StatusOr<int> partition_count = kafka_->PartitionCount(topic);
  if (!partition_count.ok()) return ToGrpcStatus(partition_count.status());

  kafka::PartitionList assignment(rd_kafka_topic_partition_list_new(partition_count.value()));
  if (sub.partitions().empty()) {
    for (int p = 0; p < *partition_count; ++p) {
      rd_kafka_topic_partition_list_add(assignment.get(), topic.c_str(), p)->offset =
          RD_KAFKA_OFFSET_BEGINNING;
    }
  }
  for (const fed::PartitionStart& start : sub.partitions()) {
    if (start.partition() < 0 || start.partition() >= *partition_count) {
      return grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT,
          absl::StrCat("partition ", start.partition(), " out of range 0..", *partition_count - 1));
    }
    int64_t offset = RD_KAFKA_OFFSET_BEGINNING;
    if (!start.resume_token().empty()) {
      std::optional<int64_t> decoded = core::DecodeOffsetToken(start.resume_token());
      if (!decoded.has_value()) {
        return grpc::Status(
            grpc::StatusCode::INVALID_ARGUMENT,
            absl::StrCat("partition ", start.partition(), ": unknown resume token"));
      }
      offset = *decoded;
    }
    rd_kafka_topic_partition_list_add(assignment.get(), topic.c_str(), start.partition())->offset =
        offset;
  }

  absl::StatusOr<kafka::Handle> consumer_or = kafka_->NewClient(
      RD_KAFKA_CONSUMER, {{"group.id", absl::StrCat("uop-export.", config_.node, ".", peer)},
                          {"enable.auto.commit", "false"},
                          {"enable.auto.offset.store", "false"},
                          {"isolation.level", "read_committed"},
                          {"auto.offset.reset", "earliest"},
                          // Bounded read-ahead; large enough to avoid the fetch stalls measured
                          // with the defaults (docs/librdkafka.md).
                          {"queued.min.messages", "200000"},
                          {"queued.max.messages.kbytes", "4096"},
                          {"fetch.wait.max.ms", "50"}});
  if (!consumer_or.ok()) return ToGrpcStatus(consumer_or.status());
  kafka::Handle consumer = *std::move(consumer_or);
  if (rd_kafka_resp_err_t err = rd_kafka_assign(consumer.get(), assignment.get()); err) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        absl::StrCat("kafka assign: ", rd_kafka_err2str(err)));
  }
  kafka::Queue queue(rd_kafka_queue_get_consumer(consumer.get()));

  fed::OwnerMessage subscribed;
  subscribed.mutable_subscribed()->mutable_hello()->set_node(config_.node);
  subscribed.mutable_subscribed()->mutable_hello()->set_protocol_version(kProtocolVersion);
  subscribed.mutable_subscribed()->mutable_hello()->set_software(std::string(kSoftware));
  subscribed.mutable_subscribed()->set_topic(topic);
  subscribed.mutable_subscribed()->set_partitions(*partition_count);
  subscribed.mutable_subscribed()->set_policy_version(snapshot->version());
  if (!stream->Write(subscribed)) return grpc::Status(grpc::StatusCode::CANCELLED, "peer gone");
  log::Info("export_stream_started", {{"peer", peer},
                                      {"topic", topic},
                                      {"partitions", std::to_string(assignment->cnt)},
                                      {"policy", snapshot->version()}});

  core::MetricValue* m_records =
      metrics_->Counter("uop_export_records_total", "Records sent to peers", labels);
  core::MetricValue* m_bytes = metrics_->Counter(
      "uop_export_bytes_total", "Serialized record batch bytes sent to peers", labels);
  core::MetricValue* m_batches =
      metrics_->Counter("uop_export_batches_total", "Batches sent", labels);
  core::MetricValue* m_acked = metrics_->Counter(
      "uop_export_acked_records_total", "Records the peer acknowledged as durably written", labels);
  core::MetricValue* m_loop =
      metrics_->Counter("uop_export_loop_skipped_total",
                        "Records not exported because they came from a peer", labels);
  core::MetricValue* m_streams =
      metrics_->Gauge("uop_export_streams", "Open export streams", {{"peer", peer}});
  m_streams->Add(1);

  ReceiverState state;
  {
    absl::MutexLock lock(&state.mu);
    state.batch_credit = sub.initial_credit().batches();
    state.byte_credit = static_cast<int64_t>(sub.initial_credit().bytes());
  }
  std::thread reader([&] {
    fed::ReceiverMessage msg;
    while (stream->Read(&msg)) {
      absl::MutexLock lock(&state.mu);
      state.last_heard = absl::Now();
      switch (msg.body_case()) {
        case fed::ReceiverMessage::kCredit:
          state.batch_credit += msg.credit().batches();
          state.byte_credit += static_cast<int64_t>(msg.credit().bytes());
          break;
        case fed::ReceiverMessage::kAck:
          state.acked_through = std::max(state.acked_through, msg.ack().through_batch_seq());
          break;
        case fed::ReceiverMessage::kHeartbeat:
          break;
        case fed::ReceiverMessage::BODY_NOT_SET:
          break;  // a kind added by a later protocol revision: ignored (forward compatibility)
        default:
          state.protocol_error = "unexpected message after subscribe";
          state.done = true;
          return;
      }
    }
    absl::MutexLock lock(&state.mu);
    state.done = true;
  });

  const LinkTuning& tuning = config_.link;
  std::deque<fed::OwnerMessage> ready;
  std::deque<SentBatch> unacked;
  uint64_t next_seq = 1;
  absl::Time last_sent = absl::Now();
  std::vector<rd_kafka_message_t*> messages(static_cast<size_t>(tuning.batch_max_records));
  grpc::Status result = grpc::Status::OK;
  uint64_t committed_through = 0;

  auto commit_acked = [&](uint64_t through) {
    if (through <= committed_through) return;
    std::map<int32_t, int64_t> next_offsets;
    int64_t records = 0;
    while (!unacked.empty() && unacked.front().seq <= through) {
      next_offsets[unacked.front().partition] = unacked.front().next_offset;
      records += unacked.front().records;
      unacked.pop_front();
    }
    committed_through = through;
    m_acked->Add(static_cast<double>(records));
    if (next_offsets.empty()) return;
    // Only for monitoring (kafka-consumer-groups shows the lag users expect): positions are
    // always taken from the receiver's resume tokens, never from these commits.
    kafka::PartitionList offsets(
        rd_kafka_topic_partition_list_new(static_cast<int>(next_offsets.size())));
    for (const auto& [p, o] : next_offsets) {
      rd_kafka_topic_partition_list_add(offsets.get(), topic.c_str(), p)->offset = o;
    }
    rd_kafka_commit(consumer.get(), offsets.get(), /*async=*/1);
  };

  auto heartbeat = [&]() -> bool {
    fed::OwnerMessage hb;
    hb.mutable_heartbeat()->set_sent_unix_ms(absl::ToUnixMillis(absl::Now()));
    for (int i = 0; i < assignment->cnt; ++i) {
      int64_t low = 0, high = 0;
      rd_kafka_get_watermark_offsets(consumer.get(), topic.c_str(), assignment->elems[i].partition,
                                     &low, &high);
      if (high < 0) {  // not fetched yet: ask the broker
        rd_kafka_query_watermark_offsets(consumer.get(), topic.c_str(),
                                         assignment->elems[i].partition, &low, &high, 1000);
      }
      if (high < 0) continue;
      fed::PartitionProgress* progress = hb.mutable_heartbeat()->add_progress();
      progress->set_partition(assignment->elems[i].partition);
      progress->set_high_watermark(high);
    }
    last_sent = absl::Now();
    return stream->Write(hb);
  };

  while (true) {
    if (stopping_.load()) {
      result = grpc::Status(grpc::StatusCode::UNAVAILABLE, "owner node is shutting down");
      break;
    }
    if (context->IsCancelled()) {
      result = grpc::Status(grpc::StatusCode::CANCELLED, "the peer cancelled the stream");
      break;
    }
    bool can_send = false;
    uint64_t acked = 0;
    {
      absl::MutexLock lock(&state.mu);
      if (!state.protocol_error.empty()) {
        result = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, state.protocol_error);
        break;
      }
      if (state.done) break;  // the receiver closed its side
      if (absl::Now() - state.last_heard > absl::FromChrono(tuning.dead_peer_timeout)) {
        result = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                              "no message from peer within the dead-peer timeout");
        break;
      }
      acked = state.acked_through;
      can_send = state.batch_credit > 0 && state.byte_credit > 0;
      if (!can_send) {
        // Wait for credit (or the end) without holding up heartbeats.
        auto has_credit_or_done = [&state]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(state.mu) {
          return state.done || (state.batch_credit > 0 && state.byte_credit > 0);
        };
        state.mu.AwaitWithTimeout(absl::Condition(&has_credit_or_done),
                                  absl::FromChrono(tuning.heartbeat_interval) / 4);
      }
    }
    commit_acked(acked);
    if (can_send && !ready.empty()) {
      fed::OwnerMessage& msg = ready.front();
      const fed::RecordBatch& batch = msg.batch();
      const auto size = static_cast<int64_t>(batch.ByteSizeLong());
      {
        absl::MutexLock lock(&state.mu);
        state.batch_credit -= 1;
        state.byte_credit -= size;
      }
      unacked.push_back({batch.batch_seq(), batch.partition(),
                         batch.records(batch.records_size() - 1).offset() + 1,
                         batch.records_size()});
      m_records->Add(batch.records_size());
      m_batches->Add(1);
      m_bytes->Add(static_cast<double>(size));
      if (!stream->Write(msg)) break;
      last_sent = absl::Now();
      ready.pop_front();
      continue;
    }
    if (can_send && ready.empty()) {
      // Take what is already fetched without waiting (a full batch must not wait for more
      // records: that is latency); only when nothing is there, wait briefly for the first one.
      ssize_t n = rd_kafka_consume_batch_queue(queue.get(), 0, messages.data(), messages.size());
      if (n == 0) {
        n = rd_kafka_consume_batch_queue(queue.get(), 100, messages.data(), 1);
        if (n == 1) {
          const ssize_t more = rd_kafka_consume_batch_queue(queue.get(), 0, messages.data() + 1,
                                                            messages.size() - 1);
          if (more > 0) n += more;
        }
      }
      std::map<int32_t, fed::OwnerMessage*> open;  // partition -> batch being filled
      std::map<int32_t, int64_t> open_bytes;
      bool fatal = false;
      for (ssize_t i = 0; i < n; ++i) {
        kafka::Message m(messages[i]);  // owns every message, even those after a fatal error
        if (fatal || m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) continue;
        if (m->err) {
          log::Warn(
              "export_kafka_error",
              {{"peer", peer}, {"topic", topic}, {"error", rd_kafka_message_errstr(m.get())}});
          if (m->err == RD_KAFKA_RESP_ERR__FATAL ||
              m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE) {
            result = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                  absl::StrCat("kafka: ", rd_kafka_message_errstr(m.get())));
            fatal = true;
          }
          continue;
        }
        rd_kafka_headers_t* headers = nullptr;
        rd_kafka_message_headers(m.get(), &headers);
        const void* hv = nullptr;
        size_t hsize = 0;
        if (headers != nullptr && rd_kafka_header_get_last(headers, core::kHeaderOrigin.data(), &hv,
                                                           &hsize) == RD_KAFKA_RESP_ERR_NO_ERROR) {
          m_loop->Add(1);  // came from a peer: never exported again (no loops)
          continue;
        }
        const int32_t partition = m->partition;
        const int64_t record_bytes = static_cast<int64_t>(m->len + m->key_len) + 32;
        fed::OwnerMessage*& batch_msg = open[partition];
        if (batch_msg != nullptr && open_bytes[partition] + record_bytes > tuning.batch_max_bytes) {
          batch_msg = nullptr;  // full: start another batch for this partition
        }
        if (batch_msg == nullptr) {
          ready.emplace_back();
          batch_msg = &ready.back();
          fed::RecordBatch* batch = batch_msg->mutable_batch();
          batch->set_batch_seq(next_seq++);
          batch->set_partition(partition);
          batch->set_policy_version(snapshot->version());
          int64_t low = 0, high = -1;
          rd_kafka_get_watermark_offsets(consumer.get(), topic.c_str(), partition, &low, &high);
          batch->set_high_watermark(high);
          open_bytes[partition] = 0;
        }
        open_bytes[partition] += record_bytes;
        fed::Record* rec = batch_msg->mutable_batch()->add_records();
        rec->set_offset(m->offset);
        rd_kafka_timestamp_type_t ts_type = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        rec->set_timestamp_ms(rd_kafka_message_timestamp(m.get(), &ts_type));
        rec->set_timestamp_type(
            ts_type == RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME ? fed::TIMESTAMP_TYPE_LOG_APPEND_TIME
            : ts_type == RD_KAFKA_TIMESTAMP_CREATE_TIME   ? fed::TIMESTAMP_TYPE_CREATE_TIME
                                                          : fed::TIMESTAMP_TYPE_UNSPECIFIED);
        if (m->key != nullptr) rec->set_key(static_cast<const char*>(m->key), m->key_len);
        if (m->payload != nullptr) rec->set_value(static_cast<const char*>(m->payload), m->len);
        if (headers != nullptr) {
          const char* name = nullptr;
          for (size_t h = 0; rd_kafka_header_get_all(headers, h, &name, &hv, &hsize) ==
                             RD_KAFKA_RESP_ERR_NO_ERROR;
               ++h) {
            fed::Header* header = rec->add_headers();
            header->set_key(name);
            if (hv != nullptr) header->set_value(static_cast<const char*>(hv), hsize);
          }
        }
        rec->set_resume_token(core::EncodeOffsetToken(m->offset + 1));
      }
      // Batches must be sent in the order of their sequence numbers; `ready` already is.
      if (fatal) break;
      if (n > 0) continue;
    }
    if (absl::Now() - last_sent >= absl::FromChrono(tuning.heartbeat_interval)) {
      if (!heartbeat()) break;
    }
  }

  context->TryCancel();  // unblocks the reader's Read()
  reader.join();
  rd_kafka_consumer_close(consumer.get());
  m_streams->Add(-1);
  log::Info(
      "export_stream_ended",
      {{"peer", peer}, {"topic", topic}, {"status", result.ok() ? "ok" : result.error_message()}});
  return result;
}

}  // namespace uop::broker
