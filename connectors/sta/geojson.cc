// GeoJSON (RFC 7946) structure checks.
#include "connectors/sta/geojson.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "connectors/sta/errors.h"
#include "connectors/sta/json_text.h"

namespace uop::sta {
namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;

bool IsNumber(element e) {
  const element_type t = e.type();
  return t == element_type::DOUBLE || t == element_type::INT64 || t == element_type::UINT64;
}

absl::Status Bad(absl::string_view field, absl::string_view what) {
  return FieldError(field, Reason::kBadType, what);
}

// A position: [lon, lat] or [lon, lat, alt].
absl::Status CheckPosition(element e, const std::string& field) {
  simdjson::dom::array a;
  if (e.get_array().get(a) != simdjson::SUCCESS) return Bad(field, "expected a position array");
  const size_t n = a.size();
  if (n < 2 || n > 3) return Bad(field, "a position has 2 or 3 numbers");
  double v[3] = {0, 0, 0};
  size_t i = 0;
  for (element c : a) {
    if (!IsNumber(c)) return Bad(field, "position coordinates must be numbers");
    v[i++] = c.get_double().value_unsafe();
  }
  if (v[0] < -180 || v[0] > 180) return Bad(field, "longitude out of range [-180, 180]");
  if (v[1] < -90 || v[1] > 90) return Bad(field, "latitude out of range [-90, 90]");
  return absl::OkStatus();
}

// Positions nested `depth` levels deep (0 = a position).
absl::Status CheckNested(element e, int depth, const std::string& field, size_t min_items) {
  if (depth == 0) return CheckPosition(e, field);
  simdjson::dom::array a;
  if (e.get_array().get(a) != simdjson::SUCCESS) return Bad(field, "expected an array");
  if (a.size() < min_items) {
    return Bad(field, absl::StrCat("expected at least ", min_items, " items"));
  }
  size_t i = 0;
  for (element c : a) {
    absl::Status s =
        CheckNested(c, depth - 1, absl::StrCat(field, "[", i++, "]"), depth - 1 == 0 ? 0 : 1);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckGeoJson(element value, absl::string_view field) {
  simdjson::dom::object obj;
  if (value.get_object().get(obj) != simdjson::SUCCESS) {
    return Bad(field, "expected a GeoJSON object");
  }
  std::string_view type_sv;
  if (obj["type"].get_string().get(type_sv) != simdjson::SUCCESS) {
    return FieldError(absl::StrCat(field, ".type"), Reason::kMissingField,
                      "missing (a GeoJSON object names its type)");
  }
  const absl::string_view type = Sv(type_sv);
  const std::string coords = absl::StrCat(field, ".coordinates");
  element c;
  auto need_coords = [&]() -> absl::Status {
    if (obj["coordinates"].get(c) != simdjson::SUCCESS) {
      return FieldError(coords, Reason::kMissingField, "missing");
    }
    return absl::OkStatus();
  };
  int depth = -1;
  size_t min_items = 1;
  if (type == "Point") {
    depth = 0;
  } else if (type == "MultiPoint") {
    depth = 1;
  } else if (type == "LineString") {
    depth = 1;
    min_items = 2;
  } else if (type == "MultiLineString" || type == "Polygon") {
    depth = 2;
  } else if (type == "MultiPolygon") {
    depth = 3;
  } else if (type == "GeometryCollection") {
    simdjson::dom::array geoms;
    if (obj["geometries"].get_array().get(geoms) != simdjson::SUCCESS) {
      return FieldError(absl::StrCat(field, ".geometries"), Reason::kMissingField,
                        "missing or not an array");
    }
    size_t i = 0;
    for (element g : geoms) {
      absl::Status s = CheckGeoJson(g, absl::StrCat(field, ".geometries[", i++, "]"));
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  } else if (type == "Feature") {
    element g;
    if (obj["geometry"].get(g) != simdjson::SUCCESS || g.is_null()) {
      return FieldError(absl::StrCat(field, ".geometry"), Reason::kMissingField,
                        "missing (a Feature without geometry has no location)");
    }
    return CheckGeoJson(g, absl::StrCat(field, ".geometry"));
  } else {
    return Bad(absl::StrCat(field, ".type"),
               absl::StrCat("'", type, "' is not a GeoJSON geometry or Feature type"));
  }
  absl::Status s = need_coords();
  if (!s.ok()) return s;
  return CheckNested(c, depth, coords, min_items);
}

}  // namespace uop::sta
