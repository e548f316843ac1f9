// The receiver's protocol core for one Replicate stream, without sockets or Kafka:
// receive (order, credit, replay filter) -> accept (the receiver's accept rules) -> write (one
// Kafka transaction through a TransactionalSink, dead letters) -> record (AuditSink) ->
// acknowledge (Ack + Credit). The gRPC and Kafka adapters in import_link.cc drive it.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/clock.h"
#include "core/provenance.h"
#include "policy/policy_snapshot.h"
#include "uop/federation/v1/federation.pb.h"

namespace uop::broker {

// The replay filter's order of one origin partition's records: true if the record at origin
// `offset` carrying `token` comes after `held` (what the receiver's Kafka holds). Offsets order
// records; records that share an offset (the aggregates one source record released) are
// ordered by their resume tokens (policy::CompareResumeTokens, docs/protocol.md).
bool IsAfter(const core::PartitionCheckpoint& held, int64_t offset, absl::string_view token);

// One record as the sink must write it: the origin's record plus the headers to append.
struct OutRecord {
  enum class Target { kMirror, kDeadLetter };
  Target target = Target::kMirror;
  absl::string_view topic;  // the Kafka topic to write: the stream's mirror or dead-letter topic
  int32_t partition = 0;
  const uop::federation::v1::Record* record = nullptr;  // key, value, timestamp, origin headers
  std::vector<std::pair<absl::string_view, std::string>> extra_headers;  // provenance (+ reason)
  bool drop_value = false;  // dead letter too large even for the dead-letter topic
};

// A record the sink's Kafka refused for good (too large, invalid), with why.
struct RefusedRecord {
  int32_t partition;
  int64_t offset;
  std::string reason;
  std::string topic;  // the Kafka topic it was written to; empty: the stream's own
};

// Positions to commit with a transaction: (mirror topic, origin partition) -> what is held.
using Positions = std::map<std::pair<std::string, int32_t>, core::PartitionCheckpoint>;

// The write stage: one transaction at a time in the receiver's Kafka. One sink may carry the
// batches of several streams (datasets) in one transaction.
class TransactionalSink {
 public:
  virtual ~TransactionalSink() = default;
  virtual absl::Status Begin() = 0;
  // Queues a record in the open transaction. OK with `*refused` non-empty: Kafka refused this
  // record for good (it belongs in the dead-letter topic); OK with `*refused` empty: queued.
  // Any error status: abort the transaction.
  virtual absl::Status Produce(const OutRecord& record, std::string* refused) = 0;
  // Commits, together with `positions` (what is held per origin partition once this commits),
  // so that the position survives whatever deletes records from the topics. On failure,
  // `refused` lists records Kafka refused for good that were only reported at commit time, and
  // the transaction has been aborted if Kafka required it.
  virtual absl::Status Commit(const Positions& positions, std::vector<RefusedRecord>* refused) = 0;
  virtual absl::Status Abort() = 0;
};

// What a committed transaction wrote, for the audit log.
struct WrittenRange {
  int32_t partition;
  int64_t first_offset;
  int64_t last_offset;
  int64_t records;      // written to the mirror topic
  int64_t deadletters;  // written to the dead-letter topic
};
// One RecordBatch as it crossed (all its records, including replays the receiver dropped).
struct WrittenBatch {
  uint64_t batch_seq = 0;
  int32_t partition = 0;
  int64_t first_offset = 0;
  int64_t last_offset = 0;
  uint64_t records = 0;
  uint64_t bytes = 0;  // the serialized RecordBatch
  std::string sha256;  // audit::BatchDigest of its records; empty unless digest_batches
  std::string policy_version;
};
struct WrittenBatches {
  std::string peer;
  std::string origin_topic;
  uint64_t first_seq = 0;
  uint64_t last_seq = 0;
  std::string policy_version;
  std::vector<WrittenRange> ranges;
  std::vector<WrittenBatch> batches;  // first_seq..last_seq, in order
};

// The record stage, between producing a transaction and committing it: what is committed in
// our Kafka is in the audit log first, so that a crash between the two cannot leave committed
// batches unlogged (docs/audit.md section 6). An error stops the exchange: the transaction is
// aborted and nothing is acknowledged. On success `receipts` may hold a receipt per batch, sent
// in the Ack only once the transaction committed.
class AuditSink {
 public:
  virtual ~AuditSink() = default;
  virtual absl::Status RecordReceived(const WrittenBatches& written,
                                      std::vector<uop::federation::v1::BatchReceipt>* receipts) = 0;
};

// A node without an audit log: records nothing, never fails.
class NoAuditSink final : public AuditSink {
 public:
  absl::Status RecordReceived(const WrittenBatches&,
                              std::vector<uop::federation::v1::BatchReceipt>*) override {
    return absl::OkStatus();
  }
};

// Records Kafka refused for good, remembered across reconnects so the next attempt sends them
// to the dead-letter topic. Not thread-safe.
class RefusedRecords {
 public:
  void Add(const RefusedRecord& r) { reasons_[{r.partition, r.offset}] = r.reason; }
  const std::string* Find(int32_t partition, int64_t offset) const {
    auto it = reasons_.find({partition, offset});
    return it == reasons_.end() ? nullptr : &it->second;
  }
  // Positions at or below `last_offset` of `partition` are written: forget them.
  void Forget(int32_t partition, int64_t last_offset);

