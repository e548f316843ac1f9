// uop-noise-sim: SensorThings noise sensors at real Helsinki and Tallinn sites, publishing
// LAeq,1min Observations over MQTT or HTTP, and writing the entity catalogue the bridge loads.
#include <signal.h>
#include <CLI/CLI.hpp>

#include <atomic>
#include <cstdio>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "connectors/noise_sim/noise_model.h"
#include "connectors/noise_sim/publisher.h"
#include "connectors/noise_sim/sites.h"
#include "connectors/sta/iso_time.h"

namespace {

std::atomic<bool> g_stop{false};

int Fail(const std::string& what) {
  std::fprintf(stderr, "uop-noise-sim: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace uop::noise_sim;  // NOLINT: main wiring only
  CLI::App app{"Noise sensors at Helsinki and Tallinn sites, as SensorThings Observations"};
  std::string city = "both", catalogue_out, start_text, mqtt, http, client_id = "uop-noise-sim";
  uint64_t seed = 1;
  int64_t count = 0;
  int step_s = 60, bulk = 1, qos = 1, max_unacked = 1000;
  double speed = 1.0;
  bool to_stdout = false;
  app.add_option("--city", city, "helsinki, tallinn or both")
      ->check(CLI::IsMember({"helsinki", "tallinn", "both"}));
  app.add_option("--catalogue-out", catalogue_out, "Write the STA entity catalogue here");
  app.add_option("--seed", seed, "Random seed (same seed, start and count: same values)");
  app.add_option("--start", start_text, "Simulated start, ISO 8601 (default: now, to the minute)");
  app.add_option("--step-s", step_s, "Simulated seconds between a sensor's observations")
      ->check(CLI::Range(1, 86400));
  app.add_option("--count", count, "Observations per sensor (0: until SIGTERM)");
  app.add_option("--speed", speed,
                 "Simulated seconds per real second (1: real time; 0: as fast as possible)");
  app.add_option("--mqtt", mqtt, "Publish to this MQTT broker, host:port (QoS --qos)");
  app.add_option("--client-id", client_id, "MQTT client id");
  app.add_option("--qos", qos, "MQTT QoS")->check(CLI::Range(0, 1));
  app.add_option("--max-unacked", max_unacked, "MQTT messages in flight at most");
  app.add_option("--http", http, "POST to this STA base URL, e.g. http://127.0.0.1:8080/v1.1");
  app.add_option("--bulk", bulk, "HTTP: rows per CreateObservations request (1: single POSTs)");
  app.add_flag("--stdout", to_stdout, "Print '<datastream> <observation>' lines");
  CLI11_PARSE(app, argc, argv);

  const std::vector<Site> sites = SitesFor(city);
  if (!catalogue_out.empty()) {
    std::ofstream out(catalogue_out);
    out << CatalogueJson(sites);
    if (!out) return Fail(absl::StrCat(catalogue_out, ": cannot write"));
  }
  int targets = (mqtt.empty() ? 0 : 1) + (http.empty() ? 0 : 1) + (to_stdout ? 1 : 0);
  if (targets == 0)
    return catalogue_out.empty()
               ? Fail("nothing to do: --mqtt, --http, --stdout or --catalogue-out")
               : 0;
  if (targets > 1) return Fail("choose one of --mqtt, --http, --stdout");

  absl::Time start = absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()) / 60 * 60);
  if (!start_text.empty()) {
    auto t = uop::sta::ParseIsoTime(start_text, false);
    if (!t.ok()) return Fail(absl::StrCat("--start: ", t.status().message()));
    start = t->start;
  }
  std::unique_ptr<Publisher> publisher;
  if (!mqtt.empty()) {
    MqttPublisherOptions o;
    const size_t colon = mqtt.rfind(':');
    if (colon == std::string::npos) return Fail("--mqtt: expected host:port");
    o.host = mqtt.substr(0, colon);
    o.port = std::atoi(mqtt.c_str() + colon + 1);
    o.client_id = client_id;
    o.qos = qos;
    o.max_unacked = max_unacked;
    auto p = NewMqttPublisher(o);
    if (!p.ok()) return Fail(std::string(p.status().message()));
    publisher = std::move(*p);
  } else if (!http.empty()) {
    auto p = NewHttpPublisher(http, bulk);
    if (!p.ok()) return Fail(std::string(p.status().message()));
    publisher = std::move(*p);
  } else {
    publisher = NewStdoutPublisher();
  }
  signal(
      SIGTERM, +[](int) { g_stop.store(true); });
  signal(
      SIGINT, +[](int) { g_stop.store(true); });

  std::vector<NoiseModel> models;
  for (const Site& s : sites) models.emplace_back(seed, s);
  const absl::Time wall_start = absl::Now();
  int64_t published = 0;
  for (int64_t step = 0; (count == 0 || step < count) && !g_stop.load(); ++step) {
    const absl::Time t = start + absl::Seconds(step * step_s);
    if (speed > 0) {
      const absl::Time due = wall_start + absl::Seconds(step * step_s / speed);
      while (!g_stop.load() && absl::Now() < due) {
        absl::SleepFor(std::min(absl::Milliseconds(100), due - absl::Now()));  // pacing, not sync
      }
      if (g_stop.load()) break;
    }
    const std::string when = uop::sta::FormatInstant(t);
    for (size_t i = 0; i < sites.size(); ++i) {
      Observation obs;
      obs.datastream_id = sites[i].datastream_id();
      obs.phenomenon_time = when;
      obs.result = models[i].LaeqAt(t);
      obs.payload = absl::StrFormat(
          R"({"phenomenonTime":"%s","resultTime":"%s","result":%.1f,"parameters":{"seq":%d}})",
          when, when, obs.result, step);
      if (absl::Status s = publisher->Publish(obs); !s.ok()) {
        return Fail(std::string(s.message()));
      }
      ++published;
    }
  }
  if (absl::Status s = publisher->Finish(); !s.ok()) return Fail(std::string(s.message()));
  std::FILE* summary = to_stdout ? stderr : stdout;
  std::fprintf(summary, "{\"published\":%lld,\"sensors\":%zu,\"seconds\":%.3f}\n",
               static_cast<long long>(published), sites.size(),
               absl::ToDoubleSeconds(absl::Now() - wall_start));
  return 0;
}
