// Mirroring names and tokens.
#include "core/provenance.h"

#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

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

std::string EncodePositionMetadata(const PartitionCheckpoint& position) {
  return absl::StrCat("uop1 ", position.last_offset(), " ",
                      absl::BytesToHexString(position.token()));
}

std::optional<PartitionCheckpoint> DecodePositionMetadata(absl::string_view metadata) {
  std::vector<absl::string_view> parts = absl::StrSplit(metadata, ' ');
  if (parts.size() != 3 || parts[0] != "uop1") return std::nullopt;
  int64_t last = 0;
  if (!absl::SimpleAtoi(parts[1], &last) || last < -1) return std::nullopt;
  if (parts[2].size() % 2 != 0 ||
      parts[2].find_first_not_of("0123456789abcdef") != absl::string_view::npos) {
    return std::nullopt;
  }
  return PartitionCheckpoint(last, absl::HexStringToBytes(parts[2]));
}

}  // namespace uop::core
