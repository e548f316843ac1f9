// Field and reason payloads on rejection statuses.
#include "connectors/sta/errors.h"

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"

namespace uop::sta {
namespace {
constexpr absl::string_view kFieldUrl = "uop.sta/field";
constexpr absl::string_view kReasonUrl = "uop.sta/reason";
}  // namespace

absl::string_view ReasonName(Reason reason) {
  switch (reason) {
    case Reason::kMalformedJson:
      return "malformed_json";
    case Reason::kMissingField:
      return "missing_field";
    case Reason::kBadType:
      return "bad_type";
    case Reason::kBadTime:
      return "bad_time";
    case Reason::kUnknownField:
      return "unknown_field";
    case Reason::kUnknownDatastream:
      return "unknown_datastream";
    case Reason::kUnknownFeatureOfInterest:
      return "unknown_feature_of_interest";
    case Reason::kDatastreamMismatch:
      return "datastream_mismatch";
    case Reason::kResultType:
      return "result_type";
    case Reason::kUnitMismatch:
      return "unit_mismatch";
    case Reason::kBadTopic:
      return "bad_topic";
    case Reason::kTooLarge:
      return "too_large";
  }
  return "other";
}

absl::Status FieldError(absl::string_view field, Reason reason, absl::string_view message) {
  absl::Status s = absl::InvalidArgumentError(field.empty() ? std::string(message)
                                                            : absl::StrCat(field, ": ", message));
  s.SetPayload(kFieldUrl, absl::Cord(field));
  s.SetPayload(kReasonUrl, absl::Cord(ReasonName(reason)));
  return s;
}

std::string ErrorField(const absl::Status& status) {
  auto p = status.GetPayload(kFieldUrl);
  return p ? std::string(*p) : std::string();
}

std::string ErrorReason(const absl::Status& status) {
  auto p = status.GetPayload(kReasonUrl);
  return p ? std::string(*p) : std::string("other");
}

}  // namespace uop::sta
