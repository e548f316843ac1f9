// uopctl: the command line for admins, auditors and developers of uop-federation.
//   dev-kafka  a standalone mock Kafka cluster in its own process (tests, demos)
//   simulate   realistic SensorThings noise observations into a Kafka topic
//   compare    what crossed the border: origin topic vs. its mirror, record by record
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <thread>

#include <CLI/CLI.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/log.h"
#include "core/provenance.h"
#include "kafka/client.h"
#include "policy/policy_snapshot.h"
#include "policy/share_transform.h"
#include "tools/uopctl/audit_cmd.h"
#include "tools/uopctl/kafka_topic_reader.h"
#include "tools/uopctl/node_cmd.h"
#include "tools/uopctl/policy_cmd.h"

namespace {

using uop::kafka::Handle;

int DevKafka(int brokers, const std::vector<std::string>& topics,
             const std::string& bootstrap_file) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  auto mock = uop::kafka::StartMockCluster(brokers);
  if (!mock.ok()) {
    std::fprintf(stderr, "uopctl dev-kafka: %s\n", std::string(mock.status().message()).c_str());
    return 1;
  }
  for (const std::string& spec : topics) {
    std::vector<std::string> parts = absl::StrSplit(spec, absl::MaxSplits(':', 1));
    int partitions = 1;
    if (parts.size() == 2 && !absl::SimpleAtoi(parts[1], &partitions)) partitions = 0;
    if (parts[0].empty() || partitions < 1) {
      std::fprintf(stderr, "uopctl dev-kafka: --topic %s: expected name:partitions\n",
                   spec.c_str());
      return 2;
    }
    if (absl::Status s = uop::kafka::CreateMockTopic(**mock, parts[0], partitions); !s.ok()) {
      std::fprintf(stderr, "uopctl dev-kafka: %s\n", std::string(s.message()).c_str());
      return 1;
    }
  }
  if (!bootstrap_file.empty()) {
    const std::string tmp = bootstrap_file + ".tmp";
    std::ofstream(tmp) << (*mock)->bootstrap << "\n";
    std::rename(tmp.c_str(), bootstrap_file.c_str());
  }
  std::printf("%s\n", (*mock)->bootstrap.c_str());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&signals, &sig);
  return 0;
}

struct Site {
  const char* id;
  const char* name;
  double lon, lat;
  double base_db;
};

// Noise monitoring sites in Helsinki and Tallinn (approximate public locations).
const std::vector<Site>& SitesFor(const std::string& city) {
  static const std::vector<Site> helsinki = {
      {"hel-kauppatori", "Kauppatori", 24.9525, 60.1675, 64},
      {"hel-mannerheimintie", "Mannerheimintie", 24.9378, 60.1699, 71},
      {"hel-kamppi", "Kamppi", 24.9316, 60.1690, 68},
      {"hel-kallio", "Kallio", 24.9497, 60.1841, 62},
      {"hel-lansisatama", "Länsisatama", 24.9156, 60.1553, 66},
      {"hel-pasila", "Pasila", 24.9336, 60.1986, 63}};
  static const std::vector<Site> tallinn = {{"tll-vanalinn", "Vanalinn", 24.7453, 59.4370, 61},
                                            {"tll-viru", "Viru väljak", 24.7545, 59.4369, 70},
                                            {"tll-sadam", "Vanasadam", 24.7650, 59.4440, 67},
                                            {"tll-kristiine", "Kristiine", 24.7170, 59.4260, 65}};
  return city == "tallinn" ? tallinn : helsinki;
}

