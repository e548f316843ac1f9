// libmosquitto adapter: owns the socket loop so that acknowledgements follow Kafka deliveries.
#include "connectors/bridge/mqtt_source.h"

#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <poll.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "connectors/bridge/mqtt_batch.h"
#include "core/log.h"

namespace uop::sta_bridge {
namespace {

std::string PropertyString(const mosquitto_property* props, int id) {
  char* value = nullptr;
  if (mosquitto_property_read_string(props, id, &value, false) == nullptr || value == nullptr) {
    return "";
  }
  std::string out(value);
  free(value);
  return out;
}

std::string PropertyBinary(const mosquitto_property* props, int id) {
  void* value = nullptr;
  uint16_t len = 0;
  if (mosquitto_property_read_binary(props, id, &value, &len, false) == nullptr ||
      value == nullptr) {
    return "";
  }
  std::string out(static_cast<char*>(value), len);
  free(value);
  return out;
}

}  // namespace

MqttSource::MqttSource(MqttOptions options, const Ingestor* ingestor, RecordSink* sink)
    : options_(std::move(options)), ingestor_(ingestor), sink_(sink) {}

MqttSource::~MqttSource() {
  if (mosq_ != nullptr) mosquitto_destroy(mosq_);
}

void MqttSource::OnConnect(mosquitto* m, void* obj, int rc, int flags, const void*) {
  auto* self = static_cast<MqttSource*>(obj);
  if (rc != 0) {
    log::Warn("mqtt_connect_refused", {{"reason", mosquitto_reason_string(rc)}});
    return;
  }
  self->connected_.store(true);
  self->ingestor_->metrics()->Reconnected();
  // flags & 1: session present. Subscribing again is harmless and covers a lost session.
  log::Info("mqtt_connected", {{"session_present", (flags & 1) ? "true" : "false"}});
  for (const std::string& t : self->options_.topics) {
    int r = mosquitto_subscribe_v5(m, nullptr, t.c_str(), 1, 0, nullptr);
    if (r != MOSQ_ERR_SUCCESS) {
      log::Error("mqtt_subscribe_failed", {{"topic", t}, {"error", mosquitto_strerror(r)}});
    }
  }
}

bool MqttSource::WriteAll() {
  // The socket is non-blocking: write until libmosquitto's queue is empty.
  const absl::Time deadline = absl::Now() + absl::Seconds(options_.keepalive_s);
  while (mosquitto_want_write(mosq_)) {
    int rc = mosquitto_loop_write(mosq_, 1);
    if (rc != MOSQ_ERR_SUCCESS) return false;
    if (!mosquitto_want_write(mosq_)) break;
    if (absl::Now() > deadline) return false;
    pollfd p{mosquitto_socket(mosq_), POLLOUT, 0};
    ::poll(&p, 1, 100);
  }
  return true;
}

void MqttSource::AddPending() {
  if (pending_.empty()) return;
  if (batch_ == nullptr) {
    ingestor_->metrics()->MqttBatch();
    batch_ = std::make_unique<MqttBatch>(ingestor_, sink_);
    batch_opened_ = absl::Now();
  }
  for (MqttMessage& m : pending_) batch_->Add(std::move(m));
  pending_.clear();
}

bool MqttSource::FinishBatch() {
  // Nothing is acknowledged before Kafka has every record of the batch; while Kafka is down we
  // wait here and read nothing more (TCP backpressure to the MQTT broker; bounded memory).
  bool waited = false;
  while (!batch_->WaitComplete(absl::Now() + absl::Seconds(1))) {
    if (!waited) log::Warn("mqtt_waiting_for_kafka", {{"records", std::to_string(batch_->size())}});
    waited = true;
    ingestor_->metrics()->Unavailable("mqtt");
    if (stop_.load()) {
      // Shutting down with records unreported: do not acknowledge; the broker redelivers.
      if (!batch_->WaitComplete(absl::Now() + absl::Seconds(5))) return false;
      break;
    }
  }
  for (MqttResponse& r : batch_->TakeResponses()) {
    mosquitto_property* props = nullptr;
    if (!r.correlation_data.empty()) {
      mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, r.correlation_data.data(),
                                    static_cast<uint16_t>(r.correlation_data.size()));
    }
    mosquitto_publish_v5(mosq_, nullptr, r.topic.c_str(), static_cast<int>(r.payload.size()),
                         r.payload.data(), 1, false, props);
    mosquitto_property_free_all(&props);
  }
  batch_.reset();
  return true;
}

