// The MQTT side of the bridge over libmosquitto 2.0: QoS 1 subscriptions in a persistent MQTT 5
// session, reconnect with backoff, and PUBACKs held back until Kafka has the batch.
//
// libmosquitto acknowledges a QoS 1 PUBLISH itself, before on_message runs (handle__publish
// queues the PUBACK first) and offers no manual acknowledgement in 2.0.11. It only *queues*
// packets when the client is marked threaded (mosquitto_threaded_set), and writes them in
// mosquitto_loop_write, which writes the whole queue. So this class drives the loop itself:
// every publish read joins the open batch and is produced at once (its PUBACK waits in
// libmosquitto's out queue); reading goes on while the batch's deliveries are outstanding, up
// to max_batch publishes or batch_linger_ms; as soon as Kafka has reported every record read
// so far, mosquitto_loop_write sends all their PUBACKs. Kafka's round trips thus overlap with
// reading and producing the next publishes. A crash before that write loses no message: the
// broker still holds them unacknowledged and sends them again.
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
#include "absl/time/time.h"
#include "connectors/bridge/ingestor.h"
#include "connectors/bridge/mqtt_batch.h"
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
  // Publishes read and not yet acknowledged, at most (also the MQTT 5 Receive Maximum): the
  // window that overlaps Kafka's round trips, and the bound on the bridge's MQTT memory.
  int max_batch = 10000;
  // A batch takes publishes for at most this long after its first; then reading stops until
  // Kafka has all of them and their PUBACKs are out. Under a steady stream Kafka never has
  // everything read so far, so this bounds the acknowledgement delay and lets PINGREQs out.
  int batch_linger_ms = 20;
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
  // Moves the publishes read by libmosquitto's callback into the open batch (produced there).
  void AddPending();
  // Waits until Kafka has the whole open batch, then queues its MQTT 5 responses. False when
  // stopping before Kafka confirmed it: its PUBACKs must then never be sent.
  bool FinishBatch();
  bool WriteAll();

  MqttOptions options_;
  const Ingestor* ingestor_;
  RecordSink* sink_;
  mosquitto* mosq_ = nullptr;
  int batch_size() const { return batch_ == nullptr ? 0 : static_cast<int>(batch_->size()); }

  std::vector<MqttMessage> pending_;
  std::unique_ptr<MqttBatch> batch_;  // the open batch: read, produced, not acknowledged
  absl::Time batch_opened_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> connected_{false};
};

}  // namespace uop::sta_bridge
