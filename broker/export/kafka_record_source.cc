// librdkafka consumer -> SourceRecord.
#include "broker/export/kafka_record_source.h"

#include "absl/strings/str_cat.h"
#include "core/log.h"
#include "kafka/status.h"

namespace uop::broker {

namespace fed = uop::federation::v1;

absl::StatusOr<std::unique_ptr<KafkaRecordSource>> KafkaRecordSource::Open(
    kafka::Env* env, const std::string& group_id, const std::string& topic,
    const std::vector<Start>& starts, std::function<void()> on_ready) {
  auto source = std::unique_ptr<KafkaRecordSource>(new KafkaRecordSource());
  source->topic_ = topic;
  source->on_ready_ = std::move(on_ready);
  absl::StatusOr<kafka::Handle> consumer =
      env->NewClient(RD_KAFKA_CONSUMER, {{"group.id", group_id},
                                         {"enable.auto.commit", "false"},
                                         {"enable.auto.offset.store", "false"},
                                         {"isolation.level", "read_committed"},
                                         {"auto.offset.reset", "earliest"},
                                         {"enable.partition.eof", "true"},
                                         // Bounded read-ahead, large enough to avoid the fetch
                                         // stalls measured with the defaults (docs/librdkafka.md).
                                         {"queued.min.messages", "200000"},
                                         {"queued.max.messages.kbytes", "4096"},
                                         {"fetch.wait.max.ms", "10"}});
  if (!consumer.ok()) return consumer.status();
  source->consumer_ = *std::move(consumer);
  kafka::PartitionList assignment(
      rd_kafka_topic_partition_list_new(static_cast<int>(starts.size())));
  for (const Start& s : starts) {
    rd_kafka_topic_partition_list_add(assignment.get(), topic.c_str(), s.partition)->offset =
        s.offset;
  }
  if (absl::Status s = kafka::FromCode(rd_kafka_assign(source->consumer_.get(), assignment.get()),
                                       "kafka assign");
      !s.ok()) {
    return s;
  }
  source->queue_.reset(rd_kafka_queue_get_consumer(source->consumer_.get()));
  rd_kafka_queue_cb_event_enable(source->queue_.get(), &KafkaRecordSource::OnQueueEvent,
                                 source.get());
  return source;
}

void KafkaRecordSource::OnQueueEvent(rd_kafka_t* /*rk*/, void* opaque) {
  auto* self = static_cast<KafkaRecordSource*>(opaque);
  if (self->on_ready_) self->on_ready_();
}

KafkaRecordSource::~KafkaRecordSource() {
  if (queue_) rd_kafka_queue_cb_event_enable(queue_.get(), nullptr, nullptr);
  queue_.reset();
  if (consumer_) {
    if (absl::Status s = kafka::FromCode(rd_kafka_consumer_close(consumer_.get()), "close");
        !s.ok()) {
      log::Warn("export_consumer_close", {{"topic", topic_}, {"reason", std::string(s.message())}});
    }
  }
  // rd_kafka_destroy joins librdkafka's threads: after it, on_ready_ cannot be running, so it is
  // destroyed only after this line (members die after the destructor's body).
  consumer_.reset();
}

absl::Status KafkaRecordSource::Read(size_t max, std::vector<SourceRecord>* out) {
  messages_.resize(max);
  const ssize_t n = rd_kafka_consume_batch_queue(queue_.get(), 0, messages_.data(), max);
  absl::Status result = absl::OkStatus();
  for (ssize_t i = 0; i < n; ++i) {
    kafka::Message m(messages_[i]);  // owns every message, even those after an error
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      eof_offsets_[m->partition] = m->offset;
      continue;
    }
    if (m->err) {
      log::Warn("export_kafka_error",
                {{"topic", topic_}, {"error", rd_kafka_message_errstr(m.get())}});
      if (result.ok() &&
          (m->err == RD_KAFKA_RESP_ERR__FATAL || m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE)) {
        result = absl::UnavailableError(absl::StrCat("kafka: ", rd_kafka_message_errstr(m.get())));
      }
      continue;
    }
    if (!result.ok()) continue;
    SourceRecord& in = out->emplace_back();
    in.partition = m->partition;
    fed::Record& rec = in.record;
    rec.set_offset(m->offset);
    rd_kafka_timestamp_type_t ts_type = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
    rec.set_timestamp_ms(rd_kafka_message_timestamp(m.get(), &ts_type));
    rec.set_timestamp_type(
        ts_type == RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME ? fed::TIMESTAMP_TYPE_LOG_APPEND_TIME
        : ts_type == RD_KAFKA_TIMESTAMP_CREATE_TIME   ? fed::TIMESTAMP_TYPE_CREATE_TIME
                                                      : fed::TIMESTAMP_TYPE_UNSPECIFIED);
    if (m->key != nullptr) rec.set_key(static_cast<const char*>(m->key), m->key_len);
    if (m->payload != nullptr) rec.set_value(static_cast<const char*>(m->payload), m->len);
    rd_kafka_headers_t* headers = nullptr;
    if (rd_kafka_message_headers(m.get(), &headers) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        headers != nullptr) {
      const char* name = nullptr;
      const void* value = nullptr;
      size_t size = 0;
      for (size_t h = 0;
           rd_kafka_header_get_all(headers, h, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
           ++h) {
        fed::Header* header = rec.add_headers();
        header->set_key(name);
        if (value != nullptr) header->set_value(static_cast<const char*>(value), size);
      }
    }
  }
  return result;
}

RecordSource::Progress KafkaRecordSource::PartitionProgress(int32_t partition) {
  Progress progress;
  int64_t low = 0, high = -1;
  rd_kafka_get_watermark_offsets(consumer_.get(), topic_.c_str(), partition, &low, &high);
  progress.high_watermark = high;
  kafka::PartitionList list(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(list.get(), topic_.c_str(), partition);
  if (rd_kafka_position(consumer_.get(), list.get()) == RD_KAFKA_RESP_ERR_NO_ERROR &&
      list->elems[0].offset >= 0) {
    progress.position = list->elems[0].offset;
  }
  // Read to the end at this offset: every offset below it was returned or skipped (markers).
  if (auto it = eof_offsets_.find(partition); it != eof_offsets_.end()) {
    progress.position = std::max(progress.position, it->second);
  }
  return progress;
}

void KafkaRecordSource::CommitForMonitoring(const std::map<int32_t, int64_t>& next_offsets) {
  kafka::PartitionList offsets(
      rd_kafka_topic_partition_list_new(static_cast<int>(next_offsets.size())));
  for (const auto& [p, o] : next_offsets) {
    rd_kafka_topic_partition_list_add(offsets.get(), topic_.c_str(), p)->offset = o;
  }
  // Asynchronous, for kafka-consumer-groups only: positions come from resume tokens, never
  // from these commits, so a failed commit costs nothing but a stale lag figure.
  rd_kafka_commit(consumer_.get(), offsets.get(), /*async=*/1);
}

}  // namespace uop::broker
