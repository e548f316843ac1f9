// Observation parsing on simdjson's DOM: one pass over the members, strict about types and
// unknown members, lenient about the read-only annotations servers add (@iot.selfLink,
// navigation links), so that a FROST-Server response can be posted back as is.
#include "connectors/sta/observation.h"

#include <array>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "connectors/sta/errors.h"
#include "connectors/sta/geojson.h"
#include "core/status_macros.h"

namespace uop::sta {
namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;

absl::string_view TypeName(element e) {
  switch (e.type()) {
    case element_type::ARRAY:
      return "an array";
    case element_type::OBJECT:
      return "an object";
    case element_type::INT64:
    case element_type::UINT64:
    case element_type::DOUBLE:
      return "a number";
    case element_type::STRING:
      return "a string";
    case element_type::BOOL:
      return "a boolean";
    case element_type::NULL_VALUE:
      return "null";
  }
  return "unknown";
}

absl::Status WrongType(const std::string& field, absl::string_view expected, element got) {
  return FieldError(field, Reason::kBadType,
                    absl::StrCat("expected ", expected, ", got ", TypeName(got)));
}

absl::StatusOr<TimeValue> ReadTime(element e, const std::string& field, bool allow_interval,
                                   bool require_interval) {
  std::string_view text;
  if (e.get_string().get(text) != simdjson::SUCCESS) {
    return WrongType(field, "an ISO 8601 string", e);
  }
  auto t = ParseIsoTime(Sv(text), allow_interval);
  if (!t.ok()) return FieldError(field, Reason::kBadTime, t.status().message());
  if (require_interval && !t->interval) {
    return FieldError(
        field, Reason::kBadTime,
        absl::StrCat("'", Sv(text), "' is an instant; an interval start/end is required"));
  }
  return *t;
}

// {"@iot.id": X, ...navigation annotations}: a reference to an existing entity.
absl::StatusOr<EntityId> ReadReference(element e, const std::string& field) {
  simdjson::dom::object obj;
  if (e.get_object().get(obj) != simdjson::SUCCESS) {
    return WrongType(field, "an object with @iot.id", e);
  }
  element id;
  if (obj["@iot.id"].get(id) != simdjson::SUCCESS) {
    return FieldError(absl::StrCat(field, ".@iot.id"), Reason::kMissingField,
                      "missing (the bridge links to existing entities only)");
  }
  return ReadEntityId(id, absl::StrCat(field, ".@iot.id"));
}

bool IsAnnotation(absl::string_view key) {
  return key == "@iot.selfLink" || key == "@iot.etag" ||
         absl::EndsWith(key, "@iot.navigationLink") || absl::EndsWith(key, "@iot.associationLink");
}

absl::Status ReadFeatureOfInterest(element e, const std::string& field, Observation* obs) {
  simdjson::dom::object obj;
  if (e.get_object().get(obj) != simdjson::SUCCESS) return WrongType(field, "an object", e);
  element id;
  if (obj["@iot.id"].get(id) == simdjson::SUCCESS) {
    ASSIGN_OR_RETURN(obs->feature_of_interest_id,
                     ReadEntityId(id, absl::StrCat(field, ".@iot.id")));
    return absl::OkStatus();
  }
  // An inline FeatureOfInterest (deep insert): name, encodingType, feature.
  bool have_feature = false;
  for (auto [key_sv, value] : obj) {
    const absl::string_view key = Sv(key_sv);
    const std::string f = absl::StrCat(field, ".", key);
    if (key == "name" || key == "description" || key == "encodingType") {
      std::string_view s;
      if (value.get_string().get(s) != simdjson::SUCCESS) return WrongType(f, "a string", value);
      if (key == "name") obs->feature_of_interest_name = std::string(s);
      if (key == "encodingType") {
        if (s != "application/geo+json" && s != "application/vnd.geo+json") {
          return FieldError(
              f, Reason::kBadType,
              absl::StrCat("'", Sv(s), "' is not supported (application/geo+json is)"));
        }
        obs->feature_of_interest_encoding = std::string(s);
      }
    } else if (key == "feature") {
      RETURN_IF_ERROR(CheckGeoJson(value, f));
      obs->feature_of_interest_feature = simdjson::minify(value);
      have_feature = true;
    } else if (key == "properties") {
      if (!value.is_object()) return WrongType(f, "an object", value);
    } else if (!IsAnnotation(key)) {
      return FieldError(f, Reason::kUnknownField, "unknown field of a FeatureOfInterest");
    }
  }
  if (!have_feature) {
    return FieldError(absl::StrCat(field, ".feature"), Reason::kMissingField,
                      "missing (an inline FeatureOfInterest needs its GeoJSON feature)");
  }
  return absl::OkStatus();
}

}  // namespace

