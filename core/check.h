// Broken invariants crash loudly: UOP_CHECK logs a JSON `check_failed` line and aborts. For
// conditions our own code guarantees, never for input from peers, files or Kafka (those are
// errors returned as absl::Status). Debian's Abseil (20220623) predates absl/log's ABSL_CHECK.
#pragma once

#include "absl/strings/string_view.h"

namespace uop::core {

[[noreturn]] void CheckFailed(const char* file, int line, const char* condition,
                              absl::string_view message);

}  // namespace uop::core

#define UOP_CHECK(condition, message)                                      \
  do {                                                                     \
    if (!(condition)) [[unlikely]] {                                       \
      ::uop::core::CheckFailed(__FILE__, __LINE__, #condition, (message)); \
    }                                                                      \
  } while (false)
