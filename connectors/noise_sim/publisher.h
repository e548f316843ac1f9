// Where the simulator sends Observations: an MQTT broker (QoS 1) or an STA HTTP endpoint
// (single POSTs or CreateObservations), or standard output.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace uop::noise_sim {

struct Observation {
  std::string datastream_id;
  std::string payload;  // the Observation JSON (with phenomenonTime, result, parameters)
  std::string phenomenon_time;
  double result = 0;
};

// Not thread-safe.
class Publisher {
 public:
  virtual ~Publisher() = default;
  virtual absl::Status Publish(const Observation& obs) = 0;
  // Returns when everything published has been acknowledged (MQTT PUBACK, HTTP 201).
  virtual absl::Status Finish() = 0;
};

struct MqttPublisherOptions {
  std::string host = "127.0.0.1";
  int port = 1883;
  std::string client_id = "uop-noise-sim";
  int qos = 1;
  int max_unacked = 1000;  // bounded memory
};
absl::StatusOr<std::unique_ptr<Publisher>> NewMqttPublisher(const MqttPublisherOptions& o);

// `base_url` like http://127.0.0.1:8080/v1.1; `bulk` > 1 sends CreateObservations requests
// of up to `bulk` rows. 503 answers are retried after Retry-After.
absl::StatusOr<std::unique_ptr<Publisher>> NewHttpPublisher(const std::string& base_url, int bulk);

std::unique_ptr<Publisher> NewStdoutPublisher();

}  // namespace uop::noise_sim
