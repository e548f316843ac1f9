// Whole-topic reads with librdkafka (read_committed, partition EOF events).
#include "tools/uopctl/kafka_topic_reader.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "kafka/client.h"

namespace uop::tools {

const std::optional<std::string>* ReadRecord::Header(absl::string_view name) const {
  const std::optional<std::string>* found = nullptr;
  for (const auto& [k, v] : headers) {
    if (k == name) found = &v;
  }
  return found;
}

absl::StatusOr<int> TopicPartitions(const std::string& bootstrap, const std::string& topic) {
  kafka::ClusterConfig config;
  config.bootstrap = bootstrap;
  auto env = kafka::Env::Start(config);
  if (!env.ok()) return env.status();
  return (*env)->PartitionCount(topic);
}

absl::StatusOr<std::map<int32_t, std::vector<ReadRecord>>> ReadWholeTopic(
    const std::string& bootstrap, const std::string& topic, int partitions,
    int64_t last_per_partition) {
  auto conf = kafka::MakeConf({{"bootstrap.servers", bootstrap},
                               {"group.id", "uopctl-reader"},
                               {"enable.auto.commit", "false"},
                               {"isolation.level", "read_committed"},
                               {"enable.partition.eof", "true"},
                               {"log_level", "3"}});
  if (!conf.ok()) return conf.status();
  char err[512];
  kafka::Handle consumer(rd_kafka_new(RD_KAFKA_CONSUMER, *conf, err, sizeof err));
  if (!consumer) return absl::InternalError(err);
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
  std::map<int32_t, std::vector<ReadRecord>> out;
  std::set<int32_t> open;
  for (int p = 0; p < partitions; ++p) {
    int64_t low = 0, high = 0;
    rd_kafka_resp_err_t e =
        rd_kafka_query_watermark_offsets(consumer.get(), topic.c_str(), p, &low, &high, 10000);
    if (e) {
      rd_kafka_topic_partition_list_destroy(list);
      return absl::UnavailableError(absl::StrCat(topic, "[", p, "]: ", rd_kafka_err2str(e)));
    }
    out[p];
    if (last_per_partition >= 0) low = std::max(low, high - last_per_partition);
    if (high <= low) continue;
    rd_kafka_topic_partition_list_add(list, topic.c_str(), p)->offset = low;
    open.insert(p);
  }
  rd_kafka_assign(consumer.get(), list);
  rd_kafka_topic_partition_list_destroy(list);
  const absl::Time deadline = absl::Now() + absl::Seconds(120);
  while (!open.empty()) {
    if (absl::Now() > deadline) return absl::DeadlineExceededError("reading " + topic);
    kafka::Message m(rd_kafka_consumer_poll(consumer.get(), 200));
    if (!m) continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      open.erase(m->partition);
      continue;
    }
    if (m->err) return absl::UnavailableError(rd_kafka_message_errstr(m.get()));
    ReadRecord r;
    r.partition = m->partition;
    r.offset = m->offset;
    r.timestamp_ms = rd_kafka_message_timestamp(m.get(), nullptr);
    if (m->key) r.key = std::string(static_cast<const char*>(m->key), m->key_len);
    if (m->payload) r.value = std::string(static_cast<const char*>(m->payload), m->len);
    rd_kafka_headers_t* headers = nullptr;
    if (rd_kafka_message_headers(m.get(), &headers) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      const char* name = nullptr;
      const void* value = nullptr;
      size_t size = 0;
      for (size_t i = 0;
           rd_kafka_header_get_all(headers, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
           ++i) {
        r.headers.emplace_back(name, value ? std::optional<std::string>(
                                                 std::string(static_cast<const char*>(value), size))
                                           : std::nullopt);
      }
    }
    out[r.partition].push_back(std::move(r));
  }
  rd_kafka_consumer_close(consumer.get());
  return out;
}

}  // namespace uop::tools
