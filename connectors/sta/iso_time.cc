// ISO 8601 parsing on absl's RFC 3339 parser, with the strictness STA clients expect.
#include "connectors/sta/iso_time.h"

#include <cstdint>

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
  // By hand for years 1000-9999: absl::FormatTime parses its format and goes through cctz on
  // every call (about 1 us, twice per record). Same output (a unit test compares them).
  constexpr int64_t kFirst = -30610224000;      // 1000-01-01T00:00:00Z (absl pads no year)
  constexpr int64_t kEnd = 253402300800;        // 10000-01-01T00:00:00Z
  const int64_t secs = absl::ToUnixSeconds(t);  // rounds towards the infinite past
  if (t == absl::InfiniteFuture() || t == absl::InfinitePast() || secs < kFirst || secs >= kEnd) {
    return absl::FormatTime("%Y-%m-%dT%H:%M:%E*SZ", t, absl::UTCTimeZone());
  }
  int64_t nanos = absl::ToInt64Nanoseconds(t - absl::FromUnixSeconds(secs));
  int64_t days = secs / 86400, rest = secs % 86400;
  if (rest < 0) {
    rest += 86400;
    --days;
  }
  // civil_from_days (H. Hinnant, "chrono-Compatible Low-Level Date Algorithms").
  const int64_t z = days + 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  const int64_t day = doy - (153 * mp + 2) / 5 + 1;
  const int64_t month = mp < 10 ? mp + 3 : mp - 9;
  const int64_t year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  char buf[32];
  auto put = [&buf](int at, int64_t v, int digits) {
    for (int i = digits - 1; i >= 0; --i, v /= 10) buf[at + i] = static_cast<char>('0' + v % 10);
  };
  put(0, year, 4);
  buf[4] = '-';
  put(5, month, 2);
  buf[7] = '-';
  put(8, day, 2);
  buf[10] = 'T';
  put(11, rest / 3600, 2);
  buf[13] = ':';
  put(14, rest / 60 % 60, 2);
  buf[16] = ':';
  put(17, rest % 60, 2);
  int len = 19;
  if (nanos > 0) {  // %E*S: as many sub-second digits as needed, no trailing zeros
    int digits = 9;
    while (nanos % 10 == 0) {
      nanos /= 10;
      --digits;
    }
    buf[len++] = '.';
    put(len, nanos, digits);
    len += digits;
  }
  buf[len++] = 'Z';
  return std::string(buf, static_cast<size_t>(len));
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
