// librdkafka producer adapter: every rd_kafka error becomes a Status here, once.
#include "connectors/bridge/kafka_sink.h"

#include <librdkafka/rdkafka_mock.h>

#include "absl/strings/str_cat.h"

namespace uop::sta_bridge {
namespace {

absl::Status SetConf(rd_kafka_conf_t* conf, const std::string& key, const std::string& value) {
  char err[512];
  if (rd_kafka_conf_set(conf, key.c_str(), value.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
    // Never the value: it may be a secret (sasl.password).
    return absl::InvalidArgumentError(absl::StrCat("kafka property '", key, "': ", err));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<KafkaSink>> KafkaSink::Create(const KafkaSinkOptions& options) {
  std::unique_ptr<KafkaSink> sink(new KafkaSink());
  char err[512];
  if (options.bootstrap.empty()) {
    rd_kafka_conf_t* hconf = rd_kafka_conf_new();
    rd_kafka_conf_set(hconf, "log_level", "3", nullptr, 0);
    sink->mock_host_ = rd_kafka_new(RD_KAFKA_PRODUCER, hconf, err, sizeof err);
    if (sink->mock_host_ == nullptr) {
      return absl::InternalError(absl::StrCat("embedded kafka: ", err));
    }
    sink->mock_ = rd_kafka_mock_cluster_new(sink->mock_host_, options.embedded_brokers);
    if (sink->mock_ == nullptr) return absl::InternalError("embedded kafka: no mock cluster");
    sink->bootstrap_ = rd_kafka_mock_cluster_bootstraps(sink->mock_);
    for (const auto& [topic, partitions] : options.embedded_topics) {
      if (rd_kafka_resp_err_t e =
              rd_kafka_mock_topic_create(sink->mock_, topic.c_str(), partitions, 1)) {
        return absl::InternalError(
            absl::StrCat("embedded kafka: create ", topic, ": ", rd_kafka_err2str(e)));
      }
    }
  } else {
    sink->bootstrap_ = options.bootstrap;
  }
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  // Idempotent: librdkafka's retries never duplicate or reorder within a partition.
  std::map<std::string, std::string> props = {
      {"bootstrap.servers", sink->bootstrap_},
      {"enable.idempotence", "true"},
      {"acks", "all"},
      {"linger.ms", "2"},
      {"log_level", "3"},
      {"queue.buffering.max.messages", std::to_string(options.max_in_flight)},
      {"queue.buffering.max.kbytes", "262144"},
  };
  for (const auto& [k, v] : options.properties) props[k] = v;
  for (const auto& [k, v] : props) {
    if (absl::Status s = SetConf(conf, k, v); !s.ok()) {
      rd_kafka_conf_destroy(conf);
      return s;
    }
  }
  rd_kafka_conf_set_dr_msg_cb(conf, &KafkaSink::OnDelivery);
  rd_kafka_conf_set_opaque(conf, sink.get());
  sink->producer_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (sink->producer_ == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("kafka producer: ", err));
  }
  KafkaSink* self = sink.get();
  sink->poller_ = std::thread([self] {
    while (!self->stop_.load()) rd_kafka_poll(self->producer_, 50);
  });
  return sink;
}

KafkaSink::~KafkaSink() {
  if (producer_ != nullptr) {
    rd_kafka_flush(producer_, 10000);
    stop_.store(true);
    if (poller_.joinable()) poller_.join();
    rd_kafka_destroy(producer_);  // unflushed records report failure through OnDelivery
  }
  if (mock_ != nullptr) rd_kafka_mock_cluster_destroy(mock_);
  if (mock_host_ != nullptr) rd_kafka_destroy(mock_host_);
}

void KafkaSink::OnDelivery(rd_kafka_t*, const rd_kafka_message_t* msg, void* opaque) {
  auto* sink = static_cast<KafkaSink*>(opaque);
  std::unique_ptr<Done> done(static_cast<Done*>(msg->_private));
  sink->in_flight_.fetch_sub(1, std::memory_order_relaxed);
  if (msg->err) {
    (*done)(absl::UnavailableError(absl::StrCat("kafka: ", rd_kafka_err2str(msg->err))));
  } else {
    (*done)(absl::OkStatus());
  }
}

absl::Status KafkaSink::Send(OutRecord record, Done done) {
  auto* cookie = new Done(std::move(done));
  rd_kafka_headers_t* headers = rd_kafka_headers_new(record.headers.size());
  for (const auto& [k, v] : record.headers) {
    rd_kafka_header_add(headers, k.data(), static_cast<ssize_t>(k.size()), v.data(),
                        static_cast<ssize_t>(v.size()));
  }
  in_flight_.fetch_add(1, std::memory_order_relaxed);
  const rd_kafka_resp_err_t e =
      rd_kafka_producev(producer_, RD_KAFKA_V_TOPIC(record.topic.c_str()),
                        RD_KAFKA_V_KEY(record.key.data(), record.key.size()),
                        RD_KAFKA_V_VALUE(record.value.data(), record.value.size()),
                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(cookie),
                        RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_END);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    in_flight_.fetch_sub(1, std::memory_order_relaxed);
    delete cookie;
    rd_kafka_headers_destroy(headers);  // ours again when producev fails
    if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      return absl::ResourceExhaustedError("kafka producer queue is full");
    }
    return absl::UnavailableError(absl::StrCat("kafka produce: ", rd_kafka_err2str(e)));
  }
  return absl::OkStatus();
}

absl::Status KafkaSink::Flush(int timeout_ms) {
  if (rd_kafka_resp_err_t e = rd_kafka_flush(producer_, timeout_ms)) {
    return absl::DeadlineExceededError(absl::StrCat("kafka flush: ", rd_kafka_err2str(e), "; ",
                                                    rd_kafka_outq_len(producer_),
                                                    " records still queued"));
  }
  return absl::OkStatus();
}

}  // namespace uop::sta_bridge
