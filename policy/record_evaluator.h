// The per-record part of a share: parse a JSON record once, apply format, spatial and field
// rules, and write what leaves. Stateless between records (aggregation state lives in
// ShareTransform); holds only reusable buffers and the keyed HMAC.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "policy/decision.h"
#include "policy/pseudonymiser.h"
#include "policy/rules.h"

namespace simdjson::dom {
class parser;
}

namespace uop::policy {

// One record's values an aggregate needs, taken from the same parse.
struct AggregateInput {
  int64_t event_time_ms = 0;
  std::string group;  // the key as it leaves (pseudonymised if `by` is), JSON text
  double value = 0;
};

// Evaluates records for one share. `*share` must outlive the evaluator. Not thread-safe: one
// per transform (it owns a simdjson parser and HMAC state).
class RecordEvaluator {
 public:
  explicit RecordEvaluator(const Share* share);
  ~RecordEvaluator();
  RecordEvaluator(const RecordEvaluator&) = delete;
  RecordEvaluator& operator=(const RecordEvaluator&) = delete;

  // Applies every per-record rule. When the record is kept (reason kNone), sets `*out_key` and
  // `*out_value` to what leaves. With `aggregate` non-null the share must aggregate: nothing is
  // written and `*aggregate` receives the record's time, group and value instead. With `trace`
  // non-null, appends one line per rule applied (for `uopctl policy explain`; never a key).
  WithheldReason Evaluate(std::string_view key, std::string_view value, int64_t timestamp_ms,
                          absl::Time now, std::string* out_key, std::string* out_value,
                          AggregateInput* aggregate, std::vector<std::string>* trace);

  // HMAC-SHA256 of `bytes` under the share's key as 64 lowercase hex digits (the pseudonym).
  std::string Pseudonym(std::string_view bytes);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Appends `s` as a JSON string literal (quotes, escapes for '"', '\\' and control characters;
// other UTF-8 bytes as they are).
void AppendJsonString(std::string* out, std::string_view s);
// Appends a double in shortest round-trip form; integral values get ".0" so they stay floats.
void AppendJsonDouble(std::string* out, double v);
// RFC 3339 in UTC with milliseconds only when non-zero: 2026-01-01T00:15:00Z.
std::string FormatTime(int64_t epoch_ms);

}  // namespace uop::policy
