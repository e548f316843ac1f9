// Offline verification of a loaded audit log (directory or bundle): entry positions and
// times, every checkpoint against the tree, every signature, every receipt, every
// cosignature; and the check that catches a rewritten log: a checkpoint a peer cosigned.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "audit/checkpoint.h"
#include "audit/keys.h"
#include "audit/loaded_log.h"

namespace uop::audit {

struct CheckOptions {
  // The log's key as the auditor knows it; without it the directory's or bundle's own key is
  // used (and a warning says so: that proves integrity, not authorship).
  std::optional<Verifier> log_key;
  // Keys of peers, for their receipts and cosignatures; pinned peer_key entries and the
  // bundle manifest fill gaps (with a warning).
  std::vector<Verifier> peer_keys;
};

struct CheckReport {
  std::optional<Finding> failure;  // the first problem found; nothing after it is trusted
  std::vector<std::string> warnings;
  uint64_t leaves = 0;
  uint64_t entries = 0;
  uint64_t checkpoints = 0;
  uint64_t receipts = 0;
  uint64_t cosignatures = 0;                       // peers' cosignatures of this log's checkpoints
  uint64_t peer_checkpoints = 0;                   // peers' checkpoints this log cosigned
  uint64_t signed_size = 0;                        // size of the latest checkpoint
  std::optional<std::string> latest_checkpoint;    // its note
  std::map<uint64_t, Hash> checkpoint_roots;       // tree size -> root of every checkpoint
  std::map<std::string, uint64_t> witnessed_size;  // witness -> largest size it cosigned
  std::map<std::string, Verifier> keys;            // peer name -> key used
  bool ok() const { return !failure.has_value(); }
};

CheckReport CheckLog(const LoadedLog& log, const CheckOptions& options);

// Is `cosigned_note` (this log's checkpoint with `witness`'s cosignature, as the witness
// keeps it) consistent with the log as it is now? Fails with DataLoss when the log was
// rewritten or truncated after the witness saw it, naming sizes and roots.
absl::Status CheckAgainstWitnessed(const LoadedLog& log, absl::string_view cosigned_note,
                                   const Verifier& log_key, const Verifier& witness);

}  // namespace uop::audit
