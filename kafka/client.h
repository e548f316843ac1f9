// RAII over librdkafka: the node's Kafka (embedded mock cluster or a real one), client
// construction with the node's properties, and topic administration.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include <librdkafka/rdkafka.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "kafka/cluster_config.h"

// librdkafka's own C declaration, repeated so this header needs no rdkafka_mock.h.
typedef struct rd_kafka_mock_cluster_s rd_kafka_mock_cluster_t;  // NOLINT(modernize-use-using)

namespace uop::kafka {

struct HandleDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
using Handle = std::unique_ptr<rd_kafka_t, HandleDeleter>;

struct MessageDeleter {
  void operator()(rd_kafka_message_t* m) const { rd_kafka_message_destroy(m); }
};
using Message = std::unique_ptr<rd_kafka_message_t, MessageDeleter>;

struct ErrorDeleter {
  void operator()(rd_kafka_error_t* e) const { rd_kafka_error_destroy(e); }
};
using Error = std::unique_ptr<rd_kafka_error_t, ErrorDeleter>;

struct PartitionListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const {
    rd_kafka_topic_partition_list_destroy(l);
  }
};
using PartitionList = std::unique_ptr<rd_kafka_topic_partition_list_t, PartitionListDeleter>;

struct QueueDeleter {
  void operator()(rd_kafka_queue_t* q) const { rd_kafka_queue_destroy(q); }
};
using Queue = std::unique_ptr<rd_kafka_queue_t, QueueDeleter>;

using Properties = std::map<std::string, std::string>;

// Owns the embedded cluster when there is one. Thread-safe.
class Env {
 public:
  static absl::StatusOr<std::unique_ptr<Env>> Start(const ClusterConfig& config);
  ~Env();

  const std::string& bootstrap() const { return bootstrap_; }
  bool embedded() const { return mock_ != nullptr; }

  // A new client with bootstrap.servers, the node's properties and then `overrides`.
  // `customize`, if set, can install callbacks on the conf before the client is made.
  absl::StatusOr<Handle> NewClient(
      rd_kafka_type_t type, const Properties& overrides,
      const std::function<void(rd_kafka_conf_t*)>& customize = nullptr) const;

  // True if a broker answers a metadata request within `timeout_ms` (for /readyz).
  bool Reachable(int timeout_ms) const;

  // Partition count of an existing topic; NotFound when it does not exist.
  absl::StatusOr<int> PartitionCount(const std::string& topic) const;

  // Partition counts of every topic the cluster reports without an error, from one metadata
  // request (one round trip however many topics there are).
  absl::StatusOr<std::map<std::string, int>> AllPartitionCounts() const;

  // Creates `topic` with `partitions`; fine if it already exists with that count, an error
  // naming both counts if it exists with another.
  absl::Status EnsureTopic(const std::string& topic, int partitions);

  // The same for many topics at once: one metadata request, one CreateTopics request for the
  // missing ones, then metadata until they show (a hundred datasets start in seconds). Returns
  // per topic OK or why not.
  std::map<std::string, absl::Status> EnsureTopics(const std::map<std::string, int>& topics);

  // Sets the topic's retention.ms (nullopt: back to the cluster's default) with AlterConfigs,
  // which replaces the topic's whole dynamic config (our mirror topics carry no other).
  // Unimplemented on librdkafka's mock cluster, which keeps no topic configs.
  absl::Status SetTopicRetention(const std::string& topic, std::optional<int64_t> retention_ms);

 private:
  Env() = default;
  std::string bootstrap_;
  Properties properties_;
  Handle mock_host_;                         // owns the mock cluster's threads
  rd_kafka_mock_cluster_t* mock_ = nullptr;  // owned by mock_host_ lifetime (destroyed first)
  Handle admin_;                             // metadata and admin requests
  absl::Mutex mu_;
  std::set<std::string> ensured_ ABSL_GUARDED_BY(mu_);
};

// Applies `props` to a new conf; errors name the property (never its value: it may be secret).
absl::StatusOr<rd_kafka_conf_t*> MakeConf(const Properties& props);

// Creates a standalone mock cluster (for `uopctl dev-kafka`). Caller destroys with
// rd_kafka_mock_cluster_destroy before the host handle.
struct MockCluster {
  Handle host;
  rd_kafka_mock_cluster_t* cluster = nullptr;
  std::string bootstrap;
  ~MockCluster();
};
absl::StatusOr<std::unique_ptr<MockCluster>> StartMockCluster(int brokers);
absl::Status CreateMockTopic(MockCluster& mock, const std::string& topic, int partitions);

}  // namespace uop::kafka
