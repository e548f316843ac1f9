// Dataset sharing rules loaded from a directory of YAML files, as one immutable, versioned
// snapshot. Deny unless a rule allows. Pure logic: no sockets, no Kafka, no clock.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace uop::policy {

// One immutable set of rules. Thread-safe: shared as std::shared_ptr<const PolicySnapshot>.
class PolicySnapshot {
 public:
  // Loads every *.yaml / *.yml file of `dir`. Each file holds one dataset:
  //   dataset: noise.observations     # a local topic
  //   share:
  //     - peer: tallinn
  // Peers must be among `known_peers`. Errors name file:line:column and key.
  static absl::StatusOr<std::shared_ptr<const PolicySnapshot>> LoadDirectory(
      const std::string& dir, const std::set<std::string>& known_peers);

  // Same, from (file name, content) pairs; used by tests and by LoadDirectory.
  static absl::StatusOr<std::shared_ptr<const PolicySnapshot>> FromFiles(
      const std::map<std::string, std::string>& files, const std::set<std::string>& known_peers);

  // True if `topic` may leave this node towards `peer`.
  bool Allows(absl::string_view topic, absl::string_view peer) const;
  // The topics shared with `peer`, sorted.
  std::vector<std::string> TopicsFor(absl::string_view peer) const;
  // Content hash of all rule files ("sha256:" + 16 hex digits): stamped on every record.
  const std::string& version() const { return version_; }

 private:
  PolicySnapshot() = default;
  std::map<std::string, std::set<std::string>, std::less<>> shares_;  // topic -> peers
  std::string version_;
};

// True for a name Kafka accepts as a topic: 1-249 of [A-Za-z0-9._-], not "." or "..".
bool IsValidTopicName(absl::string_view topic);

}  // namespace uop::policy
