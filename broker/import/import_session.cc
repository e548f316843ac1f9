// Order, credit, replay filter, dead-letter routing, acknowledgement and lag of one receiver
// stream.
#include "broker/import/import_session.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "audit/entry.h"
#include "core/check.h"
#include "core/status_macros.h"
#include "policy/share_transform.h"

namespace uop::broker {

namespace fed = uop::federation::v1;

bool IsAfter(const core::PartitionCheckpoint& held, int64_t offset, absl::string_view token) {
  if (offset != held.last_offset()) return offset > held.last_offset();
  const std::optional<std::strong_ordering> order =
      policy::CompareResumeTokens(token, held.token());
  return order.has_value() && *order == std::strong_ordering::greater;
}

void RefusedRecords::Forget(int32_t partition, int64_t last_offset) {
  auto it = reasons_.lower_bound({partition, INT64_MIN});
  while (it != reasons_.end() && it->first.first == partition && it->first.second <= last_offset) {
    it = reasons_.erase(it);
  }
}

ImportSession::ImportSession(Options options, std::string peer, std::string origin_topic,
                             std::map<int32_t, core::PartitionCheckpoint> checkpoints,
                             const core::Clock* clock)
    : options_(std::move(options)),
      peer_(std::move(peer)),
      origin_topic_(std::move(origin_topic)),
      mirror_topic_(core::MirrorTopicName(peer_, origin_topic_)),
      deadletter_topic_(core::DeadLetterTopicName(peer_, origin_topic_)),
      clock_(clock),
      checkpoints_(std::move(checkpoints)),
      batch_credit_(options.window_batches),
      byte_credit_(options.window_bytes),
      window_bytes_(options.window_bytes),
      target_window_bytes_(options.window_bytes) {
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
  core::PartitionCheckpoint& previous = last_received_[p];
  for (const fed::Record& rec : batch.records()) {
    if (!IsAfter(previous, rec.offset(), rec.resume_token())) {
      return absl::InvalidArgumentError(
          absl::StrCat("owner sent offset ", rec.offset(), " of partition ", p, " after offset ",
                       previous.last_offset(),
                       rec.offset() == previous.last_offset()
                           ? " with a resume token that does not order after the previous one"
                           : ""));
    }
    previous.Set(rec.offset(), rec.resume_token());
  }
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
  Positions positions;
  if (absl::Status s = Stage(sink, *refused, &positions); !s.ok()) {
    StageFailed({}, refused);
    return AbortAfter(sink, s);
  }
  if (absl::Status s = Record(audit); !s.ok()) {
    StageFailed({}, refused);
    return AbortAfter(sink, s);
  }
  std::vector<RefusedRecord> late;
  if (absl::Status s = sink->Commit(positions, &late); !s.ok()) {
    StageFailed(late, refused);  // dead-lettered on the next attempt
    return s;
  }
  return Committed(refused);
}

absl::Status ImportSession::Stage(TransactionalSink* sink, const RefusedRecords& refused,
                                  Positions* positions) {
  UOP_CHECK(!staged_.has_value(), "a stream stages one transaction at a time");
  if (queue_.empty()) return absl::OkStatus();
  Staged st;
  st.next = checkpoints_;
  // The accept stage, on the rules in force now (a reload applies from the next transaction).
  std::shared_ptr<const policy::PolicySnapshot> rules =
      options_.policies != nullptr ? options_.policies() : nullptr;
  if (rules != nullptr && !rules->HasAcceptRulesFor(peer_)) {
    rules = nullptr;  // no accept rule names this peer: accepted as offered
  }
  for (const fed::RecordBatch& batch : queue_) {
    const uint64_t batch_bytes = batch.ByteSizeLong();
    st.bytes += batch_bytes;
    const int32_t p = batch.partition();
    WrittenBatch& info = st.batch_info.emplace_back();
    info.batch_seq = batch.batch_seq();
    info.partition = p;
    info.first_offset = batch.records(0).offset();
    info.last_offset = batch.records(batch.records_size() - 1).offset();
    info.records = static_cast<uint64_t>(batch.records_size());
    info.bytes = batch_bytes;
    info.policy_version = batch.policy_version();
    if (options_.digest_batches) {
      audit::BatchDigest digest;
      for (const fed::Record& rec : batch.records()) digest.AddRecord(rec.key(), rec.value());
      info.sha256 = digest.Finish();
    }
    for (const fed::Record& rec : batch.records()) {
      if (!IsAfter(st.next[p], rec.offset(), rec.resume_token())) {
        ++st.delta.duplicates;  // a replay of what our Kafka already holds
        continue;
      }
      OutRecord out{OutRecord::Target::kMirror,
                    mirror_topic_,
                    p,
                    &rec,
                    Provenance(p, rec, batch.policy_version()),
                    false};
      std::string reason;
      if (rules != nullptr) {
        const policy::AcceptDecision d =
            rules->CheckIncoming(peer_, origin_topic_, rec.key(), rec.value());
        if (!d.accepted) {
          reason = absl::StrCat("refused by accept rule: ", d.reason, d.detail.empty() ? "" : ": ",
                                d.detail);
          fed::RecordRefusal& r = st.refusals.emplace_back();
          r.set_partition(p);
          r.set_offset(rec.offset());
          r.set_reason(d.reason);
          r.set_detail(d.detail);
          ++st.delta.refused_by_rule;
        }
      }
      if (!reason.empty()) {
        // straight to the dead-letter topic
      } else if (const std::string* known = refused.Find(p, rec.offset()); known != nullptr) {
        reason = *known;
      } else {
        RETURN_IF_ERROR(sink->Produce(out, &reason));
      }
      WrittenRange& range =
          st.ranges.try_emplace(p, WrittenRange{p, rec.offset(), 0, 0, 0}).first->second;
      range.last_offset = rec.offset();
      if (reason.empty()) {
        ++st.delta.written;
        ++range.records;
      } else {
        out.target = OutRecord::Target::kDeadLetter;
        out.topic = deadletter_topic_;
        out.extra_headers.emplace_back(core::kHeaderDeadLetterReason, reason);
        std::string again;
        RETURN_IF_ERROR(sink->Produce(out, &again));
        if (!again.empty()) {
          out.drop_value = true;
          out.extra_headers.back().second =
              absl::StrCat(reason, "; value not stored: too large for the dead-letter topic too");
          RETURN_IF_ERROR(sink->Produce(out, &again));
          if (!again.empty()) {
            return absl::InternalError(absl::StrCat("dead-letter topic refused partition ", p,
                                                    " offset ", rec.offset(),
                                                    " even without its value: ", again));
          }
        }
        ++st.delta.deadletters;
        ++range.deadletters;
        st.deadletters.push_back({p, rec.offset(), out.extra_headers.back().second, {}});
      }
      st.next[p].Set(rec.offset(), rec.resume_token());
      st.newest_ts = std::max(st.newest_ts, rec.timestamp_ms());
    }
  }
  // Only partitions this write advanced.
  for (const auto& [p, range] : st.ranges) (*positions)[{mirror_topic_, p}] = st.next[p];
  st.batches = queue_.size();
  staged_ = std::move(st);
  return absl::OkStatus();
}

void ImportSession::StageFailed(const std::vector<RefusedRecord>& late, RefusedRecords* refused) {
  staged_.reset();
  for (const RefusedRecord& r : late) {
    if (r.topic.empty() || r.topic == mirror_topic_ || r.topic == deadletter_topic_) {
      refused->Add(r);
    }
  }
}

absl::Status ImportSession::Record(AuditSink* audit) {
  UOP_CHECK(staged_.has_value(), "Record() without a staged transaction");
  Staged& st = *staged_;
  // Durable before the commit: a crash after the commit must not find it missing (fail closed).
  WrittenBatches written{peer_,
                         origin_topic_,
                         queue_.front().batch_seq(),
                         queue_[st.batches - 1].batch_seq(),
                         policy_version_,
                         {},
                         {}};
  for (auto& [p, range] : st.ranges) written.ranges.push_back(range);
  written.batches = st.batch_info;
  std::vector<fed::BatchReceipt> receipts;
  RETURN_IF_ERROR(audit->RecordReceived(written, &receipts));
  st.receipts = std::move(receipts);
  st.recorded = true;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<fed::ReceiverMessage>> ImportSession::Committed(
    RefusedRecords* refused) {
  UOP_CHECK(staged_.has_value() && staged_->recorded,
            "Committed() without a staged and recorded transaction");
  Staged st = *std::move(staged_);
  staged_.reset();
  std::vector<fed::BatchReceipt> receipts = std::move(st.receipts);

  for (const auto& [p, cp] : st.next) refused->Forget(p, cp.last_offset());
  checkpoints_ = std::move(st.next);
  last_deadletters_ = std::move(st.deadletters);
  written_seq_ = queue_[st.batches - 1].batch_seq();
  if (st.newest_ts > 0) last_origin_timestamp_ms_ = st.newest_ts;
  st.delta.batches = static_cast<int64_t>(st.batches);
  stats_.written += st.delta.written;
  stats_.deadletters += st.delta.deadletters;
  stats_.refused_by_rule += st.delta.refused_by_rule;
  stats_.duplicates += st.delta.duplicates;
  stats_.batches += st.delta.batches;
  stats_.transactions += 1;

  std::vector<fed::ReceiverMessage> out(2);
  out[0].mutable_ack()->set_through_batch_seq(written_seq_);
  for (fed::BatchReceipt& r : receipts) *out[0].mutable_ack()->add_receipts() = std::move(r);
  for (fed::RecordRefusal& r : st.refusals) *out[0].mutable_ack()->add_refusals() = std::move(r);
  // What was written comes back as credit, less what a smaller window takes or plus what a
  // larger one adds: credit already granted is never taken back, so a window shrinks only as
  // fast as batches are written.
  auto bytes = static_cast<int64_t>(st.bytes);
  const int64_t change = std::max(target_window_bytes_ - window_bytes_, -bytes);
  bytes += change;
  window_bytes_ += change;
  out[1].mutable_credit()->set_batches(static_cast<uint32_t>(st.batches));
  out[1].mutable_credit()->set_bytes(static_cast<uint64_t>(bytes));
  batch_credit_ += static_cast<int64_t>(st.batches);
  byte_credit_ += bytes;
  queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(st.batches));
  return out;
}

void ImportSession::SetWindowBytes(int64_t bytes) {
  UOP_CHECK(bytes >= 1, "a window of at least one byte");
  target_window_bytes_ = bytes;
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
