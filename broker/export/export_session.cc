// Credit, batch cutting, acknowledgements and liveness of one owner stream.
#include "broker/export/export_session.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/check.h"
#include "core/provenance.h"

namespace uop::broker {

namespace fed = uop::federation::v1;

bool IdentityTransform::Apply(int32_t /*partition*/, fed::Record* record) {
  record->set_resume_token(core::EncodeOffsetToken(record->offset() + 1));
  return true;
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
    : options_(options),
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
}

absl::Status ExportSession::OnReceiverMessage(const fed::ReceiverMessage& message) {
  last_heard_ = clock_->Now();  // any message is a sign of life, even one we ignore
  switch (message.body_case()) {
    case fed::ReceiverMessage::kCredit:
      batch_credit_ += message.credit().batches();
      byte_credit_ += static_cast<int64_t>(message.credit().bytes());
      return absl::OkStatus();
    case fed::ReceiverMessage::kAck:
      return OnAck(message.ack().through_batch_seq());
    case fed::ReceiverMessage::kHeartbeat:
      return absl::OkStatus();
    case fed::ReceiverMessage::kSubscribe:
      return absl::InvalidArgumentError("unexpected message after subscribe");
    case fed::ReceiverMessage::BODY_NOT_SET:
      return absl::OkStatus();  // a kind added by a later revision: ignored (forward compatible)
  }
  return absl::OkStatus();
}

absl::Status ExportSession::OnAck(uint64_t through) {
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
  std::map<int32_t, int64_t> next_offsets;
  int64_t records = 0;
  while (!unacked_.empty() && unacked_.front().seq <= through) {
    next_offsets[unacked_.front().partition] = unacked_.front().next_offset;
    records += unacked_.front().records;
    unacked_.pop_front();
  }
  acked_through_ = through;
  Bump(counters_.acked, static_cast<double>(records));
  if (!next_offsets.empty()) source_->CommitForMonitoring(next_offsets);
  return absl::OkStatus();
}

absl::Status ExportSession::Fill() {
  read_buffer_.clear();
  if (absl::Status s =
          source_->Read(static_cast<size_t>(options_.batch_max_records), &read_buffer_);
      !s.ok()) {
    return s;
  }
  // Everything read goes out now, cut per partition at batch_max_bytes: a batch never waits
  // for more records (that would be latency).
  std::map<int32_t, std::pair<fed::OwnerMessage*, int64_t>> open;  // partition -> batch, bytes
  for (SourceRecord& in : read_buffer_) {
    if (CameFromPeer(in.record)) {
      Bump(counters_.loop_skipped, 1);  // came from a peer: never exported again (no loops)
      continue;
    }
    if (!transform_->Apply(in.partition, &in.record)) {
      Bump(counters_.withheld, 1);
      continue;
    }
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
    *batch_msg->mutable_batch()->add_records() = std::move(in.record);
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
    for (const fed::OwnerMessage& m : ready_) {
      if (m.batch().partition() == p) {
        next = m.batch().records(0).offset();
        break;
      }
    }
    if (next.has_value()) out->set_next_offset(*next);
  }
  return message;
}

absl::StatusOr<std::optional<fed::OwnerMessage>> ExportSession::Next() {
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
      unacked_.push_back({batch.batch_seq(), batch.partition(),
                          batch.records(batch.records_size() - 1).offset() + 1,
                          batch.records_size()});
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
  return std::min(last_sent_ + options_.heartbeat_interval,
                  last_heard_ + options_.dead_peer_timeout);
}

}  // namespace uop::broker
