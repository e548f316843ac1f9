// Validation and enrichment shared by the MQTT and HTTP paths.
#include "connectors/bridge/ingestor.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "connectors/sta/errors.h"
#include "connectors/sta/json_text.h"

namespace uop::sta_bridge {

sta::ObservationParser& Ingestor::ThreadParser() {
  thread_local sta::ObservationParser parser;
  return parser;
}

absl::StatusOr<sta::Record> Ingestor::Ingest(absl::string_view body,
                                             const std::optional<sta::EntityId>& path_datastream,
                                             absl::string_view via) const {
  auto obs = ThreadParser().Parse(body, path_datastream);
  if (!obs.ok()) {
    metrics_->Rejected(via, sta::ErrorReason(obs.status()));
    return obs.status();
  }
  auto rec = sta::BuildRecord(*obs, *catalogue_, {options_.base_url, via, absl::Now()});
  if (!rec.ok()) metrics_->Rejected(via, sta::ErrorReason(rec.status()));
  return rec;
}

absl::StatusOr<sta::Record> Ingestor::IngestElement(
    simdjson::dom::element value, const std::optional<sta::EntityId>& path_datastream,
    absl::string_view via, absl::string_view prefix) const {
  auto obs = ThreadParser().FromElement(value, path_datastream, prefix);
  if (!obs.ok()) {
    metrics_->Rejected(via, sta::ErrorReason(obs.status()));
    return obs.status();
  }
  auto rec = sta::BuildRecord(*obs, *catalogue_, {options_.base_url, via, absl::Now()}, prefix);
  if (!rec.ok()) metrics_->Rejected(via, sta::ErrorReason(rec.status()));
  return rec;
}

OutRecord Ingestor::ToKafka(sta::Record record) const {
  OutRecord out;
  out.topic = options_.topic;
  out.key = std::move(record.key);
  out.value = std::move(record.value);
  out.headers = {{"content-type", "application/json"},
                 {"sensorthings.entity", "Observation"},
                 {"sensorthings.selfLink", std::move(record.self_link)}};
  return out;
}

OutRecord Ingestor::DeadLetter(absl::string_view source, absl::string_view payload,
                               const absl::Status& why) const {
  OutRecord out;
  out.topic = options_.dead_letter_topic;
  out.key = std::string(source);
  out.value = std::string(payload);
  out.headers = {{"uop.deadletter.reason", sta::ErrorReason(why)},
                 {"uop.deadletter.field", sta::ErrorField(why)},
                 {"uop.deadletter.message", std::string(why.message())},
                 {"uop.deadletter.source", std::string(source)}};
  return out;
}

std::string ErrorJson(int code, const absl::Status& status) {
  std::string out = absl::StrCat("{\"code\":", code, ",\"type\":\"error\",\"message\":");
  sta::AppendJsonString(&out, status.message());
  const std::string field = sta::ErrorField(status);
  if (!field.empty()) {
    out += ",\"field\":";
    sta::AppendJsonString(&out, field);
  }
  out += ",\"reason\":";
  sta::AppendJsonString(&out, sta::ErrorReason(status));
  out += "}";
  return out;
}

}  // namespace uop::sta_bridge
