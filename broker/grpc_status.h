// The one conversion each way between absl::Status (our code) and grpc::Status (the wire).
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace uop::broker {

// Same code (absl and gRPC share the canonical codes), same message.
grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace uop::broker
