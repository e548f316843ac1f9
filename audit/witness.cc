// The witness side of checkpoint exchange (C2SP tlog-cosignature semantics).
#include "audit/witness.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace uop::audit {

absl::StatusOr<std::string> WitnessCheckpoint(absl::string_view note, const Verifier& log_key,
                                              const std::optional<Checkpoint>& last,
                                              std::span<const Hash> consistency_proof,
                                              const Signer& witness, int64_t time_seconds) {
  absl::StatusOr<Checkpoint> c = VerifyCheckpoint(note, log_key);
  if (!c.ok()) return c.status();
  if (last.has_value()) {
    if (c->origin != last->origin) {
      return absl::FailedPreconditionError(
          absl::StrCat("checkpoint of ", c->origin, ", the last cosigned was of ", last->origin));
    }
    if (c->size < last->size) {
      return absl::DataLossError(absl::StrCat(log_key.name(), "'s log shrank from ", last->size,
                                              " to ", c->size, " entries"));
    }
    if (absl::Status s =
            VerifyConsistency(last->size, c->size, last->root, c->root, consistency_proof);
        !s.ok()) {
      return absl::DataLossError(absl::StrCat(log_key.name(), "'s checkpoint of ", c->size,
                                              " entries does not extend the one of ", last->size,
                                              " we cosigned: ", s.message()));
    }
  }
  return Cosign(note, witness, time_seconds);
}

}  // namespace uop::audit
