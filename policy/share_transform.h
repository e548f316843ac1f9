// The owner's transform stage for one (dataset, peer, partition): source records in partition
// order in, records that may leave out, each with the resume token that restarts the stream
// right after it. Sans-I/O: the caller reads Kafka, passes the time, and sends the outputs.
#pragma once

#include <compare>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "policy/decision.h"
#include "policy/policy_snapshot.h"
#include "policy/record_evaluator.h"

namespace uop::policy {

// librdkafka's RD_KAFKA_OFFSET_BEGINNING: start from the oldest record the partition holds.
inline constexpr int64_t kOffsetBeginning = -2;

// A record as read from the owner's Kafka. Views into the caller's buffers, valid for the call.
struct SourceRecord {
  int32_t partition = 0;
  int64_t offset = 0;
  int64_t timestamp_ms = 0;
  std::string_view key;
  std::string_view value;
  std::vector<std::pair<std::string_view, std::string_view>> headers;
};

// A record that may leave, owning its bytes.
struct OutputRecord {
  std::string key;
  std::string value;
  int64_t timestamp_ms = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  // Opaque to the receiver: stored with the record (uop.resume) and sent back on resubscribe.
  std::string resume_token;
  // The highest source offset this output accounts for (plain: the record's own offset;
  // aggregate: the record that closed the window). For provenance (uop.origin.offset).
  int64_t source_offset = 0;
};

// What one Apply or Advance call produced.
struct TransformOutput {
  std::vector<OutputRecord> records;  // to send, in this order, before any later output
  // Records in windows that closed with fewer than min_count records (withheld, not sent).
  int64_t below_min_count_records = 0;
  void Clear() {
    records.clear();
    below_min_count_records = 0;
  }
};

// Resume tokens. Plain mirroring: version 1 + next origin offset (big-endian int64), the format
// broker/provenance.cc has always written, so existing mirrors resume unchanged. Aggregation:
// version 2, see share_transform.cc.
std::string EncodeOffsetToken(int64_t next_offset);
std::optional<int64_t> DecodeOffsetToken(absl::string_view token);
// Orders two resume tokens of one partition, for the receiver's replay filter (drop an output
// whose token is not after the last one its Kafka holds). Needed because several aggregates can
// be closed by one source record and so share uop.origin.offset: plain tokens order by offset,
// aggregate tokens by (closing offset, window start, key), which strictly increases along a
// partition's outputs. nullopt if either token is not ours or they are of different kinds.
std::optional<std::strong_ordering> CompareResumeTokens(absl::string_view a, absl::string_view b);

// Not thread-safe: one per (stream, partition), used by one thread at a time. Holds `snapshot`
// (shared), so rules stay alive and unchanged for its lifetime; a new snapshot means a new
// transform resumed from the last token sent (a change takes effect at a record boundary).
class ShareTransform {
 public:
  // Rebuilds the transform for `partition` from `resume_token` (empty: from the beginning).
  // NotFound if the snapshot has no share of `dataset` for `peer`; InvalidArgument for a token
  // that is not ours. Read the source from NextReadOffset() on.
  static absl::StatusOr<std::unique_ptr<ShareTransform>> Resume(
      std::shared_ptr<const PolicySnapshot> snapshot, absl::string_view dataset,
      absl::string_view peer, int32_t partition, absl::string_view resume_token);

  // Applies the share to the next record of the partition (offsets ascending). Appends what
  // leaves to `out`. A record outside the validity window is withheld (kNotValid) and not
  // consumed: stop the stream and do not advance past it.
  Decision Apply(const SourceRecord& record, absl::Time now, TransformOutput* out);

  // Call when the source has no record ready (caught up): closes aggregation windows whose end
  // plus lateness is at or before `now`, as if event time had reached `now`. Plain shares:
  // nothing to do. Ignored while re-reading records from before a restart.
  void Advance(absl::Time now, TransformOutput* out);

  // Where to (re)start reading the source: after Resume, the offset the token implies (or
  // kOffsetBeginning); after Apply, the record's offset + 1.
  int64_t NextReadOffset() const { return next_read_; }

  const Share& share() const { return *share_; }
  const std::string& policy_version() const { return snapshot_->version(); }

 private:
  struct WindowId {
    int64_t start_ms;
    std::string group;
    auto operator<=>(const WindowId&) const = default;
  };
  struct Window {
    int64_t first_offset;
    int64_t count = 0;
    double sum = 0, min = 0, max = 0;
  };

  ShareTransform(std::shared_ptr<const PolicySnapshot> snapshot, const Share* share,
                 int32_t partition);
  Decision ApplyAggregate(const SourceRecord& record, TransformOutput* out);
  // Closes every open window whose end + lateness <= watermark_ms_; `trigger` is the source
  // offset that moved the watermark (or the next read offset for Advance).
  void CloseWindows(int64_t watermark_before, int64_t trigger, TransformOutput* out);
  std::string EncodeAggregateToken(int64_t read_from, int64_t watermark_before, int64_t trigger,
                                   const WindowId& last) const;

  std::shared_ptr<const PolicySnapshot> snapshot_;
  const Share* share_;
  int32_t partition_;
  RecordEvaluator evaluator_;
  int64_t next_read_ = kOffsetBeginning;
  // Aggregation state.
  std::map<WindowId, Window> open_;
  std::multiset<int64_t> first_offsets_;  // of the open windows
  int64_t watermark_ms_ = INT64_MIN;
  std::optional<WindowId> last_done_;  // last window emitted (or withheld) before a restart
  int64_t replay_until_ = -1;          // offsets below this were decided before the restart
  AggregateInput input_;
  std::string scratch_key_, scratch_value_;
};

// A token-bucket pacer for a share's `rate` (records per second across all partitions of a
// stream): tells when a record may be sent; it never drops. Burst: one second's worth.
// Not thread-safe; one per stream.
class RatePacer {
 public:
  explicit RatePacer(double records_per_s);
  // The earliest time the next record may be sent (>= now); reserves that slot.
  absl::Time Admit(absl::Time now);

 private:
  absl::Duration interval_;
  absl::Duration tolerance_;
  absl::Time tat_ = absl::InfinitePast();  // theoretical arrival time of the next record
};

}  // namespace uop::policy
