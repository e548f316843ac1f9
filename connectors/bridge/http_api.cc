// HTTP create semantics over the shared Ingestor; errors in FROST-Server's JSON shape.
#include "connectors/bridge/http_api.h"

#include <httplib.h>

#include <memory>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "connectors/bridge/mqtt_batch.h"
#include "connectors/sta/errors.h"
#include "connectors/sta/json_text.h"
#include "core/log.h"
#include "core/status_macros.h"

namespace uop::sta_bridge {
namespace {

// Delivery reports for one request; shared with the sink's callbacks, which may outlive a
// request that timed out.
struct Deliveries {
  absl::Mutex mu;
  int outstanding ABSL_GUARDED_BY(mu) = 0;
  int failed ABSL_GUARDED_BY(mu) = 0;

  RecordSink::Done Callback(const std::shared_ptr<Deliveries>& self) {
    {
      absl::MutexLock l(&mu);
      ++outstanding;
    }
    return [self](absl::Status s) {
      absl::MutexLock l(&self->mu);
      --self->outstanding;
      if (!s.ok()) ++self->failed;
    };
  }
  void Cancel() {  // a Send that was refused never reports
    absl::MutexLock l(&mu);
    --outstanding;
  }
  // True when everything was delivered within `timeout`.
  bool Wait(absl::Duration timeout) {
    absl::MutexLock l(&mu);
    auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return outstanding == 0; };
    return mu.AwaitWithTimeout(absl::Condition(&done), timeout) && failed == 0;
  }
};

void Reply503(httplib::Response& res, const HttpOptions& o, absl::string_view why) {
  res.status = 503;
  res.set_header("Retry-After", std::to_string(o.retry_after_s));
  res.set_content(
      absl::StrCat("{\"code\":503,\"type\":\"error\",\"message\":", sta::JsonString(why), "}"),
      "application/json");
}

void Reply400(httplib::Response& res, const absl::Status& s) {
  res.status = 400;
  res.set_content(ErrorJson(400, s), "application/json");
}

absl::Status RequestError(absl::string_view field, absl::string_view what) {
  return sta::FieldError(field, sta::Reason::kBadType, what);
}

}  // namespace

HttpApi::HttpApi(HttpOptions options, const Ingestor* ingestor, RecordSink* sink)
    : options_(std::move(options)),
      ingestor_(ingestor),
      sink_(sink),
      server_(std::make_unique<httplib::Server>()) {}

HttpApi::~HttpApi() { Stop(); }

void HttpApi::Stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

