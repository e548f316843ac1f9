// uop-sta-bridge's YAML config; every error names file:line:column and the key.
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "connectors/bridge/http_api.h"
#include "connectors/bridge/ingestor.h"
#include "connectors/bridge/kafka_sink.h"
#include "connectors/bridge/mqtt_source.h"

namespace uop::sta_bridge {

struct BridgeConfig {
  std::string node = "uop-sta-bridge";
  KafkaSinkOptions kafka;
  int partitions = 6;  // of the topics created in embedded Kafka
  IngestOptions ingest;
  std::string catalogue_file;  // exactly one of file and url
  std::string catalogue_url;
  std::optional<MqttOptions> mqtt;
  std::optional<HttpOptions> http;
  std::string ready_file;  // written once serving: {"http_port":..,"kafka_bootstrap":..}
};

absl::StatusOr<BridgeConfig> ParseBridgeConfig(const std::string& text, const std::string& path);
absl::StatusOr<BridgeConfig> LoadBridgeConfig(const std::string& path);

}  // namespace uop::sta_bridge
