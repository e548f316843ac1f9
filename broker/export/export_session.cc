// Credit, batch cutting, acknowledgements and liveness of one owner stream.
#include "broker/export/export_session.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "audit/receipt.h"
#include "core/check.h"
#include "core/provenance.h"

namespace uop::broker {

namespace fed = uop::federation::v1;

absl::StatusOr<int64_t> IdentityTransform::Start(int32_t partition,
                                                 absl::string_view resume_token) {
  if (resume_token.empty()) return policy::kOffsetBeginning;
  std::optional<int64_t> next = core::DecodeOffsetToken(resume_token);
  if (!next.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat("partition ", partition, ": unknown resume token"));
  }
  return *next;
}

RecordTransform::Outcome IdentityTransform::Apply(int32_t /*partition*/, fed::Record* record,
                                                  std::vector<fed::Record>* /*emitted*/) {
  record->set_resume_token(core::EncodeOffsetToken(record->offset() + 1));
  return Outcome::kSend;
}

namespace {

void Bump(core::MetricValue* m, double d) {
  if (m != nullptr) m->Add(d);
}

bool CameFromPeer(const fed::Record& record) {
  for (const fed::Header& h : record.headers()) {
    if (h.key() == core::kHeaderOrigin) return true;
  }
  return false;
}

// What a record costs against batch_max_bytes: its payload plus a fixed framing allowance.
int64_t RecordCost(const fed::Record& record) {
  int64_t size = 32 + static_cast<int64_t>(record.key().size() + record.value().size());
  for (const fed::Header& h : record.headers()) size += h.key().size() + h.value().size();
  return size;
}

}  // namespace

ExportSession::ExportSession(Options options, std::string policy_version,
                             std::vector<int32_t> partitions, const fed::Credit& initial_credit,
                             RecordSource* source, RecordTransform* transform,
                             const core::Clock* clock, ExportCounters counters)
    : options_(std::move(options)),
      policy_version_(std::move(policy_version)),
      partitions_(std::move(partitions)),
      source_(source),
      transform_(transform),
      clock_(clock),
      counters_(counters),
      batch_credit_(initial_credit.batches()),
      byte_credit_(static_cast<int64_t>(initial_credit.bytes())),
      last_heard_(clock->Now()),
      last_sent_(clock->Now()) {
  UOP_CHECK(options_.batch_max_records > 0, "batch_max_records must be positive");
  read_buffer_.reserve(static_cast<size_t>(options_.batch_max_records));
  if (options_.records_per_s.has_value()) {
    UOP_CHECK(*options_.records_per_s > 0, "a rate limit must be positive");
    pacer_.emplace(*options_.records_per_s);
  }
}

absl::Status ExportSession::OnReceiverMessage(const fed::ReceiverMessage& message,
                                              std::vector<audit::Entry>* to_log) {
  last_heard_ = clock_->Now();  // any message is a sign of life, even one we ignore
  switch (message.body_case()) {
    case fed::ReceiverMessage::kCredit:
      batch_credit_ += message.credit().batches();
      byte_credit_ += static_cast<int64_t>(message.credit().bytes());
      return absl::OkStatus();
    case fed::ReceiverMessage::kAck:
      return OnAck(message.ack(), to_log);
    case fed::ReceiverMessage::kHeartbeat:
      return absl::OkStatus();
    case fed::ReceiverMessage::kSubscribe:
      return absl::InvalidArgumentError("unexpected message after subscribe");
    case fed::ReceiverMessage::BODY_NOT_SET:
      return absl::OkStatus();  // a kind added by a later revision: ignored (forward compatible)
  }
  return absl::OkStatus();
}

