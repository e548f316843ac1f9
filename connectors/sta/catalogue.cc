// Entity catalogue parsing: STA entity JSON in, lookup tables out; every error names its path.
#include "connectors/sta/catalogue.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "connectors/sta/geojson.h"
#include "connectors/sta/observation.h"
#include "core/status_macros.h"
#include "simdjson.h"

namespace uop::sta {
namespace {

using simdjson::dom::element;

absl::Status At(absl::string_view source, const absl::Status& s) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", s.message()));
}

absl::Status Missing(absl::string_view source, const std::string& path, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", path, ": ", what));
}

std::string OptionalString(simdjson::dom::object o, std::string_view key) {
  std::string_view s;
  if (o[key].get_string().get(s) == simdjson::SUCCESS) return std::string(s);
  return "";
}

// {"@iot.id":..,"name":..,<extra>} from `o`, for the record's nested entities.
std::string Subset(simdjson::dom::object o, std::initializer_list<std::string_view> keys) {
  std::string out = "{";
  bool first = true;
  for (std::string_view k : keys) {
    element v;
    if (o[k].get(v) != simdjson::SUCCESS) continue;
    if (!first) out.push_back(',');
    first = false;
    AppendJsonString(&out, Sv(k));
    out.push_back(':');
    out += simdjson::minify(v);
  }
  out.push_back('}');
  return out;
}

// The "Datastream" member of docs/records.md.
std::string DatastreamRecordJson(const DatastreamInfo& ds) {
  std::string out = absl::StrCat("{\"@iot.id\":", ds.id.Json(), ",\"name\":", JsonString(ds.name),
                                 ",\"unitOfMeasurement\":", ds.unit_json);
  if (!ds.observation_type.empty()) {
    absl::StrAppend(&out, ",\"observationType\":", JsonString(ds.observation_type));
  }
  if (!ds.observed_property_json.empty()) {
    absl::StrAppend(&out, ",\"ObservedProperty\":", ds.observed_property_json);
  }
  if (!ds.sensor_json.empty()) absl::StrAppend(&out, ",\"Sensor\":", ds.sensor_json);
  absl::StrAppend(&out, ",\"Thing\":{\"@iot.id\":", ds.thing_id.Json(),
                  ",\"name\":", JsonString(ds.thing_name));
  if (!ds.thing_properties_json.empty()) {
    absl::StrAppend(&out, ",\"properties\":", ds.thing_properties_json);
  }
  out += "}}";
  return out;
}

}  // namespace

