// Node wiring and orderly shutdown.
#include "broker/node.h"

#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"
#include "broker/peer_identity.h"
#include "broker/tls_listener.h"
#include "core/log.h"

namespace uop::broker {

absl::StatusOr<std::unique_ptr<Node>> Node::Start(NodeConfig config) {
  auto node = std::unique_ptr<Node>(new Node());
  node->config_ = std::move(config);
  const NodeConfig& cfg = node->config_;

  std::set<std::string> peer_names;
  for (const PeerConfig& p : cfg.peers) peer_names.insert(p.name);
  auto policy = policy::PolicySnapshot::LoadDirectory(cfg.policies_dir, peer_names);
  if (!policy.ok()) return policy.status();
  node->policy_.store(*policy);
  log::Info("policies_loaded", {{"dir", cfg.policies_dir}, {"version", (*policy)->version()}});

  auto auth = PeerAuthenticator::Create(cfg);
  if (!auth.ok()) return auth.status();

  auto kafka = kafka::Env::Start(cfg.kafka);
  if (!kafka.ok()) return kafka.status();
  node->kafka_ = *std::move(kafka);
  log::Info("kafka_ready", {{"bootstrap", node->kafka_->bootstrap()},
                            {"embedded", node->kafka_->embedded() ? "true" : "false"}});

  Node* raw = node.get();
  node->export_service_ = std::make_unique<ExportService>(
      cfg, *auth, [raw] { return raw->policies(); }, node->kafka_.get(), &node->metrics_);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  auto listener = TlsListener::Create(cfg.listen, *auth, &builder);
  if (!listener.ok()) return listener.status();
  node->listener_ = *std::move(listener);
  const int port = node->listener_->port();
  builder.RegisterService(node->export_service_.get());
  builder.SetMaxReceiveMessageSize(256 << 20);
  builder.SetMaxSendMessageSize(256 << 20);
  node->server_ = builder.BuildAndStart();
  if (!node->server_) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", cfg.listen, " (listen)"));
  }
  node->listener_->Start();
  node->federation_address_ = absl::StrCat(cfg.listen.substr(0, cfg.listen.rfind(':')), ":", port);
  node->server_->GetHealthCheckService()->SetServingStatus(true);
  node->server_->GetHealthCheckService()->SetServingStatus("uop.federation.v1.Federation", true);

  for (const PeerConfig& peer : cfg.peers) {
    if (peer.address.empty()) continue;
    auto link = std::make_unique<PeerLink>(cfg, peer, *auth, node->kafka_.get(), &node->metrics_);
    link->Start();
    node->links_.push_back(std::move(link));
  }

  node->admin_ = std::make_unique<AdminServer>(&node->metrics_, [raw] {
    // Ready: serving, and our Kafka answers.
    return raw->ready_.load() && raw->kafka_->Reachable(2000);
  });
  auto admin = node->admin_->Start(cfg.admin);
  if (!admin.ok()) return admin.status();
  node->admin_address_ = *admin;
  node->metrics_
      .Gauge("uop_build_info", "Build and node information",
             {{"node", cfg.node}, {"version", std::string(kSoftware)}})
      ->Set(1);
  node->ready_.store(true);
  node->started_ = true;
  log::Info("node_started", {{"node", cfg.node},
                             {"federation", node->federation_address_},
                             {"admin", node->admin_address_},
                             {"peers", std::to_string(cfg.peers.size())}});
  return node;
}

std::shared_ptr<const policy::PolicySnapshot> Node::policies() const { return policy_.load(); }

void Node::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  ready_.store(false);
  if (server_) server_->GetHealthCheckService()->SetServingStatus(false);
  // Receivers first: each aborts or finishes its transaction and stops pulling.
  for (auto& link : links_) link->Stop();
  links_.clear();
  if (export_service_) export_service_->Stop();
  if (listener_) listener_->Stop();  // before the server stops: it would drop handed fds
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  if (admin_) admin_->Stop();
  if (started_) log::Info("node_stopped", {{"node", config_.node}});
}

Node::~Node() { Shutdown(); }

}  // namespace uop::broker
