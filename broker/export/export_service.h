// The owner side of federation: serves ListOffers and Replicate to authenticated peers, reading
// the owner's Kafka and applying the owner's rules before any record leaves.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "broker/config.h"
#include "broker/grpc_status.h"
#include "broker/peer_identity.h"
#include "core/metrics.h"
#include "kafka/client.h"
#include "policy/policy_snapshot.h"
#include "uop/federation/v1/federation.grpc.pb.h"

namespace uop::broker {

inline constexpr uint32_t kProtocolVersion = 1;
inline constexpr absl::string_view kSoftware = "uopd/0.1.0";

using PolicyProvider = std::function<std::shared_ptr<const policy::PolicySnapshot>()>;

// One instance per node. `kafka`, `metrics` must outlive it. Thread-safe: gRPC calls each
// handler on its own thread (sync API; streams are few: peers x datasets).
class ExportService final : public uop::federation::v1::Federation::Service {
 public:
  ExportService(const NodeConfig& config, std::shared_ptr<const PeerAuthenticator> auth,
                PolicyProvider policies, kafka::Env* kafka, core::Metrics* metrics);

  grpc::Status ListOffers(grpc::ServerContext* context,
                          const uop::federation::v1::ListOffersRequest* request,
                          uop::federation::v1::ListOffersResponse* response) override;

  grpc::Status Replicate(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<uop::federation::v1::OwnerMessage,
                               uop::federation::v1::ReceiverMessage>* stream) override;

  // Ends every stream promptly (for shutdown).
  void Stop() { stopping_.store(true); }

 private:
  // The peer this call comes from, checked against its certificate and its Hello.
  absl::StatusOr<std::string> AuthenticateCall(grpc::ServerContext* context,
                                               const uop::federation::v1::Hello& hello);

  const NodeConfig& config_;
  std::shared_ptr<const PeerAuthenticator> auth_;
  PolicyProvider policies_;
  kafka::Env* kafka_;
  core::Metrics* metrics_;
  std::atomic<bool> stopping_{false};
};

}  // namespace uop::broker
