// Receipts: the receiver's signed statement that it durably wrote a batch, carried to the owner
// as opaque bytes in the gRPC Ack. Byte layout (all integers big endian; docs/audit.md):
//
//   off  size  field
//   0    1     version = 1
//   1    4     receiver key id (C2SP note key id of the receiver's audit key)
//   5    1+n   receiver name (u8 length, 1..255 bytes)
//   .    1+n   origin node name (the owner; u8 length, 1..255 bytes)
//   .    2+n   origin topic (u16 length, 1..65535 bytes)
//   .    4     origin partition (int32)
//   .    8     first origin offset (int64, inclusive)
//   .    8     last origin offset (int64, inclusive)
//   .    8     record count (uint64)
//   .    32    batch SHA-256 (BatchDigest)
//   .    8     receiver's log index of its batch_received entry (uint64)
//   .    8     receiver's time of that entry (int64, Unix microseconds)
//   .    64    Ed25519 signature over "uop-audit-receipt/v1\n" || all preceding bytes
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "audit/entry.h"
#include "audit/keys.h"

namespace uop::audit {

struct Receipt {
  std::string receiver;
  std::string origin;
  std::string topic;
  int32_t partition = 0;
  int64_t first_offset = 0;
  int64_t last_offset = 0;
  uint64_t record_count = 0;
  std::string batch_sha256;  // 32 raw bytes
  uint64_t log_index = 0;
  int64_t time_micros = 0;

  friend bool operator==(const Receipt&, const Receipt&) = default;
};

inline constexpr size_t kMaxReceiptBytes = 1 + 4 + 256 + 256 + 65537 + 4 + 8 * 3 + 32 + 16 + 64;

// The receipt for a batch_received entry that the receiver's log committed (entry.index and
// entry.time_micros set), naming `origin` (the owner).
absl::StatusOr<Receipt> ReceiptFor(const Entry& received, absl::string_view receiver,
                                   absl::string_view origin);
// The signed bytes; receipt.receiver must be signer.name().
absl::StatusOr<std::string> SignReceipt(const Receipt& receipt, const Signer& signer);
// Parses without checking the signature (for display); strict about the layout.
absl::StatusOr<Receipt> ParseReceipt(absl::string_view bytes);
// Parses and checks that `receiver_key` signed it (name and key id must match too).
absl::StatusOr<Receipt> VerifyReceipt(absl::string_view bytes, const Verifier& receiver_key);
// Owner side: does the receipt acknowledge exactly the batch in `sent` (a batch_sent entry)?
// Names the first field that differs.
absl::Status CheckReceiptMatches(const Receipt& receipt, const Entry& sent);
// The owner's receipt entry for a verified receipt: the receipt's fields and its bytes.
Entry ReceiptEntry(const Receipt& receipt, absl::string_view receipt_bytes,
                   absl::string_view dataset);

// Receiver side, once `received` (a batch_received entry) is durable at `index` with `time_micros`
// (AuditSink's AppendResult): the receipt bytes for the Ack.
absl::StatusOr<std::string> SignReceiptFor(const Entry& received, uint64_t index,
                                           int64_t time_micros, const Signer& receiver,
                                           absl::string_view owner);

// Owner side, for the receipt in an Ack of the batch it logged as `sent` (batch_sent): checks
// the signature with the receiver's key, that it acknowledges a batch of `owner`, and that it
// names exactly that batch; returns the receipt entry to append. Until this succeeds and the
// entry is durable, the batch is not delivered.
absl::StatusOr<Entry> AcceptReceipt(absl::string_view receipt_bytes, const Verifier& receiver_key,
                                    absl::string_view owner, const Entry& sent);

}  // namespace uop::audit
