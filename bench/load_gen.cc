// load_gen: the benchmark data set. SensorThings noise observations of exactly --record-bytes
// bytes each (key + value + header names and values), spread evenly over the partitions of a
// topic (600 sensors, sensor s always in partition s % partitions, like a keyed producer with a
// perfect hash). Given several topics (--topic repeated), records go round-robin over them from
// one producer, each topic getting the keys and partitions it would get alone: the scale
// benchmark's 100 datasets then cost one process, not 100 (which took more than a core of two).
// Deterministic for a seed, apart from the timestamps. Each value carries the producer's clock in
// "phenomenonTime", which latency_probe uses to check that mirrors keep the producer's CreateTime.
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "kafka/client.h"

namespace {

using uop::kafka::Handle;

constexpr int kSensors = 600;
constexpr absl::string_view kHeaderName = "content-type";
constexpr absl::string_view kHeaderValue = "application/json";

struct DeliveryCount {
  int64_t ok = 0;
  int64_t failed = 0;
  std::string first_error;
};

// One observation whose value is padded so that key + value + header come to `record_bytes`.
absl::StatusOr<std::string> MakeValue(int sensor, int64_t seq, absl::Time now, double laeq,
                                      size_t value_bytes) {
  const std::string when = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", now, absl::UTCTimeZone());
  const double lon = 24.90 + 0.0001 * (sensor % 997);
  const double lat = 60.15 + 0.0001 * (sensor % 499);
  std::string value = absl::StrFormat(
      R"j({"@iot.id":"hel-%04d-%d","phenomenonTime":"%s","result":%.1f,)j"
      R"j("Datastream":{"@iot.id":"hel-%04d-laeq"},)j"
      R"j("FeatureOfInterest":{"feature":{"type":"Point","coordinates":[%.4f,%.4f]}},)j"
      R"j("parameters":{"pad":")j",
      sensor, seq, when, laeq, sensor, lon, lat);
  constexpr absl::string_view kTail = "\"}}";
  if (value.size() + kTail.size() > value_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("records need at least ", value.size() + kTail.size(), " value bytes"));
  }
  value.append(value_bytes - value.size() - kTail.size(), '.');
  absl::StrAppend(&value, kTail);
  return value;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"load_gen: fixed-size SensorThings observations into a Kafka topic"};
  std::string bootstrap;
  std::vector<std::string> topics;
  int64_t count = 1000;
  int partitions = 6;
  size_t record_bytes = 300;
  double rate = 0;
  uint64_t seed = 1;
  app.add_option("--bootstrap", bootstrap)->required();
  app.add_option("--topic", topics, "Topic (repeat for several: round-robin)")->required();
  app.add_option("--count", count, "Records to produce, all topics together");
  app.add_option("--partitions", partitions, "Partitions of the topic")->check(CLI::Range(1, 1000));
  app.add_option("--record-bytes", record_bytes, "key + value + header bytes per record");
  app.add_option("--rate", rate, "Records per second, all topics (0: as fast as possible)");
  app.add_option("--seed", seed, "Random seed (the measured noise levels)");
  CLI11_PARSE(app, argc, argv);

  auto conf = uop::kafka::MakeConf({{"bootstrap.servers", bootstrap},
                                    {"enable.idempotence", "true"},
                                    {"acks", "all"},
                                    {"linger.ms", "20"},
                                    {"batch.size", "1000000"},
                                    {"queue.buffering.max.messages", "1000000"},
                                    {"log_level", "4"}});
  if (!conf.ok()) return 2;
  DeliveryCount deliveries;
  rd_kafka_conf_set_opaque(*conf, &deliveries);
  rd_kafka_conf_set_dr_msg_cb(*conf, [](rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    auto* d = static_cast<DeliveryCount*>(opaque);
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      ++d->ok;
    } else if (d->failed++ == 0) {
      d->first_error = rd_kafka_err2str(m->err);
    }
  });
  char err[512];
  uop::kafka::Handle producer(rd_kafka_new(RD_KAFKA_PRODUCER, *conf, err, sizeof err));
  if (!producer) {
    std::fprintf(stderr, "load_gen: %s\n", err);
    return 2;
  }
  const size_t fixed = 13 + kHeaderName.size() + kHeaderValue.size();  // key is 13 bytes
  if (record_bytes <= fixed) {
    std::fprintf(stderr, "load_gen: --record-bytes must exceed %zu\n", fixed);
    return 2;
  }
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> noise(0, 3.5);
  const absl::Time start = absl::Now();
  const auto topic_count = static_cast<int64_t>(topics.size());
  for (int64_t n = 0; n < count; ++n) {
    if (rate > 0) {
      const absl::Time due = start + absl::Seconds(static_cast<double>(n) / rate);
      while (absl::Now() < due) {
        rd_kafka_poll(producer.get(), static_cast<int>(std::max<int64_t>(
                                          1, absl::ToInt64Milliseconds(due - absl::Now()))));
      }
    }
    const std::string& topic = topics[static_cast<size_t>(n % topic_count)];
    const int64_t seq = n / topic_count;  // within the topic
    const int sensor = static_cast<int>(seq % kSensors);
    const std::string key = absl::StrFormat("hel-%04d-laeq", sensor);
    absl::StatusOr<std::string> value =
        MakeValue(sensor, seq, absl::Now(), 55 + (sensor % 20) + noise(rng), record_bytes - fixed);
    if (!value.ok()) {
      std::fprintf(stderr, "load_gen: %s\n", std::string(value.status().message()).c_str());
      return 2;
    }
    while (true) {
      rd_kafka_resp_err_t e = rd_kafka_producev(
          producer.get(), RD_KAFKA_V_TOPIC(topic.c_str()),
          RD_KAFKA_V_PARTITION(sensor % partitions), RD_KAFKA_V_KEY(key.data(), key.size()),
          RD_KAFKA_V_VALUE(value->data(), value->size()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
          RD_KAFKA_V_HEADER(kHeaderName.data(), kHeaderValue.data(),
                            static_cast<ssize_t>(kHeaderValue.size())),
          RD_KAFKA_V_END);
      if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        rd_kafka_poll(producer.get(), 10);  // room comes with delivery reports
        continue;
      }
      if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        std::fprintf(stderr, "load_gen: produce: %s\n", rd_kafka_err2str(e));
        return 1;
      }
      break;
    }
    rd_kafka_poll(producer.get(), 0);
  }
  rd_kafka_flush(producer.get(), 120000);
  const int unflushed = rd_kafka_outq_len(producer.get());
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::printf(
      "{\"produced\":%lld,\"delivered\":%lld,\"failed\":%lld,\"unflushed\":%d,"
      "\"record_bytes\":%zu,\"seconds\":%.2f}\n",
      static_cast<long long>(count), static_cast<long long>(deliveries.ok),
      static_cast<long long>(deliveries.failed), unflushed, record_bytes, seconds);
  if (deliveries.failed > 0) {
    std::fprintf(stderr, "load_gen: delivery failed: %s\n", deliveries.first_error.c_str());
  }
  return unflushed == 0 && deliveries.failed == 0 && deliveries.ok == count ? 0 : 1;
}
