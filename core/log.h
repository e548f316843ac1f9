// Structured logs: one JSON object per line on stderr, safe to call from any thread.
#pragma once

#include <initializer_list>
#include <string>
#include <utility>
#include "absl/strings/string_view.h"

namespace uop::log {

enum class Level { kDebug, kInfo, kWarn, kError };

using Field = std::pair<absl::string_view, std::string>;

// Writes {"ts":..., "level":..., "event": event, fields...}. Never pass secrets in fields.
void Write(Level level, absl::string_view event, std::initializer_list<Field> fields = {});

inline void Info(absl::string_view event, std::initializer_list<Field> fields = {}) {
  Write(Level::kInfo, event, fields);
}
inline void Warn(absl::string_view event, std::initializer_list<Field> fields = {}) {
  Write(Level::kWarn, event, fields);
}
inline void Error(absl::string_view event, std::initializer_list<Field> fields = {}) {
  Write(Level::kError, event, fields);
}
inline void Debug(absl::string_view event, std::initializer_list<Field> fields = {}) {
  Write(Level::kDebug, event, fields);
}

// Messages below this level are dropped. Default kInfo; UOP_LOG_LEVEL=debug lowers it.
void SetMinLevel(Level level);

// Escapes s for inclusion inside a JSON string literal.
std::string JsonEscape(absl::string_view s);

}  // namespace uop::log