 private:
  std::map<std::pair<int32_t, int64_t>, std::string> reasons_;
};

// Not thread-safe: the adapter serialises calls (its reader and writer share one mutex).
class ImportSession {
 public:
  struct Options {
    int window_batches = 64;
    int64_t window_bytes = 8 << 20;
    bool digest_batches = false;  // compute WrittenBatch::sha256 (for the audit log)
    // The accept stage: the receiver's own rules in force (looked up once per transaction).
    // Null, or no accept rule naming this peer: every record is accepted.
    std::function<std::shared_ptr<const policy::PolicySnapshot>()> policies;
  };
  struct Stats {
    int64_t written = 0, deadletters = 0, duplicates = 0, batches = 0, transactions = 0;
    int64_t refused_by_rule = 0;  // of deadletters: refused by our accept rules
  };

  // `checkpoints`: what our Kafka holds, per subscribed origin partition (recovery's result).
  ImportSession(Options options, std::string peer, std::string origin_topic,
                std::map<int32_t, core::PartitionCheckpoint> checkpoints, const core::Clock* clock);

  // The Subscribe that opens the stream: our partitions, their tokens, the initial credit.
  uop::federation::v1::ReceiverMessage SubscribeMessage(
      const uop::federation::v1::Hello& hello) const;
  // The owner's answer. Refused (FAILED_PRECONDITION) unless it is Subscribed for our topic
  // with `expected_partitions` partitions.
  absl::Status OnSubscribed(const uop::federation::v1::OwnerMessage& first,
                            int expected_partitions);
  // A message after Subscribed. A protocol violation (INVALID_ARGUMENT, naming what was wrong)
  // means: cancel the stream and reconnect.
  absl::Status OnOwnerMessage(uop::federation::v1::OwnerMessage&& message);

  bool has_queued() const { return !queue_.empty(); }

  // Resizes the byte window (the link shares one memory budget among its streams). It takes
  // effect as batches are written: the next Credits return less (never below zero) or more than
  // was written, until the window granted equals `bytes`. At least 1.
  void SetWindowBytes(int64_t bytes);
  // The byte window now: the owner's byte credit plus the bytes it sent that are not written.
  int64_t window_bytes() const { return window_bytes_; }

  // Writes every queued batch in one transaction through `sink`, records it in `audit` before
  // the commit, and returns the Ack and Credit to send. Refused records are dead-lettered
  // (remembered in `refused` across failures). On error nothing is acknowledged and the stream
  // must restart from recovery: whether an uncertain commit landed is read back from Kafka.
  // = sink->Begin(), Stage(), Record(), sink->Commit(), then Committed() or StageFailed().
  absl::StatusOr<std::vector<uop::federation::v1::ReceiverMessage>> WriteQueued(
      TransactionalSink* sink, AuditSink* audit, RefusedRecords* refused);

