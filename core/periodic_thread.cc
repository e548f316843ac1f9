#include "core/periodic_thread.h"

#include <utility>

namespace uop::core {

PeriodicThread::PeriodicThread(absl::Duration period, std::function<void()> fn) {
  thread_ = std::thread([this, period, fn = std::move(fn)] {
    absl::MutexLock lock(&mu_);
    auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
    while (!mu_.AwaitWithTimeout(absl::Condition(&stopping), period)) {
      mu_.Unlock();
      fn();
      mu_.Lock();
    }
  });
}

PeriodicThread::~PeriodicThread() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

}  // namespace uop::core
