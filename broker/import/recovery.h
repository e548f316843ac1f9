// Where a receiver stands, read from its own Kafka only: the positions held per origin partition
// of one imported dataset, and whether a transaction is still open on its partitions.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "core/provenance.h"
#include "kafka/client.h"

namespace uop::broker {

// The partitions of one dataset this node holds: origin partition p is partition p of both
// topics.
struct RecoveryTarget {
  std::string mirror_topic;
  std::string deadletter_topic;
  std::vector<int32_t> partitions;
};

// (topic, partition) pairs of the mirror and dead-letter topics.
using TopicPartitions = std::vector<std::pair<std::string, int32_t>>;

// Partitions whose last stable offset lags their high watermark: a transaction is open there (a
// writer that is still committing or aborting, a zombie whose commit the group will refuse, or
// records a coordinator left open after a broker restart). Recovery must not read before they
// are closed: a read_committed tail stops below them.
absl::StatusOr<TopicPartitions> OpenTransactions(kafka::Env* kafka, const std::string& node,
                                                 const RecoveryTarget& target);

// What our Kafka holds per partition of `target`: the last records of the mirror and
// dead-letter partitions (records are written in origin order), and where they hold no
// mirrored record (emptied by retention or delete-records), the position committed with the
// last transaction as `group_id`'s offset. `tails_only` skips that (after a fence aborted
// records, the offset of that very transaction may have committed while its records did not).
absl::StatusOr<std::map<int32_t, core::PartitionCheckpoint>> RecoverPositions(
    kafka::Env* kafka, const std::string& node, const std::string& group_id,
    const RecoveryTarget& target, bool tails_only);

}  // namespace uop::broker
