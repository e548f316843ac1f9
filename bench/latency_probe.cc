// latency_probe: end-to-end latency of a mirror, measured where a user would see it. Reads the
// target topic from its current end with isolation.level=read_committed (what is readable in the
// receiving city) and, for every record, takes now - record timestamp. The mirrors preserve the
// producer's CreateTime, so on one machine this is produce time -> readable in the other cluster.
// Prints one JSON object with the percentiles.
#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "kafka/client.h"

namespace {

using uop::kafka::Handle;
using uop::kafka::Message;

volatile std::sig_atomic_t g_stop = 0;

using uop::kafka::PartitionList;

// Nearest-rank percentile of sorted values.
double Percentile(const std::vector<int64_t>& sorted, double q) {
  if (sorted.empty()) return 0;
  const auto rank = static_cast<size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  return static_cast<double>(sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1]);
}

// The producer's own clock reading, when the value is a SensorThings observation from
// `uopctl simulate` or bench/load_gen ("phenomenonTime":"2026-11-25T17:01:50.123Z", taken
// right before producing).
std::optional<int64_t> ProducerTimeMs(const rd_kafka_message_t* m) {
  if (m->payload == nullptr) return std::nullopt;
  const absl::string_view value(static_cast<const char*>(m->payload), m->len);
  constexpr absl::string_view kField = "\"phenomenonTime\":\"";
  const size_t at = value.find(kField);
  if (at == absl::string_view::npos) return std::nullopt;
  const absl::string_view rest = value.substr(at + kField.size());
  const size_t end = rest.find('"');
  if (end == absl::string_view::npos) return std::nullopt;
  absl::Time t;
  std::string err;
  if (!absl::ParseTime("%Y-%m-%dT%H:%M:%E*SZ", rest.substr(0, end), absl::UTCTimeZone(), &t,
                       &err)) {
    return std::nullopt;
  }
  return absl::ToUnixMillis(t);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"latency_probe: produce time -> readable in the target cluster, per record"};
  std::string bootstrap, topic, ready_file;
  int64_t count = 0;
  int64_t since_ms = 0;
  double duration_s = 0, timeout_s = 300, idle_stop_s = 0;
  app.add_option("--bootstrap", bootstrap, "Target cluster")->required();
  app.add_option("--topic", topic, "Target (mirror) topic")->required();
  app.add_option("--count", count, "Stop after this many measured records");
  app.add_option("--duration", duration_s, "Stop after this many seconds");
  app.add_option("--timeout", timeout_s, "Stop after this many seconds in any case");
  app.add_option("--idle-stop", idle_stop_s,
                 "Stop when nothing arrived for this many seconds after the first record");
  app.add_option("--since-ms", since_ms,
                 "Ignore (count separately) records with a timestamp before this Unix ms time");
  app.add_option("--ready-file", ready_file, "Written once the partitions are assigned");
  CLI11_PARSE(app, argc, argv);
  std::signal(SIGTERM, [](int) { g_stop = 1; });
  std::signal(SIGINT, [](int) { g_stop = 1; });

  auto conf = uop::kafka::MakeConf(
      {{"bootstrap.servers", bootstrap},
       {"group.id", absl::StrCat("bench-latency-probe-", absl::ToUnixMillis(absl::Now()))},
       {"enable.auto.commit", "false"},
       {"enable.auto.offset.store", "false"},
       // uopd writes in transactions: only committed records are readable for users.
       {"isolation.level", "read_committed"},
       // Keep the probe's own share of the latency small.
       {"fetch.wait.max.ms", "10"},
       {"log_level", "4"}});
  if (!conf.ok()) return 2;
  char err[512];
  uop::kafka::Handle consumer(rd_kafka_new(RD_KAFKA_CONSUMER, *conf, err, sizeof err));
  if (!consumer) {
    std::fprintf(stderr, "latency_probe: %s\n", err);
    return 2;
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(timeout_s);

  // The topic may still be being created by the mirror: wait for its metadata.
  int partitions = 0;
  while (partitions == 0 && absl::Now() < deadline && !g_stop) {
    const struct rd_kafka_metadata* md = nullptr;
    rd_kafka_topic_t* rkt = rd_kafka_topic_new(consumer.get(), topic.c_str(), nullptr);
    if (rd_kafka_metadata(consumer.get(), 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        partitions = md->topics[0].partition_cnt;
      }
      rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(rkt);
    if (partitions == 0) absl::SleepFor(absl::Milliseconds(200));  // topic not there yet
  }
  if (partitions == 0) {
    std::fprintf(stderr, "latency_probe: topic %s not found\n", topic.c_str());
    return 1;
  }
  // Start exactly at the current last stable offset of every partition. A topic the mirror
  // has just created may not have its leaders yet: retry until the deadline.
  uop::kafka::PartitionList assignment(rd_kafka_topic_partition_list_new(partitions));
  for (int p = 0; p < partitions; ++p) {
    int64_t low = 0, high = 0;
    rd_kafka_resp_err_t e;
    while ((e = rd_kafka_query_watermark_offsets(consumer.get(), topic.c_str(), p, &low, &high,
                                                 5000)) != RD_KAFKA_RESP_ERR_NO_ERROR &&
           absl::Now() < deadline && !g_stop) {
      absl::SleepFor(absl::Milliseconds(200));  // leader election in progress
    }
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
      std::fprintf(stderr, "latency_probe: end offset of %s[%d]: %s\n", topic.c_str(), p,
                   rd_kafka_err2str(e));
      return 1;
    }
    rd_kafka_topic_partition_list_add(assignment.get(), topic.c_str(), p)->offset = high;
  }
  if (rd_kafka_resp_err_t e = rd_kafka_assign(consumer.get(), assignment.get()); e) {
    std::fprintf(stderr, "latency_probe: assign: %s\n", rd_kafka_err2str(e));
    return 1;
  }
  const absl::Time ready = absl::Now();
  if (!ready_file.empty()) {
    const std::string tmp = ready_file + ".tmp";
    std::ofstream(tmp) << "{\"partitions\":" << partitions << "}\n";
    std::rename(tmp.c_str(), ready_file.c_str());
  }
  std::fprintf(stderr, "latency_probe: ready, %d partitions\n", partitions);

  std::vector<int64_t> latencies;
  latencies.reserve(count > 0 ? static_cast<size_t>(count) : 1 << 20);
  int64_t ignored = 0, create_time = 0, log_append_time = 0, other_time = 0;
  int64_t checked = 0, payload_skew_max = 0;
  int64_t first_ms = 0, last_ms = 0;
  absl::Time last_arrival = ready;
  while (!g_stop) {
    const absl::Time now = absl::Now();
    if (now > deadline) break;
    if (duration_s > 0 && now - ready > absl::Seconds(duration_s)) break;
    if (count > 0 && static_cast<int64_t>(latencies.size()) >= count) break;
    if (idle_stop_s > 0 && !latencies.empty() && now - last_arrival > absl::Seconds(idle_stop_s)) {
      break;
    }
    uop::kafka::Message m(rd_kafka_consumer_poll(consumer.get(), 100));
    if (!m) continue;
    const int64_t now_ms = absl::ToUnixMillis(absl::Now());
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        std::fprintf(stderr, "latency_probe: %s\n", rd_kafka_message_errstr(m.get()));
      }
      continue;
    }
    rd_kafka_timestamp_type_t type = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
    const int64_t ts = rd_kafka_message_timestamp(m.get(), &type);
    if (ts < since_ms) {
      ++ignored;
      continue;
    }
    if (type == RD_KAFKA_TIMESTAMP_CREATE_TIME) {
      ++create_time;
    } else if (type == RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME) {
      ++log_append_time;
    } else {
      ++other_time;
    }
    // Every 64th record: is the timestamp still the producer's (it wrote its clock into the
    // value right before producing)?
    if (latencies.size() % 64 == 0) {
      if (std::optional<int64_t> produced_ms = ProducerTimeMs(m.get()); produced_ms.has_value()) {
        ++checked;
        payload_skew_max = std::max(payload_skew_max, std::abs(ts - *produced_ms));
      }
    }
    latencies.push_back(now_ms - ts);
    if (first_ms == 0) first_ms = now_ms;
    last_ms = now_ms;
    last_arrival = absl::Now();
  }
  rd_kafka_consumer_close(consumer.get());

  std::vector<int64_t> sorted = latencies;
  std::sort(sorted.begin(), sorted.end());
  double sum = 0;
  for (int64_t v : sorted) sum += static_cast<double>(v);
  const double span_s = static_cast<double>(last_ms - first_ms) / 1000.0;
  std::printf(
      "{\"count\":%zu,\"p50_ms\":%.0f,\"p90_ms\":%.0f,\"p99_ms\":%.0f,\"p999_ms\":%.0f,"
      "\"max_ms\":%.0f,\"min_ms\":%.0f,\"mean_ms\":%.1f,\"ignored_older\":%lld,"
      "\"create_time\":%lld,\"log_append_time\":%lld,\"other_timestamp\":%lld,"
      "\"payload_checked\":%lld,\"payload_time_skew_max_ms\":%lld,\"arrival_span_s\":%.2f,"
      "\"arrival_rate\":%.0f,\"partitions\":%d}\n",
      sorted.size(), Percentile(sorted, 0.50), Percentile(sorted, 0.90), Percentile(sorted, 0.99),
      Percentile(sorted, 0.999), sorted.empty() ? 0.0 : static_cast<double>(sorted.back()),
      sorted.empty() ? 0.0 : static_cast<double>(sorted.front()),
      sorted.empty() ? 0.0 : sum / static_cast<double>(sorted.size()),
      static_cast<long long>(ignored), static_cast<long long>(create_time),
      static_cast<long long>(log_append_time), static_cast<long long>(other_time),
      static_cast<long long>(checked), static_cast<long long>(payload_skew_max), span_s,
      span_s > 0 ? static_cast<double>(sorted.size()) / span_s : 0.0, partitions);
  return sorted.empty() ? 1 : 0;
}
