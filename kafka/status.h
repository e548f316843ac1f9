// librdkafka's errors as absl::Status, converted once here. The flags callers must act on
// (retriable, the transaction must be aborted, fatal, the record itself is refused for good) travel
// as a payload, so nobody branches on an error's text.
#pragma once

#include <librdkafka/rdkafka.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace uop::kafka {

// Takes ownership of `error` (destroys it); OkStatus for nullptr. `what` names the operation,
// e.g. "commit transaction".
absl::Status FromError(rd_kafka_error_t* error, absl::string_view what);
// A plain error code; OkStatus for RD_KAFKA_RESP_ERR_NO_ERROR.
absl::Status FromCode(rd_kafka_resp_err_t code, absl::string_view what);

bool IsRetriable(const absl::Status& status);
bool RequiresAbort(const absl::Status& status);  // rd_kafka_error_txn_requires_abort
bool IsFatal(const absl::Status& status);
// The broker refused this record for good (too large, invalid): it belongs in a dead-letter topic.
bool IsRecordRefused(const absl::Status& status);
bool IsRecordRefusedCode(rd_kafka_resp_err_t code);
// The cluster is catching up, and the same request succeeds a moment later: a new topic whose
// leaders are not elected or not yet in metadata, a leader that moved, a coordinator that is
// loading, a transactional offset commit still pending, a request that timed out.
bool IsTransientCode(rd_kafka_resp_err_t code);
// The librdkafka error code carried by `status`, RD_KAFKA_RESP_ERR_NO_ERROR if none.
rd_kafka_resp_err_t CodeOf(const absl::Status& status);

}  // namespace uop::kafka
