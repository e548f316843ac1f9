// The bridge's structured logs: one JSON object per line on stderr, safe from any thread.
#pragma once

#include <initializer_list>
#include <string>
#include <utility>

#include "absl/strings/string_view.h"

namespace uop::sta_bridge::log {

using Field = std::pair<absl::string_view, std::string>;

// {"ts":...,"level":...,"event":...,fields...}
void Write(absl::string_view level, absl::string_view event, std::initializer_list<Field> fields);

inline void Info(absl::string_view event, std::initializer_list<Field> fields) {
  Write("info", event, fields);
}
inline void Warn(absl::string_view event, std::initializer_list<Field> fields) {
  Write("warn", event, fields);
}
inline void Error(absl::string_view event, std::initializer_list<Field> fields) {
  Write("error", event, fields);
}

}  // namespace uop::sta_bridge::log
