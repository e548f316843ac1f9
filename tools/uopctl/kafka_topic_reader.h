// Reads a whole topic (every partition from its start to its current end) into memory; for the
// demo and test tooling, not for the data path.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace uop::tools {

struct ReadRecord {
  int32_t partition = 0;
  int64_t offset = 0;
  int64_t timestamp_ms = 0;
  std::optional<std::string> key;
  std::optional<std::string> value;
  std::vector<std::pair<std::string, std::optional<std::string>>> headers;
  const std::optional<std::string>* Header(absl::string_view name) const;
};

// All records, per partition in offset order. `partitions` must be the topic's count. With
// `last_per_partition` >= 0, only the last that many offsets of each partition.
absl::StatusOr<std::map<int32_t, std::vector<ReadRecord>>> ReadWholeTopic(
    const std::string& bootstrap, const std::string& topic, int partitions,
    int64_t last_per_partition = -1);

absl::StatusOr<int> TopicPartitions(const std::string& bootstrap, const std::string& topic);

}  // namespace uop::tools
