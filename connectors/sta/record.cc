// Kafka record construction (docs/records.md is the contract; keep them in step).
#include "connectors/sta/record.h"

#include <cstdint>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "connectors/sta/errors.h"

namespace uop::sta {
namespace {

constexpr absl::string_view kTypePrefix = "http://www.opengis.net/def/observationType/OGC-OM/2.0/";

// Which JSON kinds a Datastream's observationType admits; empty or unknown types admit all.
absl::Status CheckResultType(const Observation& obs, const DatastreamInfo& ds,
                             const std::string& field) {
  absl::string_view type = ds.observation_type;
  if (!absl::ConsumePrefix(&type, kTypePrefix)) return absl::OkStatus();
  const JsonKind k = obs.result_kind;
  bool ok = true;
  absl::string_view expected;
  if (type == "OM_Measurement") {
    ok = k == JsonKind::kNumber || k == JsonKind::kInteger;
    expected = "a number";
  } else if (type == "OM_CountObservation") {
    ok = k == JsonKind::kInteger;
    expected = "an integer";
  } else if (type == "OM_TruthObservation") {
    ok = k == JsonKind::kBoolean;
    expected = "a boolean";
  } else if (type == "OM_CategoryObservation") {
    ok = k == JsonKind::kString;
    expected = "a string (category URI or term)";
  } else if (type == "OM_ComplexObservation") {
    ok = k == JsonKind::kObject || k == JsonKind::kArray;
    expected = "an object or array";
  }
  if (ok) return absl::OkStatus();
  return FieldError(field, Reason::kResultType,
                    absl::StrCat("Datastream ", ds.id.text, " is an ", type, ": expected ",
                                 expected, ", got ", JsonKindName(k)));
}

uint64_t Fnv1a(uint64_t h, absl::string_view s) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  h ^= 0xff;  // field separator
  h *= 1099511628211ull;
  return h;
}

void Member(std::string* out, absl::string_view key, absl::string_view raw_json) {
  out->push_back(',');
  AppendJsonString(out, key);
  out->push_back(':');
  out->append(raw_json.data(), raw_json.size());
}

}  // namespace

std::string ContentId(const Observation& obs) {
  uint64_t h = 14695981039346656037ull;
  h = Fnv1a(h, obs.datastream ? obs.datastream->text : "");
  h = Fnv1a(h, obs.phenomenon_time.ToString());
  h = Fnv1a(h, obs.result_time ? obs.result_time->ToString() : "");
  h = Fnv1a(h, obs.result);
  h = Fnv1a(h, obs.parameters);
  h = Fnv1a(h, obs.feature_of_interest_id ? obs.feature_of_interest_id->text : "");
  h = Fnv1a(h, obs.feature_of_interest_feature);
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, h >>= 4) out[i] = "0123456789abcdef"[h & 0xf];
  return out;
}

absl::StatusOr<Record> BuildRecord(const Observation& obs, const EntityCatalogue& catalogue,
                                   const RecordContext& ctx, absl::string_view prefix) {
  // The parser guarantees a Datastream (from the body or the path).
  const EntityId& ds_id = *obs.datastream;
  const DatastreamInfo* ds = catalogue.FindDatastream(ds_id);
  if (ds == nullptr) {
    return FieldError(absl::StrCat(prefix, "Datastream.@iot.id"), Reason::kUnknownDatastream,
                      absl::StrCat("no Datastream with @iot.id ", ds_id.Json()));
  }
  if (absl::Status s = CheckResultType(obs, *ds, absl::StrCat(prefix, "result")); !s.ok()) {
    return s;
  }
  if ((!obs.unit_symbol.empty() && !ds->unit_symbol.empty() &&
       obs.unit_symbol != ds->unit_symbol) ||
      (!obs.unit_definition.empty() && !ds->unit_definition.empty() &&
       obs.unit_definition != ds->unit_definition)) {
    return FieldError(
        absl::StrCat(prefix, "parameters.unitOfMeasurement"), Reason::kUnitMismatch,
        absl::StrCat("'", obs.unit_symbol.empty() ? obs.unit_definition : obs.unit_symbol,
                     "' differs from Datastream ", ds->id.text, "'s unit '",
                     obs.unit_symbol.empty() ? ds->unit_definition : ds->unit_symbol, "'"));
  }
  // Location context, as FROST-Server resolves it: the FeatureOfInterest the Observation names,
  // or else one generated from the Thing's Location.
  std::string foi;  // when not the Datastream's own, built once in the catalogue
  absl::string_view location_source;
  if (obs.feature_of_interest_id.has_value()) {
    const FeatureInfo* f = catalogue.FindFeature(*obs.feature_of_interest_id);
    if (f == nullptr) {
      return FieldError(
          absl::StrCat(prefix, "FeatureOfInterest.@iot.id"), Reason::kUnknownFeatureOfInterest,
          absl::StrCat("no FeatureOfInterest with @iot.id ", obs.feature_of_interest_id->Json()));
    }
    foi = absl::StrCat(
        "{\"@iot.id\":", f->id.Json(), ",\"name\":", JsonString(f->name),
        ",\"encodingType\":\"application/geo+json\",\"feature\":", f->feature_geojson, "}");
    location_source = "FeatureOfInterest";
  } else if (!obs.feature_of_interest_feature.empty()) {
    foi = absl::StrCat("{\"name\":", JsonString(obs.feature_of_interest_name),
                       ",\"encodingType\":\"application/geo+json\",\"feature\":",
                       obs.feature_of_interest_feature, "}");
    location_source = "FeatureOfInterest";
  } else if (!ds->location_feature_json.empty()) {
    location_source = "Thing.Location";
  } else {
    return FieldError(absl::StrCat(prefix, "FeatureOfInterest"), Reason::kMissingField,
                      absl::StrCat("missing, and Thing ", ds->thing_id.text, " of Datastream ",
                                   ds->id.text, " has no Location to generate it from"));
  }

  Record rec;
  rec.key = ds->id.text;
  EntityId id = obs.id.value_or(EntityId{ContentId(obs), false});
  rec.id = id.text;
  rec.self_link = absl::StrCat(ctx.base_url, "/Observations(", id.PathKey(), ")");

  std::string& v = rec.value;
  v.reserve(256 + rec.self_link.size() + obs.result.size() + obs.result_quality.size() +
            obs.parameters.size() + foi.size() + ds->location_feature_json.size() +
            ds->record_json.size());
  v = "{\"@iot.id\":";
  v += id.Json();
  Member(&v, "@iot.selfLink", JsonString(rec.self_link));
  Member(&v, "phenomenonTime", JsonString(obs.phenomenon_time.ToString()));
  Member(&v, "resultTime", obs.result_time ? JsonString(obs.result_time->ToString()) : "null");
  Member(&v, "result", obs.result);
  if (!obs.result_quality.empty()) Member(&v, "resultQuality", obs.result_quality);
  if (obs.valid_time) Member(&v, "validTime", JsonString(obs.valid_time->ToString()));
  if (!obs.parameters.empty()) Member(&v, "parameters", obs.parameters);
  Member(&v, "Datastream", ds->record_json);
  Member(&v, "FeatureOfInterest", foi.empty() ? ds->location_feature_json : foi);
  v += ",\"uop\":{\"via\":";
  AppendJsonString(&v, ctx.via);
  v += ",\"ingestedAt\":";
  AppendJsonString(&v, FormatInstant(ctx.ingested_at));
  v += ",\"locationSource\":";
  AppendJsonString(&v, location_source);
  v += "}}";
  return rec;
}

}  // namespace uop::sta
