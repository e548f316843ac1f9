#include "core/memory_trimmer.h"
#include "core/periodic_thread.h"

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace uop::core {
namespace {

int64_t RssKiB() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitizerAllocator = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitizerAllocator = true;
#else
constexpr bool kSanitizerAllocator = false;
#endif
#else
constexpr bool kSanitizerAllocator = false;
#endif

TEST(MemoryTrimmerTest, ReturnsWhatABurstFreedBetweenLiveBlocks) {
  if (kSanitizerAllocator) GTEST_SKIP() << "the sanitizer's allocator is not glibc's";
  // 128 MiB in 32 KiB blocks (below the mmap threshold: from the arena), each followed by a
  // small block that stays live, so the freed blocks are holes that free() cannot give back.
  std::vector<std::unique_ptr<char[]>> big, small;
  big.reserve(4096);
  small.reserve(4096);
  for (int i = 0; i < 4096; ++i) {
    big.emplace_back(new char[32 << 10]);
    std::fill_n(big.back().get(), 32 << 10, static_cast<char>(i));
    small.emplace_back(new char[16]);
  }
  big.clear();
  const int64_t before = RssKiB();
  ASSERT_TRUE(TrimFreeMemory());
  const int64_t after = RssKiB();
  EXPECT_LT(after, before - 64 * 1024) << "RSS " << before << " KiB -> " << after << " KiB";
}

TEST(PeriodicThreadTest, CallsEveryPeriod) {
  absl::Mutex mu;
  int calls = 0;
  core::PeriodicThread thread(absl::Milliseconds(1), [&] {
    absl::MutexLock lock(&mu);
    ++calls;
  });
  absl::MutexLock lock(&mu);
  auto three = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return calls >= 3; };
  EXPECT_TRUE(mu.AwaitWithTimeout(absl::Condition(&three), absl::Seconds(10))) << calls;
}

TEST(PeriodicThreadTest, StopsAtOnceWhenDestroyedMidPeriod) {
  int calls = 0;
  auto thread = std::make_unique<PeriodicThread>(absl::Hours(1), [&] { ++calls; });
  thread.reset();  // joins: a wait for the period would hang the test past its timeout
  EXPECT_EQ(calls, 0);
}

}  // namespace
}  // namespace uop::core
