// Jittered exponential backoff.
#include "core/backoff.h"

#include <algorithm>
#include <random>

namespace uop::core {

std::chrono::milliseconds Backoff::Next() {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  const auto current = current_;
  current_ = std::min(max_, current_ * 2);
  std::uniform_int_distribution<int64_t> jitter(current.count() / 2, current.count());
  return std::chrono::milliseconds(jitter(rng));
}

}  // namespace uop::core
