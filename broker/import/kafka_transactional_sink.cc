// OutRecord -> librdkafka transactional produce.
#include "broker/import/kafka_transactional_sink.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "core/log.h"
#include "core/provenance.h"
#include "core/status_macros.h"
#include "kafka/status.h"

namespace uop::broker {

namespace {
constexpr int kTimeoutMs = 30000;
constexpr int kCommitAttempts = 4;

std::string RefusalReason(rd_kafka_resp_err_t code) {
  return absl::StrCat("kafka refused the record: ", rd_kafka_err2str(code));
}
}  // namespace

absl::StatusOr<std::unique_ptr<KafkaTransactionalSink>> KafkaTransactionalSink::Create(
    kafka::Env* env, const std::string& transactional_id, GroupMetadata group_metadata,
    int64_t staged_bytes) {
  // The receive windows bound what a transaction stages, so the producer's queue must not bind
  // first: when it does, Produce waits for room while the writer holds the stream, whose
  // heartbeats then stop, and the owner ends it as dead (seen at 100 datasets, where
  // librdkafka's default of 100 000 messages was a few seconds of backlog). Twice the windows,
  // at least librdkafka's default 1 GiB, at most its maximum.
  const int64_t queue_kbytes =
      std::clamp<int64_t>(2 * staged_bytes / 1024, 1 << 20, std::numeric_limits<int32_t>::max());
  auto sink = std::unique_ptr<KafkaTransactionalSink>(new KafkaTransactionalSink());
  sink->group_metadata_ = std::move(group_metadata);
  sink->transactional_id_ = transactional_id;
  KafkaTransactionalSink* raw = sink.get();
  absl::StatusOr<kafka::Handle> producer = env->NewClient(
      RD_KAFKA_PRODUCER,
      {{"transactional.id", transactional_id},
       {"enable.idempotence", "true"},
       {"acks", "all"},
       {"linger.ms", "5"},
       {"batch.size", "1000000"},
       {"queue.buffering.max.messages", std::to_string(std::numeric_limits<int32_t>::max())},
       {"queue.buffering.max.kbytes", std::to_string(queue_kbytes)},
       {"transaction.timeout.ms", "60000"},
       {"message.timeout.ms", "55000"},  // within transaction.timeout.ms, as librdkafka requires
       // Right after a commit the coordinator answers the next AddPartitionsToTxn with
       // CONCURRENT_TRANSACTIONS until it has written the markers, and librdkafka 2.0.2 retries
       // after retry.backoff.ms: 100 ms by default, which every transaction then waited
       // (docs/librdkafka.md). The Java producer retries this after 20 ms.
       {"retry.backoff.ms", "10"}},
      [raw](rd_kafka_conf_t* conf) {
        rd_kafka_conf_set_opaque(conf, raw);
        rd_kafka_conf_set_dr_msg_cb(conf, &KafkaTransactionalSink::OnDelivery);
      });
  if (!producer.ok()) return producer.status();
  sink->producer_ = *std::move(producer);
  if (absl::Status s = kafka::FromError(
          rd_kafka_init_transactions(sink->producer_.get(), kTimeoutMs), "init transactions");
      !s.ok()) {
    return s;
  }
  return sink;
}

void KafkaTransactionalSink::OnDelivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
  if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) return;
  auto* self = static_cast<KafkaTransactionalSink*>(opaque);
  self->failures_.push_back({rd_kafka_topic_name(m->rkt), m->partition,
                             static_cast<int64_t>(reinterpret_cast<intptr_t>(m->_private)),
                             m->err});
}

absl::Status KafkaTransactionalSink::Begin() {
  failures_.clear();
  return kafka::FromError(rd_kafka_begin_transaction(producer_.get()), "begin transaction");
}

absl::Status KafkaTransactionalSink::Produce(const OutRecord& out, std::string* refused) {
  refused->clear();
  const uop::federation::v1::Record& rec = *out.record;
  const std::string topic(out.topic);
  while (true) {
    rd_kafka_headers_t* headers =
        rd_kafka_headers_new(static_cast<size_t>(rec.headers_size()) + out.extra_headers.size());
    for (const auto& h : rec.headers()) {
      rd_kafka_header_add(headers, h.key().data(), static_cast<ssize_t>(h.key().size()),
                          h.has_value() ? h.value().data() : nullptr,
                          h.has_value() ? static_cast<ssize_t>(h.value().size()) : 0);
    }
    for (const auto& [k, v] : out.extra_headers) {
      rd_kafka_header_add(headers, k.data(), static_cast<ssize_t>(k.size()), v.data(),
                          static_cast<ssize_t>(v.size()));
    }
    const bool value = rec.has_value() && !out.drop_value;
    rd_kafka_resp_err_t err = rd_kafka_producev(
        producer_.get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(out.partition),
        RD_KAFKA_V_KEY(rec.has_key() ? rec.key().data() : nullptr,
                       rec.has_key() ? rec.key().size() : 0),
        RD_KAFKA_V_VALUE(value ? const_cast<char*>(rec.value().data()) : nullptr,
                         value ? rec.value().size() : 0),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_TIMESTAMP(rec.timestamp_ms()),
        RD_KAFKA_V_HEADERS(headers),
        // The origin offset rides in the opaque, for the delivery report.
        // NOLINTNEXTLINE(performance-no-int-to-ptr)
        RD_KAFKA_V_OPAQUE(reinterpret_cast<void*>(static_cast<intptr_t>(rec.offset()))),
        RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return absl::OkStatus();  // headers now owned by it
    rd_kafka_headers_destroy(headers);
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_poll(producer_.get(), 50);  // wait for room: serves delivery reports
      continue;
    }
    if (kafka::IsRecordRefusedCode(err)) {
      *refused = RefusalReason(err);
      return absl::OkStatus();
    }
    return kafka::FromCode(err, absl::StrCat("produce to ", topic));
  }
}

