// Mirroring names and tokens.
#include "core/provenance.h"

#include "absl/strings/str_cat.h"

namespace uop::core {

std::string MirrorTopicName(absl::string_view origin, absl::string_view topic) {
  return absl::StrCat(origin, ".", topic);
}

std::string DeadLetterTopicName(absl::string_view origin, absl::string_view topic) {
  return absl::StrCat(origin, ".", topic, ".deadletter");
}

std::string EncodeOffsetToken(int64_t next_offset) {
  std::string token(9, '\0');
  token[0] = 1;
  auto value = static_cast<uint64_t>(next_offset);
  for (int i = 8; i >= 1; --i) {
    token[i] = static_cast<char>(value & 0xff);
    value >>= 8;
  }
  return token;
}

std::optional<int64_t> DecodeOffsetToken(absl::string_view token) {
  if (token.size() != 9 || token[0] != 1) return std::nullopt;
  uint64_t value = 0;
  for (int i = 1; i <= 8; ++i) value = (value << 8) | static_cast<unsigned char>(token[i]);
  const auto offset = static_cast<int64_t>(value);
  if (offset < 0) return std::nullopt;
  return offset;
}

}  // namespace uop::core
