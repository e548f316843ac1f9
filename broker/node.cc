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
#include "core/memory_trimmer.h"

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

std::string JsonString(absl::string_view s) { return absl::StrCat("\"", log::JsonEscape(s), "\""); }

std::string ShareJson(const policy::Share& s, policy::ShareState state) {
  auto time = [](const std::optional<absl::Time>& t) {
    return t.has_value()
               ? JsonString(absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", *t, absl::UTCTimeZone()))
               : std::string("null");
  };
  return absl::StrCat(
      "{\"dataset\":", JsonString(s.dataset), ",\"peer\":", JsonString(s.peer),
      ",\"state\":", JsonString(policy::ShareStateName(state)),
      ",\"purpose\":", JsonString(s.purpose), ",\"licence\":", JsonString(s.licence),
      ",\"owner\":{\"organisation\":", JsonString(s.owner_organisation),
      ",\"contact\":", JsonString(s.owner_contact), "},\"valid_from\":", time(s.valid_from),
      ",\"valid_until\":", time(s.valid_until), ",\"retention_ms\":",
      s.retention.has_value() ? absl::StrCat(absl::ToInt64Milliseconds(*s.retention)) : "null",
      ",\"defined_in\":", JsonString(absl::StrCat(s.file, ":", s.line)), "}");
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

  PolicyManager::Options policy_options;
  policy_options.dir = cfg.policies_dir;
  for (const PeerConfig& p : cfg.peers) policy_options.peers.insert(p.name);
  auto policies = PolicyManager::Load(policy_options, &node->metrics_, node->audit_.get());
  if (!policies.ok()) return policies.status();
  node->policies_ = *std::move(policies);

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
                                           node->audit_.get(), [raw] { return raw->policies(); });
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
  node->admin_->AddRoute("GET", "/policy/status", [raw] {
    return AdminResponse{200, raw->policies_->StatusJson(absl::Now())};
  });
  node->admin_->AddRoute("POST", "/policy/reload", [raw] {
    const PolicyManager::Result r = raw->ReloadPolicies("admin");
    std::string body = absl::StrCat("{\"ok\":", r.ok ? "true" : "false",
                                    ",\"changed\":", r.changed ? "true" : "false",
                                    ",\"version\":\"", log::JsonEscape(r.version), "\"");
    if (!r.ok) absl::StrAppend(&body, ",\"error\":\"", log::JsonEscape(r.error), "\"");
    body += ",\"warnings\":[";
    for (size_t i = 0; i < r.warnings.size(); ++i) {
      absl::StrAppend(&body, i > 0 ? "," : "", "\"", log::JsonEscape(r.warnings[i]), "\"");
    }
    body += "]}\n";
    return AdminResponse{r.ok ? 200 : 422, std::move(body)};
  });
  node->admin_->AddRoute("GET", "/datasets", [raw] {
    return AdminResponse{200, raw->DatasetsJson()};
  });
  auto admin = node->admin_->Start(cfg.admin);
  if (!admin.ok()) return admin.status();
  node->admin_address_ = *admin;
  node->metrics_
      .Gauge("uop_build_info", "Build and node information",
             {{"node", cfg.node}, {"version", std::string(kSoftware)}})
      ->Set(1);
  node->policies_->StartWatching();
  // Bursts (a backlog, a reconnect's replay) free hundreds of MiB at once that glibc would keep.
  node->trimmer_ =
      std::make_unique<core::PeriodicThread>(absl::Seconds(1), [] { core::TrimFreeMemory(); });
  node->ready_.store(true);
  node->started_ = true;
  log::Info("node_started", {{"node", cfg.node},
                             {"federation", node->federation_address_},
                             {"admin", node->admin_address_},
                             {"peers", std::to_string(cfg.peers.size())}});
  return node;
}

std::shared_ptr<const policy::PolicySnapshot> Node::policies() const {
  return policies_->Current();
}

PolicyManager::Result Node::ReloadPolicies(absl::string_view trigger) {
  return policies_->Reload(trigger);
}

std::string Node::DatasetsJson() const {
  // What this node offers (its shares, with their state now) and what it receives from each
  // peer, with the terms the owner sent.
  const absl::Time now = absl::Now();
  const std::shared_ptr<const policy::PolicySnapshot> snapshot = policies();
  std::string out =
      absl::StrCat("{\"node\":\"", log::JsonEscape(config_.node), "\",\"policy_version\":\"",
                   snapshot->version(), "\",\"shares\":[");
  bool first = true;
  for (const policy::Share* s : snapshot->Shares()) {
    absl::StrAppend(&out, first ? "" : ",",
                    ShareJson(*s, snapshot->StateAt(s->dataset, s->peer, now)));
    first = false;
  }
  out += "],\"imports\":[";
  first = true;
  for (const auto& link : links_) {
    for (const std::string& d : link->DatasetsJson()) {
      absl::StrAppend(&out, first ? "" : ",", d);
      first = false;
    }
  }
  out += "]}\n";
  return out;
}

void Node::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  ready_.store(false);
  if (server_) server_->GetHealthCheckService()->SetServingStatus(false);
  if (admin_) admin_->Stop();  // it reads links_ (GET /datasets)
  if (policies_) policies_->Stop();
  // Receivers first: each aborts or finishes its transaction and stops pulling.
  for (auto& link : links_) link->Stop();
  links_.clear();
  if (export_service_) export_service_->Stop();
  if (listener_) listener_->Stop();  // before the server stops: it would drop handed fds
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  trimmer_.reset();
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
