// Which Kafka a process talks to: an in-process mock cluster or real bootstrap servers, plus the
// librdkafka properties every client gets. Plain data, shared by uopd, uopctl, bench and
// connectors.
#pragma once

#include <map>
#include <optional>
#include <string>

namespace uop::kafka {

struct EmbeddedConfig {
  int brokers = 1;
  std::map<std::string, int> topics;  // created at start: name -> partition count
};

struct ClusterConfig {
  std::optional<EmbeddedConfig> embedded;         // set: in-process mock cluster
  std::string bootstrap;                          // set: a real cluster
  std::map<std::string, std::string> properties;  // passed to every librdkafka client
};

}  // namespace uop::kafka
