// Naming, provenance headers, resume tokens and replay filtering: the pure rules of mirroring.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"

namespace uop::core {

// Header names every mirrored record carries in the receiver's Kafka.
inline constexpr absl::string_view kHeaderOrigin = "uop.origin";  // owner node
inline constexpr absl::string_view kHeaderOriginTopic = "uop.origin.topic";
inline constexpr absl::string_view kHeaderOriginPartition = "uop.origin.partition";  // decimal
inline constexpr absl::string_view kHeaderOriginOffset = "uop.origin.offset";        // decimal
inline constexpr absl::string_view kHeaderOriginTimestamp = "uop.origin.timestamp";  // epoch ms
inline constexpr absl::string_view kHeaderPolicyVersion = "uop.policy.version";
inline constexpr absl::string_view kHeaderResume = "uop.resume";  // opaque owner token
// Dead-letter records also carry why they could not be written.
inline constexpr absl::string_view kHeaderDeadLetterReason = "uop.deadletter.reason";

// "<origin>.<topic>": where an origin's topic lives at a receiver (MirrorMaker 2 convention).
std::string MirrorTopicName(absl::string_view origin, absl::string_view topic);
// "<origin>.<topic>.deadletter", same partitioning as the mirror topic.
std::string DeadLetterTopicName(absl::string_view origin, absl::string_view topic);

// The resume token of plain mirroring: version byte 1, then the next origin offset as a
// big-endian int64. Opaque to receivers.
std::string EncodeOffsetToken(int64_t next_offset);
// The next origin offset, or nullopt if `token` is not one of ours.
std::optional<int64_t> DecodeOffsetToken(absl::string_view token);

// Per origin partition: what the receiver's Kafka already holds. Replays are dropped by it.
class PartitionCheckpoint {
 public:
  PartitionCheckpoint() = default;
  PartitionCheckpoint(int64_t last_offset, std::string token)
      : last_offset_(last_offset), token_(std::move(token)) {}

  // True if a record with origin `offset` is not yet held and must be written.
  bool ShouldWrite(int64_t offset) const { return offset > last_offset_; }
  // Marks `offset` (carrying `token`) as durably written. Offsets only move forward.
  void Advance(int64_t offset, std::string token) {
    if (offset > last_offset_) {
      last_offset_ = offset;
      token_ = std::move(token);
    }
  }
  // Marks the record at `offset` (carrying `token`) as the newest held, also when it shares its
  // offset with the one held before (aggregates: broker/import's IsAfter decides the order).
  void Set(int64_t offset, std::string token) {
    last_offset_ = offset;
    token_ = std::move(token);
  }
  int64_t last_offset() const { return last_offset_; }  // -1: nothing held
  const std::string& token() const { return token_; }   // empty: start from the beginning

 private:
  int64_t last_offset_ = -1;
  std::string token_;
};

// A receiver's position for one origin partition as committed-offset metadata of its import
// group: "uop1 <last origin offset> <resume token as lowercase hex>". Kafka keeps committed
// offsets while the group lives, whatever retention or delete-records does to the topic.
std::string EncodePositionMetadata(const PartitionCheckpoint& position);
// nullopt for metadata that is not ours (or empty).
std::optional<PartitionCheckpoint> DecodePositionMetadata(absl::string_view metadata);

}  // namespace uop::core
