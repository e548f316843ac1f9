// The admin HTTP endpoint: /metrics (Prometheus text), /healthz, /readyz, and the routes the node
// adds (/policy/status, /policy/reload, /datasets).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace httplib {
class Server;
}

namespace uop::core {
class Metrics;
}

namespace uop::broker {

// What a route answers.
struct AdminResponse {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
};

// Serves on its own thread from Start() until Stop(). `metrics` must outlive it.
class AdminServer {
 public:
  using Handler = std::function<AdminResponse()>;
  // `ready`: OK when ready; otherwise why not, which /readyz answers with (503).
  AdminServer(core::Metrics* metrics, std::function<absl::Status()> ready);
  ~AdminServer();
  // Binds `host:port` (port 0: any free port); returns the bound "host:port".
  absl::StatusOr<std::string> Start(const std::string& address);
  // Before Start(). `method` is "GET" or "POST"; the handler runs on the server's threads.
  void AddRoute(const std::string& method, const std::string& path, Handler handler);
  void Stop();

 private:
  core::Metrics* metrics_;
  std::function<absl::Status()> ready_;
  struct Route {
    std::string method;
    std::string path;
    Handler handler;
  };
  std::vector<Route> routes_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

}  // namespace uop::broker
