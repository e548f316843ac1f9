// The owner's protocol core for one Replicate stream, without sockets or Kafka:
// read (RecordSource) -> transform (RecordTransform) -> frame (RecordBatch within credit) -> send.
// The gRPC reactor feeds it the receiver's messages and sends what Next() returns.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "audit/entry.h"
#include "audit/keys.h"
#include "core/clock.h"
#include "core/metrics.h"
#include "policy/share_transform.h"
#include "uop/federation/v1/federation.pb.h"

namespace uop::broker {

// One record read from the owner's Kafka. `record.resume_token` is left empty by the source: the
// transform owns it.
struct SourceRecord {
  int32_t partition = 0;
  uop::federation::v1::Record record;
};

// The read stage: the owner's Kafka, already positioned at the subscribed starts.
class RecordSource {
 public:
  virtual ~RecordSource() = default;
  // Appends up to `max` records that are already fetched, without waiting. Records of one
  // partition come in offset order. An error ends the stream with that status.
  virtual absl::Status Read(size_t max, std::vector<SourceRecord>* out) = 0;
  // What the source knows of `partition`: its end offset and the next offset it will return
  // (past transaction markers); -1 where unknown.
  struct Progress {
    int64_t high_watermark = -1;
    int64_t position = -1;
  };
  virtual Progress PartitionProgress(int32_t partition) = 0;
  // Positions the receiver acknowledged, for monitoring only (kafka-consumer-groups).
  virtual void CommitForMonitoring(const std::map<int32_t, int64_t>& next_offsets) = 0;
};

// The transform stage: the owner's rules for one (dataset, peer). It sees every record in
// partition order and owns the resume token of what it lets out, and so where a resumed stream
// starts reading.
class RecordTransform {
 public:
  enum class Outcome {
    kSend,      // `*record` was rewritten for the peer (and given its token): send it
    kWithheld,  // `*record` does not leave (the transform counted why)
    kConsumed,  // `*record` went into the transform's state (an aggregation window), or was
                // re-read after a restart: nothing leaves for it now, and it is not withheld
  };
  virtual ~RecordTransform() = default;
  // Where to start reading `partition` for the receiver's `resume_token` (empty: from the
  // beginning): an offset, or RD_KAFKA_OFFSET_BEGINNING (-2). InvalidArgument for a token that
  // is not ours. Called once per subscribed partition before any Apply.
  virtual absl::StatusOr<int64_t> Start(int32_t partition, absl::string_view resume_token) = 0;
  // Applies the rules to the next record of `partition`. `*emitted` receives records released by
  // this one (aggregates of windows it closed), to send in that order, after `*record` when kSend.
  // Every record sent carries its token and, as its offset, the highest origin offset it
  // accounts for; several aggregates can share one offset (docs/protocol.md, resume tokens).
  virtual Outcome Apply(int32_t partition, uop::federation::v1::Record* record,
                        std::vector<uop::federation::v1::Record>* emitted) = 0;
  // The source holds nothing more of `partition` for now: releases what time alone releases
  // (aggregation windows whose end plus lateness has passed) into `*emitted`.
  virtual void Idle(int32_t /*partition*/, absl::Time /*now*/,
                    std::vector<uop::federation::v1::Record>* /*emitted*/) {}
};

// Plain mirroring: every record as it is; the token is the next origin offset.
class IdentityTransform final : public RecordTransform {
 public:
  absl::StatusOr<int64_t> Start(int32_t partition, absl::string_view resume_token) override;
  Outcome Apply(int32_t partition, uop::federation::v1::Record* record,
                std::vector<uop::federation::v1::Record>* emitted) override;
};

// Counters the session moves; they live in the node's registry (or a test's).
struct ExportCounters {
  core::MetricValue* records = nullptr;       // records sent
  core::MetricValue* bytes = nullptr;         // serialized RecordBatch bytes sent
  core::MetricValue* batches = nullptr;       // batches sent
  core::MetricValue* acked = nullptr;         // records the receiver acknowledged
  core::MetricValue* loop_skipped = nullptr;  // records not exported: they came from a peer
  core::MetricValue* withheld = nullptr;      // records the transform withheld
};

// Not thread-safe: the stream serialises calls. `source`, `transform` and `clock` must outlive it.
class ExportSession {
 public:
  struct Options {
    int batch_max_records = 5000;
    int64_t batch_max_bytes = 1 << 20;
    absl::Duration heartbeat_interval = absl::Seconds(1);
    absl::Duration dead_peer_timeout = absl::Seconds(5);
    // Audit (docs/audit.md): with `audit`, Next() describes every batch it returns as a
    // batch_sent entry. With `receiver_key` too, an Ack counts only through the batches whose
    // receipts verify with it, and only once ReceiptsLogged() says their entries are durable.
    bool audit = false;
    const audit::Verifier* receiver_key = nullptr;
    std::string node;   // this (the owner) node
    std::string peer;   // the receiver
    std::string topic;  // the dataset
    // The share's rate limit (docs/policy.md `rate`): records sent per second across the
    // stream's partitions. The session stops reading while it waits (backpressure); it never
    // drops a record.
    std::optional<double> records_per_s;
  };

