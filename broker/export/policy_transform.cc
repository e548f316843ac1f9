// Policy rules on the owner's export stream.
#include "broker/export/policy_transform.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/check.h"
#include "core/provenance.h"

namespace uop::broker {

namespace fed = uop::federation::v1;

absl::StatusOr<std::unique_ptr<PolicyTransform>> PolicyTransform::Create(
    std::shared_ptr<const policy::PolicySnapshot> snapshot, std::string dataset, std::string peer,
    const core::Clock* clock, core::Metrics* metrics) {
  const policy::Share* share = snapshot->FindShare(dataset, peer);
  if (share == nullptr) {
    return absl::NotFoundError(absl::StrCat("no share of dataset '", dataset, "' for peer '", peer,
                                            "' (policy ", snapshot->version(), ")"));
  }
  const absl::Time now = clock->Now();
  if ((share->valid_from.has_value() && now < *share->valid_from) ||
      (share->valid_until.has_value() && now >= *share->valid_until)) {
    return absl::FailedPreconditionError(absl::StrCat("dataset '", dataset, "' for peer '", peer,
                                                      "': the share is not valid at this time"));
  }
  return std::unique_ptr<PolicyTransform>(new PolicyTransform(
      std::move(snapshot), std::move(dataset), std::move(peer), clock, metrics));
}

absl::StatusOr<int64_t> PolicyTransform::Start(int32_t partition, absl::string_view resume_token) {
  absl::StatusOr<std::unique_ptr<policy::ShareTransform>> t =
      policy::ShareTransform::Resume(snapshot_, dataset_, peer_, partition, resume_token);
  if (!t.ok()) return t.status();
  const int64_t next = (*t)->NextReadOffset();
  partitions_[partition] = *std::move(t);
  return next;
}

void PolicyTransform::CountWithheld(policy::WithheldReason reason, int64_t n) {
  const char* name = policy::WithheldReasonName(reason);
  withheld_[name] += n;
  if (metrics_ != nullptr) {
    metrics_
        ->Counter("uop_export_withheld_records_total", "Records a share withheld, per reason",
                  {{"peer", peer_}, {"topic", dataset_}, {"reason", name}})
        ->Add(static_cast<double>(n));
  }
}

void PolicyTransform::ToWire(policy::OutputRecord&& o, const std::string& version,
                             fed::Record* record) {
  record->set_key(std::move(o.key));
  record->set_value(std::move(o.value));
  record->set_offset(o.source_offset);
  record->set_timestamp_ms(o.timestamp_ms);
  record->clear_headers();
  for (auto& [k, v] : o.headers) {
    fed::Header* h = record->add_headers();
    h->set_key(std::move(k));
    h->set_value(std::move(v));
  }
  fed::Header* h = record->add_headers();
  h->set_key(kHeaderPolicyVersion);
  h->set_value(version);
  record->set_resume_token(std::move(o.resume_token));
}

void PolicyTransform::Emit(std::vector<fed::Record>* emitted) {
  for (policy::OutputRecord& o : out_.records) {
    ToWire(std::move(o), snapshot_->version(), &emitted->emplace_back());
  }
  if (out_.below_min_count_records > 0) {
    CountWithheld(policy::WithheldReason::kBelowMinCount, out_.below_min_count_records);
  }
}

RecordTransform::Outcome PolicyTransform::Apply(int32_t partition, fed::Record* record,
                                                std::vector<fed::Record>* emitted) {
  auto it = partitions_.find(partition);
  UOP_CHECK(it != partitions_.end(), "a record of a partition the stream did not start");
  policy::SourceRecord in;
  in.partition = partition;
  in.offset = record->offset();
  in.timestamp_ms = record->timestamp_ms();
  if (record->has_key()) in.key = record->key();
  if (record->has_value()) in.value = record->value();
  for (const fed::Header& h : record->headers()) in.headers.emplace_back(h.key(), h.value());
  out_.Clear();
  const policy::Decision d = it->second->Apply(in, clock_->Now(), &out_);
  switch (d.verdict) {
    case policy::Decision::Verdict::kKept: {
      UOP_CHECK(out_.records.size() == 1, "a kept record is one record out");
      const bool had_key = record->has_key();
      const bool had_value = record->has_value();
      ToWire(std::move(out_.records[0]), snapshot_->version(), record);
      // A null key or value stays null (the rules only ever rewrite what is there).
      if (!had_key) record->clear_key();
      if (!had_value) record->clear_value();
      return Outcome::kSend;
    }
    case policy::Decision::Verdict::kAggregated:
      Emit(emitted);
      return Outcome::kConsumed;
    case policy::Decision::Verdict::kWithheld:
      Emit(emitted);
      if (d.replay) return Outcome::kConsumed;  // counted before the restart
      CountWithheld(d.reason == policy::WithheldReason::kNone ? policy::WithheldReason::kNoShare
                                                              : d.reason);
      return Outcome::kWithheld;
  }
  return Outcome::kWithheld;
}

void PolicyTransform::Idle(int32_t partition, absl::Time now, std::vector<fed::Record>* emitted) {
  auto it = partitions_.find(partition);
  if (it == partitions_.end()) return;
  out_.Clear();
  it->second->Advance(now, &out_);
  Emit(emitted);
}

}  // namespace uop::broker
