// Writing JSON text by hand on the hot path: string escaping and entity ids.
#pragma once

#include <string>
#include "absl/strings/string_view.h"

#include <string_view>

namespace uop::sta {

// simdjson speaks std::string_view; Debian's abseil has its own string_view type.
inline absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// Appends `s` as a JSON string literal (with quotes), escaping per RFC 8259.
void AppendJsonString(std::string* out, absl::string_view s);
std::string JsonString(absl::string_view s);

// An STA entity id: FROST-Server uses numbers or strings (server setting). Lookups compare the
// text only, so Datastreams(42) and {"@iot.id":"42"} name the same Datastream.
struct EntityId {
  std::string text;
  bool numeric = false;

  std::string Json() const { return numeric ? text : JsonString(text); }
  // The key form in a resource path: 42 or 'abc' (quotes doubled, as OData does).
  std::string PathKey() const;
  bool operator==(const EntityId& o) const { return text == o.text; }
};

}  // namespace uop::sta
