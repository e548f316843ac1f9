// Load for bench/sta_bench.py: the same simulated noise Observations, either produced straight
// to Kafka with plain librdkafka (the ceiling: records built once up front, as the bridge would
// build them), published QoS 1 to an MQTT broker, or sent to uop-sta-bridge as single HTTP
// POSTs on keep-alive connections or as CreateObservations requests. Prints
// {"mode":...,"observations":N,"seconds":S,"rate":R}.
#include <httplib.h>
#include <librdkafka/rdkafka.h>
#include <mosquitto.h>
#include <poll.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "connectors/noise_sim/noise_model.h"
#include "connectors/noise_sim/sites.h"
#include "connectors/sta/catalogue.h"
#include "connectors/sta/iso_time.h"
#include "connectors/sta/record.h"
#include "kafka/client.h"

namespace {

using uop::noise_sim::Site;

struct Obs {
  std::string datastream;
  std::string when;
  double result;
};

std::vector<Obs> MakeObservations(int64_t n) {
  const std::vector<Site> sites = uop::noise_sim::SitesFor("both");
  std::vector<uop::noise_sim::NoiseModel> models;
  for (const Site& s : sites) models.emplace_back(1, s);
  absl::Time start = absl::FromUnixSeconds(1796191200);  // 2026-12-02T06:00:00Z
  std::vector<Obs> out;
  out.reserve(n);
  for (int64_t i = 0; static_cast<int64_t>(out.size()) < n; ++i) {
    const absl::Time t = start + absl::Seconds(i);
    for (size_t s = 0; s < sites.size() && static_cast<int64_t>(out.size()) < n; ++s) {
      out.push_back({sites[s].datastream_id(), uop::sta::FormatInstant(t), models[s].LaeqAt(t)});
    }
  }
  return out;
}

std::string Payload(const Obs& o) {
  return absl::StrFormat(R"({"phenomenonTime":"%s","result":%.1f})", o.when, o.result);
}

// Plain librdkafka: idempotent producer, the bridge's records, as fast as it goes.
int Raw(const std::string& bootstrap, const std::string& topic, const std::vector<Obs>& obs,
        const std::vector<std::string>& properties) {
  auto cat = uop::sta::EntityCatalogue::FromJson(
      uop::noise_sim::CatalogueJson(uop::noise_sim::SitesFor("both")), "sim");
  if (!cat.ok()) return 1;
  uop::sta::ObservationParser parser;
  std::vector<uop::sta::Record> records;
  records.reserve(obs.size());
  for (const Obs& o : obs) {
    auto parsed = parser.Parse(Payload(o), uop::sta::EntityId{o.datastream, false});
    auto r = uop::sta::BuildRecord(*parsed, *cat, {"http://bench/v1.1", "bench", absl::Now()});
    if (!r.ok()) return 1;
    records.push_back(std::move(*r));
  }
  // A ceiling, so tuned for throughput: the same durability as the bridge (idempotent,
  // acks=all), batches that fill (linger 5 ms, up to 10 000 records / 1 MB per partition) and
  // a queue deep enough that the loop never waits for room.
  uop::kafka::Properties props = {{"bootstrap.servers", bootstrap},
                                  {"enable.idempotence", "true"},
                                  {"acks", "all"},
                                  {"linger.ms", "5"},
                                  {"batch.num.messages", "10000"},
                                  {"batch.size", "1000000"},
                                  {"queue.buffering.max.messages", "1000000"},
                                  {"queue.buffering.max.kbytes", "1048576"}};
  for (const std::string& kv : properties) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos) return 2;
    props[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  auto conf = uop::kafka::MakeConf(props);
  if (!conf.ok()) return 1;
  char err[512];
  uop::kafka::Handle p(rd_kafka_new(RD_KAFKA_PRODUCER, *conf, err, sizeof err));
  if (!p) return 1;
  // Warm up (metadata, producer id) outside the measurement, as the bridge is warmed up.
  rd_kafka_producev(p.get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_VALUE((void*)"w", 1),
                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
  rd_kafka_flush(p.get(), 30000);
  const absl::Time t0 = absl::Now();
  for (const auto& r : records) {
    while (true) {
      rd_kafka_headers_t* h = rd_kafka_headers_new(3);
      rd_kafka_header_add(h, "content-type", -1, "application/json", -1);
      rd_kafka_header_add(h, "sensorthings.entity", -1, "Observation", -1);
      rd_kafka_header_add(h, "sensorthings.selfLink", -1, r.self_link.data(),
                          static_cast<ssize_t>(r.self_link.size()));
      rd_kafka_resp_err_t e = rd_kafka_producev(
          p.get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_KEY(r.key.data(), r.key.size()),
          RD_KAFKA_V_VALUE(const_cast<char*>(r.value.data()), r.value.size()),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
      if (e == RD_KAFKA_RESP_ERR_NO_ERROR) break;
      rd_kafka_headers_destroy(h);
      if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) return 1;
      rd_kafka_poll(p.get(), 1);
    }
    rd_kafka_poll(p.get(), 0);
  }
  rd_kafka_flush(p.get(), 120000);
  const double secs = absl::ToDoubleSeconds(absl::Now() - t0);
  std::printf("{\"mode\":\"raw\",\"observations\":%zu,\"seconds\":%.3f,\"rate\":%.0f}\n",
              records.size(), secs, records.size() / secs);
  return rd_kafka_outq_len(p.get()) == 0 ? 0 : 1;
}

// QoS 1 publishes, payloads made up front, at most `max_unacked` unacknowledged by the broker.
// The socket loop is driven here (no libmosquitto thread): uop-noise-sim's threaded loop wakes
// its network thread once per publish and, on the load core, capped the MQTT row at ~10 000/s.
int Mqtt(const std::string& broker, const std::vector<Obs>& obs, int max_unacked) {
  const size_t colon = broker.rfind(':');
  if (colon == std::string::npos) return 2;
  const std::string host = broker.substr(0, colon);
  const int port = std::stoi(broker.substr(colon + 1));
  std::vector<std::string> topics, payloads;
  for (const Obs& o : obs) {
    topics.push_back(absl::StrCat("v1.1/Datastreams('", o.datastream, "')/Observations"));
    payloads.push_back(Payload(o));
  }
  struct State {
    int64_t acked = 0;
    bool connected = false;
  } state;
  mosquitto_lib_init();
  mosquitto* m = mosquitto_new(absl::StrCat("sta-load-", getpid()).c_str(), true, &state);
  if (m == nullptr) return 1;
  mosquitto_threaded_set(m, true);  // queue packets; written by loop_write below
  mosquitto_max_inflight_messages_set(m, 0);
  mosquitto_connect_callback_set(
      m, +[](mosquitto*, void* s, int rc) { static_cast<State*>(s)->connected = rc == 0; });
  mosquitto_publish_callback_set(
      m, +[](mosquitto*, void* s, int) { ++static_cast<State*>(s)->acked; });
  if (mosquitto_connect(m, host.c_str(), port, 60) != MOSQ_ERR_SUCCESS) return 1;
  // The harness starts its clock here, after the payloads are made.
  std::fprintf(stderr, "ready\n");
  std::fflush(stderr);
  const int64_t n = static_cast<int64_t>(obs.size());
  int64_t sent = 0;
  absl::Time t0;
  const absl::Time deadline = absl::Now() + absl::Minutes(10);
  while (state.acked < n && absl::Now() < deadline) {
    if (state.connected) {
      if (sent == 0) t0 = absl::Now();
      while (sent < n && sent - state.acked < max_unacked) {
        if (mosquitto_publish(m, nullptr, topics[sent].c_str(),
                              static_cast<int>(payloads[sent].size()), payloads[sent].data(), 1,
                              false) != MOSQ_ERR_SUCCESS) {
          return 1;
        }
        ++sent;
      }
    }
    if (mosquitto_want_write(m) && mosquitto_loop_write(m, 1) != MOSQ_ERR_SUCCESS) return 1;
    pollfd p{mosquitto_socket(m),
             static_cast<short>(POLLIN | (mosquitto_want_write(m) ? POLLOUT : 0)), 0};
    if (::poll(&p, 1, 100) > 0 && (p.revents & POLLIN)) {
      do {
        if (mosquitto_loop_read(m, 1) != MOSQ_ERR_SUCCESS) return 1;
        p.revents = 0;
      } while (::poll(&p, 1, 0) > 0 && (p.revents & POLLIN));
    }
    if (mosquitto_loop_misc(m) != MOSQ_ERR_SUCCESS) return 1;
  }
  const double secs = absl::ToDoubleSeconds(absl::Now() - t0);
  std::printf("{\"mode\":\"mqtt\",\"observations\":%lld,\"seconds\":%.3f,\"rate\":%.0f}\n",
              static_cast<long long>(n), secs, n / secs);
  mosquitto_disconnect(m);
  mosquitto_loop_write(m, 1);
  mosquitto_destroy(m);
  return state.acked == n ? 0 : 1;
}

int Http(const std::string& url, const std::vector<Obs>& obs, int connections, int bulk) {
  const size_t slash = url.find('/', 7);
  const std::string origin = url.substr(0, slash), path = url.substr(slash);
  std::atomic<int64_t> next{0}, failed{0}, unavailable{0};
  const int64_t n = static_cast<int64_t>(obs.size());
  const int64_t step = bulk > 1 ? bulk : 1;
  const absl::Time t0 = absl::Now();
  std::vector<std::thread> threads;
  for (int c = 0; c < connections; ++c) {
    threads.emplace_back([&] {
      httplib::Client client(origin);
      client.set_keep_alive(true);
      client.set_tcp_nodelay(true);
      client.set_read_timeout(60, 0);
      while (true) {
        const int64_t i = next.fetch_add(step);
        if (i >= n) return;
        std::string req_path, body;
        if (bulk <= 1) {
          const Obs& o = obs[i];
          req_path = absl::StrCat(path, "/Datastreams('", o.datastream, "')/Observations");
          body = Payload(o);
        } else {
          // One group per request row range; rows of one Datastream grouped as senders do.
          std::map<std::string, std::string> groups;
          for (int64_t j = i; j < std::min(n, i + step); ++j) {
            std::string& g = groups[obs[j].datastream];
            absl::StrAppend(&g, g.empty() ? "" : ",", "[\"", obs[j].when, "\",",
                            absl::StrFormat("%.1f", obs[j].result), "]");
          }
          body = "[";
          for (const auto& [ds, rows] : groups) {
            absl::StrAppend(&body, body.size() > 1 ? "," : "", "{\"Datastream\":{\"@iot.id\":\"",
                            ds, "\"},\"components\":[\"phenomenonTime\",\"result\"],",
                            "\"dataArray\":[", rows, "]}");
          }
          body += "]";
          req_path = absl::StrCat(path, "/CreateObservations");
        }
        auto res = client.Post(req_path.c_str(), body, "application/json");
        if (res && res->status == 503) unavailable.fetch_add(1);
        if (!res || res->status != 201 ||
            (bulk > 1 && res->body.find("error") != std::string::npos)) {
          failed.fetch_add(1);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  const double secs = absl::ToDoubleSeconds(absl::Now() - t0);
  std::printf(
      "{\"mode\":\"%s\",\"observations\":%lld,\"seconds\":%.3f,\"rate\":%.0f,"
      "\"failed_requests\":%lld,\"of_which_503\":%lld}\n",
      bulk > 1 ? "bulk" : "http", static_cast<long long>(n), secs, n / secs,
      static_cast<long long>(failed.load()), static_cast<long long>(unavailable.load()));
  return failed.load() == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"SensorThings ingestion load (bench/sta_bench.py)"};
  std::string mode = "raw", bootstrap, topic = "noise.observations", url;
  int64_t count = 100000;
  int connections = 8, bulk = 1000;
  std::vector<std::string> properties;
  std::string mqtt_broker;
  int max_unacked = 5000;
  app.add_option("--mode", mode)->check(CLI::IsMember({"raw", "mqtt", "http", "bulk"}));
  app.add_option("--mqtt", mqtt_broker, "mqtt: the broker, host:port");
  app.add_option("--max-unacked", max_unacked, "mqtt: publishes in flight at most");
  app.add_option("--bootstrap", bootstrap);
  app.add_option("--topic", topic);
  app.add_option("--url", url, "The bridge's base URL, http://127.0.0.1:PORT/v1.1");
  app.add_option("--count", count);
  app.add_option("--connections", connections);
  app.add_option("--bulk", bulk, "rows per CreateObservations request");
  app.add_option("--property", properties, "raw: a producer property key=value (repeatable)");
  CLI11_PARSE(app, argc, argv);
  const std::vector<Obs> obs = MakeObservations(count);
  if (mode == "raw") return Raw(bootstrap, topic, obs, properties);
  if (mode == "mqtt") return Mqtt(mqtt_broker, obs, max_unacked);
  return Http(url, obs, connections, mode == "bulk" ? bulk : 1);
}