absl::Status ExportSession::OnAck(const fed::Ack& ack, std::vector<audit::Entry>* to_log) {
  const uint64_t through = ack.through_batch_seq();
  if (through > last_sent_seq()) {
    return absl::InvalidArgumentError(absl::StrCat("ack through batch ", through, " but only ",
                                                   last_sent_seq(),
                                                   " batches were sent on this stream"));
  }
  if (through < acked_through_) {
    return absl::InvalidArgumentError(absl::StrCat("ack through batch ", through,
                                                   " after an ack through batch ", acked_through_,
                                                   ": acks are cumulative"));
  }
  Delivery d{through, {}, 0};
  if (options_.receiver_key != nullptr) {
    // Every batch this Ack covers needs its receipt, verified, before anything counts.
    std::map<uint64_t, const std::string*> receipts;
    for (const fed::BatchReceipt& r : ack.receipts()) receipts[r.batch_seq()] = &r.receipt();
    std::vector<audit::Entry> entries;
    for (const SentBatch& b : unacked_) {
      if (b.seq > through) break;
      auto it = receipts.find(b.seq);
      absl::StatusOr<audit::Entry> accepted =
          it == receipts.end()
              ? absl::StatusOr<audit::Entry>(absl::FailedPreconditionError("no receipt"))
              : audit::AcceptReceipt(*it->second, *options_.receiver_key, options_.node, b.entry);
      if (!accepted.ok()) {
        audit::Entry refused = b.entry;
        refused.type = audit::EntryType::kBatchRefused;
        refused.reason = absl::StrCat("receipt refused: ", accepted.status().message());
        if (it != receipts.end()) refused.payload = *it->second;
        if (to_log != nullptr) to_log->push_back(std::move(refused));
        return absl::FailedPreconditionError(
            absl::StrCat("ack through batch ", through, ": the receipt for batch ", b.seq,
                         " does not verify with peer '", options_.peer,
                         "''s audit key: ", accepted.status().message()));
      }
      accepted->dataset = options_.topic;
      entries.push_back(*std::move(accepted));
    }
    if (to_log != nullptr) {
      for (audit::Entry& e : entries) to_log->push_back(std::move(e));
    }
  }
  while (!unacked_.empty() && unacked_.front().seq <= through) {
    d.next_offsets[unacked_.front().partition] = unacked_.front().next_offset;
    d.records += unacked_.front().records;
    unacked_.pop_front();
  }
  acked_through_ = through;
  if (options_.receiver_key != nullptr) {
    awaiting_log_.push_back(std::move(d));  // delivered once the receipts are durable
  } else {
    Deliver(d);
  }
  return absl::OkStatus();
}

void ExportSession::Deliver(const Delivery& d) {
  Bump(counters_.acked, static_cast<double>(d.records));
  if (!d.next_offsets.empty()) source_->CommitForMonitoring(d.next_offsets);
}

void ExportSession::ReceiptsLogged(uint64_t through) {
  while (!awaiting_log_.empty() && awaiting_log_.front().through <= through) {
    Deliver(awaiting_log_.front());
    awaiting_log_.pop_front();
  }
}

absl::Status ExportSession::Transform(absl::Time now) {
  read_buffer_.clear();
  // A read takes about what the credit lets out (by what the stream has sent per record read
  // so far, after the transform; 32 bytes, the least a record costs, before the first): what
  // the receiver cannot take yet stays in the source's bounded read-ahead, not here. Reads of
  // batch_max_records each held the whole backlog in the owner at 100 datasets, where each stream
  // has 640 KiB of credit (747 MiB RSS).
  const int64_t mean_cost =
      read_records_ > 0 ? std::max<int64_t>(1, read_cost_ / read_records_) : 32;
  const auto max = static_cast<size_t>(
      std::clamp<int64_t>(byte_credit_ / mean_cost + 1, 1, options_.batch_max_records));
  if (absl::Status s = source_->Read(max, &read_buffer_); !s.ok()) return s;
  for (SourceRecord& in : read_buffer_) {
    ++read_records_;
    if (CameFromPeer(in.record)) {
      Bump(counters_.loop_skipped, 1);  // came from a peer: never exported again (no loops)
      continue;
    }
    emitted_.clear();
    switch (transform_->Apply(in.partition, &in.record, &emitted_)) {
      case RecordTransform::Outcome::kSend:
        held_.push_back({in.partition, std::move(in.record)});
        break;
      case RecordTransform::Outcome::kWithheld:
        Bump(counters_.withheld, 1);
        break;
      case RecordTransform::Outcome::kConsumed:
        break;
    }
    for (fed::Record& e : emitted_) held_.push_back({in.partition, std::move(e)});
  }
  if (read_buffer_.size() < max) {
    // Everything fetched was read: a partition at its end has nothing more for now, and what
    // only time releases (aggregation windows) is released.
    for (int32_t p : partitions_) {
      const RecordSource::Progress progress = source_->PartitionProgress(p);
      if (progress.position < 0 || progress.position < progress.high_watermark) continue;
      emitted_.clear();
      transform_->Idle(p, now, &emitted_);
      for (fed::Record& e : emitted_) held_.push_back({p, std::move(e)});
    }
  }
  return absl::OkStatus();
}

