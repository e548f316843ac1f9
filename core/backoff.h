// Jittered exponential backoff for reconnects and retries.
#pragma once

#include <chrono>

namespace uop::core {

// Next() returns a delay in [d/2, d] and doubles d up to max. Not thread-safe: one per loop.
class Backoff {
 public:
  Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max)
      : initial_(initial), max_(max), current_(initial) {}
  std::chrono::milliseconds Next();
  void Reset() { current_ = initial_; }

 private:
  std::chrono::milliseconds initial_, max_, current_;
};

}  // namespace uop::core
