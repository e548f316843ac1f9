// What a share did with one source record, with a small set of stable reason names (the broker
// counts withheld records per dataset, peer and reason on /metrics).
#pragma once

#include <cstdint>
#include <string_view>

namespace uop::policy {

enum class WithheldReason : uint8_t {
  kNone = 0,
  kNoShare,           // "no_share": the dataset is not shared with this peer
  kNotValid,          // "not_valid": outside the share's validity window
  kNotJson,           // "not_json": not JSON, invalid UTF-8, too deep, numbers out of range
  kNotObservation,    // "not_observation": not a SensorThings Observation (format rule)
  kNoLocation,        // "no_location": no geometry and no_location: deny
  kBadLocation,       // "bad_location": the location is not a readable GeoJSON geometry
  kOutsideArea,       // "outside_area": the geometry is not within the share's area
  kPastRetention,     // "past_retention": older than the share's retention when read
  kNoAggregateValue,  // "no_aggregate_value": aggregation: missing time, key or numeric value
  kLate,              // "late": aggregation: its window was already closed
  kBelowMinCount,     // "below_min_count": aggregation: its window had fewer than min_count
};
inline constexpr int kWithheldReasonCount = 12;

// Stable snake_case names: metric labels and explain output. Never change one.
const char* WithheldReasonName(WithheldReason reason);

struct Decision {
  enum class Verdict : uint8_t {
    kKept,        // the record leaves (transformed); see the output records
    kAggregated,  // the record went into an open window; only the aggregate will leave
    kWithheld,    // the record does not leave; see `reason`
  };
  Verdict verdict = Verdict::kWithheld;
  WithheldReason reason = WithheldReason::kNone;
  // True while a resumed transform re-reads records it had already decided before the restart
  // (their outputs, if any, are suppressed): do not count them again.
  bool replay = false;

  static Decision Kept() { return {Verdict::kKept, WithheldReason::kNone, false}; }
  static Decision Withheld(WithheldReason r) { return {Verdict::kWithheld, r, false}; }
};

}  // namespace uop::policy
