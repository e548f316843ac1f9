// ISO 8601 parsing on absl's RFC 3339 parser, with the strictness STA clients expect.
#include "connectors/sta/iso_time.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace uop::sta {
namespace {

absl::StatusOr<absl::Time> ParseInstant(absl::string_view text) {
  // absl accepts surrounding whitespace and a lower-case 't'; an STA time is a bare token.
  if (text.empty()) return absl::InvalidArgumentError("empty time");
  if (text.size() < 20 || text[10] != 'T' || absl::ascii_isspace(text.front()) ||
      absl::ascii_isspace(text.back())) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", text, "' is not an ISO 8601 date-time (expected e.g. ",
                     "2026-12-02T14:00:00Z or 2026-12-02T14:00:00.250+02:00)"));
  }
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, std::string(text), &t, &err)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", text, "' is not an ISO 8601 date-time with an offset (", err, ")"));
  }
  return t;
}

}  // namespace

std::string FormatInstant(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E*SZ", t, absl::UTCTimeZone());
}

std::string TimeValue::ToString() const {
  if (!interval) return FormatInstant(start);
  return absl::StrCat(FormatInstant(start), "/", FormatInstant(end));
}

absl::StatusOr<TimeValue> ParseIsoTime(absl::string_view text, bool allow_interval) {
  const size_t slash = text.find('/');
  TimeValue v;
  if (slash == absl::string_view::npos) {
    auto t = ParseInstant(text);
    if (!t.ok()) return t.status();
    v.start = v.end = *t;
    return v;
  }
  if (!allow_interval) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", text, "' is an interval; an instant is required"));
  }
  auto start = ParseInstant(text.substr(0, slash));
  if (!start.ok()) return start.status();
  auto end = ParseInstant(text.substr(slash + 1));
  if (!end.ok()) return end.status();
  if (*end < *start) {
    return absl::InvalidArgumentError(absl::StrCat("interval '", text, "' ends before it starts"));
  }
  v.start = *start;
  v.end = *end;
  v.interval = true;
  return v;
}

}  // namespace uop::sta
