// Areas and GeoJSON containment with Boost.Geometry (header-only, value types on the stack: a
// point-in-box test allocates nothing, which matters at a million records per second).
#include "policy/geometry.h"

#include <charconv>
#include <cmath>
#include <variant>

#include <simdjson.h>
#include <boost/geometry.hpp>

#include "absl/strings/str_cat.h"

namespace uop::policy {
namespace {

namespace bg = boost::geometry;
using Point = bg::model::d2::point_xy<double>;
using Ring = bg::model::ring<Point, /*ClockWise=*/false>;
using Polygon = bg::model::polygon<Point, /*ClockWise=*/false>;
using MultiPolygon = bg::model::multi_polygon<Polygon>;
using LineString = bg::model::linestring<Point>;
using GeoBox = bg::model::box<Point>;

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::object;

// A GeoJSON position: [lon, lat, (alt)]. Only finite numbers.
bool ReadPosition(const element& e, Point* p) {
  array a;
  if (e.get_array().get(a) != simdjson::SUCCESS || a.size() < 2) return false;
  double v[2];
  size_t i = 0;
  for (element n : a) {
    if (i == 2) break;
    if (n.get_double().get(v[i]) != simdjson::SUCCESS || !std::isfinite(v[i])) return false;
    ++i;
  }
  *p = Point(v[0], v[1]);
  return true;
}

template <typename Range>
bool ReadPositions(const element& e, size_t min_size, Range* out) {
  array a;
  if (e.get_array().get(a) != simdjson::SUCCESS || a.size() < min_size) return false;
  for (element pos : a) {
    Point p;
    if (!ReadPosition(pos, &p)) return false;
    bg::append(*out, p);
  }
  return true;
}

bool ReadPolygon(const element& e, Polygon* poly) {
  array rings;
  if (e.get_array().get(rings) != simdjson::SUCCESS || rings.size() == 0) return false;
  bool first = true;
  for (element r : rings) {
    Ring ring;
    if (!ReadPositions(r, 4, &ring)) return false;
    if (!bg::equals(ring.front(), ring.back())) return false;  // RFC 7946: rings are closed
    if (first) {
      poly->outer() = std::move(ring);
      first = false;
    } else {
      poly->inners().push_back(std::move(ring));
    }
  }
  bg::correct(*poly);
  return true;
}

bool ReadMultiPolygon(const element& e, MultiPolygon* mp) {
  array polys;
  if (e.get_array().get(polys) != simdjson::SUCCESS || polys.size() == 0) return false;
  for (element p : polys) {
    Polygon poly;
    if (!ReadPolygon(p, &poly)) return false;
    mp->push_back(std::move(poly));
  }
  return true;
}

std::string_view TypeOf(const element& e) {
  std::string_view type;
  if (e["type"].get_string().get(type) != simdjson::SUCCESS) return {};
  return type;
}

void AppendNumber(std::string* out, double v) {
  char buf[32];
  auto res = std::to_chars(buf, buf + sizeof(buf), v);
  out->append(buf, res.ptr);
}

}  // namespace

struct Area::Impl {
  std::variant<GeoBox, MultiPolygon> shape;

  template <typename G>
  bool Covers(const G& g) const {
    return std::visit([&](const auto& s) { return bg::covered_by(g, s); }, shape);
  }

  // Every point of a line or polygon lies in a box iff every vertex does (a box is convex), so
  // boxes only need vertex tests; a multipolygon may be concave or have holes, so Boost's
  // relate decides (a segment crossing a hole is outside even if its ends are not).
  template <typename G>
  bool CoversLinear(const G& g) const {
    if (const GeoBox* box = std::get_if<GeoBox>(&shape)) {
      bool all = true;
      bg::for_each_point(g, [&](const Point& p) { all = all && bg::covered_by(p, *box); });
      return all;
    }
    return bg::covered_by(g, std::get<MultiPolygon>(shape));
  }

