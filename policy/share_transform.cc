// Per-partition share state: plain mirroring (offset tokens) and tumbling event-time windows
// whose tokens let a restarted owner rebuild exactly the windows not yet emitted.
//
// Aggregate token (version 2), big-endian:
//   u8 2 | i64 read_from | i64 watermark_before | i64 trigger | i64 last_start_ms | group bytes
// read_from: the first offset of the oldest window still open after this output (or trigger+1);
// watermark_before: the event-time watermark before `trigger` was applied; trigger: the source
// offset whose record (or, for Advance, the last record read) closed the window; last: the
// window this output is. On resume the owner reads from read_from with watermark_before,
// treats offsets <= trigger as replays, and never emits a window <= last again: the windows
// closed by `trigger` after `last` are rebuilt from records >= read_from and emitted once.
#include "policy/share_transform.h"

#include <cmath>
#include <tuple>

#include "absl/strings/str_cat.h"

namespace uop::policy {
namespace {

void PutInt64(std::string* out, int64_t v) {
  auto u = static_cast<uint64_t>(v);
  for (int shift = 56; shift >= 0; shift -= 8) out->push_back(static_cast<char>(u >> shift));
}

int64_t GetInt64(absl::string_view in) {
  uint64_t u = 0;
  for (int i = 0; i < 8; ++i) u = (u << 8) | static_cast<unsigned char>(in[i]);
  return static_cast<int64_t>(u);
}

int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

constexpr size_t kAggregateTokenFixed = 1 + 4 * 8;

}  // namespace

std::string EncodeOffsetToken(int64_t next_offset) {
  std::string token(1, '\1');
  PutInt64(&token, next_offset);
  return token;
}

std::optional<int64_t> DecodeOffsetToken(absl::string_view token) {
  if (token.size() != 9 || token[0] != 1) return std::nullopt;
  const int64_t offset = GetInt64(token.substr(1));
  if (offset < 0) return std::nullopt;
  return offset;
}

std::optional<std::strong_ordering> CompareResumeTokens(absl::string_view a, absl::string_view b) {
  const std::optional<int64_t> pa = DecodeOffsetToken(a), pb = DecodeOffsetToken(b);
  if (pa.has_value() && pb.has_value()) return *pa <=> *pb;
  auto aggregate = [](absl::string_view t) {
    return t.size() >= kAggregateTokenFixed && t[0] == 2;
  };
  if (!aggregate(a) || !aggregate(b)) return std::nullopt;
  // (trigger, last window start, last window key)
  const auto key = [](absl::string_view t) {
    return std::make_tuple(
        GetInt64(t.substr(17)), GetInt64(t.substr(25)),
        std::string_view(t.data() + kAggregateTokenFixed, t.size() - kAggregateTokenFixed));
  };
  return key(a) <=> key(b);
}

ShareTransform::ShareTransform(std::shared_ptr<const PolicySnapshot> snapshot, const Share* share,
                               int32_t partition)
    : snapshot_(std::move(snapshot)), share_(share), partition_(partition), evaluator_(share) {}

absl::StatusOr<std::unique_ptr<ShareTransform>> ShareTransform::Resume(
    std::shared_ptr<const PolicySnapshot> snapshot, absl::string_view dataset,
    absl::string_view peer, int32_t partition, absl::string_view resume_token) {
  const Share* share = snapshot->FindShare(dataset, peer);
  if (share == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("dataset '", dataset, "' is not shared with peer '", peer, "'"));
  }
  std::unique_ptr<ShareTransform> t(new ShareTransform(std::move(snapshot), share, partition));
  if (resume_token.empty()) return t;
  if (std::optional<int64_t> next = DecodeOffsetToken(resume_token); next.has_value()) {
    t->next_read_ = *next;  // also when a plain share became an aggregate: windows start here
    return t;
  }
  if (resume_token.size() < kAggregateTokenFixed || resume_token[0] != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("partition ", partition, ": unknown resume token"));
  }
  const int64_t read_from = GetInt64(resume_token.substr(1));
  const int64_t watermark_before = GetInt64(resume_token.substr(9));
  const int64_t trigger = GetInt64(resume_token.substr(17));
  WindowId last{GetInt64(resume_token.substr(25)),
                std::string(resume_token.substr(kAggregateTokenFixed))};
  if (read_from < 0 || trigger < -1 || read_from > trigger + 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("partition ", partition, ": inconsistent aggregate resume token"));
  }
  if (!share->aggregate.has_value()) {
    // The share no longer aggregates: records up to the trigger were consumed under the old
    // rules; plain mirroring continues after them.
    t->next_read_ = trigger + 1;
    return t;
  }
  t->next_read_ = read_from;
  t->watermark_ms_ = watermark_before;
  t->last_done_ = std::move(last);
  t->replay_until_ = trigger + 1;
  return t;
}

