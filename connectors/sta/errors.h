// Rejections of SensorThings input: an InvalidArgument status whose message names the field,
// with the field and a reason category attached as payloads (for HTTP bodies and metrics, so
// nobody parses messages).
#pragma once

#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"

namespace uop::sta {

// Categories for counters (`uop_sta_rejected_total{reason=...}`): a small fixed set.
enum class Reason {
  kMalformedJson,
  kMissingField,
  kBadType,
  kBadTime,
  kUnknownField,
  kUnknownDatastream,
  kUnknownFeatureOfInterest,
  kDatastreamMismatch,
  kResultType,
  kUnitMismatch,
  kBadTopic,
  kTooLarge,
};

absl::string_view ReasonName(Reason reason);

// "field: message", with payloads carrying `field` and `reason`.
absl::Status FieldError(absl::string_view field, Reason reason, absl::string_view message);

// The field and reason of a FieldError; "" and "other" for any other status.
std::string ErrorField(const absl::Status& status);
std::string ErrorReason(const absl::Status& status);

}  // namespace uop::sta