absl::StatusOr<EntityCatalogue> EntityCatalogue::FromJson(absl::string_view json,
                                                          absl::string_view source) {
  simdjson::dom::parser parser;
  element doc;
  if (auto err = parser.parse(json.data(), json.size()).get(doc); err != simdjson::SUCCESS) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": not valid JSON: ", simdjson::error_message(err)));
  }
  EntityCatalogue cat;
  simdjson::dom::array things;
  if (doc["Things"].get_array().get(things) != simdjson::SUCCESS) {
    return Missing(source, "Things", "missing or not an array");
  }
  size_t ti = 0;
  for (element thing_el : things) {
    const std::string tpath = absl::StrCat("Things[", ti++, "]");
    simdjson::dom::object thing;
    if (thing_el.get_object().get(thing) != simdjson::SUCCESS) {
      return Missing(source, tpath, "expected an object");
    }
    element id_el;
    if (thing["@iot.id"].get(id_el) != simdjson::SUCCESS) {
      return Missing(source, tpath + ".@iot.id", "missing");
    }
    auto thing_id = ReadEntityId(id_el, tpath + ".@iot.id");
    if (!thing_id.ok()) return At(source, thing_id.status());
    const std::string thing_name = OptionalString(thing, "name");
    std::string thing_props;
    element props;
    if (thing["properties"].get(props) == simdjson::SUCCESS && props.is_object()) {
      thing_props = simdjson::minify(props);
    }
    std::string loc_geojson, loc_name;
    simdjson::dom::array locations;
    if (thing["Locations"].get_array().get(locations) == simdjson::SUCCESS &&
        locations.size() > 0) {
      const std::string lpath = tpath + ".Locations[0]";
      simdjson::dom::object loc;
      if (locations.at(0).get_object().get(loc) != simdjson::SUCCESS) {
        return Missing(source, lpath, "expected an object");
      }
      element geo;
      if (loc["location"].get(geo) != simdjson::SUCCESS) {
        return Missing(source, lpath + ".location", "missing");
      }
      if (absl::Status s = CheckGeoJson(geo, lpath + ".location"); !s.ok()) return At(source, s);
      loc_geojson = simdjson::minify(geo);
      loc_name = OptionalString(loc, "name");
    }
    simdjson::dom::array datastreams;
    if (thing["Datastreams"].get_array().get(datastreams) != simdjson::SUCCESS) continue;
    size_t di = 0;
    for (element ds_el : datastreams) {
      const std::string dpath = absl::StrCat(tpath, ".Datastreams[", di++, "]");
      simdjson::dom::object ds;
      if (ds_el.get_object().get(ds) != simdjson::SUCCESS) {
        return Missing(source, dpath, "expected an object");
      }
      element dsid;
      if (ds["@iot.id"].get(dsid) != simdjson::SUCCESS) {
        return Missing(source, dpath + ".@iot.id", "missing");
      }
      DatastreamInfo info;
      auto id = ReadEntityId(dsid, dpath + ".@iot.id");
      if (!id.ok()) return At(source, id.status());
      info.id = *id;
      info.name = OptionalString(ds, "name");
      simdjson::dom::object unit;
      if (ds["unitOfMeasurement"].get_object().get(unit) != simdjson::SUCCESS) {
        return Missing(source, dpath + ".unitOfMeasurement", "missing or not an object");
      }
      info.unit_json = simdjson::minify(unit);
      info.unit_symbol = OptionalString(unit, "symbol");
      info.unit_definition = OptionalString(unit, "definition");
      info.observation_type = OptionalString(ds, "observationType");
      simdjson::dom::object sub;
      if (ds["ObservedProperty"].get_object().get(sub) == simdjson::SUCCESS) {
        info.observed_property_json = Subset(sub, {"@iot.id", "name", "definition"});
      }
      if (ds["Sensor"].get_object().get(sub) == simdjson::SUCCESS) {
        info.sensor_json = Subset(sub, {"@iot.id", "name", "encodingType", "metadata"});
      }
      info.thing_id = *thing_id;
      info.thing_name = thing_name;
      info.thing_properties_json = thing_props;
      info.location_geojson = loc_geojson;
      info.location_name = loc_name;
      info.record_json = DatastreamRecordJson(info);
      if (!info.location_geojson.empty()) {
        info.location_feature_json = absl::StrCat(
            "{\"name\":", JsonString(info.location_name),
            ",\"encodingType\":\"application/geo+json\",\"feature\":", info.location_geojson, "}");
      }
      if (!cat.datastreams_.emplace(info.id.text, info).second) {
        return Missing(source, dpath + ".@iot.id",
                       absl::StrCat("Datastream ", info.id.text, " appears twice"));
      }
    }
  }
  simdjson::dom::array features;
  if (doc["FeaturesOfInterest"].get_array().get(features) == simdjson::SUCCESS) {
    size_t fi = 0;
    for (element f_el : features) {
      const std::string fpath = absl::StrCat("FeaturesOfInterest[", fi++, "]");
      simdjson::dom::object f;
      if (f_el.get_object().get(f) != simdjson::SUCCESS) {
        return Missing(source, fpath, "expected an object");
      }
      element fid, geo;
      if (f["@iot.id"].get(fid) != simdjson::SUCCESS) {
        return Missing(source, fpath + ".@iot.id", "missing");
      }
      if (f["feature"].get(geo) != simdjson::SUCCESS) {
        return Missing(source, fpath + ".feature", "missing");
      }
      FeatureInfo info;
      auto id = ReadEntityId(fid, fpath + ".@iot.id");
      if (!id.ok()) return At(source, id.status());
      if (absl::Status s = CheckGeoJson(geo, fpath + ".feature"); !s.ok()) return At(source, s);
      info.id = *id;
      info.name = OptionalString(f, "name");
      info.encoding_type = OptionalString(f, "encodingType");
      info.feature_geojson = simdjson::minify(geo);
      cat.features_.emplace(info.id.text, std::move(info));
    }
  }
  return cat;
}

absl::StatusOr<EntityCatalogue> EntityCatalogue::LoadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream buf;
  buf << in.rdbuf();
  return FromJson(buf.str(), path);
}

const DatastreamInfo* EntityCatalogue::FindDatastream(const EntityId& id) const {
  auto it = datastreams_.find(id.text);
  return it == datastreams_.end() ? nullptr : &it->second;
}

const FeatureInfo* EntityCatalogue::FindFeature(const EntityId& id) const {
  auto it = features_.find(id.text);
  return it == features_.end() ? nullptr : &it->second;
}

std::vector<const DatastreamInfo*> EntityCatalogue::Datastreams() const {
  std::vector<const DatastreamInfo*> out;
  for (const auto& [k, v] : datastreams_) out.push_back(&v);
  return out;
}

}  // namespace uop::sta