absl::string_view JsonKindName(JsonKind kind) {
  switch (kind) {
    case JsonKind::kNumber:
      return "number";
    case JsonKind::kInteger:
      return "integer";
    case JsonKind::kString:
      return "string";
    case JsonKind::kBoolean:
      return "boolean";
    case JsonKind::kObject:
      return "object";
    case JsonKind::kArray:
      return "array";
  }
  return "unknown";
}

absl::StatusOr<EntityId> ReadEntityId(element value, absl::string_view field) {
  EntityId id;
  switch (value.type()) {
    case element_type::INT64:
    case element_type::UINT64:
      id.text = simdjson::minify(value);
      id.numeric = true;
      return id;
    case element_type::STRING: {
      std::string_view s = value.get_string().value_unsafe();
      if (s.empty()) return FieldError(field, Reason::kBadType, "must not be empty");
      id.text = std::string(s);
      return id;
    }
    default:
      return WrongType(std::string(field), "an integer or a string", value);
  }
}

absl::StatusOr<Observation> ObservationParser::Parse(
    absl::string_view json, const std::optional<EntityId>& path_datastream) {
  if (json.size() > kMaxBytes) {
    return FieldError("", Reason::kTooLarge,
                      absl::StrCat("body of ", json.size(), " bytes exceeds ", kMaxBytes));
  }
  element doc;
  const simdjson::error_code err = parser_.parse(json.data(), json.size()).get(doc);
  if (err != simdjson::SUCCESS) {
    return FieldError("", Reason::kMalformedJson,
                      absl::StrCat("body is not valid JSON: ", simdjson::error_message(err)));
  }
  return FromElement(doc, path_datastream, "");
}

