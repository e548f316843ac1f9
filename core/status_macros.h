// RETURN_IF_ERROR / ASSIGN_OR_RETURN for absl::Status, as used across uop-federation (policy/ keeps
// its own copy: it uses nothing of ours).
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define UOP_CONCAT_INNER_(a, b) a##b
#define UOP_CONCAT_(a, b) UOP_CONCAT_INNER_(a, b)

#define RETURN_IF_ERROR(expr)                  \
  do {                                         \
    ::absl::Status uop_status_ = (expr);       \
    if (!uop_status_.ok()) return uop_status_; \
  } while (0)

#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL_(UOP_CONCAT_(uop_statusor_, __LINE__), lhs, expr)

// `statusor` names a variable and `lhs` may be a declaration: neither can be parenthesised.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                           \
  if (!statusor.ok()) return statusor.status();     \
  lhs = std::move(*statusor)
// NOLINTEND(bugprone-macro-parentheses)
