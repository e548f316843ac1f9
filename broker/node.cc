// Node wiring and orderly shutdown.
#include "broker/node.h"

#include <grpcpp/health_check_service_interface.h>

#include <openssl/sha.h>

#include <fstream>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "broker/peer_identity.h"
#include "broker/tls_listener.h"
#include "core/log.h"

namespace uop::broker {

namespace {

// "sha256:<hex>" of the config file as read, for the config_change entry.
std::string ConfigHash(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  return absl::StrCat("sha256:", absl::BytesToHexString(absl::string_view(
                                     reinterpret_cast<const char*>(digest), sizeof(digest))));
}

audit::Entry PeerKeyEntry(const PeerConfig& p) {
  audit::Entry key;
  key.type = audit::EntryType::kPeerKey;
  key.peer = p.name;
  key.payload = p.audit_vkey;
  key.reason = "configured";
  return key;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Node>> Node::Start(NodeConfig config) {
  auto node = std::unique_ptr<Node>(new Node());
  node->config_ = std::move(config);
  const NodeConfig& cfg = node->config_;

  // The audit log first: everything after this is recorded, and a node whose log cannot be
  // opened does not exchange at all.
  if (cfg.audit.has_value()) {
    auto audit = NodeAudit::Open(cfg, &node->metrics_);
    if (!audit.ok()) return audit.status();
    node->audit_ = *std::move(audit);
    audit::Entry start;
    start.type = audit::EntryType::kNodeStart;
    start.reason = std::string(kSoftware);
    if (auto r = node->audit_->AppendAndWait(start); !r.ok()) return r.status();
    audit::Entry loaded;
    loaded.type = audit::EntryType::kConfigChange;
    loaded.payload = ConfigHash(cfg.path);
    loaded.reason = absl::StrCat("config loaded from ", cfg.path);
    node->audit_->AppendAsync(loaded);
    for (const PeerConfig& p : cfg.peers) {
      if (p.audit_vkey.empty()) continue;
      node->audit_->AppendAsync(PeerKeyEntry(p));
    }
  }

  std::set<std::string> peer_names;
  for (const PeerConfig& p : cfg.peers) peer_names.insert(p.name);
  auto policy = policy::PolicySnapshot::LoadDirectory(cfg.policies_dir, peer_names);
  if (!policy.ok()) {
    if (node->audit_ != nullptr) {
      audit::Entry rejected;
      rejected.type = audit::EntryType::kPolicyRejected;
      rejected.reason = std::string(policy.status().message());
      node->audit_->AppendAndWait(rejected).IgnoreError();
    }
    return policy.status();
  }
  node->policy_.store(*policy);
  log::Info("policies_loaded", {{"dir", cfg.policies_dir}, {"version", (*policy)->version()}});
  if (node->audit_ != nullptr) {
    audit::Entry load;
    load.type = audit::EntryType::kPolicyLoad;
    load.policy_version = (*policy)->version();
    load.reason = cfg.policies_dir;
    node->audit_->AppendAsync(load);
  }

  auto auth = PeerAuthenticator::Create(cfg);
  if (!auth.ok()) return auth.status();

  auto kafka = kafka::Env::Start(cfg.kafka);
  if (!kafka.ok()) return kafka.status();
  node->kafka_ = *std::move(kafka);
  log::Info("kafka_ready", {{"bootstrap", node->kafka_->bootstrap()},
                            {"embedded", node->kafka_->embedded() ? "true" : "false"}});

  Node* raw = node.get();
  node->export_service_ = std::make_unique<ExportService>(
      cfg, *auth, [raw] { return raw->policies(); }, node->kafka_.get(), &node->metrics_,
      node->audit_.get());
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
    auto link = std::make_unique<PeerLink>(cfg, peer, *auth, node->kafka_.get(), &node->metrics_,
                                           node->audit_.get());
    link->Start();
    node->links_.push_back(std::move(link));
  }

  node->admin_ = std::make_unique<AdminServer>(&node->metrics_, [raw]() -> absl::Status {
    // Ready: serving, our Kafka answers, and the audit log can write (fail closed).
    if (!raw->ready_.load()) return absl::UnavailableError("starting or stopping");
    if (raw->audit_ != nullptr) {
      if (absl::Status s = raw->audit_->Health(); !s.ok()) return s;
    }
    if (!raw->kafka_->Reachable(2000)) return absl::UnavailableError("Kafka does not answer");
    return absl::OkStatus();
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
  if (audit_ != nullptr) {
    audit::Entry stop;
    stop.type = audit::EntryType::kNodeStop;
    stop.reason = started_ ? "shutdown" : "start failed";
    audit_->AppendAndWait(stop).IgnoreError();
    audit_.reset();  // signs a final checkpoint
  }
}

Node::~Node() { Shutdown(); }

}  // namespace uop::broker