  Containment CheckGeometry(const element& g, int depth) const {
    if (depth > 8) return Containment::kInvalid;
    std::string_view type = TypeOf(g);
    element coords;
    const bool has_coords = g["coordinates"].get(coords) == simdjson::SUCCESS;
    auto verdict = [](bool inside) {
      return inside ? Containment::kInside : Containment::kOutside;
    };
    if (type == "Point") {
      Point p;
      if (!has_coords || !ReadPosition(coords, &p)) return Containment::kInvalid;
      return verdict(Covers(p));
    }
    if (type == "MultiPoint") {
      LineString points;  // a point list; each point is tested on its own
      if (!has_coords || !ReadPositions(coords, 1, &points)) return Containment::kInvalid;
      for (const Point& p : points) {
        if (!Covers(p)) return Containment::kOutside;
      }
      return Containment::kInside;
    }
    if (type == "LineString") {
      LineString ls;
      if (!has_coords || !ReadPositions(coords, 2, &ls)) return Containment::kInvalid;
      return verdict(CoversLinear(ls));
    }
    if (type == "MultiLineString") {
      array lines;
      if (!has_coords || coords.get_array().get(lines) != simdjson::SUCCESS || lines.size() == 0) {
        return Containment::kInvalid;
      }
      bool inside = true;
      for (element l : lines) {
        LineString ls;
        if (!ReadPositions(l, 2, &ls)) return Containment::kInvalid;
        inside = inside && CoversLinear(ls);
      }
      return verdict(inside);
    }
    if (type == "Polygon") {
      Polygon poly;
      if (!has_coords || !ReadPolygon(coords, &poly)) return Containment::kInvalid;
      return verdict(CoversLinear(poly));
    }
    if (type == "MultiPolygon") {
      MultiPolygon mp;
      if (!has_coords || !ReadMultiPolygon(coords, &mp)) return Containment::kInvalid;
      bool inside = true;
      for (const Polygon& poly : mp) inside = inside && CoversLinear(poly);
      return verdict(inside);
    }
    if (type == "GeometryCollection") {
      array members;
      if (g["geometries"].get_array().get(members) != simdjson::SUCCESS || members.size() == 0) {
        return Containment::kInvalid;
      }
      Containment result = Containment::kInside;
      for (element m : members) {
        Containment c = CheckGeometry(m, depth + 1);
        if (c == Containment::kInvalid) return c;
        if (c == Containment::kOutside) result = c;
      }
      return result;
    }
    if (type == "Feature") {
      element geometry;
      if (g["geometry"].get(geometry) != simdjson::SUCCESS) return Containment::kInvalid;
      return CheckGeometry(geometry, depth + 1);
    }
    return Containment::kInvalid;
  }
};

Area::Area(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Area::~Area() = default;

std::shared_ptr<const Area> Area::Box(double min_lon, double min_lat, double max_lon,
                                      double max_lat) {
  auto impl = std::make_unique<Impl>();
  impl->shape = bg::model::box<Point>(Point(min_lon, min_lat), Point(max_lon, max_lat));
  return std::shared_ptr<const Area>(new Area(std::move(impl)));
}

absl::StatusOr<std::shared_ptr<const Area>> Area::FromGeoJson(std::string_view text) {
  simdjson::dom::parser parser;
  element root;
  if (auto err = parser.parse(text.data(), text.size()).get(root); err != simdjson::SUCCESS) {
    return absl::InvalidArgumentError(absl::StrCat("not JSON: ", simdjson::error_message(err)));
  }
  MultiPolygon all;
  auto add = [&](const element& g, const std::string& where) -> absl::Status {
    std::string_view type = TypeOf(g);
    element coords;
    if (g["coordinates"].get(coords) != simdjson::SUCCESS) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": no 'coordinates'"));
    }
    if (type == "Polygon") {
      Polygon poly;
      if (!ReadPolygon(coords, &poly)) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ".coordinates: expected closed rings of at least 4 [lon, lat]"));
      }
      all.push_back(std::move(poly));
    } else if (type == "MultiPolygon") {
      MultiPolygon mp;
      if (!ReadMultiPolygon(coords, &mp)) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ".coordinates: expected polygons of closed rings of at least 4 [lon, lat]"));
      }
      for (Polygon& p : mp) all.push_back(std::move(p));
    } else {
      return absl::InvalidArgumentError(absl::StrCat(where, ": type '",
                                                     absl::string_view(type.data(), type.size()),
                                                     "': expected Polygon or MultiPolygon"));
    }
    return absl::OkStatus();
  };
  std::string_view type = TypeOf(root);
  absl::Status status;
  if (type == "FeatureCollection") {
    array features;
    if (root["features"].get_array().get(features) != simdjson::SUCCESS) {
      return absl::InvalidArgumentError("FeatureCollection without a 'features' list");
    }
    size_t i = 0;
    for (element f : features) {
      element g;
      const std::string where = absl::StrCat("features[", i++, "].geometry");
      if (f["geometry"].get(g) != simdjson::SUCCESS) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": missing"));
      }
      if (status = add(g, where); !status.ok()) return status;
    }
  } else if (type == "Feature") {
    element g;
    if (root["geometry"].get(g) != simdjson::SUCCESS) {
      return absl::InvalidArgumentError("geometry: missing");
    }
    status = add(g, "geometry");
  } else {
    status = add(root, "(top level)");
  }
  if (!status.ok()) return status;
  if (all.empty()) return absl::InvalidArgumentError("no polygon");
  bg::validity_failure_type failure;
  if (!bg::is_valid(all, failure)) {
    // Rings are corrected (oriented) before the check, so a ring still "wrongly oriented"
    // crosses itself: a bow tie has no orientation.
    if (failure == bg::failure_wrong_orientation) {
      return absl::InvalidArgumentError("invalid polygon: a ring crosses itself");
    }
    std::string reason;
    bg::is_valid(all, reason);
    return absl::InvalidArgumentError(absl::StrCat("invalid polygon: ", reason));
  }
  auto impl = std::make_unique<Impl>();
  impl->shape = std::move(all);
  return std::shared_ptr<const Area>(new Area(std::move(impl)));
}

