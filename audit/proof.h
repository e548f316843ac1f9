// Proof files, which `uopctl audit prove` writes and `verify-proof` checks with nothing but the
// log's public key. Text, one field per line:
//   uop-audit-proof/v1
//   type inclusion | consistency
//   inclusion:   index <i>, entry <base64 entry bytes>, checkpoint <base64 signed note>
//   consistency: old <base64 signed note>, checkpoint <base64 signed note>
//   hash <base64 32 bytes>   (zero or more, in RFC 9162 order)
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "audit/checkpoint.h"
#include "audit/entry.h"
#include "audit/keys.h"
#include "audit/merkle.h"

namespace uop::audit {

struct Proof {
  enum class Type { kInclusion, kConsistency } type = Type::kInclusion;
  uint64_t index = 0;    // inclusion
  std::string entry;     // inclusion: the entry's canonical bytes
  std::string old_note;  // consistency: the older signed checkpoint
  std::string note;      // the (newer) signed checkpoint
  std::vector<Hash> hashes;
};

std::string FormatProof(const Proof& proof);
absl::StatusOr<Proof> ParseProof(absl::string_view text);

struct ProvenProof {
  Checkpoint checkpoint;
  std::optional<Checkpoint> old_checkpoint;  // consistency
  std::optional<Entry> entry;                // inclusion
};

// Verifies the checkpoint signature(s) with `log_key`, then the proof against them.
absl::StatusOr<ProvenProof> VerifyProof(const Proof& proof, const Verifier& log_key);

}  // namespace uop::audit
