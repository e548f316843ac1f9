// Publisher implementations over libmosquitto and cpp-httplib.
#include "connectors/noise_sim/publisher.h"

#include <httplib.h>
#include <mosquitto.h>

#include <cstdio>
#include <map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "connectors/sta/json_text.h"

namespace uop::noise_sim {
namespace {

class MqttPublisher final : public Publisher {
 public:
  explicit MqttPublisher(MqttPublisherOptions o) : o_(std::move(o)) {}
  ~MqttPublisher() override {
    if (mosq_ != nullptr) {
      mosquitto_disconnect(mosq_);
      mosquitto_loop_stop(mosq_, false);
      mosquitto_destroy(mosq_);
    }
  }

  absl::Status Start() {
    mosquitto_lib_init();
    // A persistent session: QoS 1 messages not yet acknowledged are sent again after a
    // reconnect (libmosquitto keeps them in its out queue).
    mosq_ = mosquitto_new(o_.client_id.c_str(), false, this);
    if (mosq_ == nullptr) return absl::InternalError("mosquitto_new failed");
    mosquitto_int_option(mosq_, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    mosquitto_max_inflight_messages_set(mosq_, static_cast<unsigned>(o_.max_unacked));
    mosquitto_reconnect_delay_set(mosq_, 1, 5, true);
    mosquitto_publish_callback_set(
        mosq_, +[](mosquitto*, void* obj, int) {
          auto* self = static_cast<MqttPublisher*>(obj);
          absl::MutexLock l(&self->mu_);
          ++self->acked_;
        });
    int rc = mosquitto_connect(mosq_, o_.host.c_str(), o_.port, 30);
    if (rc != MOSQ_ERR_SUCCESS) {
      return absl::UnavailableError(
          absl::StrCat("mqtt connect ", o_.host, ":", o_.port, ": ", mosquitto_strerror(rc)));
    }
    if ((rc = mosquitto_loop_start(mosq_)) != MOSQ_ERR_SUCCESS) {
      return absl::InternalError(absl::StrCat("mqtt loop: ", mosquitto_strerror(rc)));
    }
    return absl::OkStatus();
  }

  absl::Status Publish(const Observation& obs) override {
    {
      absl::MutexLock l(&mu_);
      auto room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return sent_ - acked_ < o_.max_unacked;
      };
      mu_.Await(absl::Condition(&room));
      ++sent_;
    }
    const std::string topic = absl::StrCat(
        "v1.1/Datastreams(", sta::EntityId{obs.datastream_id, false}.PathKey(), ")/Observations");
    int rc = mosquitto_publish(mosq_, nullptr, topic.c_str(), static_cast<int>(obs.payload.size()),
                               obs.payload.data(), o_.qos, false);
    // NO_CONN while reconnecting: libmosquitto still queues QoS > 0 messages.
    if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_NO_CONN) {
      return absl::UnavailableError(absl::StrCat("mqtt publish: ", mosquitto_strerror(rc)));
    }
    if (o_.qos == 0) {
      absl::MutexLock l(&mu_);
      ++acked_;
    }
    return absl::OkStatus();
  }

  absl::Status Finish() override {
    absl::MutexLock l(&mu_);
    auto all = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return acked_ >= sent_; };
    if (!mu_.AwaitWithTimeout(absl::Condition(&all), absl::Minutes(5))) {
      return absl::DeadlineExceededError(
          absl::StrCat(sent_ - acked_, " MQTT messages not acknowledged within 5 minutes"));
    }
    return absl::OkStatus();
  }

 private:
  MqttPublisherOptions o_;
  mosquitto* mosq_ = nullptr;
  absl::Mutex mu_;
  int64_t sent_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t acked_ ABSL_GUARDED_BY(mu_) = 0;
};

class HttpPublisher final : public Publisher {
 public:
  HttpPublisher(std::string origin, std::string path, int bulk)
      : client_(origin), path_(std::move(path)), bulk_(bulk) {
    client_.set_keep_alive(true);
    client_.set_tcp_nodelay(true);
    client_.set_read_timeout(30, 0);
  }

