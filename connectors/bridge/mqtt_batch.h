// The MQTT path's logic without sockets: a batch of received publishes is validated, produced
// to Kafka (or to the dead-letter topic), and is complete only when Kafka has reported every
// record; then the caller releases the batch's PUBACKs and publishes MQTT 5 responses.
// Thread-compatible: one MQTT thread drives it; Kafka's delivery thread only reports through
// the mutex-guarded completion state.
#pragma once

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "connectors/bridge/ingestor.h"
#include "connectors/bridge/record_sink.h"

namespace uop::sta_bridge {

struct MqttMessage {
  std::string topic;
  std::string payload;
  std::string response_topic;    // MQTT 5 Response Topic, may be empty
  std::string correlation_data;  // MQTT 5 Correlation Data, echoed in the response
};

struct MqttResponse {
  std::string topic;
  std::string payload;
  std::string correlation_data;
};

// STA MQTT topics: v1.1/Datastreams(ID)/Observations names a Datastream; v1.1/Observations
// does not (the payload must link one). v1.0 is accepted as well.
absl::StatusOr<std::optional<sta::EntityId>> ParseObservationTopic(absl::string_view topic);

class MqttBatch {
 public:
  MqttBatch(const Ingestor* ingestor, RecordSink* sink)
      : ingestor_(ingestor), sink_(sink), state_(std::make_shared<State>()) {}

  // Validates and sends `message`'s record. Never drops it: an invalid message goes to the
  // dead-letter topic with its reason. Waits (bounded by the sink) while the sink is full.
  void Add(MqttMessage message);

  // Waits until Kafka has reported every record of the batch, re-sending records whose
  // delivery failed (Kafka down longer than message.timeout.ms). True when complete; false if
  // `deadline` passed first (the caller keeps waiting: PUBACKs must not be sent before).
  bool WaitComplete(absl::Time deadline);

  // The MQTT 5 responses of a complete batch, and a fresh empty batch state.
  std::vector<MqttResponse> TakeResponses();
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    OutRecord record;
    std::string response_topic;
    std::string correlation_data;
    std::string response;  // selfLink JSON or error JSON
    bool rejected = false;
  };
  // Completion state, shared with the sink's callbacks: a batch abandoned at shutdown (Kafka
  // down) may be destroyed before its records are reported.
  struct State {
    absl::Mutex mu;
    int outstanding ABSL_GUARDED_BY(mu) = 0;
    std::vector<size_t> failed ABSL_GUARDED_BY(mu);
  };
  void SendEntry(size_t index);

  const Ingestor* ingestor_;
  RecordSink* sink_;
  std::deque<Entry> entries_;
  std::shared_ptr<State> state_;
};

}  // namespace uop::sta_bridge