  ExportSession(Options options, std::string policy_version, std::vector<int32_t> partitions,
                const uop::federation::v1::Credit& initial_credit, RecordSource* source,
                RecordTransform* transform, const core::Clock* clock, ExportCounters counters);

  // A message from the receiver after its Subscribe. A protocol violation returns the status
  // that ends the stream (INVALID_ARGUMENT, with what was wrong).
  // With receipts required, `to_log` receives the receipt entries to append (and, when a receipt
  // does not verify, a batch_refused entry along with the error).
  absl::Status OnReceiverMessage(const uop::federation::v1::ReceiverMessage& message,
                                 std::vector<audit::Entry>* to_log = nullptr);
  // The receipt entries of the Ack through `through` are durable: those batches are delivered.
  void ReceiptsLogged(uint64_t through);

  // The next message to send now: a batch while credit lasts (read from the source when nothing
  // is ready), else a heartbeat when one is due, else nothing. An error ends the stream: the
  // source's, or UNAVAILABLE when the receiver has been silent past the dead-peer timeout.
  // With Options::audit, `*sent` (if given) is set to the batch_sent entry of a returned batch.
  absl::StatusOr<std::optional<uop::federation::v1::OwnerMessage>> Next(
      std::optional<audit::Entry>* sent = nullptr);

  // When Next() wants to be called again at the latest (heartbeat or dead-peer deadline).
  absl::Time NextDeadline() const;

  uint64_t last_sent_seq() const { return next_seq_ - 1; }
  uint64_t acked_through() const { return acked_through_; }
  bool has_credit() const { return batch_credit_ > 0 && byte_credit_ > 0; }

 private:
  struct SentBatch {
    uint64_t seq;
    int32_t partition;
    int64_t next_offset;
    int records;
    audit::Entry entry;  // batch_sent, with Options::audit
  };
  struct Delivery {
    uint64_t through;
    std::map<int32_t, int64_t> next_offsets;
    int64_t records;
  };
  absl::Status OnAck(const uop::federation::v1::Ack& ack, std::vector<audit::Entry>* to_log);
  void Deliver(const Delivery& d);
  absl::Status Fill();  // reads the source, transforms into held_, cuts batches into ready_
  absl::Status Transform(absl::Time now);  // reads and transforms the next round into held_
  uop::federation::v1::OwnerMessage Heartbeat();

  const Options options_;
  const std::string policy_version_;
  const std::vector<int32_t> partitions_;
  RecordSource* source_;
  RecordTransform* transform_;
  const core::Clock* clock_;
  ExportCounters counters_;

  int64_t batch_credit_;
  int64_t byte_credit_;
  uint64_t next_seq_ = 1;
  uint64_t acked_through_ = 0;
  std::deque<uop::federation::v1::OwnerMessage> ready_;  // cut, not yet sent
  std::deque<SentBatch> unacked_;
  std::deque<Delivery> awaiting_log_;  // acked with verified receipts, entries not yet durable
  absl::Time last_heard_;
  absl::Time last_sent_;
  std::vector<SourceRecord> read_buffer_;
  int64_t read_cost_ = 0;  // RecordCost of everything cut, per record read: sizes reads
  int64_t read_records_ = 0;
  std::vector<uop::federation::v1::Record> emitted_;
  std::deque<SourceRecord> held_;  // transformed, not yet cut (waiting for the rate limit)
  std::optional<policy::RatePacer> pacer_;
  absl::Time paced_until_ = absl::InfinitePast();  // the next held record's slot
  bool slot_reserved_ = false;
};

}  // namespace uop::broker
