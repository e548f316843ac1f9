// RETURN_IF_ERROR / ASSIGN_OR_RETURN for the connectors (which never include broker code).
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define STA_CONCAT_INNER_(a, b) a##b
#define STA_CONCAT_(a, b) STA_CONCAT_INNER_(a, b)

#define RETURN_IF_ERROR(expr)                  \
  do {                                         \
    ::absl::Status sta_status_ = (expr);       \
    if (!sta_status_.ok()) return sta_status_; \
  } while (0)

#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL_(STA_CONCAT_(sta_statusor_, __LINE__), lhs, expr)

#define ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                           \
  if (!statusor.ok()) return statusor.status();     \
  lhs = std::move(*statusor)