absl::Status MqttSource::Run() {
  mosquitto_lib_init();
  mosq_ = mosquitto_new(options_.client_id.c_str(), /*clean_session=*/false, this);
  if (mosq_ == nullptr) return absl::InternalError("mosquitto_new failed");
  mosquitto_int_option(mosq_, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
  // Queue, never write from inside libmosquitto: we decide when PUBACKs go out.
  mosquitto_threaded_set(mosq_, true);
  mosquitto_connect_v5_callback_set(
      mosq_, +[](mosquitto* m, void* obj, int rc, int flags, const mosquitto_property* p) {
        OnConnect(m, obj, rc, flags, p);
      });
  mosquitto_disconnect_v5_callback_set(
      mosq_, +[](mosquitto*, void* obj, int rc, const mosquitto_property*) {
        static_cast<MqttSource*>(obj)->connected_.store(false);
        log::Warn("mqtt_disconnected", {{"reason", mosquitto_reason_string(rc)}});
      });
  mosquitto_message_v5_callback_set(
      mosq_,
      +[](mosquitto*, void* obj, const mosquitto_message* msg, const mosquitto_property* props) {
        auto* self = static_cast<MqttSource*>(obj);
        MqttMessage m;
        m.topic = msg->topic;
        m.payload.assign(static_cast<const char*>(msg->payload),
                         static_cast<size_t>(msg->payloadlen));
        m.response_topic = PropertyString(props, MQTT_PROP_RESPONSE_TOPIC);
        m.correlation_data = PropertyBinary(props, MQTT_PROP_CORRELATION_DATA);
        self->pending_.push_back(std::move(m));
      });

  int backoff_ms = options_.reconnect_min_ms;
  bool socket_open = false;
  while (!stop_.load()) {
    if (!socket_open) {
      mosquitto_property* props = nullptr;
      mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL,
                                   static_cast<uint32_t>(options_.session_expiry_s));
      mosquitto_property_add_int16(&props, MQTT_PROP_RECEIVE_MAXIMUM,
                                   static_cast<uint16_t>(std::min(options_.max_batch, 65535)));
      int rc = mosquitto_connect_bind_v5(mosq_, options_.host.c_str(), options_.port,
                                         options_.keepalive_s, nullptr, props);
      mosquitto_property_free_all(&props);
      if (rc != MOSQ_ERR_SUCCESS) {
        log::Warn("mqtt_connect_failed", {{"host", options_.host},
                                          {"port", std::to_string(options_.port)},
                                          {"error", mosquitto_strerror(rc)}});
        for (int waited = 0; waited < backoff_ms && !stop_.load(); waited += 50) {
          ::poll(nullptr, 0, 50);
        }
        backoff_ms = std::min(backoff_ms * 2, options_.reconnect_max_ms);
        continue;
      }
      socket_open = true;
      if (!WriteAll()) {  // CONNECT
        mosquitto_disconnect(mosq_);
        socket_open = false;
        continue;
      }
    }
    // While a batch is open, poll briefly: its completion is checked between reads.
    pollfd p{mosquitto_socket(mosq_), POLLIN, 0};
    int ready = ::poll(&p, 1, batch_ == nullptr ? 100 : 1);
    bool lost = false;
    if (ready > 0) {
      // Read what is there, back to back (a publish is likely followed by another), up to the
      // window; each publish is produced as soon as it is read.
      while (batch_size() + static_cast<int>(pending_.size()) < options_.max_batch) {
        const size_t before = pending_.size();
        if (mosquitto_loop_read(mosq_, 1) != MOSQ_ERR_SUCCESS) {
          lost = true;
          break;
        }
        if (pending_.size() > before) continue;
        p.revents = 0;
        if (::poll(&p, 1, 0) <= 0 || !(p.revents & POLLIN)) break;
      }
      AddPending();
    }
    if (batch_ != nullptr) {
      // Acknowledge when Kafka has everything read so far, or wait for that when the window is
      // full (the broker sends nothing more then anyway), the batch is old enough, or the
      // connection is gone.
      const bool must_finish =
          lost || stop_.load() || batch_size() >= options_.max_batch ||
          absl::Now() >= batch_opened_ + absl::Milliseconds(options_.batch_linger_ms);
      if (must_finish || batch_->WaitComplete(absl::Now())) {
        if (!FinishBatch()) {
          // libmosquitto holds this batch's PUBACKs in its queue: close without writing them.
          log::Warn("mqtt_stopped_unacknowledged", {});
          return absl::OkStatus();
        }
      } else {
        continue;  // read more while Kafka works; PUBACKs, PINGREQs wait for the batch
      }
    }
    if (!lost && !WriteAll()) lost = true;
    if (!lost && mosquitto_loop_misc(mosq_) != MOSQ_ERR_SUCCESS) lost = true;
    if (lost) {
      connected_.store(false);
      log::Warn("mqtt_connection_lost", {});
      mosquitto_disconnect(mosq_);
      socket_open = false;
      continue;
    }
    if (connected_.load()) backoff_ms = options_.reconnect_min_ms;
  }
  if (socket_open) {
    mosquitto_disconnect(mosq_);
    WriteAll();
  }
  return absl::OkStatus();
}

}  // namespace uop::sta_bridge
