// The noise model. Values are plausible, not measured: street kerbside levels of 60-75 dB(A)
// by day and 50-58 at night, parks 40-55, harbours with +8-15 dB while a ferry berths, and
// aircraft passes of +15-25 dB on the approach paths (denser by day, rare at night).
#include "connectors/noise_sim/noise_model.h"

#include <algorithm>
#include <cmath>

#include "absl/time/civil_time.h"

namespace uop::noise_sim {
namespace {

// splitmix64: a stateless hash so every (seed, site, minute) has its own reproducible draw.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t HashString(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

double Uniform(uint64_t key) { return (Mix(key) >> 11) * (1.0 / 9007199254740992.0); }

// Standard normal from two uniforms (Box-Muller).
double Normal(uint64_t key) {
  const double u1 = std::max(Uniform(key), 1e-12), u2 = Uniform(key ^ 0x5bd1e995ull);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2 * M_PI * u2);
}

double Bump(double x, double centre, double width) {
  const double d = (x - centre) / width;
  return std::exp(-0.5 * d * d);
}

// Helsinki and Tallinn keep EET/EEST; the model works in local civil time.
const absl::TimeZone& LocalZone() {
  static const absl::TimeZone* tz = [] {
    auto* z = new absl::TimeZone;
    if (!absl::LoadTimeZone("Europe/Helsinki", z)) *z = absl::FixedTimeZone(2 * 3600);
    return z;
  }();
  return *tz;
}

}  // namespace

double TrafficProfile(double hour, int weekday) {
  const bool weekend = weekday >= 5;
  const double night = 0.08;
  // Morning and evening rush on workdays; a late, flat day at weekends.
  double day = weekend ? 0.55 * Bump(hour, 14.0, 4.5) : 0.65 * Bump(hour, 13.0, 5.0);
  double rush = weekend ? 0.0 : 0.35 * Bump(hour, 8.0, 1.0) + 0.3 * Bump(hour, 16.75, 1.2);
  return std::min(1.0, night + day + rush);
}

double MinutesToFerry(double hour, int weekday) {
  // Departures roughly every 2-3 h, 07:30 to 21:30 (Tallink, Viking Line, Eckerö Line);
  // arrivals 2 h later at the other side: by symmetry one list serves both harbours.
  static constexpr double kWorkday[] = {7.5, 8.0, 10.5, 11.5, 13.5, 16.5, 17.5, 19.5, 21.5};
  static constexpr double kWeekend[] = {8.0, 10.5, 13.5, 16.5, 19.5, 21.5};
  double best = 1e9;
  auto scan = [&](const double* begin, const double* end) {
    for (const double* d = begin; d != end; ++d) {
      best = std::min(best, std::fabs(hour - *d) * 60);
      best = std::min(best, std::fabs(hour - (*d + 2.0)) * 60);  // arrivals from the other side
    }
  };
  if (weekday >= 5) {
    scan(std::begin(kWeekend), std::end(kWeekend));
  } else {
    scan(std::begin(kWorkday), std::end(kWorkday));
  }
  return best;
}

NoiseModel::NoiseModel(uint64_t seed, const Site& site)
    : seed_(Mix(seed ^ HashString(site.id))), site_(site) {}

double NoiseModel::LaeqAt(absl::Time t) const {
  const absl::TimeZone::CivilInfo ci = LocalZone().At(t);
  const double hour = ci.cs.hour() + ci.cs.minute() / 60.0;
  const int weekday = static_cast<int>(absl::GetWeekday(absl::CivilDay(ci.cs)));  // Monday = 0
  const double traffic = TrafficProfile(hour, weekday);
  const int64_t minute = absl::ToUnixSeconds(t) / 60;
  double level = 0;
  switch (site_.kind) {
    case SiteKind::kStreet:
      // ~10 log10 of traffic flow: 14 dB between the quietest night and the rush hour.
      level = site_.base_db - 14 + 14 * std::sqrt(traffic);
      break;
    case SiteKind::kPark:
      level = site_.base_db - 8 + 10 * traffic;
      break;
    case SiteKind::kHarbour: {
      level = site_.base_db - 6 + 7 * traffic;
      const double m = MinutesToFerry(hour, weekday);
      // Engines, ramps and cars: loudest at berthing, fading over ~20 minutes.
      level += 13 * std::exp(-m / 8.0);
      break;
    }
    case SiteKind::kAirportApproach: {
      level = site_.base_db - 10 + 6 * traffic;
      // Chance of an overflight in this minute: one every ~3 min by day, rare at night.
      const bool quiet_hours = hour < 6.0 || hour >= 23.0;
      const double p = quiet_hours ? 0.03 : 0.35;
      if (Uniform(seed_ ^ (static_cast<uint64_t>(minute) * 0x632be59bd9b4e019ull)) < p) {
        level += 15 + 10 * Uniform(seed_ + static_cast<uint64_t>(minute));
      }
      break;
    }
  }
  // Correlated variation: AR(1) over the last minutes, built from per-minute draws so that
  // any minute can be computed without the ones before it.
  double wander = 0;
  double weight = 1;
  for (int k = 0; k < 6; ++k) {
    wander += weight * Normal(seed_ + static_cast<uint64_t>(minute - k));
    weight *= 0.6;
  }
  level +=
      1.2 * wander * std::sqrt(1 - 0.36) + 0.8 * Normal(~seed_ + static_cast<uint64_t>(minute));
  return std::round(level * 10) / 10;
}

}  // namespace uop::noise_sim
