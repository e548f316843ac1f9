// Checks that a JSON value is a GeoJSON geometry (or Feature) that the policy engine can read:
// known type, well-nested numeric coordinates, longitude/latitude in range.
#pragma once

#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "simdjson.h"

namespace uop::sta {

// `field` names the value in errors, e.g. "FeatureOfInterest.feature".
absl::Status CheckGeoJson(simdjson::dom::element value, absl::string_view field);

}  // namespace uop::sta