Containment Area::Check(const element& geometry) const {
  // Boost's relate may throw on a record's invalid geometry (e.g. overlay_invalid_input): a
  // record from the wire must never take the transform down.
  try {
    return impl_->CheckGeometry(geometry, 0);
  } catch (const std::exception&) {
    return Containment::kInvalid;
  }
}

bool Area::CoversPoint(double lon, double lat) const { return impl_->Covers(Point(lon, lat)); }

bool Area::HasNoArea() const {
  return std::visit([](const auto& s) { return !(bg::area(s) > 0); }, impl_->shape);
}

std::string Area::Canonical() const {
  std::string out;
  auto point = [&](const Point& p) {
    AppendNumber(&out, p.x());
    out += ' ';
    AppendNumber(&out, p.y());
  };
  if (const auto* box = std::get_if<bg::model::box<Point>>(&impl_->shape)) {
    out = "BOX(";
    point(box->min_corner());
    out += ',';
    point(box->max_corner());
    out += ')';
    return out;
  }
  out = "MULTIPOLYGON(";
  bool first_poly = true;
  for (const Polygon& poly : std::get<MultiPolygon>(impl_->shape)) {
    out += first_poly ? "(" : ",(";
    first_poly = false;
    auto ring = [&](const Ring& r) {
      out += '(';
      for (size_t i = 0; i < r.size(); ++i) {
        if (i > 0) out += ',';
        point(r[i]);
      }
      out += ')';
    };
    ring(poly.outer());
    for (const Ring& inner : poly.inners()) {
      out += ',';
      ring(inner);
    }
    out += ')';
  }
  out += ')';
  return out;
}

void SnapToGrid(double grid_m, double* lon, double* lat) {
  // Metres per degree of latitude on the WGS 84 equatorial radius (the Web Mercator constant).
  constexpr double kMetresPerDegree = 6378137.0 * M_PI / 180.0;
  const double lat_step = grid_m / kMetresPerDegree;
  const double row_centre = (std::floor(*lat / lat_step) + 0.5) * lat_step;
  const double cos_lat = std::cos(row_centre * M_PI / 180.0);
  double lon_centre = 0;
  if (cos_lat > 1e-9) {
    const double lon_step = grid_m / (kMetresPerDegree * cos_lat);
    lon_centre = (std::floor(*lon / lon_step) + 0.5) * lon_step;
  }
  *lat = RoundToDecimals(row_centre, 7);
  *lon = RoundToDecimals(lon_centre, 7);
}

double RoundToDecimals(double value, int decimals) {
  static constexpr double kScale[] = {1,   1e1, 1e2, 1e3,  1e4,  1e5, 1e6,
                                      1e7, 1e8, 1e9, 1e10, 1e11, 1e12};
  const double scale =
      decimals >= 0 && decimals <= 12 ? kScale[decimals] : std::pow(10.0, decimals);
  const double r = std::round(value * scale) / scale;
  return r == 0 ? 0.0 : r;  // no "-0"
}

}  // namespace uop::policy
