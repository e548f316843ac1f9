// YAML node config parsing: every error names the file, line, column and key.
#include "broker/config.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "audit/keys.h"
#include "yaml-cpp/yaml.h"

namespace uop::broker {
namespace {

class Parser {
 public:
  explicit Parser(std::string path) : path_(std::move(path)) {
    base_dir_ = std::filesystem::path(path_).parent_path();
  }

  absl::Status Error(const YAML::Node& node, absl::string_view key, absl::string_view what) const {
    const YAML::Mark mark = node.Mark();
    if (mark.is_null()) {
      return absl::InvalidArgumentError(absl::StrCat(path_, ": key '", key, "': ", what));
    }
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ":", mark.line + 1, ":", mark.column + 1, ": key '", key, "': ", what));
  }

  // Rejects keys we do not know, so a typo is an error rather than a silently ignored setting.
  absl::Status CheckKeys(const YAML::Node& map, absl::string_view where,
                         const std::set<std::string>& allowed) const {
    for (const auto& kv : map) {
      const std::string key = kv.first.Scalar();
      if (!allowed.contains(key)) {
        return Error(kv.first, where.empty() ? key : absl::StrCat(where, ".", key),
                     absl::StrCat("unknown key; expected one of: ", absl::StrJoin(allowed, ", ")));
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> String(const YAML::Node& map, const std::string& key,
                                     absl::string_view where, bool required) const {
    const YAML::Node value = map[key];
    const std::string full = where.empty() ? key : absl::StrCat(where, ".", key);
    if (!value.IsDefined() || value.IsNull()) {
      if (required) return Error(map, full, "missing (required)");
      return std::string();
    }
    if (!value.IsScalar()) return Error(value, full, "expected a string");
    if (value.Scalar().empty() && required) return Error(value, full, "must not be empty");
    return value.Scalar();
  }

  absl::StatusOr<int64_t> Integer(const YAML::Node& map, const std::string& key,
                                  absl::string_view where, int64_t fallback, int64_t min,
                                  int64_t max) const {
    const YAML::Node value = map[key];
    const std::string full = where.empty() ? key : absl::StrCat(where, ".", key);
    if (!value.IsDefined() || value.IsNull()) return fallback;
    int64_t parsed = 0;
    if (!value.IsScalar() || !absl::SimpleAtoi(value.Scalar(), &parsed)) {
      return Error(value, full, "expected an integer");
    }
    if (parsed < min || parsed > max) {
      return Error(value, full, absl::StrCat("must be between ", min, " and ", max));
    }
    return parsed;
  }

  absl::Status HostPort(const YAML::Node& map, const std::string& key, absl::string_view where,
                        const std::string& value) const {
    const size_t colon = value.rfind(':');
    int port = 0;
    if (colon == std::string::npos || colon == 0 ||
        !absl::SimpleAtoi(value.substr(colon + 1), &port) || port < 0 || port > 65535) {
      return Error(map[key], where.empty() ? key : absl::StrCat(where, ".", key),
                   absl::StrCat("expected host:port, got '", value, "'"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> File(const YAML::Node& map, const std::string& key,
                                   absl::string_view where) const {
    auto value = String(map, key, where, /*required=*/true);
    if (!value.ok()) return value.status();
    std::filesystem::path p(*value);
    if (p.is_relative()) p = base_dir_ / p;
    std::error_code ec;
    if (!std::filesystem::exists(p, ec)) {
      return Error(map[key], absl::StrCat(where, ".", key),
                   absl::StrCat("file not found: ", p.string()));
    }
    return p.lexically_normal().string();
  }

  absl::StatusOr<NodeConfig> Parse(const YAML::Node& root) const;

 private:
  std::string path_;
  std::filesystem::path base_dir_;
};

// The host name and the listen port: distinct for nodes on one host and across hosts, and
// stable across restarts where host names are (set `instance` where they are not). A listen
// port of 0 (any free port) says nothing about the node, so the absolute path of its
// configuration file stands in for it: stable across restarts, distinct per node file.
std::string DefaultInstance(const std::string& listen, const std::string& config_path) {
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') {
    std::snprintf(host, sizeof(host), "host");
  }
  std::string out;
  for (const char* c = host; *c != '\0'; ++c) {
    out.push_back(absl::ascii_isalnum(static_cast<unsigned char>(*c)) || *c == '-' ? *c : '_');
  }
  const size_t colon = listen.rfind(':');
  const std::string port = colon == std::string::npos ? listen : listen.substr(colon + 1);
  if (port != "0") return absl::StrCat(out, "-", port);
  std::error_code ec;
  std::filesystem::path abs = std::filesystem::absolute(config_path, ec);
  const std::string key = ec ? config_path : abs.lexically_normal().string();
  // FNV-1a 64: a short, stable name for the path (not a security boundary).
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : key) h = (h ^ c) * 1099511628211ULL;
  return absl::StrCat(out, "-0-", absl::Hex(h, absl::kZeroPad16));
}

absl::StatusOr<NodeConfig> Parser::Parse(const YAML::Node& root) const {
  if (!root.IsMap()) return Error(root, "(top level)", "expected a mapping");
  if (absl::Status s = CheckKeys(root, "",
                                 {"node", "instance", "listen", "admin", "tls", "peers", "kafka",
                                  "policies", "link", "audit"});
      !s.ok()) {
    return s;
  }
  NodeConfig config;
  config.path = path_;

  auto node = String(root, "node", "", true);
  if (!node.ok()) return node.status();
  if (!IsValidNodeName(*node)) {
    return Error(root["node"], "node",
                 "must be 1-63 lowercase letters, digits or '-' (it prefixes topic names)");
  }
  config.node = *node;

  auto listen = String(root, "listen", "", true);
  if (!listen.ok()) return listen.status();
  if (absl::Status s = HostPort(root, "listen", "", *listen); !s.ok()) return s;
  config.listen = *listen;

  // Tells the nodes of one city (same node name) apart in Kafka: it names their transactional
  // producers, so it must differ between them and stay the same across restarts of one.
  auto instance = String(root, "instance", "", false);
  if (!instance.ok()) return instance.status();
  if (!instance->empty()) {
    if (!IsValidInstance(*instance)) {
      return Error(root["instance"], "instance",
                   "must be 1-100 letters, digits, '-', '_' or '.' (it names Kafka producers)");
    }
    config.instance = *instance;
  } else {
    config.instance = DefaultInstance(config.listen, path_);
  }

  auto admin = String(root, "admin", "", false);
  if (!admin.ok()) return admin.status();
  config.admin = admin->empty() ? "127.0.0.1:9464" : *admin;
  if (!admin->empty()) {
    if (absl::Status s = HostPort(root, "admin", "", *admin); !s.ok()) return s;
  }

  const YAML::Node tls = root["tls"];
  if (!tls.IsDefined() || !tls.IsMap()) {
    return Error(tls.IsDefined() ? tls : root, "tls",
                 "missing or not a mapping: {cert: ..., key: ...} is required (mTLS only)");
  }
  if (absl::Status s = CheckKeys(tls, "tls", {"cert", "key"}); !s.ok()) return s;
  auto cert = File(tls, "cert", "tls");
  if (!cert.ok()) return cert.status();
  auto key = File(tls, "key", "tls");
  if (!key.ok()) return key.status();
  config.tls = {*cert, *key};

  const YAML::Node peers = root["peers"];
  if (peers.IsDefined() && !peers.IsNull()) {
    if (!peers.IsSequence()) return Error(peers, "peers", "expected a list of peers");
    std::set<std::string> names;
    for (size_t i = 0; i < peers.size(); ++i) {
      const YAML::Node p = peers[i];
      const std::string where = absl::StrCat("peers[", i, "]");
      if (!p.IsMap()) return Error(p, where, "expected a mapping");
      if (absl::Status s = CheckKeys(p, where, {"name", "address", "ca", "identity", "audit_key"});
          !s.ok()) {
        return s;
      }
      PeerConfig peer;
      auto name = String(p, "name", where, true);
      if (!name.ok()) return name.status();
      if (!IsValidNodeName(*name)) {
        return Error(p["name"], where + ".name", "must be 1-63 lowercase letters, digits or '-'");
      }
      if (*name == config.node)
        return Error(p["name"], where + ".name", "a node cannot peer itself");
      if (!names.insert(*name).second) {
        return Error(p["name"], where + ".name", absl::StrCat("duplicate peer '", *name, "'"));
      }
      peer.name = *name;
      auto address = String(p, "address", where, false);
      if (!address.ok()) return address.status();
      if (!address->empty()) {
        if (absl::Status s = HostPort(p, "address", where, *address); !s.ok()) return s;
      }
      peer.address = *address;
      auto ca = File(p, "ca", where);
      if (!ca.ok()) return ca.status();
      peer.ca_file = *ca;
      auto identity = String(p, "identity", where, true);
      if (!identity.ok()) return identity.status();
      peer.identity = *identity;
      if (p["audit_key"].IsDefined() && !p["audit_key"].IsNull()) {
        auto file = File(p, "audit_key", where);
        if (!file.ok()) return file.status();
        std::ifstream in(*file);
        std::stringstream text;
        text << in.rdbuf();
        const std::string vkey(absl::StripAsciiWhitespace(text.str()));
        absl::StatusOr<audit::Verifier> verifier = audit::Verifier::FromVkey(vkey);
        if (!verifier.ok()) {
          return Error(p["audit_key"], where + ".audit_key",
                       absl::StrCat(*file, " is not an audit verifier key (vkey): ",
                                    verifier.status().message()));
        }
        if (verifier->name() != peer.name) {
          return Error(p["audit_key"], where + ".audit_key",
                       absl::StrCat(*file, " is the key of '", verifier->name(), "', not of '",
                                    peer.name, "'"));
        }
        peer.audit_vkey = vkey;
      }
      config.peers.push_back(std::move(peer));
    }
  }

  const YAML::Node kafka = root["kafka"];
  if (!kafka.IsDefined() || !kafka.IsMap()) {
    return Error(kafka.IsDefined() ? kafka : root, "kafka",
                 "missing or not a mapping: use 'embedded: {}' or 'bootstrap: host:port'");
  }
  if (absl::Status s = CheckKeys(kafka, "kafka", {"embedded", "bootstrap", "properties"});
      !s.ok()) {
    return s;
  }
  const YAML::Node embedded = kafka["embedded"];
  auto bootstrap = String(kafka, "bootstrap", "kafka", false);
  if (!bootstrap.ok()) return bootstrap.status();
  if (embedded.IsDefined() == !bootstrap->empty()) {
    return Error(kafka, "kafka", "set exactly one of 'embedded' and 'bootstrap'");
  }
  config.kafka.bootstrap = *bootstrap;
  if (embedded.IsDefined()) {
    EmbeddedKafkaConfig e;
    if (!embedded.IsNull()) {
      if (!embedded.IsMap()) return Error(embedded, "kafka.embedded", "expected a mapping");
      if (absl::Status s = CheckKeys(embedded, "kafka.embedded", {"brokers", "topics"}); !s.ok()) {
        return s;
      }
      auto brokers = Integer(embedded, "brokers", "kafka.embedded", 1, 1, 9);
      if (!brokers.ok()) return brokers.status();
      e.brokers = static_cast<int>(*brokers);
      const YAML::Node topics = embedded["topics"];
      if (topics.IsDefined() && !topics.IsNull()) {
        if (!topics.IsMap()) {
          return Error(topics, "kafka.embedded.topics", "expected topic: partitions");
        }
        for (const auto& kv : topics) {
          const std::string topic = kv.first.Scalar();
          auto partitions = Integer(topics, topic, "kafka.embedded.topics", 0, 1, 1000);
          if (!partitions.ok()) return partitions.status();
          if (*partitions == 0) {
            return Error(kv.first, "kafka.embedded.topics." + topic, "partition count required");
          }
          e.topics[topic] = static_cast<int>(*partitions);
        }
      }
    }
    config.kafka.embedded = e;
  }
  const YAML::Node properties = kafka["properties"];
  if (properties.IsDefined() && !properties.IsNull()) {
    if (!properties.IsMap()) return Error(properties, "kafka.properties", "expected a mapping");
    for (const auto& kv : properties) {
      if (!kv.second.IsScalar()) {
        return Error(kv.second, "kafka.properties." + kv.first.Scalar(), "expected a scalar");
      }
      config.kafka.properties[kv.first.Scalar()] = kv.second.Scalar();
    }
  }

  auto policies = String(root, "policies", "", true);
  if (!policies.ok()) return policies.status();
  std::filesystem::path policies_path(*policies);
  if (policies_path.is_relative()) policies_path = base_dir_ / policies_path;
  std::error_code ec;
  if (!std::filesystem::is_directory(policies_path, ec)) {
    return Error(root["policies"], "policies",
                 absl::StrCat("not a directory: ", policies_path.string()));
  }
  policies_path = policies_path.lexically_normal();
  if (!policies_path.has_filename()) policies_path = policies_path.parent_path();  // "dir/"
  config.policies_dir = policies_path.string();

  const YAML::Node link = root["link"];
  if (link.IsDefined() && !link.IsNull()) {
    if (!link.IsMap()) return Error(link, "link", "expected a mapping");
    if (absl::Status s = CheckKeys(
            link, "link",
            {"heartbeat_interval_ms", "dead_peer_timeout_ms", "reconnect_backoff_initial_ms",
             "reconnect_backoff_max_ms", "window_batches", "window_bytes", "receive_buffer_bytes",
             "batch_max_records", "batch_max_bytes", "export_workers", "read_ahead_bytes",
             "export_buffer_bytes"});
        !s.ok()) {
      return s;
    }
    LinkTuning& t = config.link;
    auto ms = [&](const char* key, std::chrono::milliseconds& out, int64_t min,
                  int64_t max) -> absl::Status {
      auto v = Integer(link, key, "link", out.count(), min, max);
      if (!v.ok()) return v.status();
      out = std::chrono::milliseconds(*v);
      return absl::OkStatus();
    };
    auto num = [&](const char* key, auto& out, int64_t min, int64_t max) -> absl::Status {
      auto v = Integer(link, key, "link", out, min, max);
      if (!v.ok()) return v.status();
      out = static_cast<std::remove_reference_t<decltype(out)>>(*v);
      return absl::OkStatus();
    };
    for (absl::Status s :
         {ms("heartbeat_interval_ms", t.heartbeat_interval, 50, 60000),
          ms("dead_peer_timeout_ms", t.dead_peer_timeout, 200, 600000),
          ms("reconnect_backoff_initial_ms", t.reconnect_backoff_initial, 10, 60000),
          ms("reconnect_backoff_max_ms", t.reconnect_backoff_max, 10, 600000),
          num("window_batches", t.window_batches, 1, 1024),
          num("window_bytes", t.window_bytes, 1024, int64_t{1} << 32),
          num("receive_buffer_bytes", t.receive_buffer_bytes, 1 << 20, int64_t{1} << 34),
          num("batch_max_records", t.batch_max_records, 1, 1000000),
          num("batch_max_bytes", t.batch_max_bytes, 1024, 64 << 20),
          num("export_workers", t.export_workers, 1, 64),
          // librdkafka's queued.max.messages.kbytes: 1 KiB to 2 GiB - 1 KiB.
          num("read_ahead_bytes", t.read_ahead_bytes, 1 << 20, int64_t{2097151} << 10),
          num("export_buffer_bytes", t.export_buffer_bytes, 1 << 20, int64_t{1} << 34)}) {
      if (!s.ok()) return s;
    }
    if (t.dead_peer_timeout <= t.heartbeat_interval) {
      return Error(link, "link.dead_peer_timeout_ms", "must be longer than heartbeat_interval_ms");
    }
  }
  const YAML::Node audit = root["audit"];
  if (audit.IsDefined() && !audit.IsNull()) {
    if (!audit.IsMap()) return Error(audit, "audit", "expected a mapping");
    if (absl::Status s = CheckKeys(audit, "audit",
                                   {"dir", "key", "checkpoint_every_entries",
                                    "checkpoint_interval_ms", "max_segment_bytes"});
        !s.ok()) {
      return s;
    }
    AuditConfig a;
    auto dir = String(audit, "dir", "audit", true);
    if (!dir.ok()) return dir.status();
    std::filesystem::path dir_path(*dir);
    if (dir_path.is_relative()) dir_path = base_dir_ / dir_path;
    dir_path = dir_path.lexically_normal();
    if (!dir_path.has_filename()) dir_path = dir_path.parent_path();
    if (std::filesystem::exists(dir_path, ec) && !std::filesystem::is_directory(dir_path, ec)) {
      return Error(audit["dir"], "audit.dir", absl::StrCat("not a directory: ", dir_path.string()));
    }
    a.dir = dir_path.string();
    auto key = File(audit, "key", "audit");
    if (!key.ok()) return key.status();
    {
      std::ifstream in(*key);
      std::stringstream pem;
      pem << in.rdbuf();
      absl::StatusOr<std::unique_ptr<audit::Signer>> signer =
          audit::Signer::FromPem(config.node, pem.str());
      if (!signer.ok()) {
        return Error(audit["key"], "audit.key",
                     absl::StrCat(*key, " is not an Ed25519 private key (PKCS#8 PEM): ",
                                  signer.status().message()));
      }
    }
    a.key_file = *key;
    auto every = Integer(audit, "checkpoint_every_entries", "audit", 1000, 1, 100000000);
    if (!every.ok()) return every.status();
    a.checkpoint_every_entries = static_cast<uint64_t>(*every);
    auto interval = Integer(audit, "checkpoint_interval_ms", "audit", 10000, 100, 86400000);
    if (!interval.ok()) return interval.status();
    a.checkpoint_interval = std::chrono::milliseconds(*interval);
    auto segment =
        Integer(audit, "max_segment_bytes", "audit", int64_t{64} << 20, 4096, int64_t{1} << 40);
    if (!segment.ok()) return segment.status();
    a.max_segment_bytes = static_cast<uint64_t>(*segment);
    config.audit = std::move(a);
  }
  return config;
}

}  // namespace

bool IsValidInstance(absl::string_view instance) {
  return !instance.empty() && instance.size() <= 100 &&
         std::all_of(instance.begin(), instance.end(), [](char c) {
           return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
                  c == '.';
         });
}

bool IsValidNodeName(absl::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return name.front() != '-' && name.back() != '-';
}

const PeerConfig* NodeConfig::FindPeer(absl::string_view name) const {
  for (const PeerConfig& p : peers) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

absl::StatusOr<NodeConfig> ParseNodeConfig(const std::string& yaml_text, const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::ParserException& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ":", e.mark.line + 1, ":", e.mark.column + 1, ": ", e.msg));
  }
  try {
    return Parser(path).Parse(root);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ":", e.mark.line + 1, ":", e.mark.column + 1, ": ", e.msg));
  }
}

absl::StatusOr<NodeConfig> LoadNodeConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot read config file"));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return ParseNodeConfig(buffer.str(), path);
}

}  // namespace uop::broker
