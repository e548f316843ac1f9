// The admin HTTP endpoint: /metrics (Prometheus text), /healthz, /readyz.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace httplib {
class Server;
}

namespace uop::core {
class Metrics;
}

namespace uop::broker {

// Serves on its own thread from Start() until Stop(). `metrics` must outlive it.
class AdminServer {
 public:
  // `ready`: OK when ready; otherwise why not, which /readyz answers with (503).
  AdminServer(core::Metrics* metrics, std::function<absl::Status()> ready);
  ~AdminServer();
  // Binds `host:port` (port 0: any free port); returns the bound "host:port".
  absl::StatusOr<std::string> Start(const std::string& address);
  void Stop();

 private:
  core::Metrics* metrics_;
  std::function<absl::Status()> ready_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

}  // namespace uop::broker
