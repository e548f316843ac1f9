// Admin HTTP with cpp-httplib: small, local-only by default (127.0.0.1), no secrets served.
#include "broker/admin_http.h"

#include <httplib.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/metrics.h"

namespace uop::broker {

AdminServer::AdminServer(core::Metrics* metrics, std::function<absl::Status()> ready)
    : metrics_(metrics), ready_(std::move(ready)), server_(std::make_unique<httplib::Server>()) {}

AdminServer::~AdminServer() { Stop(); }

absl::StatusOr<std::string> AdminServer::Start(const std::string& address) {
  const size_t colon = address.rfind(':');
  const std::string host = address.substr(0, colon);
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port)) {
    return absl::InvalidArgumentError(absl::StrCat("admin address '", address, "'"));
  }
  server_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_->Render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  server_->Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  server_->Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
    const absl::Status ready = ready_();
    res.status = ready.ok() ? 200 : 503;
    res.set_content(
        ready.ok() ? std::string("ready\n") : absl::StrCat("not ready: ", ready.message(), "\n"),
        "text/plain");
  });
  for (const Route& route : routes_) {
    const std::string& method = route.method;
    const std::string& path = route.path;
    auto serve = [handler = route.handler](const httplib::Request&, httplib::Response& res) {
      AdminResponse r = handler();
      res.status = r.status;
      res.set_content(r.body, r.content_type);
    };
    if (method == "POST") {
      server_->Post(path, serve);
    } else {
      server_->Get(path, serve);
    }
  }
  int bound = port;
  if (port == 0) {
    bound = server_->bind_to_any_port(host);
    if (bound < 0) bound = 0;
  } else if (!server_->bind_to_port(host, port)) {
    bound = 0;
  }
  if (bound <= 0) return absl::UnavailableError(absl::StrCat("admin: cannot listen on ", address));
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  return absl::StrCat(host, ":", bound);
}

void AdminServer::AddRoute(const std::string& method, const std::string& path, Handler handler) {
  routes_.push_back({method, path, std::move(handler)});
}

void AdminServer::Stop() {
  if (thread_.joinable()) {
    server_->stop();
    thread_.join();
  }
}

}  // namespace uop::broker