int Simulate(const std::string& bootstrap, const std::string& topic, const std::string& city,
             int64_t count, double rate, uint64_t seed) {
  auto conf = uop::kafka::MakeConf({{"bootstrap.servers", bootstrap},
                                    {"enable.idempotence", "true"},
                                    {"acks", "all"},
                                    {"linger.ms", "5"},
                                    {"log_level", "3"}});
  if (!conf.ok()) return 2;
  char err[512];
  Handle producer(rd_kafka_new(RD_KAFKA_PRODUCER, *conf, err, sizeof err));
  if (!producer) {
    std::fprintf(stderr, "uopctl simulate: %s\n", err);
    return 1;
  }
  const std::vector<Site>& sites = SitesFor(city);
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> noise(0, 3.5);
  const absl::Time start = absl::Now();
  for (int64_t seq = 0; seq < count; ++seq) {
    if (rate > 0) {
      const absl::Time due = start + absl::Seconds(static_cast<double>(seq) / rate);
      while (absl::Now() < due) {
        rd_kafka_poll(producer.get(), static_cast<int>(std::max<int64_t>(
                                          1, absl::ToInt64Milliseconds(due - absl::Now()))));
      }
    }
    const Site& site = sites[static_cast<size_t>(seq) % sites.size()];
    const absl::Time now = absl::Now();
    const std::string when = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", now, absl::UTCTimeZone());
    const double laeq = site.base_db + noise(rng);
    // A SensorThings API Observation, expanded with its Datastream and FeatureOfInterest.
    const std::string value = absl::StrFormat(
        R"j({"@iot.id":"%s-%d","phenomenonTime":"%s","resultTime":"%s","result":%.1f,)j"
        R"j("Datastream":{"@iot.id":"%s-laeq","unitOfMeasurement":{"symbol":"dB(A)"}},)j"
        R"j("FeatureOfInterest":{"name":"%s","feature":{"type":"Point","coordinates":[%.4f,%.4f]}},)j"
        R"j("parameters":{"seq":%d}})j",
        site.id, seq, when, when, laeq, site.id, site.name, site.lon, site.lat, seq);
    const std::string key = absl::StrCat(site.id, "-laeq");
    const std::string seq_header = std::to_string(seq);
    while (true) {
      rd_kafka_resp_err_t e = rd_kafka_producev(
          producer.get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_KEY(key.data(), key.size()),
          RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
          RD_KAFKA_V_HEADER("content-type", "application/json", -1),
          RD_KAFKA_V_HEADER("sensorthings.entity", "Observation", -1),
          RD_KAFKA_V_HEADER("seq", seq_header.data(), static_cast<ssize_t>(seq_header.size())),
          RD_KAFKA_V_END);
      if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        rd_kafka_poll(producer.get(), 10);
        continue;
      }
      if (e) {
        std::fprintf(stderr, "uopctl simulate: produce: %s\n", rd_kafka_err2str(e));
        return 1;
      }
      break;
    }
    rd_kafka_poll(producer.get(), 0);
  }
  rd_kafka_flush(producer.get(), 60000);
  const int left = rd_kafka_outq_len(producer.get());
  const double secs = absl::ToDoubleSeconds(absl::Now() - start);
  std::printf("{\"produced\":%lld,\"unflushed\":%d,\"seconds\":%.2f}\n",
              static_cast<long long>(count), left, secs);
  return left == 0 ? 0 : 1;
}

struct Comparison {
  int64_t source = 0, target = 0, expected = 0, lost = 0, duplicated = 0, out_of_order = 0,
          mismatched = 0, loop_skipped = 0, deadlettered = 0, withheld = 0;
  std::map<std::string, int64_t> withheld_by_reason;
  std::string first_problem;
};

// With --policy: what the owner's share should have made of each source record (the same
// library the owner runs), so that the mirror can be checked byte for byte.
struct Expected {
  std::optional<std::string> key;
  std::optional<std::string> value;
  int64_t timestamp_ms = 0;
  std::vector<std::pair<std::string, std::optional<std::string>>> headers;  // before provenance
};

using TopicRecords = std::map<int32_t, std::vector<uop::tools::ReadRecord>>;

// Origin offsets held by a dead-letter topic, per partition.
std::map<int32_t, std::set<int64_t>> DeadLettered(const TopicRecords& deadletter) {
  std::map<int32_t, std::set<int64_t>> out;
  for (const auto& [p, records] : deadletter) {
    for (const auto& r : records) {
      const auto* off = r.Header(uop::core::kHeaderOriginOffset);
      int64_t offset = -1;
      if (off != nullptr && off->has_value() && absl::SimpleAtoi(**off, &offset)) {
        out[p].insert(offset);
      }
    }
  }
  return out;
}

// A record read from the origin as the policy library takes it (views into `r`).
uop::policy::SourceRecord ToSourceRecord(int32_t p, const uop::tools::ReadRecord& r) {
  uop::policy::SourceRecord in;
  in.partition = p;
  in.offset = r.offset;
  in.timestamp_ms = r.timestamp_ms;
  if (r.key.has_value()) in.key = *r.key;
  if (r.value.has_value()) in.value = *r.value;
  for (const auto& [k, v] : r.headers) {
    in.headers.emplace_back(k, v.has_value() ? std::string_view(*v) : std::string_view());
  }
  return in;
}

