// raw_pipe: the practical ceiling for mirroring a topic between two Kafka clusters. One process,
// one consumer and one producer, no gRPC, no policy: read every partition of the source topic
// and write each record to the same partition of the target topic with its key, value,
// timestamp and headers. Prints one JSON object when done (bench/run.py reads it).
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/log.h"
#include "kafka/client.h"

namespace {

using uop::kafka::Handle;
using uop::kafka::Message;
using uop::kafka::Properties;

volatile std::sig_atomic_t g_stop = 0;

struct TopicDeleter {
  void operator()(rd_kafka_topic_t* t) const { rd_kafka_topic_destroy(t); }
};
using KafkaTopic = std::unique_ptr<rd_kafka_topic_t, TopicDeleter>;

using uop::kafka::PartitionList;

using uop::kafka::Queue;

// Delivery accounting, touched only by the thread that polls the producer (ours).
struct Deliveries {
  int64_t ok = 0;
  int64_t failed = 0;
  int64_t bytes = 0;  // key + value + header names and values of delivered records
  absl::Time first = absl::InfinitePast();
  absl::Time last = absl::InfinitePast();
  std::string first_error;
};

int64_t RecordBytes(const rd_kafka_message_t* m) {
  int64_t bytes = static_cast<int64_t>(m->len + m->key_len);
  rd_kafka_headers_t* headers = nullptr;
  // Delivery reports carry the headers the producer was given.
  if (rd_kafka_message_headers(m, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    const char* name = nullptr;
    const void* value = nullptr;
    size_t size = 0;
    for (size_t i = 0;
         rd_kafka_header_get_all(headers, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
         ++i) {
      bytes += static_cast<int64_t>(std::strlen(name) + size);
    }
  }
  return bytes;
}

// "key=value" pairs from the command line, applied after our defaults.
bool ApplyOverrides(const std::vector<std::string>& pairs, uop::kafka::Properties& props) {
  for (const std::string& pair : pairs) {
    std::vector<std::string> kv = absl::StrSplit(pair, absl::MaxSplits('=', 1));
    if (kv.size() != 2 || kv[0].empty()) {
      std::fprintf(stderr, "raw_pipe: expected key=value, got '%s'\n", pair.c_str());
      return false;
    }
    props[kv[0]] = kv[1];
  }
  return true;
}

absl::StatusOr<uop::kafka::Handle> NewClient(rd_kafka_type_t type,
                                             const uop::kafka::Properties& props,
                                             Deliveries* deliveries) {
  auto conf = uop::kafka::MakeConf(props);
  if (!conf.ok()) return conf.status();
  if (deliveries != nullptr) {
    rd_kafka_conf_set_opaque(*conf, deliveries);
    rd_kafka_conf_set_dr_msg_cb(*conf, [](rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
      auto* d = static_cast<Deliveries*>(opaque);
      if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (d->failed++ == 0) d->first_error = rd_kafka_err2str(m->err);
        return;
      }
      const absl::Time now = absl::Now();
      if (d->ok++ == 0) d->first = now;
      d->last = now;
      d->bytes += RecordBytes(m);
    });
  }
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(type, *conf, err, sizeof err);
  if (rk == nullptr) {
    rd_kafka_conf_destroy(*conf);
    return absl::InvalidArgumentError(absl::StrCat("kafka client: ", err));
  }
  return uop::kafka::Handle(rk);
}

// Peak resident set of this process so far, in KiB (VmHWM), or -1.
int64_t PeakRssKib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::strtoll(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"raw_pipe: consume -> produce between two Kafka clusters (benchmark ceiling)"};
  std::string source_bootstrap, source_topic, target_bootstrap, target_topic;
  int64_t count = 0;
  double timeout_s = 600;
  std::string from = "beginning";
  std::vector<std::string> consumer_overrides, producer_overrides;
  app.add_option("--source-bootstrap", source_bootstrap)->required();
  app.add_option("--source-topic", source_topic)->required();
  app.add_option("--target-bootstrap", target_bootstrap)->required();
  app.add_option("--target-topic", target_topic)->required();
  app.add_option("--count", count, "Stop once this many records are delivered (0: on SIGTERM)");
  app.add_option("--from", from, "Start of every partition: beginning or end")
      ->check(CLI::IsMember({"beginning", "end"}));
  app.add_option("--timeout", timeout_s, "Give up after this many seconds");
  app.add_option("-C,--consumer-property", consumer_overrides, "key=value (repeatable)");
  app.add_option("-P,--producer-property", producer_overrides, "key=value (repeatable)");
  CLI11_PARSE(app, argc, argv);

  std::signal(SIGTERM, [](int) { g_stop = 1; });
  std::signal(SIGINT, [](int) { g_stop = 1; });
  const absl::Time started = absl::Now();

  // Consumer: a cold group that never commits; read-ahead raised as measured in
  // docs/librdkafka.md (the defaults stall the fetcher about 0.9 s per 300k).
  uop::kafka::Properties consumer_props = {
      {"bootstrap.servers", source_bootstrap},
      {"group.id", absl::StrCat("bench-raw-pipe-", absl::ToUnixMillis(started))},
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"isolation.level", "read_committed"},
      {"queued.min.messages", "500000"},
      {"queued.max.messages.kbytes", "16384"},  // per partition, as uopd
      {"fetch.message.max.bytes", "4194304"},
      {"fetch.wait.max.ms", "50"},
      {"log_level", "4"}};
  // Producer: idempotent, acks=all, big batches with a short linger. One producer writes all
  // partitions over one connection, and a broker serves one request per connection at a time:
  // a request must be allowed to carry a full batch for every partition (message.max.bytes
  // is librdkafka's request size limit, 1 MB by default; 8 MB measured +20-50% here).
  uop::kafka::Properties producer_props = {{"bootstrap.servers", target_bootstrap},
                                           {"enable.idempotence", "true"},
                                           {"acks", "all"},
                                           {"linger.ms", "10"},
                                           {"batch.size", "1000000"},
                                           {"message.max.bytes", "8000000"},
                                           {"batch.num.messages", "100000"},
                                           {"queue.buffering.max.messages", "1000000"},
                                           {"queue.buffering.max.kbytes", "1048576"},
                                           {"compression.type", "none"},
                                           {"log_level", "4"}};
  if (!ApplyOverrides(consumer_overrides, consumer_props) ||
      !ApplyOverrides(producer_overrides, producer_props)) {
    return 2;
  }
  Deliveries deliveries;
  auto consumer_or = NewClient(RD_KAFKA_CONSUMER, consumer_props, nullptr);
  auto producer_or = NewClient(RD_KAFKA_PRODUCER, producer_props, &deliveries);
  if (!consumer_or.ok() || !producer_or.ok()) {
    std::fprintf(
        stderr, "raw_pipe: %s\n",
        std::string((consumer_or.ok() ? producer_or : consumer_or).status().message()).c_str());
    return 2;
  }
  uop::kafka::Handle consumer = *std::move(consumer_or);
  uop::kafka::Handle producer = *std::move(producer_or);

