// The bridge's producer: delivery reports complete each record's callback.
#include "connectors/bridge/kafka_sink.h"

#include "absl/strings/str_cat.h"
#include "kafka/status.h"

namespace uop::sta_bridge {

absl::StatusOr<std::unique_ptr<KafkaSink>> KafkaSink::Create(const KafkaSinkOptions& options) {
  std::unique_ptr<KafkaSink> sink(new KafkaSink());
  auto env = kafka::Env::Start(options.cluster);
  if (!env.ok()) return env.status();
  sink->env_ = std::move(*env);
  KafkaSink* self = sink.get();
  // Idempotent: librdkafka's retries never duplicate or reorder within a partition. The node's
  // kafka.properties come first; these are the bridge's defaults unless overridden there.
  kafka::Properties props;
  props["enable.idempotence"] = "true";
  props["acks"] = "all";
  props["queue.buffering.max.messages"] = absl::StrCat(options.max_in_flight);
  props["queue.buffering.max.kbytes"] = "262144";
  if (!options.cluster.properties.contains("linger.ms")) props["linger.ms"] = "2";
  auto producer = sink->env_->NewClient(RD_KAFKA_PRODUCER, props, [self](rd_kafka_conf_t* conf) {
    rd_kafka_conf_set_dr_msg_cb(conf, &KafkaSink::OnDelivery);
    rd_kafka_conf_set_opaque(conf, self);
  });
  if (!producer.ok()) return producer.status();
  sink->producer_ = std::move(*producer);
  sink->poller_ = std::thread([self] {
    while (!self->stop_.load()) rd_kafka_poll(self->producer_.get(), 50);
  });
  return sink;
}

KafkaSink::~KafkaSink() {
  if (producer_) rd_kafka_flush(producer_.get(), 10000);
  stop_.store(true);
  if (poller_.joinable()) poller_.join();
  producer_.reset();  // records still queued report failure through OnDelivery
}

void KafkaSink::OnDelivery(rd_kafka_t*, const rd_kafka_message_t* msg, void* opaque) {
  auto* sink = static_cast<KafkaSink*>(opaque);
  std::unique_ptr<Done> done(static_cast<Done*>(msg->_private));
  sink->in_flight_.fetch_sub(1, std::memory_order_relaxed);
  (*done)(kafka::FromCode(msg->err, "deliver"));
}

absl::Status KafkaSink::Send(const OutRecord& record, Done done) {
  auto* cookie = new Done(std::move(done));
  rd_kafka_headers_t* headers = rd_kafka_headers_new(record.headers.size());
  for (const auto& [k, v] : record.headers) {
    rd_kafka_header_add(headers, k.data(), static_cast<ssize_t>(k.size()), v.data(),
                        static_cast<ssize_t>(v.size()));
  }
  in_flight_.fetch_add(1, std::memory_order_relaxed);
  const rd_kafka_resp_err_t e = rd_kafka_producev(
      producer_.get(), RD_KAFKA_V_TOPIC(record.topic.c_str()),
      RD_KAFKA_V_KEY(record.key.data(), record.key.size()),
      // librdkafka copies it (F_COPY) and never writes through the pointer.
      RD_KAFKA_V_VALUE(const_cast<char*>(record.value.data()), record.value.size()),
      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(cookie),
      RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_END);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    in_flight_.fetch_sub(1, std::memory_order_relaxed);
    delete cookie;
    rd_kafka_headers_destroy(headers);  // ours again when producev fails
    if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      return absl::ResourceExhaustedError("kafka producer queue is full");
    }
    return kafka::FromCode(e, "produce");
  }
  return absl::OkStatus();
}

absl::Status KafkaSink::Flush(int timeout_ms) {
  if (rd_kafka_resp_err_t e = rd_kafka_flush(producer_.get(), timeout_ms)) {
    return absl::DeadlineExceededError(absl::StrCat("kafka flush: ", rd_kafka_err2str(e), "; ",
                                                    rd_kafka_outq_len(producer_.get()),
                                                    " records still queued"));
  }
  return absl::OkStatus();
}

}  // namespace uop::sta_bridge