// One origin partition of a share that aggregates: the windows its source makes (the owner's
// library, from the partition's first record, closed by time at `now`) against the mirror's
// records, as values: each window exactly once, in order. A window the owner closes later
// than `now` is not expected yet.
void CompareAggregates(int32_t p, const std::vector<uop::tools::ReadRecord>& records,
                       const std::vector<uop::tools::ReadRecord>* mirrored,
                       const std::shared_ptr<const uop::policy::PolicySnapshot>& policy,
                       const std::string& origin, const std::string& origin_topic,
                       const std::string& peer, absl::Time now, Comparison* c,
                       const std::function<void(std::string)>& note) {
  namespace b = uop::core;
  std::vector<std::string> expected;
  std::unique_ptr<uop::policy::ShareTransform> transform;
  uop::policy::TransformOutput out;
  auto take = [&]() {
    for (uop::policy::OutputRecord& o : out.records) expected.push_back(std::move(o.value));
    if (out.below_min_count_records > 0) {
      c->withheld += out.below_min_count_records;
      c->withheld_by_reason["below_min_count"] += out.below_min_count_records;
    }
    out.Clear();
  };
  for (const auto& r : records) {
    if (r.Header(b::kHeaderOrigin) != nullptr) {
      ++c->loop_skipped;
      continue;
    }
    if (transform == nullptr) {
      auto t = uop::policy::ShareTransform::Resume(policy, origin_topic, peer, p,
                                                   uop::policy::EncodeOffsetToken(r.offset));
      if (!t.ok()) {
        note(std::string(t.status().message()));
        ++c->mismatched;
        return;
      }
      transform = *std::move(t);
    }
    const uop::policy::Decision d = transform->Apply(ToSourceRecord(p, r), now, &out);
    if (d.verdict == uop::policy::Decision::Verdict::kWithheld) {
      ++c->withheld;
      ++c->withheld_by_reason[uop::policy::WithheldReasonName(d.reason)];
    }
    take();
  }
  if (transform != nullptr) {
    transform->Advance(now, &out);
    take();
  }
  c->expected += static_cast<int64_t>(expected.size());
  std::map<std::string, size_t> index;  // window (its value) -> position in `expected`
  for (size_t i = 0; i < expected.size(); ++i) index.emplace(expected[i], i);
  std::set<size_t> seen;
  size_t last = 0;
  bool any = false;
  if (mirrored != nullptr) {
    for (const auto& t : *mirrored) {
      ++c->target;
      const auto header_is = [&t](absl::string_view name, const std::string& want) {
        const auto* h = t.Header(name);
        return h != nullptr && h->has_value() && **h == want;
      };
      auto it = t.value.has_value() ? index.find(*t.value) : index.end();
      if (it == index.end()) {
        ++c->mismatched;
        note(absl::StrCat("target[", p, "]@", t.offset,
                          ": not a window of the source: ", t.value.value_or("(null)")));
        continue;
      }
      if (!header_is(b::kHeaderOrigin, origin) || !header_is(b::kHeaderOriginTopic, origin_topic) ||
          !header_is(b::kHeaderOriginPartition, std::to_string(p)) ||
          t.Header(b::kHeaderPolicyVersion) == nullptr || t.Header(b::kHeaderResume) == nullptr) {
        ++c->mismatched;
        note(absl::StrCat("target[", p, "]@", t.offset, ": provenance headers missing"));
      }
      if (!seen.insert(it->second).second) {
        ++c->duplicated;
        note(absl::StrCat("window written twice: ", *t.value));
        continue;
      }
      if (any && it->second < last) {
        ++c->out_of_order;
        note(absl::StrCat("window out of order: ", *t.value));
      }
      last = std::max(last, it->second);
      any = true;
    }
  }
  for (size_t i = 0; i < expected.size(); ++i) {
    if (!seen.contains(i)) {
      ++c->lost;
      note(absl::StrCat("window missing in the target: ", expected[i]));
    }
  }
}