absl::Status KafkaTransactionalSink::SendPositions(const Positions& positions) {
  const std::string serialized = group_metadata_ ? group_metadata_() : std::string();
  if (serialized.empty() || positions.empty()) return absl::OkStatus();
  rd_kafka_consumer_group_metadata_t* group = nullptr;
  if (absl::Status s = kafka::FromError(
          rd_kafka_consumer_group_metadata_read(&group, serialized.data(), serialized.size()),
          "group metadata");
      !s.ok()) {
    return s;
  }
  kafka::PartitionList offsets(
      rd_kafka_topic_partition_list_new(static_cast<int>(positions.size())));
  for (const auto& [key, position] : positions) {
    rd_kafka_topic_partition_t* tp =
        rd_kafka_topic_partition_list_add(offsets.get(), key.first.c_str(), key.second);
    // The committed offset is the next origin offset; the metadata carries the resume token.
    tp->offset = position.last_offset() + 1;
    const std::string metadata = core::EncodePositionMetadata(position);
    tp->metadata = malloc(metadata.size());  // freed by rd_kafka_topic_partition_list_destroy
    memcpy(tp->metadata, metadata.data(), metadata.size());
    tp->metadata_size = metadata.size();
  }
  absl::Status s = kafka::FromError(
      rd_kafka_send_offsets_to_transaction(producer_.get(), offsets.get(), group, kTimeoutMs),
      "send positions to transaction");
  rd_kafka_consumer_group_metadata_destroy(group);
  return s;
}

absl::Status KafkaTransactionalSink::Commit(const Positions& positions,
                                            std::vector<RefusedRecord>* refused) {
  if (absl::Status s = SendPositions(positions); !s.ok()) {
    // A lost group generation (rebalance, zombie) or coordinator trouble: nothing commits.
    absl::Status abort = Abort();
    return abort.ok() ? s
                      : absl::Status(s.code(),
                                     absl::StrCat(s.message(), " (abort: ", abort.message(), ")"));
  }
  for (int attempt = 1;; ++attempt) {
    absl::Status s = kafka::FromError(rd_kafka_commit_transaction(producer_.get(), kTimeoutMs),
                                      "commit transaction");
    if (s.ok()) return s;
    if (kafka::IsRetriable(s) && attempt < kCommitAttempts) {
      log::Warn("import_commit_retry",
                {{"transactional_id", transactional_id_}, {"error", std::string(s.message())}});
      continue;
    }
    for (const Failure& f : failures_) {
      if (kafka::IsRecordRefusedCode(f.code)) {
        refused->push_back({f.partition, f.offset, RefusalReason(f.code), f.topic});
      }
    }
    if (kafka::RequiresAbort(s)) {
      if (absl::Status a = Abort(); !a.ok()) {
        return absl::Status(s.code(), absl::StrCat(s.message(), " (abort: ", a.message(), ")"));
      }
    }
    return s;
  }
}

absl::Status KafkaTransactionalSink::Abort() {
  return kafka::FromError(rd_kafka_abort_transaction(producer_.get(), kTimeoutMs),
                          "abort transaction");
}

absl::Status KafkaTransactionalSink::Fence(
    const std::vector<std::pair<std::string, int32_t>>& partitions) {
  RETURN_IF_ERROR(Begin());
  // A record nobody will see (aborted) puts each partition into the transaction.
  absl::Status fence = absl::OkStatus();
  for (const auto& [topic, partition] : partitions) {
    fence = kafka::FromCode(rd_kafka_producev(producer_.get(), RD_KAFKA_V_TOPIC(topic.c_str()),
                                              RD_KAFKA_V_PARTITION(partition),
                                              RD_KAFKA_V_KEY("uop.fence", 9), RD_KAFKA_V_END),
                            absl::StrCat("fence record for ", topic, "[", partition, "]"));
    if (!fence.ok()) break;
  }
  if (fence.ok()) {
    fence = kafka::FromCode(rd_kafka_flush(producer_.get(), kTimeoutMs), "flush fence records");
  }
  absl::Status abort = Abort();
  if (!fence.ok()) {
    return abort.ok() ? fence
                      : absl::Status(fence.code(), absl::StrCat(fence.message(),
                                                                " (abort: ", abort.message(), ")"));
  }
  return abort;
}

}  // namespace uop::broker