Decision ShareTransform::Apply(const SourceRecord& record, absl::Time now, TransformOutput* out) {
  if ((share_->valid_from.has_value() && now < *share_->valid_from) ||
      (share_->valid_until.has_value() && now >= *share_->valid_until)) {
    return Decision::Withheld(WithheldReason::kNotValid);
  }
  next_read_ = record.offset + 1;
  if (share_->aggregate.has_value()) return ApplyAggregate(record, out);
  const WithheldReason reason =
      evaluator_.Evaluate(record.key, record.value, record.timestamp_ms, now, &scratch_key_,
                          &scratch_value_, nullptr, nullptr);
  if (reason != WithheldReason::kNone) return Decision::Withheld(reason);
  OutputRecord& o = out->records.emplace_back();
  o.key.swap(scratch_key_);
  o.value.swap(scratch_value_);
  o.timestamp_ms = record.timestamp_ms;
  o.headers.reserve(record.headers.size());
  for (const auto& [k, v] : record.headers) o.headers.emplace_back(k, v);
  o.resume_token = EncodeOffsetToken(record.offset + 1);
  o.source_offset = record.offset;
  return Decision::Kept();
}

Decision ShareTransform::ApplyAggregate(const SourceRecord& record, TransformOutput* out) {
  const bool replay = record.offset < replay_until_;
  const AggregateRules& a = *share_->aggregate;
  const WithheldReason reason =
      evaluator_.Evaluate(record.key, record.value, record.timestamp_ms, absl::InfinitePast(),
                          &scratch_key_, &scratch_value_, &input_, nullptr);
  if (reason != WithheldReason::kNone) return {Decision::Verdict::kWithheld, reason, replay};
  const int64_t window_ms = absl::ToInt64Milliseconds(a.window);
  const int64_t lateness_ms = absl::ToInt64Milliseconds(a.lateness);
  WindowId id{FloorDiv(input_.event_time_ms, window_ms) * window_ms, input_.group};
  if ((last_done_.has_value() && id <= *last_done_) ||
      id.start_ms + window_ms + lateness_ms <= watermark_ms_) {
    return {Decision::Verdict::kWithheld, WithheldReason::kLate, replay};
  }
  auto [it, inserted] = open_.try_emplace(std::move(id), Window{record.offset});
  Window& w = it->second;
  if (inserted) {
    w.min = w.max = input_.value;
    first_offsets_.insert(record.offset);
  }
  ++w.count;
  w.sum += input_.value;
  w.min = std::min(w.min, input_.value);
  w.max = std::max(w.max, input_.value);
  if (input_.event_time_ms > watermark_ms_) {
    const int64_t before = watermark_ms_;
    watermark_ms_ = input_.event_time_ms;
    CloseWindows(before, record.offset, out);
  }
  return {Decision::Verdict::kAggregated, WithheldReason::kNone, replay};
}

