// Order, credit, replay filter, dead-letter routing, acknowledgement and lag of one receiver
// stream.
#include "broker/import/import_session.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/check.h"

namespace uop::broker {

namespace fed = uop::federation::v1;

void RefusedRecords::Forget(int32_t partition, int64_t last_offset) {
  auto it = reasons_.lower_bound({partition, INT64_MIN});
  while (it != reasons_.end() && it->first.first == partition && it->first.second <= last_offset) {
    it = reasons_.erase(it);
  }
}

ImportSession::ImportSession(Options options, std::string peer, std::string origin_topic,
                             std::map<int32_t, core::PartitionCheckpoint> checkpoints,
                             const core::Clock* clock)
    : options_(options),
      peer_(std::move(peer)),
      origin_topic_(std::move(origin_topic)),
      clock_(clock),
      checkpoints_(std::move(checkpoints)),
      batch_credit_(options.window_batches),
      byte_credit_(options.window_bytes) {
  UOP_CHECK(!checkpoints_.empty(), "a stream subscribes at least one partition");
}

fed::ReceiverMessage ImportSession::SubscribeMessage(const fed::Hello& hello) const {
  fed::ReceiverMessage message;
  fed::Subscribe* sub = message.mutable_subscribe();
  *sub->mutable_hello() = hello;
  sub->set_topic(origin_topic_);
  for (const auto& [p, cp] : checkpoints_) {
    fed::PartitionStart* start = sub->add_partitions();
    start->set_partition(p);
    start->set_resume_token(cp.token());
  }
  sub->mutable_initial_credit()->set_batches(static_cast<uint32_t>(options_.window_batches));
  sub->mutable_initial_credit()->set_bytes(static_cast<uint64_t>(options_.window_bytes));
  return message;
}

absl::Status ImportSession::OnSubscribed(const fed::OwnerMessage& first, int expected_partitions) {
  if (!first.has_subscribed()) {
    return absl::FailedPreconditionError(
        "owner answered subscribe with an unexpected message or partition count");
  }
  const fed::Subscribed& s = first.subscribed();
  if (s.topic() != origin_topic_) {
    return absl::FailedPreconditionError(absl::StrCat("owner answered subscribe for topic '",
                                                      s.topic(), "', not '", origin_topic_, "'"));
  }
  // Origin partition p goes to mirror partition p: a changed origin needs an operator.
  if (s.partitions() != expected_partitions) {
    return absl::FailedPreconditionError(
        "owner answered subscribe with an unexpected message or partition count");
  }
  policy_version_ = s.policy_version();
  return absl::OkStatus();
}

absl::Status ImportSession::OnOwnerMessage(fed::OwnerMessage&& message) {
  switch (message.body_case()) {
    case fed::OwnerMessage::kBatch:
      return OnBatch(std::move(*message.mutable_batch()));
    case fed::OwnerMessage::kHeartbeat:
      for (const fed::PartitionProgress& p : message.heartbeat().progress()) {
        if (!checkpoints_.contains(p.partition())) continue;  // progress is advisory
        Progress& progress = progress_[p.partition()];
        progress.high_watermark = p.high_watermark();
        if (p.has_next_offset()) {
          progress.next_offset = p.next_offset();
          progress.after_seq = last_received_seq_;
        }
      }
      return absl::OkStatus();
    case fed::OwnerMessage::kSubscribed:
      return absl::InvalidArgumentError("unexpected message from owner: a second subscribed");
    case fed::OwnerMessage::BODY_NOT_SET:
      return absl::OkStatus();  // a kind added by a later revision: ignored
  }
  return absl::OkStatus();
}

absl::Status ImportSession::OnBatch(fed::RecordBatch&& batch) {
  const int32_t p = batch.partition();
  if (batch.batch_seq() != last_received_seq_ + 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("owner sent batch_seq ", batch.batch_seq(), " after ", last_received_seq_));
  }
  if (!checkpoints_.contains(p)) {
    return absl::InvalidArgumentError(absl::StrCat("owner sent a batch for partition ", p,
                                                   ", which this stream did not subscribe"));
  }
  if (batch.records().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("owner sent batch_seq ", batch.batch_seq(), " with no record"));
  }
  if (batch_credit_ <= 0 || byte_credit_ <= 0) {
    return absl::InvalidArgumentError("owner exceeded the granted credit");
  }
  auto last = last_received_.find(p);
  int64_t previous = last == last_received_.end() ? -1 : last->second;
  for (const fed::Record& rec : batch.records()) {
    if (rec.offset() <= previous) {
      return absl::InvalidArgumentError(absl::StrCat(
          "owner sent offset ", rec.offset(), " of partition ", p, " after offset ", previous));
    }
    previous = rec.offset();
  }
  last_received_[p] = previous;
  last_received_seq_ = batch.batch_seq();
  batch_credit_ -= 1;
  byte_credit_ -= static_cast<int64_t>(batch.ByteSizeLong());
  if (batch.high_watermark() >= 0) progress_[p].high_watermark = batch.high_watermark();
  queue_.push_back(std::move(batch));
  return absl::OkStatus();
}

std::vector<std::pair<absl::string_view, std::string>> ImportSession::Provenance(
    int32_t partition, const fed::Record& rec, const std::string& policy_version) const {
  return {{core::kHeaderOrigin, peer_},
          {core::kHeaderOriginTopic, origin_topic_},
          {core::kHeaderOriginPartition, std::to_string(partition)},
          {core::kHeaderOriginOffset, std::to_string(rec.offset())},
          {core::kHeaderOriginTimestamp, std::to_string(rec.timestamp_ms())},
          {core::kHeaderPolicyVersion, policy_version},
          {core::kHeaderResume, rec.resume_token()}};
}

