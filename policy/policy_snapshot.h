// Governance rules loaded from a directory of YAML files, as one immutable, versioned snapshot:
// the owner's shares per (dataset, peer) and the receiver's accept rules per (peer, dataset).
// Deny unless a rule allows. Pure logic: no sockets, no Kafka, no clock (time is passed in).
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "policy/rules.h"

namespace uop::policy {

// A dead or contradictory rule: the policy loads, but an admin should look.
struct Warning {
  std::string file;
  int line = 0;  // 1-based; 0 if unknown
  int column = 0;
  std::string key;  // e.g. "shares[0].fields.drop[1]"
  std::string message;
  std::string ToString() const;  // "file:line:column: key 'k': warning: message"
};

// Whether a share lets records out at a given time.
enum class ShareState { kNoShare, kNotYetValid, kActive, kExpired };
const char* ShareStateName(ShareState state);

// What a receiver decides about one incoming record.
struct AcceptDecision {
  bool accepted = false;
  // Stable names for the dead-letter reason header and metrics: "not_accepted" (no rule for
  // this peer and dataset), "too_large", "wrong_format". Empty when accepted.
  std::string reason;
  std::string detail;  // for a person: sizes, the parser's message
};

// One immutable set of rules. Thread-safe: shared as std::shared_ptr<const PolicySnapshot>.
class PolicySnapshot {
 public:
  struct LoadOptions {
    // Where pseudonymisation keys are: a share's `fields.pseudonym_key: NAME` reads
    // <keys_dir>/NAME.key. Empty: "<dir>/keys".
    std::string keys_dir;
  };

  // Loads every *.yaml / *.yml file of `dir` (not subdirectories). A file holds either one
  // dataset with its shares (`dataset:`) or receiver rules (`accept:`); see docs/policy.md.
  // Peers must be among `known_peers`. Errors name file:line:column and key.
  static absl::StatusOr<std::shared_ptr<const PolicySnapshot>> LoadDirectory(
      const std::string& dir, const std::set<std::string>& known_peers);
  static absl::StatusOr<std::shared_ptr<const PolicySnapshot>> LoadDirectory(
      const std::string& dir, const std::set<std::string>& known_peers, const LoadOptions& options);

  // Same, from (file name, content) pairs; used by tests and by LoadDirectory. Entries that do
  // not end in .yaml/.yml are files rules may reference: polygons ("areas/x.geojson", relative
  // to the rule file's directory) and keys ("keys/NAME.key").
  static absl::StatusOr<std::shared_ptr<const PolicySnapshot>> FromFiles(
      const std::map<std::string, std::string>& files, const std::set<std::string>& known_peers);

  // True if `topic` has a share for `peer` (whatever its validity window).
  bool Allows(absl::string_view topic, absl::string_view peer) const;
  // True if the share exists and is valid at `now`.
  bool Allows(absl::string_view topic, absl::string_view peer, absl::Time now) const;
  ShareState StateAt(absl::string_view topic, absl::string_view peer, absl::Time now) const;
  // The topics shared with `peer`, sorted (whatever their validity window).
  std::vector<std::string> TopicsFor(absl::string_view peer) const;
  // The compiled share, or nullptr. Valid while this snapshot lives.
  const Share* FindShare(absl::string_view dataset, absl::string_view peer) const;
  // Every share, sorted by (dataset, peer).
  std::vector<const Share*> Shares() const;

  // Receiver side: the rule for records of `dataset` from `peer`, or nullptr (not accepted).
  const AcceptRule* FindAccept(absl::string_view peer, absl::string_view dataset) const;
  std::vector<const AcceptRule*> AcceptRules() const;
  // True if any accept rule names `peer`: then only what those rules take is accepted from it.
  bool HasAcceptRulesFor(absl::string_view peer) const;
  // Checks one incoming record (key and value bytes) against the accept rule.
  AcceptDecision CheckIncoming(absl::string_view peer, absl::string_view dataset,
                               absl::string_view key, absl::string_view value) const;
  // The retention the receiver's copy gets: the lower of the owner's and the receiver's
  // max_retention; nullopt if neither sets one.
  std::optional<absl::Duration> EffectiveRetention(
      absl::string_view peer, absl::string_view dataset,
      std::optional<absl::Duration> owner_retention) const;

  // Content hash of the canonical rules ("sha256:" + 16 hex digits): stamped on every record.
  // Comments, key order and whitespace do not change it; a rule, a polygon or a key does.
  const std::string& version() const { return version_; }
  // The canonical text the version hashes: one block per share and accept rule, sorted. Key
  // bytes never appear (only their fingerprint). Used by `uopctl policy diff`.
  const std::string& canonical() const { return canonical_; }
  const std::vector<Warning>& warnings() const { return warnings_; }

 private:
  friend class Loader;
  PolicySnapshot() = default;
  std::map<std::pair<std::string, std::string>, std::unique_ptr<Share>, std::less<>>
      shares_;                                   // (dataset, peer)
  std::set<std::string, std::less<>> datasets_;  // every dataset defined, shared or not
  std::map<std::pair<std::string, std::string>, std::unique_ptr<AcceptRule>, std::less<>>
      accepts_;  // (peer, dataset)
  std::string version_;
  std::string canonical_;
  std::vector<Warning> warnings_;
};

// True for a name Kafka accepts as a topic: 1-249 of [A-Za-z0-9._-], not "." or "..".
bool IsValidTopicName(absl::string_view topic);

// "30d", "15m", "2h", "90s", "500ms", "1w": a positive whole number and a unit.
std::optional<absl::Duration> ParsePolicyDuration(absl::string_view text);

}  // namespace uop::policy
