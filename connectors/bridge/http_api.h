// The bridge's HTTP side (cpp-httplib): STA 1.1 create requests for Observations, the
// CreateObservations dataArray extension, and /metrics. A request is answered 201 only after
// Kafka has the record; 503 + Retry-After when Kafka is slow or down (nothing is half-taken:
// the caller retries, and the retry gets the same @iot.id).
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "connectors/bridge/ingestor.h"
#include "connectors/bridge/record_sink.h"

namespace httplib {
class Server;
}

namespace uop::sta_bridge {

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 0;               // 0: any free port (read it from Start())
  int threads = 8;            // cpp-httplib serves a keep-alive connection on one thread
  int max_in_flight = 50000;  // records queued to Kafka beyond which requests get 503
  int delivery_timeout_ms = 5000;
  int retry_after_s = 1;
  size_t max_body_bytes = 64 << 20;
};

class HttpApi {
 public:
  HttpApi(HttpOptions options, const Ingestor* ingestor, RecordSink* sink);
  ~HttpApi();

  // Binds and serves on a thread of its own; returns the bound port.
  absl::StatusOr<int> Start();
  void Stop();

 private:
  void Install();

  HttpOptions options_;
  const Ingestor* ingestor_;
  RecordSink* sink_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

}  // namespace uop::sta_bridge
