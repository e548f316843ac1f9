// The owner's transform stage on a policy snapshot: each record of one (dataset, peer) stream
// through the share's per-record rules (fields kept, dropped, pseudonymised; spatial filter and
// generalisation). Withheld records are counted per reason; what leaves carries
// uop.policy.version. The snapshot is held for the stream's lifetime: a reload takes effect on
// the next stream, at a record boundary.
//
// Limitations (issue 7): the RecordTransform seam is one record in, at most one out, and cannot
// pause the stream, so Create refuses (FAILED_PRECONDITION) shares that aggregate, that have a
// rate limit, or that are not valid now, rather than stream them wrongly. A share whose
// valid_until passes during a stream withholds from then on (reason not_valid).
#pragma once

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "broker/export/export_session.h"
#include "core/clock.h"
#include "core/metrics.h"
#include "policy/policy_snapshot.h"
#include "policy/share_transform.h"

namespace uop::broker {

inline constexpr char kHeaderPolicyVersion[] = "uop.policy.version";

class PolicyTransform final : public RecordTransform {
 public:
  // NotFound if the snapshot has no share of `dataset` for `peer`; FailedPrecondition for a
  // share that aggregates, has a rate, or is not valid at clock->Now(). `clock` must outlive the
  // transform; `metrics` may be null.
  static absl::StatusOr<std::unique_ptr<PolicyTransform>> Create(
      std::shared_ptr<const policy::PolicySnapshot> snapshot, std::string dataset, std::string peer,
      const core::Clock* clock, core::Metrics* metrics);

  bool Apply(int32_t partition, uop::federation::v1::Record* record) override;

  // Records withheld so far, per reason name (for tests and logs).
  const std::map<std::string, int64_t>& withheld() const { return withheld_; }

 private:
  PolicyTransform(std::shared_ptr<const policy::PolicySnapshot> snapshot, std::string dataset,
                  std::string peer, const core::Clock* clock, core::Metrics* metrics)
      : snapshot_(std::move(snapshot)),
        dataset_(std::move(dataset)),
        peer_(std::move(peer)),
        clock_(clock),
        metrics_(metrics) {}
  void CountWithheld(policy::WithheldReason reason);

  std::shared_ptr<const policy::PolicySnapshot> snapshot_;
  const std::string dataset_;
  const std::string peer_;
  const core::Clock* clock_;
  core::Metrics* metrics_;
  std::map<int32_t, std::unique_ptr<policy::ShareTransform>> partitions_;
  std::map<std::string, int64_t> withheld_;
  policy::TransformOutput out_;
};

}  // namespace uop::broker