  // The steps of WriteQueued, for a transaction shared by several streams. Stage produces every
  // batch queued now into the sink's open transaction and adds the positions to commit to
  // `positions`; batches that arrive meanwhile wait for the next transaction. An error means:
  // abort the transaction. Call with nothing staged; has_staged() tells whether it staged any.
  absl::Status Stage(TransactionalSink* sink, const RefusedRecords& refused, Positions* positions);
  bool has_staged() const { return staged_.has_value(); }
  // Records the staged batches in `audit` (durable when it returns OK) and keeps their receipts
  // for the Ack. An error means: abort the transaction (fail closed).
  absl::Status Record(AuditSink* audit);
  // The transaction holding the staged (and recorded) batches committed: returns the Ack, with
  // the receipts, and the Credit.
  absl::StatusOr<std::vector<uop::federation::v1::ReceiverMessage>> Committed(
      RefusedRecords* refused);
  // The transaction failed: nothing staged is acknowledged; `late` (refusals Kafka reported only
  // at commit) of this stream's topics are remembered for the next attempt.
  void StageFailed(const std::vector<RefusedRecord>& late, RefusedRecords* refused);
  const std::string& mirror_topic() const { return mirror_topic_; }
  const std::string& deadletter_topic() const { return deadletter_topic_; }

  // Records the owner holds that our Kafka does not, over the subscribed partitions.
  int64_t lag_records() const;
  // Age of the newest committed record while lagging, else 0.
  double lag_seconds() const;
  const Stats& stats() const { return stats_; }
  // The records the last successful WriteQueued sent to the dead-letter topic, with why.
  const std::vector<RefusedRecord>& last_deadletters() const { return last_deadletters_; }
  const std::map<int32_t, core::PartitionCheckpoint>& checkpoints() const { return checkpoints_; }
  const std::string& policy_version() const { return policy_version_; }

 private:
  struct Progress {
    int64_t high_watermark = -1;
    int64_t next_offset = -1;  // from a heartbeat: done below this once after_seq is written
    uint64_t after_seq = 0;
  };
  absl::Status OnBatch(uop::federation::v1::RecordBatch&& batch);
  std::vector<std::pair<absl::string_view, std::string>> Provenance(
      int32_t partition, const uop::federation::v1::Record& rec,
      const std::string& policy_version) const;

  struct Staged {
    size_t batches = 0;  // the first `batches` of queue_
    uint64_t bytes = 0;
    std::map<int32_t, core::PartitionCheckpoint> next;
    std::map<int32_t, WrittenRange> ranges;
    std::vector<RefusedRecord> deadletters;
    std::vector<uop::federation::v1::RecordRefusal> refusals;  // by our accept rules
    std::vector<WrittenBatch> batch_info;
    Stats delta;
    int64_t newest_ts = 0;
    bool recorded = false;  // in the audit log: Record() succeeded
    std::vector<uop::federation::v1::BatchReceipt> receipts;
  };

  const Options options_;
  const std::string peer_;
  const std::string origin_topic_;
  const std::string mirror_topic_;
  const std::string deadletter_topic_;
  const core::Clock* clock_;
  std::optional<Staged> staged_;
  std::map<int32_t, core::PartitionCheckpoint> checkpoints_;    // committed in our Kafka
  std::map<int32_t, core::PartitionCheckpoint> last_received_;  // newest record received
  std::map<int32_t, Progress> progress_;
  std::deque<uop::federation::v1::RecordBatch> queue_;
  uint64_t last_received_seq_ = 0;
  uint64_t written_seq_ = 0;
  int64_t batch_credit_;  // what the owner may still send
  int64_t byte_credit_;
  int64_t window_bytes_;         // byte_credit_ + bytes received or in flight, not yet written
  int64_t target_window_bytes_;  // what window_bytes_ moves to (SetWindowBytes)
  std::string policy_version_;
  int64_t last_origin_timestamp_ms_ = 0;
  Stats stats_;
  std::vector<RefusedRecord> last_deadletters_;
};

}  // namespace uop::broker
