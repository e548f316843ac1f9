// One metadata snapshot for all topics, refreshed when older than max_age.
#include "broker/export/partition_counts.h"

namespace uop::broker {

PartitionCounts::PartitionCounts(FetchAll fetch_all, FetchOne fetch_one, absl::Duration max_age,
                                 const core::Clock* clock)
    : fetch_all_(std::move(fetch_all)),
      fetch_one_(std::move(fetch_one)),
      max_age_(max_age),
      clock_(clock) {}

absl::StatusOr<std::map<std::string, int>> PartitionCounts::ForTopics(
    const std::vector<std::string>& topics) {
  absl::MutexLock lock(&mu_);  // held across the request: callers at once share one request
  if (!snapshot_.has_value() || clock_->Now() - taken_at_ >= max_age_) {
    absl::StatusOr<std::map<std::string, int>> all = fetch_all_();
    if (!all.ok()) return all.status();
    snapshot_ = *std::move(all);
    taken_at_ = clock_->Now();
  }
  std::map<std::string, int> counts;
  for (const std::string& topic : topics) {
    if (auto it = snapshot_->find(topic); it != snapshot_->end()) counts.insert(*it);
  }
  return counts;
}

absl::StatusOr<int> PartitionCounts::Count(const std::string& topic) {
  {
    absl::MutexLock lock(&mu_);
    if (snapshot_.has_value() && clock_->Now() - taken_at_ < max_age_) {
      if (auto it = snapshot_->find(topic); it != snapshot_->end()) return it->second;
    }
  }
  return fetch_one_(topic);
}

}  // namespace uop::broker