namespace {

absl::Status AbortAfter(TransactionalSink* sink, const absl::Status& cause) {
  absl::Status abort = sink->Abort();
  if (abort.ok()) return cause;
  return absl::Status(cause.code(),
                      absl::StrCat(cause.message(), " (abort: ", abort.message(), ")"));
}

}  // namespace

absl::StatusOr<std::vector<fed::ReceiverMessage>> ImportSession::WriteQueued(
    TransactionalSink* sink, AuditSink* audit, RefusedRecords* refused) {
  if (queue_.empty()) return std::vector<fed::ReceiverMessage>();
  if (absl::Status s = sink->Begin(); !s.ok()) return s;
  std::map<int32_t, core::PartitionCheckpoint> next = checkpoints_;
  std::map<int32_t, WrittenRange> ranges;
  std::vector<RefusedRecord> deadletters;
  Stats delta;
  int64_t newest_ts = 0;
  uint64_t bytes = 0;
  for (const fed::RecordBatch& batch : queue_) {
    bytes += batch.ByteSizeLong();
    const int32_t p = batch.partition();
    for (const fed::Record& rec : batch.records()) {
      if (!next[p].ShouldWrite(rec.offset())) {
        ++delta.duplicates;  // a replay of what our Kafka already holds
        continue;
      }
      OutRecord out{OutRecord::Target::kMirror, p, &rec, Provenance(p, rec, batch.policy_version()),
                    false};
      std::string reason;
      if (const std::string* known = refused->Find(p, rec.offset()); known != nullptr) {
        reason = *known;
      } else {
        if (absl::Status s = sink->Produce(out, &reason); !s.ok()) return AbortAfter(sink, s);
      }
      WrittenRange& range =
          ranges.try_emplace(p, WrittenRange{p, rec.offset(), 0, 0, 0}).first->second;
      range.last_offset = rec.offset();
      if (reason.empty()) {
        ++delta.written;
        ++range.records;
      } else {
        out.target = OutRecord::Target::kDeadLetter;
        out.extra_headers.emplace_back(core::kHeaderDeadLetterReason, reason);
        std::string again;
        if (absl::Status s = sink->Produce(out, &again); !s.ok()) return AbortAfter(sink, s);
        if (!again.empty()) {
          out.drop_value = true;
          out.extra_headers.back().second =
              absl::StrCat(reason, "; value not stored: too large for the dead-letter topic too");
          if (absl::Status s = sink->Produce(out, &again); !s.ok()) return AbortAfter(sink, s);
          if (!again.empty()) {
            return AbortAfter(sink, absl::InternalError(absl::StrCat(
                                        "dead-letter topic refused partition ", p, " offset ",
                                        rec.offset(), " even without its value: ", again)));
          }
        }
        ++delta.deadletters;
        ++range.deadletters;
        deadletters.push_back({p, rec.offset(), out.extra_headers.back().second});
      }
      next[p].Advance(rec.offset(), rec.resume_token());
      newest_ts = std::max(newest_ts, rec.timestamp_ms());
    }
  }
  std::vector<RefusedRecord> late;
  std::map<int32_t, core::PartitionCheckpoint> moved;  // only partitions this write advanced
  for (const auto& [p, range] : ranges) moved[p] = next[p];
  if (absl::Status s = sink->Commit(moved, &late); !s.ok()) {
    for (const RefusedRecord& r : late) refused->Add(r);  // dead-lettered on the next attempt
    return s;
  }
  // Committed in Kafka. Audited before anything is acknowledged (fail closed).
  WrittenBatches written{
      peer_, origin_topic_, queue_.front().batch_seq(), queue_.back().batch_seq(), policy_version_,
      {}};
  for (auto& [p, range] : ranges) written.ranges.push_back(range);
  if (absl::Status s = audit->RecordWritten(written); !s.ok()) return s;

  for (const auto& [p, cp] : next) refused->Forget(p, cp.last_offset());
  checkpoints_ = std::move(next);
  last_deadletters_ = std::move(deadletters);
  written_seq_ = queue_.back().batch_seq();
  if (newest_ts > 0) last_origin_timestamp_ms_ = newest_ts;
  delta.batches = static_cast<int64_t>(queue_.size());
  stats_.written += delta.written;
  stats_.deadletters += delta.deadletters;
  stats_.duplicates += delta.duplicates;
  stats_.batches += delta.batches;
  stats_.transactions += 1;

  std::vector<fed::ReceiverMessage> out(2);
  out[0].mutable_ack()->set_through_batch_seq(written_seq_);
  out[1].mutable_credit()->set_batches(static_cast<uint32_t>(queue_.size()));
  out[1].mutable_credit()->set_bytes(bytes);
  batch_credit_ += static_cast<int64_t>(queue_.size());
  byte_credit_ += static_cast<int64_t>(bytes);
  queue_.clear();
  return out;
}

int64_t ImportSession::lag_records() const {
  int64_t behind = 0;
  for (const auto& [p, progress] : progress_) {
    if (progress.high_watermark < 0) continue;
    auto it = checkpoints_.find(p);
    int64_t held = it == checkpoints_.end() ? 0 : it->second.last_offset() + 1;
    if (progress.next_offset >= 0 && written_seq_ >= progress.after_seq) {
      held = std::max(held, progress.next_offset);  // the rest was skipped by the owner
    }
    behind += std::max<int64_t>(0, progress.high_watermark - held);
  }
  return behind;
}

double ImportSession::lag_seconds() const {
  if (lag_records() == 0 || last_origin_timestamp_ms_ == 0) return 0;
  return std::max<double>(0,
                          (absl::ToUnixMillis(clock_->Now()) - last_origin_timestamp_ms_) / 1000.0);
}

}  // namespace uop::broker