Comparison Compare(const TopicRecords& source, const TopicRecords& target,
                   const TopicRecords& deadletter, const std::string& origin,
                   const std::string& origin_topic,
                   const std::shared_ptr<const uop::policy::PolicySnapshot>& policy,
                   const std::string& peer) {
  const std::map<int32_t, std::set<int64_t>> dead = DeadLettered(deadletter);
  namespace b = uop::core;
  Comparison c;
  auto note = [&c](std::string what) {
    if (c.first_problem.empty()) c.first_problem = std::move(what);
  };
  const absl::Time now = absl::Now();
  const uop::policy::Share* share =
      policy != nullptr ? policy->FindShare(origin_topic, peer) : nullptr;
  for (const auto& [p, records] : source) {
    c.source += static_cast<int64_t>(records.size());
    if (share != nullptr && share->aggregate.has_value()) {
      auto it = target.find(p);
      CompareAggregates(p, records, it == target.end() ? nullptr : &it->second, policy, origin,
                        origin_topic, peer, now, &c, note);
      continue;
    }
    std::map<int64_t, Expected> expected;  // origin offset -> what should arrive
    std::unique_ptr<uop::policy::ShareTransform> transform;
    for (const auto& r : records) {
      if (r.Header(b::kHeaderOrigin) != nullptr) {
        ++c.loop_skipped;
        continue;
      }
      if (policy == nullptr) {
        expected[r.offset] = {r.key, r.value, r.timestamp_ms, r.headers};
        continue;
      }
      if (transform == nullptr) {
        auto t = uop::policy::ShareTransform::Resume(policy, origin_topic, peer, p,
                                                     uop::policy::EncodeOffsetToken(r.offset));
        if (!t.ok()) {
          note(std::string(t.status().message()));
          ++c.mismatched;
          break;
        }
        transform = *std::move(t);
      }
      const uop::policy::SourceRecord in = ToSourceRecord(p, r);
      uop::policy::TransformOutput out;
      const uop::policy::Decision d = transform->Apply(in, now, &out);
      if (d.verdict != uop::policy::Decision::Verdict::kKept || out.records.size() != 1) {
        ++c.withheld;
        ++c.withheld_by_reason[uop::policy::WithheldReasonName(d.reason)];
        continue;
      }
      uop::policy::OutputRecord& o = out.records[0];
      Expected e;
      if (r.key.has_value()) e.key = std::move(o.key);
      if (r.value.has_value()) e.value = std::move(o.value);
      e.timestamp_ms = o.timestamp_ms;
      for (auto& [k, v] : o.headers) e.headers.emplace_back(k, std::move(v));
      expected[r.offset] = std::move(e);
    }
    c.expected += static_cast<int64_t>(expected.size());
    auto it = target.find(p);
    std::set<int64_t> seen;
    int64_t last = -1;
    if (it != target.end()) {
      for (const auto& t : it->second) {
        ++c.target;
        const auto* off = t.Header(b::kHeaderOriginOffset);
        int64_t origin_offset = -1;
        if (off == nullptr || !off->has_value() || !absl::SimpleAtoi(**off, &origin_offset)) {
          ++c.mismatched;
          note(absl::StrCat("target[", p, "]@", t.offset, ": no uop.origin.offset header"));
          continue;
        }
        if (!seen.insert(origin_offset).second) {
          ++c.duplicated;
          note(absl::StrCat("origin offset ", p, "/", origin_offset, " written twice"));
          continue;
        }
        if (origin_offset < last) {
          ++c.out_of_order;
          note(absl::StrCat("origin offset ", p, "/", origin_offset, " after ", last));
        }
        last = std::max(last, origin_offset);
        auto src = expected.find(origin_offset);
        if (src == expected.end()) {
          ++c.mismatched;
          note(absl::StrCat("origin offset ", p, "/", origin_offset, " not in the source"));
          continue;
        }
        const Expected& s = src->second;
        const auto header_is = [&t](absl::string_view name, const std::string& want) {
          const auto* h = t.Header(name);
          return h != nullptr && h->has_value() && **h == want;
        };
        bool ok =
            s.key == t.key && s.value == t.value && s.timestamp_ms == t.timestamp_ms &&
            header_is(b::kHeaderOrigin, origin) && header_is(b::kHeaderOriginTopic, origin_topic) &&
            header_is(b::kHeaderOriginPartition, std::to_string(p)) &&
            header_is(b::kHeaderOriginTimestamp, std::to_string(s.timestamp_ms)) &&
            t.Header(b::kHeaderPolicyVersion) != nullptr && t.Header(b::kHeaderResume) != nullptr;
        // Every original header is kept, in order, before the provenance headers.
        if (ok && t.headers.size() < s.headers.size()) ok = false;
        for (size_t h = 0; ok && h < s.headers.size(); ++h) ok = t.headers[h] == s.headers[h];
        if (!ok) {
          ++c.mismatched;
          note(absl::StrCat("origin offset ", p, "/", origin_offset,
                            ": key, value, timestamp or headers differ"));
        }
      }
    }
    for (const auto& [offset, r] : expected) {
      const bool in_deadletter = dead.contains(p) && dead.at(p).contains(offset);
      if (in_deadletter && seen.contains(offset)) {
        ++c.duplicated;
        note(absl::StrCat("origin offset ", p, "/", offset, " in both mirror and dead-letter"));
      } else if (in_deadletter) {
        ++c.deadlettered;  // accounted for: it is in the dead-letter topic with its reason
      } else if (!seen.contains(offset)) {
        ++c.lost;
        note(absl::StrCat("origin offset ", p, "/", offset, " missing in the target"));
      }
    }
  }
  return c;
}