  absl::Status Publish(const Observation& obs) override {
    if (bulk_ <= 1) {
      return Post(absl::StrCat(path_, "/Datastreams(",
                               sta::EntityId{obs.datastream_id, false}.PathKey(), ")/Observations"),
                  obs.payload, 201);
    }
    pending_[obs.datastream_id].push_back(obs);
    if (++pending_count_ >= bulk_) return Flush();
    return absl::OkStatus();
  }

  absl::Status Finish() override { return Flush(); }

 private:
  absl::Status Flush() {
    if (pending_count_ == 0) return absl::OkStatus();
    std::string body = "[";
    bool first = true;
    for (const auto& [ds, rows] : pending_) {
      if (!first) body += ",";
      first = false;
      absl::StrAppend(&body, "{\"Datastream\":{\"@iot.id\":", sta::JsonString(ds),
                      "},\"components\":[\"phenomenonTime\",\"result\"],\"dataArray@iot.count\":",
                      rows.size(), ",\"dataArray\":[");
      for (size_t i = 0; i < rows.size(); ++i) {
        absl::StrAppend(&body, i ? "," : "", "[", sta::JsonString(rows[i].phenomenon_time), ",",
                        rows[i].result, "]");
      }
      body += "]}";
    }
    body += "]";
    absl::Status s = Post(absl::StrCat(path_, "/CreateObservations"), body, 201);
    if (s.ok() && absl::StrContains(last_body_, "\"error")) {
      s = absl::DataLossError(absl::StrCat("CreateObservations refused rows: ", last_body_));
    }
    pending_.clear();
    pending_count_ = 0;
    return s;
  }

  absl::Status Post(const std::string& path, const std::string& body, int expect) {
    for (int attempt = 0;; ++attempt) {
      auto res = client_.Post(path.c_str(), body, "application/json");
      if (res && res->status == expect) {
        last_body_ = res->body;
        return absl::OkStatus();
      }
      if (res && res->status != 503) {
        return absl::InvalidArgumentError(
            absl::StrCat("POST ", path, ": HTTP ", res->status, ": ", res->body));
      }
      if (attempt > 600) return absl::UnavailableError(absl::StrCat("POST ", path, ": gave up"));
      int wait_s = 1;
      if (res && !absl::SimpleAtoi(res->get_header_value("Retry-After"), &wait_s)) wait_s = 1;
      absl::SleepFor(absl::Seconds(std::max(wait_s, 1)));  // the server's Retry-After
    }
  }

  httplib::Client client_;
  std::string path_;
  int bulk_;
  std::map<std::string, std::vector<Observation>> pending_;
  int pending_count_ = 0;
  std::string last_body_;
};

class StdoutPublisher final : public Publisher {
 public:
  absl::Status Publish(const Observation& obs) override {
    std::printf("%s %s\n", obs.datastream_id.c_str(), obs.payload.c_str());
    return absl::OkStatus();
  }
  absl::Status Finish() override {
    std::fflush(stdout);
    return absl::OkStatus();
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<Publisher>> NewMqttPublisher(const MqttPublisherOptions& o) {
  auto p = std::make_unique<MqttPublisher>(o);
  if (absl::Status s = p->Start(); !s.ok()) return s;
  return std::unique_ptr<Publisher>(std::move(p));
}

absl::StatusOr<std::unique_ptr<Publisher>> NewHttpPublisher(const std::string& base_url, int bulk) {
  if (!absl::StartsWith(base_url, "http://")) {
    return absl::InvalidArgumentError(absl::StrCat("--http ", base_url, ": expected http://..."));
  }
  const size_t slash = base_url.find('/', 7);
  std::string origin = slash == std::string::npos ? base_url : base_url.substr(0, slash);
  std::string path = slash == std::string::npos ? "" : base_url.substr(slash);
  while (!path.empty() && path.back() == '/') path.pop_back();
  return std::unique_ptr<Publisher>(new HttpPublisher(origin, path, bulk));
}

std::unique_ptr<Publisher> NewStdoutPublisher() { return std::make_unique<StdoutPublisher>(); }

}  // namespace uop::noise_sim
