// The owner's transform stage on a policy snapshot: each record of one (dataset, peer) stream
// through the share's rules (fields kept, dropped, pseudonymised; spatial filter and
// generalisation; tumbling-window aggregation, of which only the aggregates leave). Withheld
// records are counted per reason; what leaves carries uop.policy.version. The snapshot is held
// for the stream's lifetime: a reload takes effect on the next stream, at a record boundary
// (ExportStream::CheckShare ends the stream when the share's rules change).
//
// The resume tokens are policy::ShareTransform's: plain shares keep the broker's offset tokens,
// aggregating shares restart from the oldest open window and never emit a window twice. A share
// whose valid_until passes during a stream withholds from then on (reason not_valid) until
// CheckShare ends the stream.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

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
  // share that is not valid at clock->Now(). `clock` must outlive the transform; `metrics` may
  // be null.
  static absl::StatusOr<std::unique_ptr<PolicyTransform>> Create(
      std::shared_ptr<const policy::PolicySnapshot> snapshot, std::string dataset, std::string peer,
      const core::Clock* clock, core::Metrics* metrics);

  absl::StatusOr<int64_t> Start(int32_t partition, absl::string_view resume_token) override;
  Outcome Apply(int32_t partition, uop::federation::v1::Record* record,
                std::vector<uop::federation::v1::Record>* emitted) override;
  void Idle(int32_t partition, absl::Time now,
            std::vector<uop::federation::v1::Record>* emitted) override;

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
  void CountWithheld(policy::WithheldReason reason, int64_t n = 1);
  // Moves out_.records into `emitted` as wire records stamped with the version.
  void Emit(std::vector<uop::federation::v1::Record>* emitted);
  static void ToWire(policy::OutputRecord&& o, const std::string& version,
                     uop::federation::v1::Record* record);

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
