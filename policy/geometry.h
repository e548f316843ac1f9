// Areas a share may release records from, and the test of a record's GeoJSON geometry against
// them. Boundaries count as inside. Boost.Geometry stays behind this header.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace simdjson::dom {
class element;
}

namespace uop::policy {

enum class Containment {
  kInside,   // every point of the geometry lies in the area or on its boundary
  kOutside,  // some point lies outside
  kInvalid,  // not a GeoJSON geometry we can read (wrong type, bad coordinates, empty)
};

// A closed region in longitude/latitude (WGS 84, degrees): a box, or a multipolygon with holes.
// Immutable and thread-safe once built.
class Area {
 public:
  // [min_lon, min_lat, max_lon, max_lat]; the caller checks min <= max.
  static std::shared_ptr<const Area> Box(double min_lon, double min_lat, double max_lon,
                                         double max_lat);
  // A GeoJSON Polygon, MultiPolygon, Feature or FeatureCollection of those (the union).
  // Rings may have either orientation. Errors name the JSON member, never a byte offset.
  static absl::StatusOr<std::shared_ptr<const Area>> FromGeoJson(std::string_view text);
  ~Area();

  // Where `geometry` (a GeoJSON geometry, Feature or GeometryCollection) lies.
  Containment Check(const simdjson::dom::element& geometry) const;
  // Convenience for tests and tools: the same for a point.
  bool CoversPoint(double lon, double lat) const;
  // True if the area has no interior (a degenerate box or polygon): nothing can be inside
  // except points on a line.
  bool HasNoArea() const;
  // A canonical text form (shortest round-trip numbers) that goes into the policy version.
  std::string Canonical() const;

 private:
  struct Impl;
  explicit Area(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Snaps a position to the centre of its cell in a grid of `grid_m` metres (rows of equal
// latitude height, columns of equal ground width at the row's centre latitude), rounded to 7
// decimals (about 1 cm).
void SnapToGrid(double grid_m, double* lon, double* lat);
// Rounds to `decimals` decimal places (half away from zero).
double RoundToDecimals(double value, int decimals);

}  // namespace uop::policy
