// A fixed set of worker threads running posted tasks in order of posting. The number of threads
// is set by configuration, never by how many streams or partitions there are.
#pragma once

#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace uop::core {

// Thread-safe. Tasks must not block for long (Kafka calls with timeouts are the longest).
// The destructor runs what is queued, including tasks those tasks post, then joins.
class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  void Post(std::function<void()> task);
  int size() const { return static_cast<int>(threads_.size()); }

 private:
  void Work();
  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace uop::core
