// UOP_CHECK's failure path.
#include "core/check.h"

#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/log.h"

namespace uop::core {

void CheckFailed(const char* file, int line, const char* condition, absl::string_view message) {
  log::Error("check_failed", {{"where", absl::StrCat(file, ":", line)},
                              {"condition", condition},
                              {"message", std::string(message)}});
  std::abort();
}

}  // namespace uop::core
