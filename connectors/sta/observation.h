// The SensorThings API 1.1 Observation as a client creates it (HTTP POST body, MQTT publish
// payload, a CreateObservations row), parsed and checked with errors that name the field.
#pragma once

#include <optional>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "connectors/sta/iso_time.h"
#include "connectors/sta/json_text.h"
#include "simdjson.h"

namespace uop::sta {

enum class JsonKind { kNumber, kInteger, kString, kBoolean, kObject, kArray };

struct Observation {
  std::optional<EntityId> id;          // client-chosen @iot.id, if any
  std::optional<EntityId> datastream;  // from the body or the resource path / topic
  TimeValue phenomenon_time;
  std::optional<TimeValue> result_time;  // absent or null
  std::optional<TimeValue> valid_time;
  std::string result;  // minified JSON of any type but null
  JsonKind result_kind = JsonKind::kNumber;
  std::string result_quality;  // minified JSON, empty when absent
  std::string parameters;      // minified JSON object, empty when absent
  std::string unit_symbol;     // parameters.unitOfMeasurement.symbol / .definition, if sent
  std::string unit_definition;
  std::optional<EntityId> feature_of_interest_id;  // {"@iot.id": ...} reference
  std::string feature_of_interest_name;            // inline FeatureOfInterest
  std::string feature_of_interest_encoding;
  std::string feature_of_interest_feature;  // minified GeoJSON of an inline FeatureOfInterest
};

// Parses one Observation. Not thread-safe: keep one per thread (it owns simdjson's buffers).
class ObservationParser {
 public:
  static constexpr size_t kMaxBytes = 1 << 20;

  // `path_datastream` is the Datastream named by the URL or MQTT topic
  // (Datastreams(ID)/Observations); the body may repeat it but not contradict it.
  absl::StatusOr<Observation> Parse(absl::string_view json,
                                    const std::optional<EntityId>& path_datastream);

  // Same on an already parsed element (CreateObservations rows); `prefix` goes before field
  // names in errors, e.g. "dataArray[3].".
  absl::StatusOr<Observation> FromElement(simdjson::dom::element value,
                                          const std::optional<EntityId>& path_datastream,
                                          absl::string_view prefix);

  simdjson::dom::parser& json_parser() { return parser_; }

 private:
  simdjson::dom::parser parser_;
};

// Reads an @iot.id value: a number (integer) or a non-empty string.
absl::StatusOr<EntityId> ReadEntityId(simdjson::dom::element value, absl::string_view field);

absl::string_view JsonKindName(JsonKind kind);

}  // namespace uop::sta
