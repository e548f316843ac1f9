// The receiver side of federation: one PeerLink per peer we pull from, one ImportSubscription
// per dataset that peer offers. Each subscription writes into our Kafka transactionally and
// resumes from what our Kafka holds, so a crash or a cut link loses and doubles nothing.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "broker/config.h"
#include "broker/import/import_session.h"
#include "broker/peer_identity.h"
#include "core/metrics.h"
#include "core/provenance.h"
#include "kafka/client.h"
#include "uop/federation/v1/federation.grpc.pb.h"

namespace uop::broker {

// Pulls one origin partition of one peer's dataset into the same partition of our mirror topic.
// The partition is the unit of ownership: its transactional.id is stable per (node, mirror
// topic, partition), so whichever node of this city takes the partition over fences the previous
// writer. Each transaction also commits the position as the import group's offset (with the
// group's generation: a writer that lost the partition cannot commit). Runs its own thread from
// Start() to Stop(); retries with jittered exponential backoff. `kafka`, `metrics` and whatever
// `group_metadata` refers to must outlive it.
class ImportSubscription {
 public:
  ImportSubscription(const NodeConfig& config, const PeerConfig& peer,
                     std::shared_ptr<grpc::Channel> channel,
                     uop::federation::v1::DatasetOffer offer, int32_t partition, kafka::Env* kafka,
                     core::Metrics* metrics, std::string group_id,
                     std::function<std::string()> group_metadata);
  ~ImportSubscription();

  void Start();
  // Returns when the thread has ended: a transaction being committed is finished first (bounded
  // by the Kafka timeouts), then the stream is cancelled.
  void Stop();
  bool streaming() const { return streaming_.load(); }
  int64_t lag_records() const { return lag_records_.load(); }
  double lag_seconds() const { return lag_seconds_.load(); }

 private:
  void Run();
  // One connection: fence, recover, subscribe, stream until error. `progressed` tells whether
  // anything was written (then the backoff starts over).
  absl::Status RunOnce(bool* progressed);
  absl::StatusOr<std::map<int32_t, core::PartitionCheckpoint>> Recover();
  // Aborts a transaction of ours left open in our partition although its coordinator finished it
  // (see the .cc). Must run after init_transactions, before Recover.
  absl::Status CloseHangingTransactions(rd_kafka_t* producer);

  const NodeConfig& config_;
  const PeerConfig& peer_;
  std::shared_ptr<grpc::Channel> channel_;
  const uop::federation::v1::DatasetOffer offer_;
  const int32_t partition_;
  const std::string target_topic_;
  const std::string deadletter_topic_;
  kafka::Env* kafka_;
  core::Metrics* metrics_;
  // Origin (partition, offset) pairs that Kafka refused for good: next attempt dead-letters them.
  RefusedRecords refused_;
  bool closed_hanging_ = false;  // this attempt aborted a hanging transaction (Run thread only)
  const std::string group_id_;   // the import group, whose committed offsets hold our positions
  std::function<std::string()> group_metadata_;

  core::MetricValue* records_written_;
  core::MetricValue* batches_written_;
  core::MetricValue* duplicates_dropped_;
  core::MetricValue* deadlettered_;
  core::MetricValue* reconnects_;
  core::MetricValue* transactions_;
  std::atomic<bool> streaming_{false};
  std::atomic<int64_t> lag_records_{0};
  std::atomic<double> lag_seconds_{0};

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* active_context_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::thread thread_;
};

// One dataset offered by a peer. The nodes of this city that share a node name join one Kafka
// consumer group on the mirror topic; the partitions Kafka assigns to this node are the origin
// partitions it pulls (one ImportSubscription each). Kafka does the balancing: a node that dies
// or leaves has its partitions moved to the others. Runs its own thread from Start() to Stop().
class ImportDataset {
 public:
  ImportDataset(const NodeConfig& config, const PeerConfig& peer,
                std::shared_ptr<grpc::Channel> channel, uop::federation::v1::DatasetOffer offer,
                kafka::Env* kafka, core::Metrics* metrics);
  ~ImportDataset();
  void Start();
  void Stop();
  // True once partitions are assigned and every one of them streams.
  bool streaming() const { return streaming_.load(); }

 private:
  void Run();
  absl::Status RunGroup();
  void OnAssigned(rd_kafka_t* consumer, rd_kafka_topic_partition_list_t* partitions);
  void OnRevoked(rd_kafka_t* consumer, rd_kafka_topic_partition_list_t* partitions);
  void PublishMetrics();
  // Remembers the group's current metadata (generation) for the subscriptions' transactions.
  void PublishGroupMetadata(rd_kafka_t* consumer);

  const NodeConfig& config_;
  const PeerConfig& peer_;
  std::shared_ptr<grpc::Channel> channel_;
  const uop::federation::v1::DatasetOffer offer_;
  const std::string target_topic_;
  kafka::Env* kafka_;
  core::Metrics* metrics_;
  core::MetricValue* assigned_;
  core::MetricValue* stream_up_;
  core::MetricValue* lag_records_;
  core::MetricValue* lag_seconds_;
  // Touched only by the Run thread (rebalance callbacks run inside its consumer poll).
  std::map<int32_t, std::unique_ptr<ImportSubscription>> partitions_;
  const std::string group_id_;
  absl::Mutex metadata_mu_;
  std::string group_metadata_ ABSL_GUARDED_BY(metadata_mu_);
  std::atomic<bool> streaming_{false};
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// Link to one peer that has an address: lists its offers and runs an ImportDataset for each.
class PeerLink {
 public:
  PeerLink(const NodeConfig& config, const PeerConfig& peer,
           const std::shared_ptr<const PeerAuthenticator>& auth, kafka::Env* kafka,
           core::Metrics* metrics);
  ~PeerLink();
  void Start();
  void Stop();

 private:
  void Run();

  const NodeConfig& config_;
  const PeerConfig& peer_;
  std::shared_ptr<grpc::Channel> channel_;
  kafka::Env* kafka_;
  core::Metrics* metrics_;
  core::MetricValue* link_up_;
  core::MetricValue* offers_;
  std::map<std::string, std::unique_ptr<ImportDataset>> datasets_;  // by topic
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace uop::broker
