// The TSan build's own check that it can fail (ctest: tsan.selftest_*): with its abseil
// annotations, a counter guarded by an absl::Mutex (also read by a condition another thread
// waits on) is race-free, and the same counter touched without the mutex is reported.
//
//   tsan_selftest guarded   exits 0
//   tsan_selftest race      TSan reports a data race (exit 66 with halt_on_error)
#include <cstring>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"

namespace {

absl::Mutex mu;
int guarded ABSL_GUARDED_BY(mu) = 0;
int unguarded = 0;

void Guarded() {
  auto add = [] {
    for (int i = 0; i < 1000; ++i) {
      absl::MutexLock lock(&mu);
      ++guarded;
    }
  };
  auto wait = [] {
    absl::MutexLock lock(&mu);
    auto all = []() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return guarded >= 2000; };
    mu.Await(absl::Condition(&all));
  };
  absl::Notification started;
  int handed = 0;  // written before Notify, read after the wait: ordered by the notification
  std::thread waiter([&] {
    started.WaitForNotification();
    if (handed == 1) wait();
  });
  handed = 1;
  started.Notify();
  std::thread a(add), b(add);
  a.join();
  b.join();
  waiter.join();
}

void Race() {
  auto add = [] {
    for (int i = 0; i < 1000; ++i) ++unguarded;
  };
  std::thread a(add), b(add);
  a.join();
  b.join();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "guarded") == 0) {
    Guarded();
    return 0;
  }
  if (argc == 2 && std::strcmp(argv[1], "race") == 0) {
    Race();
    return 0;
  }
  return 2;
}