void ShareTransform::Advance(absl::Time now, TransformOutput* out) {
  if (!share_->aggregate.has_value() || next_read_ < replay_until_) return;
  const int64_t now_ms = absl::ToUnixMillis(now);
  if (now_ms <= watermark_ms_) return;
  const int64_t before = watermark_ms_;
  watermark_ms_ = now_ms;
  CloseWindows(before, next_read_ == kOffsetBeginning ? -1 : next_read_ - 1, out);
}

void ShareTransform::CloseWindows(int64_t watermark_before, int64_t trigger, TransformOutput* out) {
  const AggregateRules& a = *share_->aggregate;
  const int64_t window_ms = absl::ToInt64Milliseconds(a.window);
  const int64_t lateness_ms = absl::ToInt64Milliseconds(a.lateness);
  const bool replay = trigger < replay_until_;
  while (!open_.empty() &&
         open_.begin()->first.start_ms + window_ms + lateness_ms <= watermark_ms_) {
    auto node = open_.extract(open_.begin());
    const WindowId& id = node.key();
    const Window& w = node.mapped();
    first_offsets_.erase(first_offsets_.find(w.first_offset));
    last_done_ = id;
    if (w.count < a.min_count) {
      if (!replay) out->below_min_count_records += w.count;
      continue;
    }
    OutputRecord& o = out->records.emplace_back();
    const int64_t end_ms = id.start_ms + window_ms;
    std::string& v = o.value;
    absl::StrAppend(&v, "{\"dataset\":");
    AppendJsonString(&v, share_->dataset);
    absl::StrAppend(&v, ",\"window_start\":\"", FormatTime(id.start_ms), "\",\"window_end\":\"",
                    FormatTime(end_ms), "\",\"partition\":", partition_,
                    ",\"key\":", id.group.empty() ? "null" : id.group);
    for (AggregateFunction f : a.values) {
      absl::StrAppend(&v, ",\"", AggregateFunctionName(f), "\":");
      switch (f) {
        case AggregateFunction::kCount:
          absl::StrAppend(&v, w.count);
          break;
        case AggregateFunction::kSum:
          AppendJsonDouble(&v, w.sum);
          break;
        case AggregateFunction::kMean:
          AppendJsonDouble(&v, w.sum / static_cast<double>(w.count));
          break;
        case AggregateFunction::kMin:
          AppendJsonDouble(&v, w.min);
          break;
        case AggregateFunction::kMax:
          AppendJsonDouble(&v, w.max);
          break;
      }
    }
    v.push_back('}');
    // The Kafka key: the group as text (a JSON string without its quotes when it needs none).
    if (id.group.size() >= 2 && id.group.front() == '"' &&
        id.group.find('\\') == std::string::npos) {
      o.key = id.group.substr(1, id.group.size() - 2);
    } else {
      o.key = id.group;
    }
    o.timestamp_ms = end_ms;
    o.headers.emplace_back("content-type", "application/json");
    const int64_t read_from =
        first_offsets_.empty() ? trigger + 1 : std::min(trigger + 1, *first_offsets_.begin());
    o.resume_token = EncodeAggregateToken(read_from, watermark_before, trigger, id);
    o.source_offset = trigger;
  }
}

std::string ShareTransform::EncodeAggregateToken(int64_t read_from, int64_t watermark_before,
                                                 int64_t trigger, const WindowId& last) const {
  std::string token(1, '\2');
  PutInt64(&token, read_from);
  PutInt64(&token, watermark_before);
  PutInt64(&token, trigger);
  PutInt64(&token, last.start_ms);
  token += last.group;
  return token;
}

RatePacer::RatePacer(double records_per_s)
    : interval_(absl::Seconds(1) / records_per_s),
      tolerance_(absl::Seconds(1) * (std::max(1.0, records_per_s) - 1) / records_per_s) {}

absl::Time RatePacer::Admit(absl::Time now) {
  if (tat_ < now) tat_ = now;
  const absl::Time send = std::max(now, tat_ - tolerance_);
  tat_ += interval_;
  return send;
}

}  // namespace uop::policy
