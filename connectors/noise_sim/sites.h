// Real noise-monitoring sites in Helsinki and Tallinn, and the SensorThings entities (Thing,
// Location, Datastream, ObservedProperty, Sensor) the simulator describes them with.
#pragma once

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace uop::noise_sim {

enum class SiteKind { kStreet, kHarbour, kPark, kAirportApproach };

struct Site {
  std::string city;  // "helsinki" or "tallinn"
  std::string id;    // e.g. "helsinki-mannerheimintie"; the Thing's @iot.id
  std::string name;
  SiteKind kind;
  double lat;
  double lon;
  double base_db;  // typical daytime LAeq,1min at this site

  std::string datastream_id() const { return id + "-laeq"; }
};

// The sites of `city` ("helsinki", "tallinn" or "both"); empty for anything else.
std::vector<Site> SitesFor(absl::string_view city);

absl::string_view KindName(SiteKind kind);

// The entity catalogue uop-sta-bridge loads (docs/connectors.md), for `sites`.
std::string CatalogueJson(const std::vector<Site>& sites);

}  // namespace uop::noise_sim
