// One audit log entry: what happened (links, batches, receipts, policies, node lifecycle,
// checkpoints and witnessing) and its canonical byte encoding, which is the Merkle leaf.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace uop::audit {

// Values are part of the on-disk format (docs/audit.md): never renumber.
enum class EntryType : uint8_t {
  kNodeStart = 1,
  kNodeStop = 2,
  kConfigChange = 3,     // payload: new config content hash; reason: what changed
  kLinkUp = 4,           // peer, identity (certificate SAN)
  kLinkDown = 5,         // peer, reason
  kLinkRefused = 6,      // identity as presented, reason
  kBatchSent = 7,        // owner: a batch handed to a peer (batch fields below)
  kBatchReceived = 8,    // receiver: a batch committed to Kafka (batch fields below)
  kBatchRefused = 9,     // either side: a batch or records refused, reason
  kReceipt = 10,         // owner: a peer's verified receipt (payload: receipt bytes) + its fields
  kPolicyLoad = 11,      // policy_version, reason: source path
  kPolicyRejected = 12,  // reason: the validation error
  kPolicyExpired = 13,   // dataset, peer, policy_version
  kCheckpoint = 14,      // payload: this log's signed checkpoint of the first `index` entries
  kCosignature = 15,     // peer: witness; payload: our checkpoint with the peer's cosignature
  kPeerCheckpoint = 16,  // peer: log owner; payload: the peer's checkpoint with our cosignature
  kPeerKey = 17,         // peer; payload: the peer's audit verifier key (vkey), pinned
  // Either side of a checkpoint exchange: peer; reason; payload: the checkpoint concerned (the
  // peer's that we refused to cosign, or ours that the peer refused to cosign)
  kWitnessRefused = 18,
};
inline constexpr uint8_t kMaxEntryType = 18;

// "batch_sent", "receipt", ...; "unknown" for values outside EntryType.
absl::string_view EntryTypeName(EntryType type);
std::optional<EntryType> EntryTypeFromName(absl::string_view name);

inline constexpr size_t kMaxEntryBytes = 1 << 20;

// A plain value. index and time_micros are assigned by the log when it commits the entry.
struct Entry {
  EntryType type = EntryType::kNodeStart;
  uint64_t index = 0;       // position in the log (leaf index)
  int64_t time_micros = 0;  // Unix time in microseconds, non-decreasing along the log

  std::string peer;     // the other node's name
  std::string dataset;  // dataset (share) name
  std::string topic;    // origin topic
  std::optional<int32_t> partition;
  std::optional<int64_t> first_offset;  // origin offsets, inclusive
  std::optional<int64_t> last_offset;
  std::optional<uint64_t> record_count;
  std::optional<uint64_t> byte_count;
  std::string batch_sha256;  // 32 raw bytes (BatchDigest) or empty
  std::string policy_version;
  std::string identity;  // certificate identity (SAN) of a link
  std::string reason;    // human-readable reason or detail
  std::string payload;   // receipt bytes, signed note, vkey, config hash

  friend bool operator==(const Entry&, const Entry&) = default;
};

// Canonical encoding (docs/audit.md): version 1, type, index, time, then the present fields as
// (tag, length, value) in increasing tag order.
std::string EncodeEntry(const Entry& entry);
// Strict inverse of EncodeEntry: rejects anything EncodeEntry would not have produced, so that
// DecodeEntry(b) succeeds only if EncodeEntry(*DecodeEntry(b)) == b.
absl::StatusOr<Entry> DecodeEntry(absl::string_view bytes);

// SHA-256 over the records of a batch as they crossed the border, defined so that both sides
// (in any language) compute it from the records alone: for each record in order,
// u32 big-endian key length, key, u32 big-endian value length, value.
class BatchDigest {
 public:
  BatchDigest();
  ~BatchDigest();
  BatchDigest(const BatchDigest&) = delete;
  BatchDigest& operator=(const BatchDigest&) = delete;
  void AddRecord(absl::string_view key, absl::string_view value);
  std::string Finish();  // 32 raw bytes; the object must not be used afterwards

 private:
  struct State;
  State* state_;
};

}  // namespace uop::audit
