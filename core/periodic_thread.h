// A thread that calls a function every period until it is destroyed.
#pragma once

#include <functional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace uop::core {

// Calls `fn` every `period` (the first call one period after construction) on a thread of its
// own. The destructor stops it at once, also mid-period, and waits for a call in progress.
// `fn` must not destroy this object. Thread-safe.
class PeriodicThread {
 public:
  PeriodicThread(absl::Duration period, std::function<void()> fn);
  ~PeriodicThread();
  PeriodicThread(const PeriodicThread&) = delete;
  PeriodicThread& operator=(const PeriodicThread&) = delete;

 private:
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace uop::core
