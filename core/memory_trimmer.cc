#include "core/memory_trimmer.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace uop::core {

bool MemoryTrimmer::TrimNow() {
#if defined(__GLIBC__)
  return malloc_trim(0) != 0;
#else
  return false;
#endif
}

MemoryTrimmer::MemoryTrimmer(absl::Duration period) {
  thread_ = std::thread([this, period] {
    absl::MutexLock lock(&mu_);
    auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
    while (!mu_.AwaitWithTimeout(absl::Condition(&stopping), period)) {
      mu_.Unlock();
      TrimNow();
      mu_.Lock();
    }
  });
}

MemoryTrimmer::~MemoryTrimmer() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

}  // namespace uop::core
