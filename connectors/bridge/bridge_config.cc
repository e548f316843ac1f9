// YAML parsing for the bridge (yaml-cpp exceptions become Status here, once).
#include "connectors/bridge/bridge_config.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"
#include "yaml-cpp/yaml.h"

namespace uop::sta_bridge {
namespace {

class Parser {
 public:
  explicit Parser(std::string path) : path_(std::move(path)) {}

  absl::Status Error(const YAML::Node& node, absl::string_view key, absl::string_view what) const {
    const YAML::Mark mark = node.Mark();
    if (mark.is_null()) {
      return absl::InvalidArgumentError(absl::StrCat(path_, ": key '", key, "': ", what));
    }
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ":", mark.line + 1, ":", mark.column + 1, ": key '", key, "': ", what));
  }

  static std::string Full(absl::string_view where, absl::string_view key) {
    return where.empty() ? std::string(key) : absl::StrCat(where, ".", key);
  }

  absl::Status CheckMap(const YAML::Node& node, absl::string_view where) const {
    if (!node.IsMap()) return Error(node, where, "expected a mapping");
    return absl::OkStatus();
  }

  absl::Status CheckKeys(const YAML::Node& map, absl::string_view where,
                         const std::set<std::string>& allowed) const {
    for (const auto& kv : map) {
      const std::string key = kv.first.Scalar();
      if (!allowed.contains(key)) {
        return Error(kv.first, Full(where, key),
                     absl::StrCat("unknown key; expected one of: ", absl::StrJoin(allowed, ", ")));
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> String(const YAML::Node& map, const std::string& key,
                                     absl::string_view where, const std::string& fallback) const {
    const YAML::Node v = map[key];
    if (!v.IsDefined() || v.IsNull()) return fallback;
    if (!v.IsScalar()) return Error(v, Full(where, key), "expected a string");
    if (v.Scalar().empty()) return Error(v, Full(where, key), "must not be empty");
    return v.Scalar();
  }

  absl::StatusOr<int64_t> Integer(const YAML::Node& map, const std::string& key,
                                  absl::string_view where, int64_t fallback, int64_t min,
                                  int64_t max) const {
    const YAML::Node v = map[key];
    if (!v.IsDefined() || v.IsNull()) return fallback;
    int64_t n = 0;
    if (!v.IsScalar() || !absl::SimpleAtoi(v.Scalar(), &n)) {
      return Error(v, Full(where, key), "expected an integer");
    }
    if (n < min || n > max) {
      return Error(v, Full(where, key), absl::StrCat("must be between ", min, " and ", max));
    }
    return n;
  }

  absl::StatusOr<std::pair<std::string, int>> HostPort(const YAML::Node& map,
                                                       const std::string& key,
                                                       absl::string_view where) const {
    ASSIGN_OR_RETURN(std::string value, String(map, key, where, ""));
    const size_t colon = value.rfind(':');
    int port = -1;
    if (colon == std::string::npos || colon == 0 ||
        !absl::SimpleAtoi(value.substr(colon + 1), &port) || port < 0 || port > 65535) {
      return Error(map[key], Full(where, key), "expected host:port (port 0 = any free port)");
    }
    return std::make_pair(value.substr(0, colon), port);
  }

  std::string Resolve(const std::string& file) const {
    if (file.empty() || std::filesystem::path(file).is_absolute()) return file;
    return (std::filesystem::path(path_).parent_path() / file).string();
  }

  absl::StatusOr<BridgeConfig> Parse(const YAML::Node& root) const {
    BridgeConfig c;
    if (!root.IsDefined() || root.IsNull()) return Error(root, "(top)", "empty config");
    RETURN_IF_ERROR(CheckMap(root, "(top)"));
    RETURN_IF_ERROR(
        CheckKeys(root, "", {"node", "kafka", "catalogue", "mqtt", "http", "ready_file"}));
    ASSIGN_OR_RETURN(c.node, String(root, "node", "", c.node));
    ASSIGN_OR_RETURN(c.ready_file, String(root, "ready_file", "", ""));
    c.ready_file = Resolve(c.ready_file);

    const YAML::Node kafka = root["kafka"];
    if (!kafka.IsDefined()) return Error(root, "kafka", "missing (required)");
    RETURN_IF_ERROR(CheckMap(kafka, "kafka"));
    RETURN_IF_ERROR(CheckKeys(kafka, "kafka",
                              {"bootstrap", "embedded_brokers", "topic", "dead_letter_topic",
                               "partitions", "properties", "max_in_flight"}));
    ASSIGN_OR_RETURN(std::string bootstrap, String(kafka, "bootstrap", "kafka", ""));
    if (bootstrap.empty())
      return Error(kafka, "kafka.bootstrap", "missing (host:port or embedded)");
    ASSIGN_OR_RETURN(int64_t brokers, Integer(kafka, "embedded_brokers", "kafka", 1, 1, 9));
    if (bootstrap == "embedded") {
      c.kafka.cluster.embedded = kafka::EmbeddedConfig{static_cast<int>(brokers), {}};
    } else {
      c.kafka.cluster.bootstrap = bootstrap;
    }
    ASSIGN_OR_RETURN(int64_t partitions, Integer(kafka, "partitions", "kafka", 6, 1, 1000));
    c.partitions = static_cast<int>(partitions);
    ASSIGN_OR_RETURN(c.ingest.topic, String(kafka, "topic", "kafka", c.ingest.topic));
    ASSIGN_OR_RETURN(c.ingest.dead_letter_topic,
                     String(kafka, "dead_letter_topic", "kafka", c.ingest.topic + ".deadletter"));
    ASSIGN_OR_RETURN(int64_t mif, Integer(kafka, "max_in_flight", "kafka", 100000, 1, 10000000));
    c.kafka.max_in_flight = static_cast<int>(mif);
    if (const YAML::Node props = kafka["properties"]; props.IsDefined()) {
      RETURN_IF_ERROR(CheckMap(props, "kafka.properties"));
      for (const auto& kv : props) {
        if (!kv.second.IsScalar()) {
          return Error(kv.second, absl::StrCat("kafka.properties.", kv.first.Scalar()),
                       "expected a string");
        }
        c.kafka.cluster.properties[kv.first.Scalar()] = kv.second.Scalar();
      }
    }
    if (c.kafka.cluster.embedded) {
      c.kafka.cluster.embedded->topics = {{c.ingest.topic, c.partitions},
                                          {c.ingest.dead_letter_topic, c.partitions}};
    }

    const YAML::Node cat = root["catalogue"];
    if (!cat.IsDefined()) return Error(root, "catalogue", "missing (required: file or url)");
    RETURN_IF_ERROR(CheckMap(cat, "catalogue"));
    RETURN_IF_ERROR(CheckKeys(cat, "catalogue", {"file", "url"}));
    ASSIGN_OR_RETURN(c.catalogue_file, String(cat, "file", "catalogue", ""));
    ASSIGN_OR_RETURN(c.catalogue_url, String(cat, "url", "catalogue", ""));
    if (c.catalogue_file.empty() == c.catalogue_url.empty()) {
      return Error(cat, "catalogue", "give exactly one of file and url");
    }
    c.catalogue_file = Resolve(c.catalogue_file);

    if (const YAML::Node m = root["mqtt"]; m.IsDefined() && !m.IsNull()) {
      RETURN_IF_ERROR(CheckMap(m, "mqtt"));
      RETURN_IF_ERROR(CheckKeys(m, "mqtt",
                                {"broker", "client_id", "topics", "keepalive_s", "session_expiry_s",
                                 "max_batch", "batch_linger_ms"}));
      MqttOptions o;
      ASSIGN_OR_RETURN(auto hp, HostPort(m, "broker", "mqtt"));
      if (hp.first.empty()) return Error(m, "mqtt.broker", "missing (required)");
      o.host = hp.first;
      o.port = hp.second;
      ASSIGN_OR_RETURN(o.client_id, String(m, "client_id", "mqtt", c.node));
      if (const YAML::Node t = m["topics"]; t.IsDefined()) {
        if (!t.IsSequence() || t.size() == 0) {
          return Error(t, "mqtt.topics", "expected a non-empty list of topic filters");
        }
        o.topics.clear();
        for (const YAML::Node& e : t) {
          if (!e.IsScalar()) return Error(e, "mqtt.topics", "expected a string");
          o.topics.push_back(e.Scalar());
        }
      }
      ASSIGN_OR_RETURN(int64_t ka, Integer(m, "keepalive_s", "mqtt", 30, 5, 65535));
      o.keepalive_s = static_cast<int>(ka);
      ASSIGN_OR_RETURN(o.session_expiry_s,
                       Integer(m, "session_expiry_s", "mqtt", o.session_expiry_s, 1, 4294967295));
      ASSIGN_OR_RETURN(int64_t mb, Integer(m, "max_batch", "mqtt", 10000, 1, 65535));
      o.max_batch = static_cast<int>(mb);
      ASSIGN_OR_RETURN(int64_t bl, Integer(m, "batch_linger_ms", "mqtt", 20, 0, 1000));
      o.batch_linger_ms = static_cast<int>(bl);
      c.mqtt = o;
    }
    if (const YAML::Node h = root["http"]; h.IsDefined() && !h.IsNull()) {
      RETURN_IF_ERROR(CheckMap(h, "http"));
      RETURN_IF_ERROR(CheckKeys(h, "http",
                                {"listen", "base_url", "threads", "max_in_flight",
                                 "delivery_timeout_ms", "retry_after_s"}));
      HttpOptions o;
      ASSIGN_OR_RETURN(auto hp, HostPort(h, "listen", "http"));
      if (hp.first.empty()) return Error(h, "http.listen", "missing (required)");
      o.host = hp.first;
      o.port = hp.second;
      ASSIGN_OR_RETURN(int64_t th, Integer(h, "threads", "http", 8, 1, 256));
      o.threads = static_cast<int>(th);
      ASSIGN_OR_RETURN(int64_t mif2, Integer(h, "max_in_flight", "http", 50000, 1, 10000000));
      o.max_in_flight = static_cast<int>(mif2);
      ASSIGN_OR_RETURN(int64_t dt, Integer(h, "delivery_timeout_ms", "http", 5000, 10, 600000));
      o.delivery_timeout_ms = static_cast<int>(dt);
      ASSIGN_OR_RETURN(int64_t ra, Integer(h, "retry_after_s", "http", 1, 1, 3600));
      o.retry_after_s = static_cast<int>(ra);
      ASSIGN_OR_RETURN(c.ingest.base_url, String(h, "base_url", "http", ""));
      c.http = o;
    }
    if (!c.mqtt && !c.http) return Error(root, "(top)", "configure mqtt, http or both");
    return c;
  }

 private:
  std::string path_;
};

}  // namespace

absl::StatusOr<BridgeConfig> ParseBridgeConfig(const std::string& text, const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ":", e.mark.line + 1, ":", e.mark.column + 1, ": ", e.msg));
  }
  return Parser(path).Parse(root);
}

absl::StatusOr<BridgeConfig> LoadBridgeConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream buf;
  buf << in.rdbuf();
  return ParseBridgeConfig(buf.str(), path);
}

}  // namespace uop::sta_bridge
