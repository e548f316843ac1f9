// The entities an Observation refers to (Datastreams with their Thing, Location, unit,
// ObservedProperty and Sensor; FeaturesOfInterest), loaded once and then read-only: share it as
// std::shared_ptr<const EntityCatalogue> between threads.
#pragma once

#include <memory>
#include <string>
#include <vector>
#include "absl/strings/string_view.h"

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "connectors/sta/json_text.h"

namespace uop::sta {

struct DatastreamInfo {
  EntityId id;
  std::string name;
  std::string unit_json;  // minified unitOfMeasurement object
  std::string unit_symbol;
  std::string unit_definition;
  std::string observation_type;        // full OGC URI, e.g. ...OM_Measurement; may be empty
  std::string observed_property_json;  // minified {"@iot.id","name","definition"} subset
  std::string sensor_json;             // minified {"@iot.id","name","encodingType"} subset
  EntityId thing_id;
  std::string thing_name;
  std::string thing_properties_json;  // minified, empty when absent
  std::string location_name;
  std::string location_geojson;  // the Thing's first Location, minified GeoJSON; may be empty
  // Built once at load, the same for every record (docs/records.md): the record's "Datastream"
  // member, and its FeatureOfInterest generated from the Thing's Location (empty without one).
  std::string record_json;
  std::string location_feature_json;
};

struct FeatureInfo {
  EntityId id;
  std::string name;
  std::string encoding_type;
  std::string feature_geojson;
};

class EntityCatalogue {
 public:
  // The document is {"Things": [...], "FeaturesOfInterest": [...]}, where the arrays are what
  // GET v1.1/Things?$expand=Locations,Datastreams($expand=ObservedProperty,Sensor) and
  // GET v1.1/FeaturesOfInterest return as "value". `source` names it in errors.
  static absl::StatusOr<EntityCatalogue> FromJson(absl::string_view json, absl::string_view source);
  static absl::StatusOr<EntityCatalogue> LoadFile(const std::string& path);

  const DatastreamInfo* FindDatastream(const EntityId& id) const;
  const FeatureInfo* FindFeature(const EntityId& id) const;
  size_t datastream_count() const { return datastreams_.size(); }
  size_t feature_count() const { return features_.size(); }
  std::vector<const DatastreamInfo*> Datastreams() const;

 private:
  absl::flat_hash_map<std::string, DatastreamInfo> datastreams_;
  absl::flat_hash_map<std::string, FeatureInfo> features_;
};

// Builds the catalogue from an STA server (FROST-Server or any STA 1.1), following
// @iot.nextLink. `base_url` is like http://host:8080/FROST-Server/v1.1 (plain HTTP only).
absl::StatusOr<EntityCatalogue> FetchCatalogue(const std::string& base_url, int timeout_ms);

// The paths FetchCatalogue requests below base_url (exposed for tests and docs).
inline constexpr absl::string_view kThingsQuery =
    "/Things?$expand=Locations,Datastreams(%24expand%3DObservedProperty,Sensor)";
inline constexpr absl::string_view kFeaturesQuery = "/FeaturesOfInterest";

}  // namespace uop::sta
