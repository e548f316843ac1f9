// Witnessing a peer's log: before cosigning a peer's new checkpoint, check its signature and
// that it extends the last checkpoint of that peer we cosigned (a consistency proof), so that
// our cosignatures only ever vouch for one append-only history of the peer's log.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "audit/checkpoint.h"
#include "audit/keys.h"
#include "audit/merkle.h"

namespace uop::audit {

// Verifies `note` (the peer's checkpoint) with `log_key`; if `last` (the peer's checkpoint we
// cosigned last, if any) is given, checks that the new one is not smaller, equal in root when
// equal in size, and that `consistency_proof` (from the peer: PROOF(last.size, new tree)) proves
// it extends `last`. Returns the note with `witness`'s cosignature at `time_seconds`, to send
// back and to log as a peer_checkpoint entry. Errors say why the peer's log is not trusted.
absl::StatusOr<std::string> WitnessCheckpoint(absl::string_view note, const Verifier& log_key,
                                              const std::optional<Checkpoint>& last,
                                              std::span<const Hash> consistency_proof,
                                              const Signer& witness, int64_t time_seconds);

}  // namespace uop::audit
