// ISO 8601 instants and intervals as SensorThings API 1.1 uses them (phenomenonTime,
// resultTime, validTime): RFC 3339 date-times with an offset, and "start/end" intervals.
#pragma once

#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace uop::sta {

struct TimeValue {
  absl::Time start;
  absl::Time end;  // == start for an instant
  bool interval = false;

  // Normalised to UTC with the fraction the input carried, e.g. "2026-12-02T12:00:00.5Z" or
  // "2026-12-02T12:00:00Z/2026-12-02T12:15:00Z".
  std::string ToString() const;
};

// Parses an instant ("2026-12-02T14:00:00+02:00", "2026-12-02T12:00:00.123Z"), or, when
// `allow_interval`, also "start/end" with start <= end. Errors say what is wrong, not where:
// callers prefix the field name.
absl::StatusOr<TimeValue> ParseIsoTime(absl::string_view text, bool allow_interval);

std::string FormatInstant(absl::Time t);

}  // namespace uop::sta
