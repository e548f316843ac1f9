// Fuzzes what arrives from outside the node or the auditor's machine: proof files, signed
// checkpoints (with cosignatures), checkpoints offered for witnessing (the Witness call),
// receipts and verifier keys.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "audit/checkpoint.h"
#include "audit/keys.h"
#include "audit/proof.h"
#include "audit/receipt.h"
#include "audit/witness.h"

namespace {

const uop::audit::Verifier& FixedKey() {
  static const uop::audit::Verifier key = *uop::audit::Verifier::FromVkey(
      "helsinki+c354e400+AbiX/Hdcv1Tn9rJUgW//m5cRA9SoyGY2EAqjr80CSXi5");
  return key;
}

const uop::audit::Verifier& PeerKey() {
  static const uop::audit::Verifier key = *uop::audit::Verifier::FromVkey(
      "tallinn+1ebebc5e+AXxSwEE3WDxPuhmwrt/1O1PZdur5z4goguehWjTRwcIo");
  return key;
}

const uop::audit::Signer& WitnessKey() {
  static const std::unique_ptr<uop::audit::Signer> key = *uop::audit::Signer::Generate("tallinn");
  return *key;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<uop::audit::Proof> proof = uop::audit::ParseProof(input);
  if (proof.ok()) {
    // Formatting is the inverse of parsing for everything that parses.
    absl::StatusOr<uop::audit::Proof> again =
        uop::audit::ParseProof(uop::audit::FormatProof(*proof));
    if (!again.ok() || uop::audit::FormatProof(*again) != uop::audit::FormatProof(*proof)) {
      std::abort();
    }
    (void)uop::audit::VerifyProof(*proof, FixedKey());
  }
  absl::StatusOr<uop::audit::SignedNote> note = uop::audit::ParseNote(input);
  if (note.ok()) {
    (void)uop::audit::ParseCheckpointBody(note->body);
    (void)uop::audit::VerifyCosigned(input, FixedKey(), PeerKey());
    // As a peer's offer in a Witness call: against a last cosigned checkpoint, with a proof
    // taken from the input's first bytes.
    uop::audit::Checkpoint last;
    last.origin = "helsinki";
    last.size = size % 64;
    std::vector<uop::audit::Hash> proof(size / 97 % 4);
    for (size_t i = 0; i < proof.size() && (i + 1) * 32 <= size; ++i) {
      std::copy(data + i * 32, data + (i + 1) * 32, proof[i].begin());
    }
    (void)uop::audit::WitnessCheckpoint(input, FixedKey(), last, proof, WitnessKey(), 0);
  }
  absl::StatusOr<uop::audit::Receipt> receipt = uop::audit::ParseReceipt(input);
  if (receipt.ok() && receipt->batch_sha256.size() != 32) std::abort();
  (void)uop::audit::VerifyReceipt(input, PeerKey());
  (void)uop::audit::Verifier::FromVkey(input);
  return 0;
}
