// uop-sta-bridge: SensorThings API Observations over MQTT and HTTP into a city's Kafka.
// main() only wires the parts; see connectors/bridge/*.h.
#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "connectors/bridge/bridge_config.h"
#include "connectors/bridge/http_api.h"
#include "connectors/bridge/kafka_sink.h"
#include "connectors/bridge/mqtt_source.h"
#include "connectors/sta/json_text.h"
#include "core/log.h"

namespace {

using namespace uop::sta_bridge;  // NOLINT: main wiring only

int Fail(const absl::Status& s) {
  uop::log::Error("bridge_failed", {{"error", std::string(s.message())}});
  std::fprintf(stderr, "uop-sta-bridge: %s\n", std::string(s.message()).c_str());
  return 2;
}

absl::Status WriteReadyFile(const std::string& path, int http_port, const std::string& bootstrap) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << "{\"http_port\":" << http_port
        << ",\"kafka_bootstrap\":" << uop::sta::JsonString(bootstrap) << "}\n";
    if (!out) return absl::InternalError(absl::StrCat(tmp, ": cannot write"));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return absl::InternalError(absl::StrCat(path, ": ", ec.message()));
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--config" && i + 1 < argc) {
      config_path = argv[++i];
    } else {
      std::fprintf(stderr, "usage: uop-sta-bridge --config bridge.yaml\n");
      return 2;
    }
  }
  if (config_path.empty()) {
    std::fprintf(stderr, "usage: uop-sta-bridge --config bridge.yaml\n");
    return 2;
  }
  // Signals are taken by one thread with sigwait; block them everywhere else.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto config = LoadBridgeConfig(config_path);
  if (!config.ok()) return Fail(config.status());
  auto catalogue = config->catalogue_file.empty()
                       ? uop::sta::FetchCatalogue(config->catalogue_url, 10000)
                       : uop::sta::EntityCatalogue::LoadFile(config->catalogue_file);
  if (!catalogue.ok()) return Fail(catalogue.status());
  uop::log::Info("catalogue_loaded",
                 {{"datastreams", std::to_string(catalogue->datastream_count())},
                  {"features_of_interest", std::to_string(catalogue->feature_count())}});
  auto sink = KafkaSink::Create(config->kafka);
  if (!sink.ok()) return Fail(sink.status());
  BridgeMetrics metrics;
  Ingestor ingestor(std::make_shared<const uop::sta::EntityCatalogue>(std::move(*catalogue)),
                    config->ingest, &metrics);

  std::unique_ptr<HttpApi> http;
  int http_port = 0;
  if (config->http) {
    http = std::make_unique<HttpApi>(*config->http, &ingestor, sink->get());
    auto port = http->Start();
    if (!port.ok()) return Fail(port.status());
    http_port = *port;
    if (config->ingest.base_url.empty()) {
      ingestor.set_base_url(absl::StrCat("http://", config->http->host, ":", http_port, "/v1.1"));
    }
  } else if (config->ingest.base_url.empty()) {
    ingestor.set_base_url("http://localhost/v1.1");
  }
  std::unique_ptr<MqttSource> mqtt;
  if (config->mqtt) mqtt = std::make_unique<MqttSource>(*config->mqtt, &ingestor, sink->get());

  absl::Notification stopping;
  std::thread signal_thread([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    uop::log::Info("bridge_stopping", {{"signal", std::to_string(sig)}});
    stopping.Notify();
    if (mqtt) mqtt->Stop();
  });
  signal_thread.detach();

  uop::log::Info("bridge_started", {{"node", config->node},
                                    {"http_port", std::to_string(http_port)},
                                    {"kafka_bootstrap", (*sink)->bootstrap()},
                                    {"topic", config->ingest.topic}});
  if (!config->ready_file.empty()) {
    if (absl::Status s = WriteReadyFile(config->ready_file, http_port, (*sink)->bootstrap());
        !s.ok()) {
      return Fail(s);
    }
  }
  if (mqtt) {
    if (absl::Status s = mqtt->Run(); !s.ok()) return Fail(s);
  }
  stopping.WaitForNotification();
  if (http) http->Stop();
  if (absl::Status s = (*sink)->Flush(10000); !s.ok()) {
    uop::log::Error("kafka_flush_failed", {{"error", std::string(s.message())}});
    return 1;
  }
  uop::log::Info("bridge_stopped", {});
  return 0;
}
