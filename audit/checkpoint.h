// Signed checkpoints in the C2SP tlog-checkpoint format (a C2SP signed note), and witness
// cosignatures in the C2SP tlog-cosignature (v1, Ed25519) format:
//
//   <origin>\n<tree size>\n<base64 root>\ntime <unix seconds>\n
//   \n
//   — <log key name> base64(key id || Ed25519 signature of the body)\n
//   — <witness name> base64(key id || u64 timestamp || Ed25519 signature of
//                            "cosignature/v1\ntime <timestamp>\n" || body)\n
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "audit/keys.h"
#include "audit/merkle.h"

namespace uop::audit {

struct Checkpoint {
  std::string origin;
  uint64_t size = 0;
  Hash root{};
  int64_t time_seconds = 0;  // our extension line "time <n>"

  friend bool operator==(const Checkpoint&, const Checkpoint&) = default;
};

std::string FormatCheckpointBody(const Checkpoint& checkpoint);
absl::StatusOr<Checkpoint> ParseCheckpointBody(absl::string_view body);

struct NoteSignature {
  std::string name;
  uint32_t key_id = 0;
  std::string signature;  // after the key id: 64 bytes, or 8 + 64 for a cosignature
};

struct SignedNote {
  std::string body;  // the text including its final newline
  std::vector<NoteSignature> signatures;
};

absl::StatusOr<SignedNote> ParseNote(absl::string_view text);
std::string FormatNote(const SignedNote& note);

// A checkpoint body signed by `signer` (whose name should be the origin).
std::string SignCheckpoint(const Checkpoint& checkpoint, const Signer& signer);

// Verifies the log's signature on `note_text` and returns the checkpoint it signs.
absl::StatusOr<Checkpoint> VerifyCheckpoint(absl::string_view note_text, const Verifier& log_key);

// Appends `witness`'s cosignature, made at `time_seconds`, to a checkpoint note. The caller has
// verified the checkpoint (VerifyCheckpoint) and its consistency with what it saw before.
absl::StatusOr<std::string> Cosign(absl::string_view note_text, const Signer& witness,
                                   int64_t time_seconds);

// Verifies the log's signature and `witness`'s cosignature; returns the checkpoint and sets
// *cosigned_at (if non-null) to the cosignature's timestamp.
absl::StatusOr<Checkpoint> VerifyCosigned(absl::string_view note_text, const Verifier& log_key,
                                          const Verifier& witness, int64_t* cosigned_at = nullptr);

}  // namespace uop::audit