int CompareCommand(const std::string& source_bootstrap, const std::string& source_topic,
                   const std::string& target_bootstrap, const std::string& target_topic,
                   const std::string& origin, double wait_seconds, bool json,
                   const std::string& policy_dir, const std::string& peer) {
  std::shared_ptr<const uop::policy::PolicySnapshot> policy;
  if (!policy_dir.empty()) {
    auto loaded = uop::policy::PolicySnapshot::LoadDirectory(policy_dir, {peer});
    if (!loaded.ok()) {
      std::fprintf(stderr, "uopctl compare: %s\n", std::string(loaded.status().message()).c_str());
      return 2;
    }
    policy = *loaded;
  }
  auto partitions = uop::tools::TopicPartitions(source_bootstrap, source_topic);
  if (!partitions.ok()) {
    std::fprintf(stderr, "uopctl compare: %s\n",
                 std::string(partitions.status().message()).c_str());
    return 2;
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(wait_seconds);
  Comparison c;
  const absl::Time started = absl::Now();
  while (true) {
    auto source = uop::tools::ReadWholeTopic(source_bootstrap, source_topic, *partitions);
    auto target = uop::tools::ReadWholeTopic(target_bootstrap, target_topic, *partitions);
    // The dead-letter topic may not exist (nothing ever failed): then it holds nothing.
    auto deadletter =
        uop::tools::ReadWholeTopic(target_bootstrap, target_topic + ".deadletter", *partitions);
    if (!source.ok() || !target.ok()) {
      std::fprintf(
          stderr, "uopctl compare: %s\n",
          std::string((source.ok() ? target.status() : source.status()).message()).c_str());
      if (absl::Now() > deadline) return 2;
    } else {
      c = Compare(*source, *target, deadletter.ok() ? *deadletter : TopicRecords(), origin,
                  source_topic, policy, peer);
      const bool settled = c.lost == 0 || c.duplicated > 0 || c.mismatched > 0;
      if (settled || absl::Now() > deadline) break;
    }
    // Poll again: the mirror is still catching up.
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  const bool ok = c.lost == 0 && c.duplicated == 0 && c.out_of_order == 0 && c.mismatched == 0;
  std::string reasons;
  for (const auto& [reason, n] : c.withheld_by_reason) {
    absl::StrAppend(&reasons, reasons.empty() ? "" : ",", "\"", reason, "\":", n);
  }
  if (json) {
    std::printf(
        "{\"ok\":%s,\"source\":%lld,\"expected\":%lld,\"target\":%lld,\"lost\":%lld,"
        "\"duplicated\":%lld,\"out_of_order\":%lld,\"mismatched\":%lld,\"loop_skipped\":%lld,"
        "\"deadlettered\":%lld,\"withheld\":%lld,\"withheld_by_reason\":{%s},"
        "\"waited_seconds\":%.2f,\"first_problem\":\"%s\"}\n",
        ok ? "true" : "false", (long long)c.source, (long long)c.expected, (long long)c.target,
        (long long)c.lost, (long long)c.duplicated, (long long)c.out_of_order,
        (long long)c.mismatched, (long long)c.loop_skipped, (long long)c.deadlettered,
        (long long)c.withheld, reasons.c_str(), absl::ToDoubleSeconds(absl::Now() - started),
        uop::log::JsonEscape(c.first_problem).c_str());
  } else {
    std::printf(
        "%s -> %s: %lld records at the origin, %lld in the mirror, %lld dead-lettered: "
        "%lld lost, %lld duplicated, %lld out of order, %lld mismatched, %lld withheld by the "
        "policy%s%s\n",
        source_topic.c_str(), target_topic.c_str(), (long long)c.expected, (long long)c.target,
        (long long)c.deadlettered, (long long)c.lost, (long long)c.duplicated,
        (long long)c.out_of_order, (long long)c.mismatched, (long long)c.withheld,
        c.first_problem.empty() ? "" : "; first problem: ", c.first_problem.c_str());
  }
  return ok ? 0 : 1;
}

int Main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "audit") return uop::tools::AuditMain(argc - 1, argv + 1);
  if (argc > 1 && std::string(argv[1]) == "status") {
    return uop::tools::StatusMain(argc - 1, argv + 1);
  }
  if (argc > 2 && std::string(argv[1]) == "policy" &&
      (std::string(argv[2]) == "reload" || std::string(argv[2]) == "status")) {
    return uop::tools::PolicyNodeMain(argc - 2, argv + 2);  // a running node's policies
  }
  if (argc > 1 && std::string(argv[1]) == "policy") {
    return uop::tools::PolicyMain(argc - 1, argv + 1);  // lint, explain, diff, test
  }
  CLI::App app{"uopctl: command line for uop-federation"};
  app.require_subcommand(1);

  auto* dev = app.add_subcommand("dev-kafka", "Run a standalone mock Kafka cluster (librdkafka)");
  int brokers = 1;
  std::vector<std::string> topics;
  std::string bootstrap_file;
  dev->add_option("--brokers", brokers, "Broker count")->check(CLI::Range(1, 9));
  dev->add_option("--topic", topics, "Create a topic: name:partitions (repeatable)");
  dev->add_option("--bootstrap-file", bootstrap_file, "Also write the bootstrap address here");

  auto* sim = app.add_subcommand("simulate", "Produce SensorThings noise observations");
  std::string bootstrap, topic = "noise.observations", city = "helsinki";
  int64_t count = 1000;
  double rate = 0;
  uint64_t seed = 1;
  sim->add_option("--bootstrap", bootstrap, "Kafka bootstrap servers")->required();
  sim->add_option("--topic", topic, "Topic");
  sim->add_option("--city", city, "helsinki or tallinn (sites and coordinates)");
  sim->add_option("--count", count, "Records to produce");
  sim->add_option("--rate", rate, "Records per second (0: as fast as possible)");
  sim->add_option("--seed", seed, "Random seed");

  auto* cmp = app.add_subcommand("compare", "Compare an origin topic with its mirror");
  std::string source_bootstrap, source_topic, target_bootstrap, target_topic, origin;
  double wait_seconds = 0;
  bool json = false;
  cmp->add_option("--source-bootstrap", source_bootstrap)->required();
  cmp->add_option("--source-topic", source_topic)->required();
  cmp->add_option("--target-bootstrap", target_bootstrap)->required();
  cmp->add_option("--origin", origin, "Origin node name")->required();
  cmp->add_option("--target-topic", target_topic, "Default: <origin>.<source-topic>");
  cmp->add_option("--wait", wait_seconds, "Re-read until nothing is missing, up to this long");
  cmp->add_flag("--json", json, "One JSON object on stdout");
  std::string policy_dir, peer;
  cmp->add_option("--policy", policy_dir,
                  "The owner's policy directory: expect what its share makes of each record");
  cmp->add_option("--peer", peer, "With --policy: the receiving peer");

  CLI11_PARSE(app, argc, argv);
  if (*dev) return DevKafka(brokers, topics, bootstrap_file);
  if (*sim) return Simulate(bootstrap, topic, city, count, rate, seed);
  if (*cmp) {
    if (target_topic.empty()) target_topic = uop::core::MirrorTopicName(origin, source_topic);
    return CompareCommand(source_bootstrap, source_topic, target_bootstrap, target_topic, origin,
                          wait_seconds, json, policy_dir, peer);
  }
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  // A library exception (cpp-httplib, CLI11, std::bad_alloc) ends the command with its message
  // rather than std::terminate.
  try {
    return Main(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "uopctl: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "uopctl: unexpected error\n");
  }
  return 2;
}
