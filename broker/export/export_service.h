// The owner side of federation: serves ListOffers and Replicate to authenticated peers on gRPC's
// callback API. Each Replicate stream is a reactor around an ExportSession; a fixed pool of
// workers reads Kafka and cuts batches, and the streams of one peer share one Kafka consumer,
// so threads and Kafka clients do not grow with streams or partitions.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "broker/config.h"
#include "broker/export/consumer_pool.h"
#include "broker/export/partition_counts.h"
#include "broker/grpc_status.h"
#include "broker/node_audit.h"
#include "broker/peer_identity.h"
#include "core/metrics.h"
#include "core/periodic_thread.h"
#include "core/thread_pool.h"
#include "kafka/client.h"
#include "policy/policy_snapshot.h"
#include "uop/federation/v1/federation.grpc.pb.h"

namespace uop::broker {

inline constexpr uint32_t kProtocolVersion = 1;
inline constexpr absl::string_view kSoftware = "uopd/0.1.0";

using PolicyProvider = std::function<std::shared_ptr<const policy::PolicySnapshot>()>;

class ExportStream;

// The read-ahead of each stream of a peer's consumer: link.read_ahead_bytes, or less when the
// datasets shared with the peer would together hold more than link.export_buffer_bytes (never
// below 1 MiB). librdkafka applies one bound to every stream's queue of a consumer, so it is
// fixed when the consumer is made, from the shares in force then.
int64_t StreamReadAhead(const LinkTuning& link, size_t shared_datasets);

// One instance per node. `config`, `kafka`, `metrics` must outlive it. Thread-safe.
// Lifetime: Stop() ends the streams; the gRPC server must be shut down before destruction.
class ExportService final : public uop::federation::v1::Federation::CallbackService {
 public:
  // `audit` (null: no audit log) must outlive the service.
  ExportService(const NodeConfig& config, std::shared_ptr<const PeerAuthenticator> auth,
                PolicyProvider policies, kafka::Env* kafka, core::Metrics* metrics,
                NodeAudit* audit = nullptr);
  ~ExportService() override;

  grpc::ServerUnaryReactor* ListOffers(grpc::CallbackServerContext* context,
                                       const uop::federation::v1::ListOffersRequest* request,
                                       uop::federation::v1::ListOffersResponse* response) override;

  grpc::ServerBidiReactor<uop::federation::v1::ReceiverMessage, uop::federation::v1::OwnerMessage>*
  Replicate(grpc::CallbackServerContext* context) override;

  // Checkpoint witnessing (broker/checkpoint_exchange.h), on a setup worker: it waits for the
  // audit log.
  grpc::ServerUnaryReactor* Witness(grpc::CallbackServerContext* context,
                                    const uop::federation::v1::WitnessRequest* request,
                                    uop::federation::v1::WitnessResponse* response) override;

  // Ends every stream promptly with UNAVAILABLE "owner node is shutting down" (for shutdown).
  void Stop();
  bool stopping() const { return stopping_.load(); }

 private:
  friend class ExportStream;
  // The peer this call comes from, checked against its certificate and its Hello.
  absl::StatusOr<std::string> AuthenticateCall(grpc::CallbackServerContext* context,
                                               const uop::federation::v1::Hello& hello);
  void Register(const std::shared_ptr<ExportStream>& stream);
  void Unregister(const ExportStream* stream);
  void Tick();  // heartbeats, dead peers, revocation, stop: every stream is looked at
  void AuditRefused(grpc::CallbackServerContext* context, const absl::Status& why);

  const NodeConfig& config_;
  std::shared_ptr<const PeerAuthenticator> auth_;
  PolicyProvider policies_;
  core::Metrics* metrics_;
  NodeAudit* audit_;
  std::atomic<bool> stopping_{false};
  PartitionCounts partition_counts_;  // ListOffers and Subscribe: one metadata request for all
  ConsumerPool consumers_;            // the Kafka consumers the streams read through, per peer
  core::MetricValue* consumers_gauge_;
  core::ThreadPool workers_;        // reading Kafka and cutting batches (export_workers)
  core::ThreadPool setup_workers_;  // calls that may block on Kafka: offers, subscribe, close

  absl::Mutex mu_;
  std::map<const ExportStream*, std::weak_ptr<ExportStream>> streams_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<core::PeriodicThread> ticker_;  // Tick()
};

}  // namespace uop::broker
