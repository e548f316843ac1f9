// Per-record policy rules on the owner's export stream.
#include "broker/export/policy_transform.h"

#include <utility>

#include "absl/strings/str_cat.h"
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
  // Refused rather than streamed wrongly (deny by default): see the header.
  if (share->aggregate.has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat("dataset '", dataset, "' for peer '", peer,
                     "': its share aggregates, which this broker does not stream yet"));
  }
  if (share->records_per_s.has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat("dataset '", dataset, "' for peer '", peer,
                     "': its share has a rate limit, which this broker does not enforce yet"));
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

void PolicyTransform::CountWithheld(policy::WithheldReason reason) {
  const char* name = policy::WithheldReasonName(reason);
  ++withheld_[name];
  if (metrics_ != nullptr) {
    metrics_
        ->Counter("uop_export_withheld_records_total", "Records a share withheld, per reason",
                  {{"peer", peer_}, {"topic", dataset_}, {"reason", name}})
        ->Add(1);
  }
}

bool PolicyTransform::Apply(int32_t partition, fed::Record* record) {
  auto it = partitions_.find(partition);
  if (it == partitions_.end()) {
    // A plain share's token is the next origin offset: start the rules at this record.
    absl::StatusOr<std::unique_ptr<policy::ShareTransform>> t = policy::ShareTransform::Resume(
        snapshot_, dataset_, peer_, partition, core::EncodeOffsetToken(record->offset()));
    if (!t.ok()) {
      CountWithheld(policy::WithheldReason::kNoShare);
      return false;
    }
    it = partitions_.emplace(partition, *std::move(t)).first;
  }
  policy::SourceRecord in;
  in.partition = partition;
  in.offset = record->offset();
  in.timestamp_ms = record->timestamp_ms();
  if (record->has_key()) in.key = record->key();
  if (record->has_value()) in.value = record->value();
  for (const fed::Header& h : record->headers()) in.headers.emplace_back(h.key(), h.value());
  out_.Clear();
  policy::Decision d = it->second->Apply(in, clock_->Now(), &out_);
  if (d.verdict != policy::Decision::Verdict::kKept || out_.records.size() != 1) {
    CountWithheld(d.reason == policy::WithheldReason::kNone ? policy::WithheldReason::kNoShare
                                                            : d.reason);
    return false;
  }
  policy::OutputRecord& o = out_.records[0];
  if (record->has_key()) record->set_key(std::move(o.key));
  if (record->has_value()) record->set_value(std::move(o.value));
  record->set_timestamp_ms(o.timestamp_ms);
  record->clear_headers();
  for (auto& [k, v] : o.headers) {
    fed::Header* h = record->add_headers();
    h->set_key(k);
    h->set_value(v);
  }
  fed::Header* h = record->add_headers();
  h->set_key(kHeaderPolicyVersion);
  h->set_value(snapshot_->version());
  record->set_resume_token(std::move(o.resume_token));
  return true;
}

}  // namespace uop::broker
