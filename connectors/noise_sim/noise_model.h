// LAeq,1min for a site at a time: day/night and weekday traffic profiles with rush-hour peaks,
// ferry arrivals and departures at the harbours, aircraft on the approach paths, and
// correlated random variation. Deterministic: the same seed, site and time give the same value.
#pragma once

#include <cstdint>

#include "absl/time/time.h"
#include "connectors/noise_sim/sites.h"

namespace uop::noise_sim {

// Traffic intensity 0..1 at local civil time (hour of day with fraction, weekday 0 = Monday).
double TrafficProfile(double hour, int weekday);

// Minutes to the nearest Helsinki–Tallinn ferry arrival or departure (the timetable is the
// same at both ends, shifted by the 2 h crossing), at local hour `hour`.
double MinutesToFerry(double hour, int weekday);

class NoiseModel {
 public:
  NoiseModel(uint64_t seed, const Site& site);

  // The level for the minute starting at `t` (deterministic in seed, site and t).
  double LaeqAt(absl::Time t) const;

 private:
  uint64_t seed_;
  Site site_;
};

}  // namespace uop::noise_sim