absl::StatusOr<Observation> ObservationParser::FromElement(
    element doc, const std::optional<EntityId>& path_datastream, absl::string_view prefix) {
  simdjson::dom::object obj;
  if (doc.get_object().get(obj) != simdjson::SUCCESS) {
    return FieldError(prefix.empty() ? "" : prefix.substr(0, prefix.size() - 1), Reason::kBadType,
                      absl::StrCat("an Observation is a JSON object, got ", TypeName(doc)));
  }
  Observation obs;
  bool have_phenomenon = false, have_result = false;
  // Duplicate members are ambiguous (RFC 8259 leaves them undefined): refuse them.
  constexpr std::array<absl::string_view, 10> kMembers = {
      "@iot.id",           "phenomenonTime", "resultTime", "result",
      "resultQuality",     "validTime",      "parameters", "Datastream",
      "FeatureOfInterest", "@iot.selfLink"};
  std::array<bool, kMembers.size()> seen{};
  for (auto [key_sv, value] : obj) {
    const absl::string_view key = Sv(key_sv);
    const std::string field = absl::StrCat(prefix, key);
    size_t idx = kMembers.size();
    for (size_t i = 0; i < kMembers.size(); ++i) {
      if (kMembers[i] == key) idx = i;
    }
    if (idx == kMembers.size()) {
      if (IsAnnotation(key)) continue;
      return FieldError(field, Reason::kUnknownField,
                        "unknown field (an Observation has phenomenonTime, resultTime, result, "
                        "resultQuality, validTime, parameters, Datastream, FeatureOfInterest)");
    }
    if (seen[idx]) return FieldError(field, Reason::kMalformedJson, "appears twice");
    seen[idx] = true;
    if (key == "@iot.id") {
      ASSIGN_OR_RETURN(obs.id, ReadEntityId(value, field));
    } else if (key == "@iot.selfLink") {
      continue;
    } else if (key == "phenomenonTime") {
      if (value.is_null()) continue;
      ASSIGN_OR_RETURN(obs.phenomenon_time, ReadTime(value, field, true, false));
      have_phenomenon = true;
    } else if (key == "resultTime") {
      if (value.is_null()) continue;
      ASSIGN_OR_RETURN(obs.result_time, ReadTime(value, field, false, false));
    } else if (key == "validTime") {
      if (value.is_null()) continue;
      ASSIGN_OR_RETURN(obs.valid_time, ReadTime(value, field, true, true));
    } else if (key == "result") {
      switch (value.type()) {
        case element_type::NULL_VALUE:
          return FieldError(field, Reason::kMissingField, "must not be null");
        case element_type::INT64:
        case element_type::UINT64:
          obs.result_kind = JsonKind::kInteger;
          break;
        case element_type::DOUBLE:
          obs.result_kind = JsonKind::kNumber;
          break;
        case element_type::STRING:
          obs.result_kind = JsonKind::kString;
          break;
        case element_type::BOOL:
          obs.result_kind = JsonKind::kBoolean;
          break;
        case element_type::OBJECT:
          obs.result_kind = JsonKind::kObject;
          break;
        case element_type::ARRAY:
          obs.result_kind = JsonKind::kArray;
          break;
      }
      obs.result = simdjson::minify(value);
      have_result = true;
    } else if (key == "resultQuality") {
      if (!value.is_null()) obs.result_quality = simdjson::minify(value);
    } else if (key == "parameters") {
      if (value.is_null()) continue;
      simdjson::dom::object params;
      if (value.get_object().get(params) != simdjson::SUCCESS) {
        return WrongType(field, "an object", value);
      }
      element unit;
      if (params["unitOfMeasurement"].get(unit) == simdjson::SUCCESS) {
        const std::string uf = absl::StrCat(field, ".unitOfMeasurement");
        if (!unit.is_object()) return WrongType(uf, "an object", unit);
        std::string_view s;
        if (unit["symbol"].get_string().get(s) == simdjson::SUCCESS)
          obs.unit_symbol = std::string(s);
        if (unit["definition"].get_string().get(s) == simdjson::SUCCESS) {
          obs.unit_definition = std::string(s);
        }
      }
      obs.parameters = simdjson::minify(value);
    } else if (key == "Datastream") {
      ASSIGN_OR_RETURN(obs.datastream, ReadReference(value, field));
    } else if (key == "FeatureOfInterest") {
      if (value.is_null()) continue;
      RETURN_IF_ERROR(ReadFeatureOfInterest(value, field, &obs));
    }
  }
  if (!have_result) {
    return FieldError(absl::StrCat(prefix, "result"), Reason::kMissingField, "missing (required)");
  }
  if (!have_phenomenon) {
    return FieldError(absl::StrCat(prefix, "phenomenonTime"), Reason::kMissingField,
                      "missing (required)");
  }
  if (path_datastream.has_value()) {
    if (obs.datastream.has_value() && !(*obs.datastream == *path_datastream)) {
      return FieldError(absl::StrCat(prefix, "Datastream.@iot.id"), Reason::kDatastreamMismatch,
                        absl::StrCat("names Datastream ", obs.datastream->text,
                                     " but the path names Datastream ", path_datastream->text));
    }
    obs.datastream = path_datastream;
  } else if (!obs.datastream.has_value()) {
    return FieldError(absl::StrCat(prefix, "Datastream"), Reason::kMissingField,
                      "missing (POST to Datastreams(ID)/Observations or link a Datastream)");
  }
  return obs;
}

}  // namespace uop::sta
