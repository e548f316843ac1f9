// Where the bridge's records go: an interface so the MQTT and HTTP paths are tested with a fake,
// and so the Kafka adapter can be swapped for the shared Kafka library in one file.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace uop::sta_bridge {

struct OutRecord {
  std::string topic;
  std::string key;
  std::string value;
  std::vector<std::pair<std::string, std::string>> headers;
};

// Thread-safe. `done` runs exactly once, on the sink's own thread, when the record is durably
// accepted (OK) or definitely failed; it must not block.
class RecordSink {
 public:
  using Done = std::function<void(absl::Status)>;
  virtual ~RecordSink() = default;

  // Queues a copy of `record` (the caller keeps it, to send again after a failure).
  // ResourceExhausted when the bounded queue is full: `done` is then not called (back off, or
  // answer 503).
  virtual absl::Status Send(const OutRecord& record, Done done) = 0;

  // Records queued and not yet reported.
  virtual int InFlight() const = 0;
};

}  // namespace uop::sta_bridge