  // Every partition of the source topic, assigned directly (no group rebalance).
  const struct rd_kafka_metadata* md = nullptr;
  KafkaTopic source(rd_kafka_topic_new(consumer.get(), source_topic.c_str(), nullptr));
  if (rd_kafka_resp_err_t err = rd_kafka_metadata(consumer.get(), 0, source.get(), &md, 10000);
      err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    std::fprintf(stderr, "raw_pipe: metadata of %s: %s\n", source_topic.c_str(),
                 rd_kafka_err2str(err));
    return 1;
  }
  const int partitions = md->topic_cnt == 1 ? md->topics[0].partition_cnt : 0;
  rd_kafka_metadata_destroy(md);
  if (partitions <= 0) {
    std::fprintf(stderr, "raw_pipe: topic %s not found\n", source_topic.c_str());
    return 1;
  }
  uop::kafka::PartitionList assignment(rd_kafka_topic_partition_list_new(partitions));
  for (int p = 0; p < partitions; ++p) {
    int64_t start = RD_KAFKA_OFFSET_BEGINNING;
    if (from == "end") {
      // Resolved now (the last stable offset, read_committed) so that everything produced
      // after this program printed "ready" is mirrored.
      int64_t low = 0, high = 0;
      if (rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
              consumer.get(), source_topic.c_str(), p, &low, &high, 10000);
          err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        std::fprintf(stderr, "raw_pipe: end offset of %s[%d]: %s\n", source_topic.c_str(), p,
                     rd_kafka_err2str(err));
        return 1;
      }
      start = high;
    }
    rd_kafka_topic_partition_list_add(assignment.get(), source_topic.c_str(), p)->offset = start;
  }
  if (rd_kafka_resp_err_t err = rd_kafka_assign(consumer.get(), assignment.get()); err) {
    std::fprintf(stderr, "raw_pipe: assign: %s\n", rd_kafka_err2str(err));
    return 1;
  }
  KafkaTopic target(rd_kafka_topic_new(producer.get(), target_topic.c_str(), nullptr));
  std::fprintf(stderr, "raw_pipe: ready, %d partitions from the %s\n", partitions, from.c_str());

  uop::kafka::Queue queue(rd_kafka_queue_get_consumer(consumer.get()));
  const absl::Time deadline = started + absl::Seconds(timeout_s);
  int64_t consumed = 0;
  int64_t produced = 0;
  std::string error;
  // Mirrors one consumed record; false on a produce error (recorded in `error`).
  auto mirror = [&](uop::kafka::Message m) {
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) return true;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      std::fprintf(stderr, "raw_pipe: consume: %s\n", rd_kafka_message_errstr(m.get()));
      return true;
    }
    ++consumed;
    if (count > 0 && produced >= count) return true;  // beyond --count: not mirrored
    rd_kafka_headers_t* headers = nullptr;
    // The producer takes ownership of the detached headers when producev succeeds.
    rd_kafka_message_detach_headers(m.get(), &headers);
    const int64_t timestamp = rd_kafka_message_timestamp(m.get(), nullptr);
    while (true) {
      rd_kafka_resp_err_t err = rd_kafka_producev(
          producer.get(), RD_KAFKA_V_RKT(target.get()), RD_KAFKA_V_PARTITION(m->partition),
          RD_KAFKA_V_KEY(m->key, m->key_len), RD_KAFKA_V_VALUE(m->payload, m->len),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_TIMESTAMP(timestamp),
          RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        rd_kafka_poll(producer.get(), 5);  // room comes with delivery reports
        continue;
      }
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (headers != nullptr) rd_kafka_headers_destroy(headers);
        error = absl::StrCat("produce: ", rd_kafka_err2str(err));
        return false;
      }
      ++produced;
      return true;
    }
  };
  std::vector<rd_kafka_message_t*> batch(10000);
  while (!g_stop && (count == 0 || deliveries.ok < count) && deliveries.failed == 0) {
    if (absl::Now() > deadline) {
      error = "timeout";
      break;
    }
    rd_kafka_poll(producer.get(), 0);  // delivery reports
    if (count > 0 && produced >= count) {
      rd_kafka_poll(producer.get(), 10);  // all sent: wait for the last delivery reports
      continue;
    }
    // Whatever the fetcher has queued, without waiting (rd_kafka_consume_batch_queue with a
    // timeout waits for a full batch); when nothing is queued, wait for one record.
    const ssize_t n = rd_kafka_consume_batch_queue(queue.get(), 0, batch.data(), batch.size());
    bool ok = true;
    for (ssize_t i = 0; i < n; ++i) {
      uop::kafka::Message m(batch[i]);  // owns every message, even after an error
      if (ok) ok = mirror(std::move(m));
    }
    if (n <= 0) {
      uop::kafka::Message m(rd_kafka_consumer_poll(consumer.get(), 5));
      if (m) ok = mirror(std::move(m));
    }
    if (!ok) break;
  }
  // Whatever is still queued is flushed (SIGTERM in run-until-stopped mode).
  rd_kafka_flush(producer.get(), 30000);
  const int unflushed = rd_kafka_outq_len(producer.get());
  rd_kafka_consumer_close(consumer.get());
  if (error.empty() && deliveries.failed > 0) error = "delivery failed: " + deliveries.first_error;
  if (error.empty() && count > 0 && deliveries.ok < count) error = "stopped before --count";

  const double seconds = deliveries.ok > 0 ? absl::ToDoubleSeconds(deliveries.last - started) : 0;
  const double first_to_last =
      deliveries.ok > 1 ? absl::ToDoubleSeconds(deliveries.last - deliveries.first) : 0;
  std::printf(
      "{\"records\":%lld,\"bytes\":%lld,\"seconds\":%.3f,\"first_to_last_seconds\":%.3f,"
      "\"records_per_s\":%.0f,\"first_to_last_records_per_s\":%.0f,\"consumed\":%lld,"
      "\"produced\":%lld,\"failed\":%lld,\"unflushed\":%d,\"partitions\":%d,"
      "\"first_delivery_unix_ms\":%lld,\"last_delivery_unix_ms\":%lld,\"vm_hwm_kib\":%lld,"
      "\"error\":\"%s\"}\n",
      static_cast<long long>(deliveries.ok), static_cast<long long>(deliveries.bytes), seconds,
      first_to_last, seconds > 0 ? static_cast<double>(deliveries.ok) / seconds : 0,
      first_to_last > 0 ? static_cast<double>(deliveries.ok - 1) / first_to_last : 0,
      static_cast<long long>(consumed), static_cast<long long>(produced),
      static_cast<long long>(deliveries.failed), unflushed, partitions,
      static_cast<long long>(deliveries.ok > 0 ? absl::ToUnixMillis(deliveries.first) : 0),
      static_cast<long long>(deliveries.ok > 0 ? absl::ToUnixMillis(deliveries.last) : 0),
      static_cast<long long>(PeakRssKib()), uop::log::JsonEscape(error).c_str());
  return error.empty() ? 0 : 1;
}
