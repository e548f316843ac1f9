// A running uopd: wires config, Kafka, policies, the federation server, peer links and the admin
// endpoint together. main() only parses flags and waits for a signal.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "broker/admin_http.h"
#include "broker/config.h"
#include "broker/export/export_service.h"
#include "broker/import/import_link.h"
#include "broker/node_audit.h"
#include "broker/policy_manager.h"
#include "broker/tls_listener.h"
#include "core/metrics.h"
#include "core/periodic_thread.h"
#include "kafka/client.h"
#include "policy/policy_snapshot.h"

namespace uop::broker {

class Node {
 public:
  static absl::StatusOr<std::unique_ptr<Node>> Start(NodeConfig config);
  ~Node();
  // Stops links and streams, then the servers. Idempotent.
  void Shutdown();

  const std::string& federation_address() const { return federation_address_; }
  const std::string& admin_address() const { return admin_address_; }
  const std::string& kafka_bootstrap() const { return kafka_->bootstrap(); }
  std::shared_ptr<const policy::PolicySnapshot> policies() const;
  // Reads the policy directory again (SIGHUP, POST /policy/reload); a bad set is refused and the
  // last good one stays.
  PolicyManager::Result ReloadPolicies(absl::string_view trigger);
  // GET /datasets: this node's shares and what it receives, with terms.
  std::string DatasetsJson() const;

 private:
  Node() = default;
  NodeConfig config_;
  core::Metrics metrics_;
  std::unique_ptr<NodeAudit> audit_;  // null without an audit section; outlives the sessions
  std::unique_ptr<kafka::Env> kafka_;
  std::unique_ptr<PolicyManager> policies_;  // the snapshot in force, reloads, validity windows
  std::unique_ptr<ExportService> export_service_;
  std::unique_ptr<TlsListener> listener_;  // stopped before server_ shuts down
  std::unique_ptr<grpc::Server> server_;
  std::vector<std::unique_ptr<PeerLink>> links_;
  std::unique_ptr<AdminServer> admin_;
  std::unique_ptr<core::PeriodicThread> trimmer_;  // TrimFreeMemory every second
  std::string federation_address_;
  std::string admin_address_;
  std::atomic<bool> ready_{false};
  bool shut_down_ = false;
  bool started_ = false;  // Start() completed: only then is a stop worth logging
};

}  // namespace uop::broker