void HttpApi::Install() {
  httplib::Server& s = *server_;
  const int threads = options_.threads;
  s.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  s.set_keep_alive_max_count(1000000);
  // Small responses on keep-alive connections: without TCP_NODELAY, Nagle and delayed ACKs
  // add ~40 ms per request (measured: 149 single POSTs/s on 8 connections).
  s.set_tcp_nodelay(true);
  s.set_payload_max_length(options_.max_body_bytes);

  // One Observation: from the body's Datastream link or the path's Datastream.
  auto create_one = [this](const httplib::Request& req, httplib::Response& res,
                           const std::optional<sta::EntityId>& ds) {
    BridgeMetrics* m = ingestor_->metrics();
    if (sink_->InFlight() >= options_.max_in_flight) {
      m->Unavailable("http");
      return Reply503(res, options_, "Kafka is behind; retry later");
    }
    auto rec = ingestor_->Ingest(req.body, ds, "http");
    if (!rec.ok()) return Reply400(res, rec.status());
    const std::string self_link = rec->self_link;
    auto deliveries = std::make_shared<Deliveries>();
    absl::Status sent =
        sink_->Send(ingestor_->ToKafka(std::move(*rec)), deliveries->Callback(deliveries));
    if (!sent.ok()) deliveries->Cancel();
    if (!sent.ok() || !deliveries->Wait(absl::Milliseconds(options_.delivery_timeout_ms))) {
      m->Unavailable("http");
      return Reply503(
          res, options_,
          sent.ok() ? "Kafka did not confirm in time; retry later" : std::string(sent.message()));
    }
    m->Accepted("http");
    res.status = 201;
    res.set_header("Location", self_link);
  };

  s.Post("/v1.1/Observations", [create_one](const httplib::Request& req, httplib::Response& res) {
    create_one(req, res, std::nullopt);
  });
  s.Post(R"(/v1\.1/Datastreams\((.+)\)/Observations)",
         [this, create_one](const httplib::Request& req, httplib::Response& res) {
           auto ds = ParseObservationTopic(
               absl::StrCat("v1.1/Datastreams(", std::string(req.matches[1]), ")/Observations"));
           if (!ds.ok()) {
             ingestor_->metrics()->Rejected("http", sta::ErrorReason(ds.status()));
             res.status = 404;
             res.set_content(ErrorJson(404, ds.status()), "application/json");
             return;
           }
           create_one(req, res, *ds);
         });

  // The dataArray extension (STA 1.1, 14.2): per row a selfLink or "error".
  s.Post("/v1.1/CreateObservations", [this](const httplib::Request& req, httplib::Response& res) {
    BridgeMetrics* m = ingestor_->metrics();
    if (sink_->InFlight() >= options_.max_in_flight) {
      m->Unavailable("http");
      return Reply503(res, options_, "Kafka is behind; retry later");
    }
    const bool details = req.get_param_value("details") == "true";
    // Its own parser: the rows are parsed again by the Observation parser while `doc` lives.
    thread_local simdjson::dom::parser parser;
    simdjson::dom::element doc;
    if (auto err = parser.parse(req.body).get(doc); err != simdjson::SUCCESS) {
      m->Rejected("http", "malformed_json");
      return Reply400(res, sta::FieldError("", sta::Reason::kMalformedJson,
                                           absl::StrCat("body is not valid JSON: ",
                                                        simdjson::error_message(err))));
    }
    simdjson::dom::array groups;
    if (doc.get_array().get(groups) != simdjson::SUCCESS) {
      m->Rejected("http", "bad_type");
      return Reply400(res, RequestError("",
                                        "CreateObservations takes a JSON array of "
                                        "{Datastream, components, dataArray}"));
    }
    // Check the request's shape first: a 400 for it is all or nothing.
    struct Group {
      sta::EntityId datastream;
      std::vector<std::string> components;
      simdjson::dom::array rows;
    };
    std::vector<Group> parsed;
    size_t gi = 0;
    for (simdjson::dom::element g : groups) {
      const std::string at = absl::StrCat("[", gi++, "]");
      Group group;
      simdjson::dom::element ds_id, comps, rows;
      if (g["Datastream"]["@iot.id"].get(ds_id) != simdjson::SUCCESS) {
        m->Rejected("http", "missing_field");
        return Reply400(res, sta::FieldError(absl::StrCat(at, ".Datastream.@iot.id"),
                                             sta::Reason::kMissingField, "missing"));
      }
      auto id = sta::ReadEntityId(ds_id, absl::StrCat(at, ".Datastream.@iot.id"));
      if (!id.ok()) {
        m->Rejected("http", sta::ErrorReason(id.status()));
        return Reply400(res, id.status());
      }
      group.datastream = *id;
      simdjson::dom::array comp_array;
      if (g["components"].get_array().get(comp_array) != simdjson::SUCCESS) {
        m->Rejected("http", "missing_field");
        return Reply400(res,
                        sta::FieldError(absl::StrCat(at, ".components"), sta::Reason::kMissingField,
                                        "missing or not an array"));
      }
      for (simdjson::dom::element c : comp_array) {
        std::string_view name;
        if (c.get_string().get(name) != simdjson::SUCCESS) {
          m->Rejected("http", "bad_type");
          return Reply400(
              res, RequestError(absl::StrCat(at, ".components"), "component names are strings"));
        }
        static const std::set<std::string_view> kAllowed = {
            "phenomenonTime", "resultTime",          "result", "resultQuality", "validTime",
            "parameters",     "FeatureOfInterest/id"};
        if (!kAllowed.contains(name)) {
          m->Rejected("http", "unknown_field");
          return Reply400(
              res, sta::FieldError(absl::StrCat(at, ".components"), sta::Reason::kUnknownField,
                                   absl::StrCat("unknown component '", sta::Sv(name), "'")));
        }
        group.components.emplace_back(name);
      }
      if (g["dataArray"].get_array().get(group.rows) != simdjson::SUCCESS) {
        m->Rejected("http", "missing_field");
        return Reply400(res,
                        sta::FieldError(absl::StrCat(at, ".dataArray"), sta::Reason::kMissingField,
                                        "missing or not an array"));
      }
      parsed.push_back(std::move(group));
    }
    // Rows: each becomes an Observation document and goes through the same checks.
    std::vector<std::string> results;
    auto deliveries = std::make_shared<Deliveries>();
    int64_t accepted = 0;
    gi = 0;
    for (const Group& group : parsed) {
      size_t ri = 0;
      for (simdjson::dom::element row : group.rows) {
        const size_t row_index = ri++;
        simdjson::dom::array values;
        absl::StatusOr<sta::Record> rec;
        if (row.get_array().get(values) != simdjson::SUCCESS ||
            values.size() != group.components.size()) {
          rec = RequestError("", absl::StrCat("expected an array of ", group.components.size(),
                                              " values (one per component)"));
          m->Rejected("http", "bad_type");
        } else {
          std::string doc_text = "{";
          size_t ci = 0;
          for (simdjson::dom::element v : values) {
            const std::string& c = group.components[ci++];
            if (ci > 1) doc_text.push_back(',');
            if (c == "FeatureOfInterest/id") {
              absl::StrAppend(&doc_text, "\"FeatureOfInterest\":{\"@iot.id\":", simdjson::minify(v),
                              "}");
            } else {
              absl::StrAppend(&doc_text, "\"", c, "\":", simdjson::minify(v));
            }
          }
          doc_text.push_back('}');
          rec = ingestor_->Ingest(doc_text, group.datastream, "http");
        }
        if (!rec.ok()) {
          results.push_back(details ? absl::StrCat("error: [", gi, "].dataArray[", row_index,
                                                   "]: ", rec.status().message())
                                    : "error");
          continue;
        }
        results.push_back(rec->self_link);
        absl::Status sent;
        OutRecord out = ingestor_->ToKafka(std::move(*rec));
        // Queue full mid-request: wait for room up to the delivery timeout (bounded memory).
        absl::Time give_up = absl::InfiniteFuture();
        while (true) {
          sent = sink_->Send(out, deliveries->Callback(deliveries));
          if (sent.ok()) break;
          deliveries->Cancel();
          if (give_up == absl::InfiniteFuture()) {
            give_up = absl::Now() + absl::Milliseconds(options_.delivery_timeout_ms);
          }
          if (absl::Now() > give_up) break;
          absl::SleepFor(absl::Milliseconds(5));  // backoff for the producer queue, not a sync
        }
        if (!sent.ok()) {
          m->Unavailable("http");
          return Reply503(res, options_, sent.message());
        }
        ++accepted;
      }
      ++gi;
    }
    if (!deliveries->Wait(absl::Milliseconds(options_.delivery_timeout_ms))) {
      m->Unavailable("http");
      return Reply503(res, options_, "Kafka did not confirm in time; retry later");
    }
    m->Accepted("http", accepted);
    std::string body = "[";
    for (size_t i = 0; i < results.size(); ++i) {
      if (i) body.push_back(',');
      sta::AppendJsonString(&body, results[i]);
    }
    body.push_back(']');
    res.status = 201;
    res.set_content(body, "application/json");
  });

  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(ingestor_->metrics()->Render(sink_->InFlight()), "text/plain; version=0.0.4");
  });
  s.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
}

absl::StatusOr<int> HttpApi::Start() {
  Install();
  int port = options_.port;
  if (port == 0) {
    port = server_->bind_to_any_port(options_.host);
  } else if (!server_->bind_to_port(options_.host, port)) {
    port = -1;
  }
  if (port < 0) {
    return absl::UnavailableError(
        absl::StrCat("http: cannot listen on ", options_.host, ":", options_.port));
  }
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  return port;
}

}  // namespace uop::sta_bridge
