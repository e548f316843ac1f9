// librdkafka consumer shared by streams -> SourceRecord, per stream through its own queue.
#include "broker/export/shared_consumer.h"

#include <algorithm>
#include <array>
#include <map>

#include "absl/strings/str_cat.h"
#include "core/log.h"
#include "kafka/status.h"

namespace uop::broker {

namespace fed = uop::federation::v1;

namespace {

void ToSourceRecord(const rd_kafka_message_t* m, SourceRecord* in) {
  in->partition = m->partition;
  fed::Record& rec = in->record;
  rec.set_offset(m->offset);
  rd_kafka_timestamp_type_t ts_type = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
  rec.set_timestamp_ms(rd_kafka_message_timestamp(m, &ts_type));
  rec.set_timestamp_type(
      ts_type == RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME ? fed::TIMESTAMP_TYPE_LOG_APPEND_TIME
      : ts_type == RD_KAFKA_TIMESTAMP_CREATE_TIME   ? fed::TIMESTAMP_TYPE_CREATE_TIME
                                                    : fed::TIMESTAMP_TYPE_UNSPECIFIED);
  if (m->key != nullptr) rec.set_key(static_cast<const char*>(m->key), m->key_len);
  if (m->payload != nullptr) rec.set_value(static_cast<const char*>(m->payload), m->len);
  rd_kafka_headers_t* headers = nullptr;
  // rd_kafka_message_headers takes a non-const message (it parses the headers lazily).
  if (rd_kafka_message_headers(const_cast<rd_kafka_message_t*>(m), &headers) ==
          RD_KAFKA_RESP_ERR_NO_ERROR &&
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

// The partitions one stream reads, through a queue of its own on a shared consumer. Not
// thread-safe (the stream serialises calls); the consumer must outlive it.
class KafkaPartitionSource final : public RecordSource {
 public:
  KafkaPartitionSource(rd_kafka_t* rk, std::string topic, std::function<void()> on_ready)
      : rk_(rk),
        topic_(std::move(topic)),
        rkt_(rd_kafka_topic_new(rk, topic_.c_str(), nullptr)),
        queue_(rd_kafka_queue_new(rk)),
        on_ready_(std::move(on_ready)) {
    rd_kafka_queue_cb_event_enable(queue_.get(), &KafkaPartitionSource::OnQueueEvent, this);
  }

  ~KafkaPartitionSource() override {
    // A stop returns once the partition has stopped fetching and no longer forwards to queue_
    // (librdkafka clears the forwarding before it replies), so nothing enqueues after this.
    for (int32_t p : started_) {
      if (rd_kafka_consume_stop(rkt_, p) != 0) {
        log::Warn("export_partition_stop_failed",
                  {{"topic", topic_},
                   {"partition", std::to_string(p)},
                   {"reason", rd_kafka_err2str(rd_kafka_last_error())}});
      }
    }
    // Disabling takes the queue's lock, which librdkafka holds while it calls OnQueueEvent:
    // after this line on_ready_ is not running and is never called again.
    rd_kafka_queue_cb_event_enable(queue_.get(), nullptr, nullptr);
    queue_.reset();  // frees the records still queued for this stream
    rd_kafka_topic_destroy(rkt_);
  }

  absl::Status StartPartition(const PartitionStartOffset& start) {
    if (rkt_ == nullptr) {
      return absl::InternalError(absl::StrCat("kafka topic handle for ", topic_, ": ",
                                              rd_kafka_err2str(rd_kafka_last_error())));
    }
    if (rd_kafka_consume_start_queue(rkt_, start.partition, start.offset, queue_.get()) != 0) {
      return absl::UnavailableError(absl::StrCat("kafka: start reading ", topic_, " partition ",
                                                 start.partition, ": ",
                                                 rd_kafka_err2str(rd_kafka_last_error())));
    }
    started_.push_back(start.partition);
    return absl::OkStatus();
  }

  absl::Status Read(size_t max, std::vector<SourceRecord>* out) override {
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
        if (result.ok() && (m->err == RD_KAFKA_RESP_ERR__FATAL ||
                            m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE)) {
          result =
              absl::UnavailableError(absl::StrCat("kafka: ", rd_kafka_message_errstr(m.get())));
        }
        continue;
      }
      if (!result.ok()) continue;
      ToSourceRecord(m.get(), &out->emplace_back());
    }
    return result;
  }

  Progress PartitionProgress(int32_t partition) override {
    Progress progress;
    int64_t low = 0, high = -1;
    rd_kafka_get_watermark_offsets(rk_, topic_.c_str(), partition, &low, &high);
    progress.high_watermark = high;
    kafka::PartitionList list(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(list.get(), topic_.c_str(), partition);
    // The position librdkafka keeps is the partition's, not the stream's, but a stop resets it
    // and only this stream reads the partition on this consumer until it stops.
    if (rd_kafka_position(rk_, list.get()) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        list->elems[0].offset >= 0) {
      progress.position = list->elems[0].offset;
    }
    // Read to the end at this offset: every offset below it was returned or skipped (markers).
    if (auto it = eof_offsets_.find(partition); it != eof_offsets_.end()) {
      progress.position = std::max(progress.position, it->second);
    }
    return progress;
  }

  void CommitForMonitoring(const std::map<int32_t, int64_t>& next_offsets) override {
    kafka::PartitionList offsets(
        rd_kafka_topic_partition_list_new(static_cast<int>(next_offsets.size())));
    for (const auto& [p, o] : next_offsets) {
      rd_kafka_topic_partition_list_add(offsets.get(), topic_.c_str(), p)->offset = o;
    }
    // Asynchronous, for kafka-consumer-groups only: positions come from resume tokens, never
    // from these commits, so a failed commit costs nothing but a stale lag figure.
    rd_kafka_commit(rk_, offsets.get(), /*async=*/1);
  }

 private:
  static void OnQueueEvent(rd_kafka_t* /*rk*/, void* opaque) {
    auto* self = static_cast<KafkaPartitionSource*>(opaque);
    if (self->on_ready_) self->on_ready_();
  }

  rd_kafka_t* const rk_;
  const std::string topic_;
  rd_kafka_topic_t* const rkt_;
  kafka::Queue queue_;
  std::function<void()> on_ready_;
  std::vector<int32_t> started_;
  std::vector<rd_kafka_message_t*> messages_;
  std::map<int32_t, int64_t> eof_offsets_;  // partition -> offset at which it was read to the end
};

}  // namespace

absl::StatusOr<std::unique_ptr<KafkaPartitionConsumer>> KafkaPartitionConsumer::Open(
    kafka::Env* env, const std::string& group_id, int64_t read_ahead_bytes) {
  auto consumer = std::unique_ptr<KafkaPartitionConsumer>(new KafkaPartitionConsumer());
  consumer->group_id_ = group_id;
  absl::StatusOr<kafka::Handle> handle = env->NewClient(
      RD_KAFKA_CONSUMER,
      {{"group.id", group_id},
       {"enable.auto.commit", "false"},
       {"enable.auto.offset.store", "false"},
       {"isolation.level", "read_committed"},
       {"auto.offset.reset", "earliest"},
       {"enable.partition.eof", "true"},
       // With a queue per stream, librdkafka applies both read-ahead bounds to each stream's
       // queue (it measures the queue a partition forwards to): memory grows with streams
       // (datasets), not partitions. A queue that reaches a bound is not fetched for again for
       // up to a second, however fast it drains (docs/librdkafka.md), so the bound must hold
       // more than a stream sends while it waits for credit: the byte limit is the one that
       // binds, and the count limit is set out of the way (its maximum).
       {"queued.min.messages", "10000000"},
       {"queued.max.messages.kbytes", std::to_string(std::max<int64_t>(1, read_ahead_bytes >> 10))},
       // A fetch response stays in memory until its last record is read, and one response
       // carries records for many streams: small responses keep a stream without credit from
       // pinning megabytes that other streams' records arrived in.
       {"fetch.max.bytes", std::to_string(2 << 20)},
       {"max.partition.fetch.bytes", std::to_string(256 << 10)},
       // Latency: a broker answers a fetch as soon as it has data or after this wait.
       {"fetch.wait.max.ms", "10"}});
  if (!handle.ok()) return handle.status();
  consumer->consumer_ = *std::move(handle);
  consumer->group_queue_.reset(rd_kafka_queue_get_consumer(consumer->consumer_.get()));
  return consumer;
}

KafkaPartitionConsumer::~KafkaPartitionConsumer() {
  group_queue_.reset();
  if (consumer_) {
    if (absl::Status s = kafka::FromCode(rd_kafka_consumer_close(consumer_.get()), "close");
        !s.ok()) {
      log::Warn("export_consumer_close",
                {{"group", group_id_}, {"reason", std::string(s.message())}});
    }
  }
}

absl::StatusOr<std::unique_ptr<RecordSource>> KafkaPartitionConsumer::Start(
    const std::string& topic, const std::vector<PartitionStartOffset>& starts,
    std::function<void()> on_ready) {
  auto source = std::make_unique<KafkaPartitionSource>(consumer_.get(), topic, std::move(on_ready));
  for (const PartitionStartOffset& start : starts) {
    // On failure the source's destructor stops what was started.
    if (absl::Status s = source->StartPartition(start); !s.ok()) return s;
  }
  return source;
}

void KafkaPartitionConsumer::Poll() {
  rd_kafka_poll(consumer_.get(), 0);
  if (!group_queue_) return;
  std::array<rd_kafka_message_t*, 16> events{};
  for (ssize_t n; (n = rd_kafka_consume_batch_queue(group_queue_.get(), 0, events.data(),
                                                    events.size())) > 0;) {
    for (ssize_t i = 0; i < n; ++i) {
      kafka::Message m(events[i]);
      if (m->err) {
        log::Warn("export_consumer_error",
                  {{"group", group_id_}, {"error", rd_kafka_message_errstr(m.get())}});
      }
    }
  }
}

}  // namespace uop::broker