absl::Status ExportSession::Fill() {
  const absl::Time now = clock_->Now();
  // Nothing more is read while transformed records wait for the rate limit: the source's
  // bounded read-ahead then stops fetching (backpressure; nothing is dropped).
  if (held_.empty()) {
    if (absl::Status s = Transform(now); !s.ok()) return s;
  }
  // Everything transformed goes out now (within the rate), cut per partition at
  // batch_max_bytes: a batch never waits for more records (that would be latency).
  std::map<int32_t, std::pair<fed::OwnerMessage*, int64_t>> open;  // partition -> batch, bytes
  int cut = 0;
  while (!held_.empty() && cut < options_.batch_max_records) {
    if (pacer_.has_value()) {
      if (!slot_reserved_) {
        paced_until_ = pacer_->Admit(now);
        slot_reserved_ = true;
      }
      if (paced_until_ > now) break;  // NextDeadline() says when
      slot_reserved_ = false;
    }
    SourceRecord& in = held_.front();
    const int64_t cost = RecordCost(in.record);
    auto& [batch_msg, bytes] = open[in.partition];
    if (batch_msg != nullptr && bytes + cost > options_.batch_max_bytes) batch_msg = nullptr;
    if (batch_msg == nullptr) {
      batch_msg = &ready_.emplace_back();
      fed::RecordBatch* batch = batch_msg->mutable_batch();
      batch->set_batch_seq(next_seq_++);
      batch->set_partition(in.partition);
      batch->set_policy_version(policy_version_);
      batch->set_high_watermark(source_->PartitionProgress(in.partition).high_watermark);
      bytes = 0;
    }
    bytes += cost;
    read_cost_ += cost;
    *batch_msg->mutable_batch()->add_records() = std::move(in.record);
    held_.pop_front();
    ++cut;
  }
  return absl::OkStatus();
}

fed::OwnerMessage ExportSession::Heartbeat() {
  fed::OwnerMessage message;
  fed::Heartbeat* hb = message.mutable_heartbeat();
  hb->set_sent_unix_ms(absl::ToUnixMillis(clock_->Now()));
  for (int32_t p : partitions_) {
    const RecordSource::Progress progress = source_->PartitionProgress(p);
    if (progress.high_watermark < 0) continue;
    fed::PartitionProgress* out = hb->add_progress();
    out->set_partition(p);
    out->set_high_watermark(progress.high_watermark);
    // Below the first record still waiting in ready_, everything was sent or skipped.
    std::optional<int64_t> next = std::nullopt;
    if (progress.position >= 0) next = progress.position;
    bool waiting = false;
    for (const fed::OwnerMessage& m : ready_) {
      if (m.batch().partition() == p) {
        next = m.batch().records(0).offset();
        waiting = true;
        break;
      }
    }
    for (const SourceRecord& r : held_) {
      if (waiting) break;
      if (r.partition == p) {
        next = r.record.offset();
        break;
      }
    }
    if (next.has_value()) out->set_next_offset(*next);
  }
  return message;
}

absl::StatusOr<std::optional<fed::OwnerMessage>> ExportSession::Next(
    std::optional<audit::Entry>* sent) {
  const absl::Time now = clock_->Now();
  if (now - last_heard_ > options_.dead_peer_timeout) {
    return absl::UnavailableError("no message from peer within the dead-peer timeout");
  }
  if (has_credit()) {
    if (ready_.empty()) {
      if (absl::Status s = Fill(); !s.ok()) return s;
    }
    if (!ready_.empty()) {
      fed::OwnerMessage message = std::move(ready_.front());
      ready_.pop_front();
      const fed::RecordBatch& batch = message.batch();
      UOP_CHECK(batch.records_size() > 0, "batches are cut with at least one record");
      const auto size = static_cast<int64_t>(batch.ByteSizeLong());
      batch_credit_ -= 1;
      byte_credit_ -= size;
      SentBatch& record =
          unacked_.emplace_back(SentBatch{batch.batch_seq(),
                                          batch.partition(),
                                          batch.records(batch.records_size() - 1).offset() + 1,
                                          batch.records_size(),
                                          {}});
      if (options_.audit) {
        audit::Entry& e = record.entry;
        e.type = audit::EntryType::kBatchSent;
        e.peer = options_.peer;
        e.dataset = options_.topic;
        e.topic = options_.topic;
        e.partition = batch.partition();
        e.first_offset = batch.records(0).offset();
        e.last_offset = batch.records(batch.records_size() - 1).offset();
        e.record_count = static_cast<uint64_t>(batch.records_size());
        e.byte_count = static_cast<uint64_t>(size);
        audit::BatchDigest digest;
        for (const fed::Record& rec : batch.records()) digest.AddRecord(rec.key(), rec.value());
        e.batch_sha256 = digest.Finish();
        e.policy_version = batch.policy_version();
        if (sent != nullptr) *sent = e;
        if (options_.receiver_key == nullptr) e = audit::Entry();  // not needed for receipts
      }
      Bump(counters_.records, batch.records_size());
      Bump(counters_.batches, 1);
      Bump(counters_.bytes, static_cast<double>(size));
      last_sent_ = now;
      return message;
    }
  }
  if (now - last_sent_ >= options_.heartbeat_interval) {
    last_sent_ = now;
    return Heartbeat();
  }
  return std::nullopt;
}

absl::Time ExportSession::NextDeadline() const {
  absl::Time deadline =
      std::min(last_sent_ + options_.heartbeat_interval, last_heard_ + options_.dead_peer_timeout);
  if (slot_reserved_ && has_credit()) deadline = std::min(deadline, paced_until_);
  return deadline;
}

}  // namespace uop::broker
