// Partition counts of the owner's topics for ListOffers and Subscribe, from one metadata request
// for all topics kept for a short while: a receiver that asks for its offers and then opens a
// stream per dataset costs one round trip to Kafka, not one per topic or stream.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/clock.h"

namespace uop::broker {

// Thread-safe. `clock` must outlive it.
class PartitionCounts {
 public:
  // Every topic's count in one request (kafka::Env::AllPartitionCounts).
  using FetchAll = std::function<absl::StatusOr<std::map<std::string, int>>()>;
  // One topic's count, NotFound when it does not exist (kafka::Env::PartitionCount).
  using FetchOne = std::function<absl::StatusOr<int>(const std::string& topic)>;

  PartitionCounts(FetchAll fetch_all, FetchOne fetch_one, absl::Duration max_age,
                  const core::Clock* clock);

  // The counts of those of `topics` that exist, from a snapshot at most max_age old (taken now
  // if the last one is older). An error when the snapshot cannot be taken.
  absl::StatusOr<std::map<std::string, int>> ForTopics(const std::vector<std::string>& topics);

  // One topic's count: from the snapshot if it is fresh and names the topic, else asked of
  // Kafka for this topic alone (a topic created since the snapshot is found, never refused
  // because of the cache).
  absl::StatusOr<int> Count(const std::string& topic);

 private:
  const FetchAll fetch_all_;
  const FetchOne fetch_one_;
  const absl::Duration max_age_;
  const core::Clock* clock_;

  absl::Mutex mu_;
  std::optional<std::map<std::string, int>> snapshot_ ABSL_GUARDED_BY(mu_);
  absl::Time taken_at_ ABSL_GUARDED_BY(mu_);
};

}  // namespace uop::broker
