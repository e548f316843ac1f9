// topic_watch: how far a topic has been written, sampled every --interval-ms, as lines
// "<unix_ms> <sum of last stable offsets> <partitions>" on stdout until SIGTERM or --timeout.
// The last stable offset is what a read_committed reader can reach, so for a non-transactional
// writer the sum is the number of readable records; a transactional writer (uopd) adds one
// commit marker per partition and transaction, which bench/run.py accounts for separately.
// A topic that does not exist yet reads as 0 with 0 partitions. Uses ListOffsets only, so the
// watched cluster does next to no work for it.
#include <csignal>
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "kafka/client.h"

namespace {

volatile std::sig_atomic_t g_stop = 0;

// Partition count of `topic`, 0 while it does not exist.
int Partitions(rd_kafka_t* rk, const std::string& topic) {
  const struct rd_kafka_metadata* md = nullptr;
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  int partitions = 0;
  if (rd_kafka_metadata(rk, 0, rkt, &md, 2000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      partitions = md->topics[0].partition_cnt;
    }
    rd_kafka_metadata_destroy(md);
  }
  rd_kafka_topic_destroy(rkt);
  return partitions;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"topic_watch: readable end offsets of a topic over time"};
  std::string bootstrap, topic;
  int interval_ms = 50;
  double timeout_s = 3600;
  app.add_option("--bootstrap", bootstrap)->required();
  app.add_option("--topic", topic)->required();
  app.add_option("--interval-ms", interval_ms)->check(CLI::Range(5, 10000));
  app.add_option("--timeout", timeout_s, "Stop after this many seconds");
  CLI11_PARSE(app, argc, argv);
  std::signal(SIGTERM, [](int) { g_stop = 1; });
  std::signal(SIGINT, [](int) { g_stop = 1; });
  std::setvbuf(stdout, nullptr, _IOLBF, 0);

  auto conf = uop::kafka::MakeConf(
      {{"bootstrap.servers", bootstrap},
       {"group.id", absl::StrCat("bench-topic-watch-", absl::ToUnixMillis(absl::Now()))},
       {"isolation.level", "read_committed"},  // ListOffsets then answers the stable offset
       {"allow.auto.create.topics", "false"},
       {"log_level", "3"}});
  if (!conf.ok()) return 2;
  char err[512];
  uop::kafka::Handle rk(rd_kafka_new(RD_KAFKA_CONSUMER, *conf, err, sizeof err));
  if (!rk) {
    std::fprintf(stderr, "topic_watch: %s\n", err);
    return 2;
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(timeout_s);
  int partitions = 0;
  absl::Time next = absl::Now();
  while (!g_stop && absl::Now() < deadline) {
    if (partitions == 0) partitions = Partitions(rk.get(), topic);
    int64_t sum = 0;
    bool complete = partitions > 0;
    for (int p = 0; p < partitions; ++p) {
      int64_t low = 0, high = 0;
      if (rd_kafka_query_watermark_offsets(rk.get(), topic.c_str(), p, &low, &high, 2000) !=
          RD_KAFKA_RESP_ERR_NO_ERROR) {
        complete = false;
        break;
      }
      sum += high;
    }
    if (complete || partitions == 0) {
      std::printf("%lld %lld %d\n", static_cast<long long>(absl::ToUnixMillis(absl::Now())),
                  static_cast<long long>(sum), partitions);
    }
    next += absl::Milliseconds(interval_ms);
    const absl::Time now = absl::Now();
    if (next > now) {
      absl::SleepFor(next - now);  // fixed sampling period
    } else {
      next = now;
    }
  }
  return 0;
}
