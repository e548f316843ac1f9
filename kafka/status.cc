// librdkafka errors to absl::Status.
#include "kafka/status.h"

#include <optional>
#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace uop::kafka {

namespace {

constexpr absl::string_view kPayloadUrl = "type.uop/kafka-error";  // "code,flags"
enum Flag : int { kRetriable = 1, kAbort = 2, kFatal = 4 };

absl::StatusCode CodeFor(rd_kafka_resp_err_t code, int flags) {
  if (flags & kFatal) return absl::StatusCode::kInternal;
  switch (code) {
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
      return absl::StatusCode::kDeadlineExceeded;
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
      return absl::StatusCode::kInvalidArgument;
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
      return absl::StatusCode::kNotFound;
    case RD_KAFKA_RESP_ERR__FENCED:
    case RD_KAFKA_RESP_ERR_PRODUCER_FENCED:
    case RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH:
    case RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION:
    case RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID:
      return absl::StatusCode::kAborted;
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
      return absl::StatusCode::kPermissionDenied;
    default:
      return absl::StatusCode::kUnavailable;
  }
}

absl::Status Make(rd_kafka_resp_err_t code, int flags, absl::string_view what,
                  absl::string_view text) {
  absl::Status status(CodeFor(code, flags), absl::StrCat(what, ": ", text));
  status.SetPayload(kPayloadUrl, absl::Cord(absl::StrCat(static_cast<int>(code), ",", flags)));
  return status;
}

std::pair<int, int> Payload(const absl::Status& status) {
  auto payload = status.GetPayload(kPayloadUrl);
  if (!payload.has_value()) return {0, 0};
  std::pair<std::string, std::string> parts = absl::StrSplit(std::string(*payload), ',');
  int code = 0, flags = 0;
  if (!absl::SimpleAtoi(parts.first, &code) || !absl::SimpleAtoi(parts.second, &flags)) {
    return {0, 0};
  }
  return {code, flags};
}

}  // namespace

absl::Status FromError(rd_kafka_error_t* error, absl::string_view what) {
  if (error == nullptr) return absl::OkStatus();
  int flags = 0;
  if (rd_kafka_error_is_retriable(error)) flags |= kRetriable;
  if (rd_kafka_error_txn_requires_abort(error)) flags |= kAbort;
  if (rd_kafka_error_is_fatal(error)) flags |= kFatal;
  absl::Status status = Make(rd_kafka_error_code(error), flags, what, rd_kafka_error_string(error));
  rd_kafka_error_destroy(error);
  return status;
}

absl::Status FromCode(rd_kafka_resp_err_t code, absl::string_view what) {
  if (code == RD_KAFKA_RESP_ERR_NO_ERROR) return absl::OkStatus();
  const int flags = code == RD_KAFKA_RESP_ERR__FATAL ? kFatal : 0;
  return Make(code, flags, what, rd_kafka_err2str(code));
}

bool IsRetriable(const absl::Status& status) { return Payload(status).second & kRetriable; }
bool RequiresAbort(const absl::Status& status) { return Payload(status).second & kAbort; }
bool IsFatal(const absl::Status& status) { return Payload(status).second & kFatal; }

bool IsRecordRefusedCode(rd_kafka_resp_err_t code) {
  return code == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE || code == RD_KAFKA_RESP_ERR_INVALID_RECORD ||
         code == RD_KAFKA_RESP_ERR_INVALID_MSG;
}

bool IsTransientCode(rd_kafka_resp_err_t code) {
  switch (code) {
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_REPLICA_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_FENCED_LEADER_EPOCH:
    case RD_KAFKA_RESP_ERR_UNKNOWN_LEADER_EPOCH:
    case RD_KAFKA_RESP_ERR_OFFSET_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
    case RD_KAFKA_RESP_ERR__WAIT_COORD:
    case RD_KAFKA_RESP_ERR_UNSTABLE_OFFSET_COMMIT:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TRANSPORT:
      return true;
    default:
      return false;
  }
}

bool IsRecordRefused(const absl::Status& status) { return IsRecordRefusedCode(CodeOf(status)); }

rd_kafka_resp_err_t CodeOf(const absl::Status& status) {
  return static_cast<rd_kafka_resp_err_t>(Payload(status).first);
}

}  // namespace uop::kafka
