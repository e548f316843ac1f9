// The node configuration (one YAML file per uopd), parsed and validated with exact positions.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "kafka/cluster_config.h"

namespace uop::broker {

struct TlsConfig {
  std::string cert_file;  // PEM certificate chain of this node
  std::string key_file;   // PEM private key of this node
};

struct PeerConfig {
  std::string name;      // the peer's node name, its namespace here
  std::string address;   // host:port to pull from; empty: we never dial this peer
  std::string ca_file;   // trust anchor for this peer only
  std::string identity;  // SAN (DNS name or URI) the peer's certificate must carry
  // The peer's audit verifier key (C2SP vkey, named after the peer), read from the file
  // `audit_key` names; empty: none configured. With one, receipts from this peer are required
  // and verified, we sign receipts for its batches, and the two nodes cosign each other's
  // checkpoints (docs/protocol.md section 13).
  std::string audit_vkey;
};

// The node's tamper-evident audit log (docs/audit.md); absent: no audit log.
struct AuditConfig {
  std::string dir;       // the log's directory, created if missing
  std::string key_file;  // the node's Ed25519 audit key (PKCS#8 PEM, `uopctl audit keygen`)
  uint64_t checkpoint_every_entries = 1000;
  std::chrono::milliseconds checkpoint_interval{10000};
  uint64_t max_segment_bytes = uint64_t{64} << 20;  // a new segment file starts beyond this
};

using EmbeddedKafkaConfig = kafka::EmbeddedConfig;
using KafkaConfig = kafka::ClusterConfig;

struct LinkTuning {
  std::chrono::milliseconds heartbeat_interval{1000};
  std::chrono::milliseconds dead_peer_timeout{5000};
  std::chrono::milliseconds reconnect_backoff_initial{200};
  std::chrono::milliseconds reconnect_backoff_max{10000};
  int window_batches = 64;         // credit per partition stream, in batches
  int64_t window_bytes = 8 << 20;  // credit per partition stream, in bytes
  // Receiver: byte credit of all the streams of one peer link together (their windows shrink to
  // share it), which bounds what the link holds in memory however many partitions it pulls.
  int64_t receive_buffer_bytes = int64_t{64} << 20;
  int batch_max_records = 5000;
  int64_t batch_max_bytes = 1 << 20;
  int export_workers = 2;  // owner threads that read Kafka and cut batches, for all streams
  // Owner: what librdkafka may fetch ahead for one stream (all its partitions), in bytes.
  int64_t read_ahead_bytes = int64_t{32} << 20;
  // Owner: read-ahead of all the streams of one peer together; each stream's is cut to its share
  // (by datasets shared with the peer) when that is less than read_ahead_bytes.
  int64_t export_buffer_bytes = int64_t{128} << 20;
};

struct NodeConfig {
  std::string path;  // the file this came from
  std::string node;
  std::string instance;  // this node among the city's nodes of the same name (Kafka producer ids)
  std::string listen;
  std::string admin;
  TlsConfig tls;
  std::vector<PeerConfig> peers;
  KafkaConfig kafka;
  std::string policies_dir;  // resolved against the config file's directory
  LinkTuning link;
  std::optional<AuditConfig> audit;

  const PeerConfig* FindPeer(absl::string_view name) const;
};

// Parses and validates a node config. Errors read "file:line:column: key 'x': what is wrong".
// Relative paths in the file are resolved against the file's directory.
absl::StatusOr<NodeConfig> LoadNodeConfig(const std::string& path);
absl::StatusOr<NodeConfig> ParseNodeConfig(const std::string& yaml_text, const std::string& path);

// A node or peer name: lowercase letters, digits and '-', 1 to 63 characters, since it becomes
// the prefix of topic names at peers.
bool IsValidNodeName(absl::string_view name);
// 1-100 of [A-Za-z0-9._-]: it names Kafka transactional producers.
bool IsValidInstance(absl::string_view instance);

}  // namespace uop::broker
