// Where a receiver stands, read from its own Kafka only: the positions held per origin partition
// of one imported dataset, and whether a transaction is still open on its partitions.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/clock.h"
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
using TopicPartition = std::pair<std::string, int32_t>;
using TopicPartitions = std::vector<TopicPartition>;

// One partition's answer to a batched lookup (ListOffsets, OffsetFetch).
struct PartitionAnswer {
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  int64_t offset = -1;
  std::string metadata;  // OffsetFetch only
};
using PartitionAnswers = std::map<TopicPartition, PartitionAnswer>;
// Asks Kafka about these partitions at once; a partition missing from the answer counts as
// not answered yet.
using PartitionLookup = std::function<PartitionAnswers(const TopicPartitions&)>;

// Runs `lookup` for `partitions`, and again for those whose error is transient
// (kafka::IsTransientCode: at the receiver, topics just created have no leader for a while, and
// a loaded broker answers NOT_LEADER for seconds) after a wait (`sleep`, from 100 ms doubling to
// 1 s) until `clock` passes `budget` from the start; such a lookup used to fail the whole
// recovery and send the stream into its reconnect backoff. Any other error ends it at once.
// Errors name `what`, the partition and Kafka's reason. `sleep` returns false when the caller
// stops (CANCELLED: a stream being stopped does not wait out the budget). Sans-I/O: `lookup` and
// `sleep` are the seams.
using Sleep = std::function<bool(absl::Duration)>;
absl::StatusOr<PartitionAnswers> LookUpRetryingTransient(const TopicPartitions& partitions,
                                                         const PartitionLookup& lookup,
                                                         absl::string_view what,
                                                         const core::Clock& clock,
                                                         absl::Duration budget, const Sleep& sleep);

// A link's recovery: its Kafka clients are made at first use and kept for the link's life. Made
// per recovery, four clients (with their connections and threads) came and went for each
// attempt of each dataset. Lookups are batched (one ListOffsets per leader for all partitions
// of a dataset, where there was one request per partition and per watermark) and retried in
// place while the cluster catches up. Thread-safe: lookups run concurrently, tail reads one at a
// time (they assign the one tail consumer). `kafka` must outlive the reader.
class RecoveryReader {
 public:
  RecoveryReader(kafka::Env* kafka, std::string node, std::string group_id,
                 absl::Duration retry_budget = absl::Seconds(30));
  RecoveryReader(const RecoveryReader&) = delete;
  RecoveryReader& operator=(const RecoveryReader&) = delete;

  // Partitions whose last stable offset lags their high watermark: a transaction is open there
  // (a writer that is still committing or aborting, a zombie whose commit the group will refuse,
  // or records a coordinator left open after a broker restart). Recovery must not read before
  // they are closed: a read_committed tail stops below them.
  // `stopping`: polled between retries; true ends the lookup with CANCELLED.
  absl::StatusOr<TopicPartitions> OpenTransactions(const RecoveryTarget& target,
                                                   const std::function<bool()>& stopping);

  // What our Kafka holds per partition of `target`: the last records of the mirror and
  // dead-letter partitions (records are written in origin order), and where they hold no
  // mirrored record (emptied by retention or delete-records), the position committed with the
  // last transaction as the link group's offset. `tails_only` skips that (after a fence aborted
  // records, the offset of that very transaction may have committed while its records did not).
  absl::StatusOr<std::map<int32_t, core::PartitionCheckpoint>> RecoverPositions(
      const RecoveryTarget& target, bool tails_only, const std::function<bool()>& stopping);

 private:
  enum class Client { kCommitted, kUncommitted, kGroup };
  // The client, made on first use; it lives as long as the reader.
  absl::StatusOr<rd_kafka_t*> Get(Client which) ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<PartitionAnswers> Offsets(rd_kafka_t* client, const TopicPartitions& partitions,
                                           int64_t which, absl::string_view what,
                                           const std::function<bool()>& stopping);
  // Sleeps `d` in real time unless `stopping` says so.
  static Sleep RealSleep(const std::function<bool()>& stopping);

  kafka::Env* const kafka_;
  const std::string node_;
  const std::string group_id_;
  const absl::Duration retry_budget_;

  absl::Mutex mu_;
  kafka::Handle committed_ ABSL_GUARDED_BY(mu_);    // read_committed: tails, last stable offsets
  kafka::Handle uncommitted_ ABSL_GUARDED_BY(mu_);  // read_uncommitted: high watermarks
  kafka::Handle group_ ABSL_GUARDED_BY(mu_);        // the link's group: committed positions
  absl::Mutex tail_mu_;                             // one tail read at a time on committed_
};

}  // namespace uop::broker
