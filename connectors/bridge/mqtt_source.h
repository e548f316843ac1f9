// The MQTT side of the bridge over libmosquitto 2.0: QoS 1 subscriptions in a persistent MQTT 5
// session, reconnect with backoff, and PUBACKs held back until Kafka has the batch.
//
// libmosquitto acknowledges a QoS 1 PUBLISH itself, before on_message runs (handle__publish
// queues the PUBACK first) and offers no manual acknowledgement in 2.0.11. It only *queues*
// packets when the client is marked threaded (mosquitto_threaded_set), and writes them in
// mosquitto_loop_write. So this class drives the loop itself: read a batch of publishes
// (their PUBACKs pile up in libmosquitto's out queue), produce them, wait for every delivery
// report, and only then call mosquitto_loop_write. A crash before that write loses no
// message: the broker still holds them unacknowledged in the session and sends them again.
// The cost: such a replay duplicates records already in Kafka (at-least-once; records carry
// a stable @iot.id so consumers can drop copies), and keepalive PINGREQs also wait behind a
// batch, so a Kafka outage longer than 1.5 x keepalive makes the MQTT broker close the
// connection; the bridge then reconnects and the broker redelivers (see docs/connectors.md).
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "connectors/bridge/ingestor.h"
#include "connectors/bridge/record_sink.h"

struct mosquitto;

namespace uop::sta_bridge {

struct MqttOptions {
  std::string host = "127.0.0.1";
  int port = 1883;
  std::string client_id = "uop-sta-bridge";
  // STA topics: Datastreams(ID) is one topic level, so "+" matches it.
  std::vector<std::string> topics = {"v1.1/+/Observations", "v1.1/Observations"};
  int keepalive_s = 30;
  int64_t session_expiry_s = 7 * 24 * 3600;  // the broker keeps our session (and QoS 1 queue)
  int max_batch = 2000;                      // publishes per batch (also MQTT 5 Receive Maximum)
  // After a batch's first publish, keep reading this long for more: every batch costs one Kafka
  // round trip before its acknowledgements, so bigger batches are the throughput.
  int batch_linger_ms = 2;
  int reconnect_min_ms = 100;
  int reconnect_max_ms = 5000;
};

class MqttSource {
 public:
  MqttSource(MqttOptions options, const Ingestor* ingestor, RecordSink* sink);
  ~MqttSource();

  // Runs until Stop(); returns an error only for bad configuration.
  absl::Status Run();
  void Stop() { stop_.store(true); }
  bool connected() const { return connected_.load(); }

 private:
  static void OnConnect(mosquitto* m, void* self, int rc, int flags, const void* props);
  // False when stopping before Kafka confirmed the batch: its PUBACKs must then never be sent.
  bool ProcessBatch();
  bool WriteAll();

  MqttOptions options_;
  const Ingestor* ingestor_;
  RecordSink* sink_;
  mosquitto* mosq_ = nullptr;
  std::vector<struct MqttMessage> pending_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> connected_{false};
};

}  // namespace uop::sta_bridge
