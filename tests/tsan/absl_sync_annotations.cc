// Makes Debian's abseil visible to ThreadSanitizer (the TSan build only).
//
// libabsl_synchronization from Debian is built without -fsanitize=thread, so TSan does not see
// absl::Mutex order threads: every access guarded by one would be reported as a race. This file
// defines absl::Mutex's, absl::CondVar's and absl::Notification's out-of-line members in a
// shared library linked ahead of abseil; each calls abseil's own (found with dlsym(RTLD_NEXT))
// and tells TSan what it means for happens-before: taking a lock acquires the mutex's clock,
// releasing it (also while Await or a CondVar waits) releases it; Notify releases and a wait
// that sees the notification acquires. Nothing else changes: abseil still does the locking.
#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"

namespace {

// The address of abseil's definition of the symbol `name` (mangled), or abort.
template <typename Fn>
Fn Real(const char* name) {
  void* fn = dlsym(RTLD_NEXT, name);
  if (fn == nullptr) {
    std::fprintf(stderr, "tsan abseil annotations: %s not found: %s\n", name, dlerror());
    std::abort();
  }
  return reinterpret_cast<Fn>(fn);
}

}  // namespace

// Each wrapper finds abseil's definition once (UOP_REAL): our definition and abseil's have the
// same mangled name, which dladdr of our own definition gives, and RTLD_NEXT skips ours.
namespace {

const char* OwnName(void* self_fn) {
  Dl_info info;
  if (dladdr(self_fn, &info) == 0 || info.dli_sname == nullptr) {
    std::fprintf(stderr, "tsan abseil annotations: no symbol for %p\n", self_fn);
    std::abort();
  }
  return info.dli_sname;
}

template <typename Fn>
Fn RealOf(Fn own) {
  return Real<Fn>(OwnName(reinterpret_cast<void*>(own)));
}

template <typename Member>
void* Addr(Member m) {
  union {
    Member member;
    void* ptr;
  } u{m};
  return u.ptr;
}

// A condition is evaluated by abseil with the lock held, inside the call we wrap (in the waiting
// thread as it wakes, or in the thread that unlocks): it must see the mutex acquired, and what
// the waiter wrote before it handed the condition over (the condition itself, its arguments).
struct Guarded {
  Guarded(const absl::Condition* c, absl::Mutex* m) : cond(c), mu(m) { __tsan_release(this); }
  const absl::Condition* cond;
  absl::Mutex* mu;
};
bool EvalAcquired(Guarded* g) {
  __tsan_acquire(g);
  __tsan_acquire(g->mu);
  const bool met = g->cond->Eval();
  __tsan_release(g->mu);  // abseil may then release the lock itself, unseen
  return met;
}

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

using LockFn = void (*)(Mutex*);
using TryFn = bool (*)(Mutex*);
using CondFn = void (*)(Mutex*, const Condition&);
using CondTimeoutFn = bool (*)(Mutex*, const Condition&, Duration);
using CondDeadlineFn = bool (*)(Mutex*, const Condition&, Time);

#define UOP_REAL(T, member) static const T real = RealOf<T>(reinterpret_cast<T>(Addr(&member)))

void Mutex::Lock() {
  UOP_REAL(LockFn, Mutex::Lock);
  real(this);
  __tsan_acquire(this);
}
void Mutex::ReaderLock() {
  UOP_REAL(LockFn, Mutex::ReaderLock);
  real(this);
  __tsan_acquire(this);
}
void Mutex::Unlock() {
  UOP_REAL(LockFn, Mutex::Unlock);
  __tsan_release(this);
  real(this);
}
void Mutex::ReaderUnlock() {
  UOP_REAL(LockFn, Mutex::ReaderUnlock);
  __tsan_release(this);
  real(this);
}
bool Mutex::TryLock() {
  UOP_REAL(TryFn, Mutex::TryLock);
  const bool got = real(this);
  if (got) __tsan_acquire(this);
  return got;
}
bool Mutex::ReaderTryLock() {
  UOP_REAL(TryFn, Mutex::ReaderTryLock);
  const bool got = real(this);
  if (got) __tsan_acquire(this);
  return got;
}
void Mutex::LockWhen(const Condition& cond) {
  UOP_REAL(CondFn, Mutex::LockWhen);
  Guarded g{&cond, this};
  real(this, Condition(&EvalAcquired, &g));
  __tsan_acquire(this);
}
void Mutex::ReaderLockWhen(const Condition& cond) {
  UOP_REAL(CondFn, Mutex::ReaderLockWhen);
  Guarded g{&cond, this};
  real(this, Condition(&EvalAcquired, &g));
  __tsan_acquire(this);
}
bool Mutex::LockWhenWithTimeout(const Condition& cond, Duration timeout) {
  UOP_REAL(CondTimeoutFn, Mutex::LockWhenWithTimeout);
  Guarded g{&cond, this};
  const bool met = real(this, Condition(&EvalAcquired, &g), timeout);
  __tsan_acquire(this);  // held either way
  return met;
}
bool Mutex::ReaderLockWhenWithTimeout(const Condition& cond, Duration timeout) {
  UOP_REAL(CondTimeoutFn, Mutex::ReaderLockWhenWithTimeout);
  Guarded g{&cond, this};
  const bool met = real(this, Condition(&EvalAcquired, &g), timeout);
  __tsan_acquire(this);
  return met;
}
bool Mutex::LockWhenWithDeadline(const Condition& cond, Time deadline) {
  UOP_REAL(CondDeadlineFn, Mutex::LockWhenWithDeadline);
  Guarded g{&cond, this};
  const bool met = real(this, Condition(&EvalAcquired, &g), deadline);
  __tsan_acquire(this);
  return met;
}
bool Mutex::ReaderLockWhenWithDeadline(const Condition& cond, Time deadline) {
  UOP_REAL(CondDeadlineFn, Mutex::ReaderLockWhenWithDeadline);
  Guarded g{&cond, this};
  const bool met = real(this, Condition(&EvalAcquired, &g), deadline);
  __tsan_acquire(this);
  return met;
}
void Mutex::Await(const Condition& cond) {
  UOP_REAL(CondFn, Mutex::Await);
  Guarded g{&cond, this};
  __tsan_release(this);
  real(this, Condition(&EvalAcquired, &g));
  __tsan_acquire(this);
}
bool Mutex::AwaitWithTimeout(const Condition& cond, Duration timeout) {
  UOP_REAL(CondTimeoutFn, Mutex::AwaitWithTimeout);
  Guarded g{&cond, this};
  __tsan_release(this);
  const bool met = real(this, Condition(&EvalAcquired, &g), timeout);
  __tsan_acquire(this);
  return met;
}
bool Mutex::AwaitWithDeadline(const Condition& cond, Time deadline) {
  UOP_REAL(CondDeadlineFn, Mutex::AwaitWithDeadline);
  Guarded g{&cond, this};
  __tsan_release(this);
  const bool met = real(this, Condition(&EvalAcquired, &g), deadline);
  __tsan_acquire(this);
  return met;
}

using WaitFn = void (*)(CondVar*, Mutex*);
using WaitTimeoutFn = bool (*)(CondVar*, Mutex*, Duration);
using WaitDeadlineFn = bool (*)(CondVar*, Mutex*, Time);

void CondVar::Wait(Mutex* mu) {
  UOP_REAL(WaitFn, CondVar::Wait);
  __tsan_release(mu);
  real(this, mu);
  __tsan_acquire(mu);
}
bool CondVar::WaitWithTimeout(Mutex* mu, Duration timeout) {
  UOP_REAL(WaitTimeoutFn, CondVar::WaitWithTimeout);
  __tsan_release(mu);
  const bool timed_out = real(this, mu, timeout);
  __tsan_acquire(mu);
  return timed_out;
}
bool CondVar::WaitWithDeadline(Mutex* mu, Time deadline) {
  UOP_REAL(WaitDeadlineFn, CondVar::WaitWithDeadline);
  __tsan_release(mu);
  const bool timed_out = real(this, mu, deadline);
  __tsan_acquire(mu);
  return timed_out;
}

using NotifyFn = void (*)(Notification*);
using NWaitFn = void (*)(const Notification*);
using NWaitTimeoutFn = bool (*)(const Notification*, Duration);
using NWaitDeadlineFn = bool (*)(const Notification*, Time);

void Notification::Notify() {
  UOP_REAL(NotifyFn, Notification::Notify);
  __tsan_release(this);
  real(this);
}
void Notification::WaitForNotification() const {
  UOP_REAL(NWaitFn, Notification::WaitForNotification);
  real(this);
  __tsan_acquire(const_cast<Notification*>(this));
}
bool Notification::WaitForNotificationWithTimeout(Duration timeout) const {
  UOP_REAL(NWaitTimeoutFn, Notification::WaitForNotificationWithTimeout);
  const bool notified = real(this, timeout);
  if (notified) __tsan_acquire(const_cast<Notification*>(this));
  return notified;
}
bool Notification::WaitForNotificationWithDeadline(Time deadline) const {
  UOP_REAL(NWaitDeadlineFn, Notification::WaitForNotificationWithDeadline);
  const bool notified = real(this, deadline);
  if (notified) __tsan_acquire(const_cast<Notification*>(this));
  return notified;
}

ABSL_NAMESPACE_END
}  // namespace absl

// librdkafka runs its threads on C11 threads (thrd_create, mtx_*, cnd_*), which glibc implements
// by calling its pthread internals directly, past TSan's interceptors: TSan would not know its
// threads (and crash allocating on them) nor its locks. Here they are the pthread calls TSan
// intercepts, as glibc's own threads.h functions do.
#include <pthread.h>
#include <threads.h>

#include <cerrno>
#include <new>

namespace {

int FromErrno(int e) {
  switch (e) {
    case 0:
      return thrd_success;
    case EBUSY:
      return thrd_busy;
    case ETIMEDOUT:
      return thrd_timedout;
    case ENOMEM:
      return thrd_nomem;
    default:
      return thrd_error;
  }
}

struct Start {
  thrd_start_t fn;
  void* arg;
};

void* Trampoline(void* p) {
  Start start = *static_cast<Start*>(p);
  delete static_cast<Start*>(p);
  return reinterpret_cast<void*>(static_cast<intptr_t>(start.fn(start.arg)));
}

}  // namespace

extern "C" {

int thrd_create(thrd_t* thr, thrd_start_t fn, void* arg) {
  auto* start = new (std::nothrow) Start{fn, arg};
  if (start == nullptr) return thrd_nomem;
  const int e = pthread_create(reinterpret_cast<pthread_t*>(thr), nullptr, &Trampoline, start);
  if (e != 0) delete start;
  return FromErrno(e);
}

int thrd_join(thrd_t thr, int* res) {
  void* out = nullptr;
  const int e = pthread_join(static_cast<pthread_t>(thr), &out);
  if (e == 0 && res != nullptr) *res = static_cast<int>(reinterpret_cast<intptr_t>(out));
  return FromErrno(e);
}

int thrd_detach(thrd_t thr) { return FromErrno(pthread_detach(static_cast<pthread_t>(thr))); }

int mtx_init(mtx_t* m, int type) {
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  if ((type & mtx_recursive) != 0) pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
  const int e = pthread_mutex_init(reinterpret_cast<pthread_mutex_t*>(m), &attr);
  pthread_mutexattr_destroy(&attr);
  return FromErrno(e);
}
void mtx_destroy(mtx_t* m) { pthread_mutex_destroy(reinterpret_cast<pthread_mutex_t*>(m)); }
int mtx_lock(mtx_t* m) {
  return FromErrno(pthread_mutex_lock(reinterpret_cast<pthread_mutex_t*>(m)));
}
int mtx_trylock(mtx_t* m) {
  return FromErrno(pthread_mutex_trylock(reinterpret_cast<pthread_mutex_t*>(m)));
}
int mtx_timedlock(mtx_t* __restrict m, const struct timespec* __restrict ts) {
  return FromErrno(pthread_mutex_timedlock(reinterpret_cast<pthread_mutex_t*>(m), ts));
}
int mtx_unlock(mtx_t* m) {
  return FromErrno(pthread_mutex_unlock(reinterpret_cast<pthread_mutex_t*>(m)));
}

int cnd_init(cnd_t* c) {
  return FromErrno(pthread_cond_init(reinterpret_cast<pthread_cond_t*>(c), nullptr));
}
void cnd_destroy(cnd_t* c) { pthread_cond_destroy(reinterpret_cast<pthread_cond_t*>(c)); }
int cnd_signal(cnd_t* c) {
  return FromErrno(pthread_cond_signal(reinterpret_cast<pthread_cond_t*>(c)));
}
int cnd_broadcast(cnd_t* c) {
  return FromErrno(pthread_cond_broadcast(reinterpret_cast<pthread_cond_t*>(c)));
}
int cnd_wait(cnd_t* c, mtx_t* m) {
  return FromErrno(pthread_cond_wait(reinterpret_cast<pthread_cond_t*>(c),
                                     reinterpret_cast<pthread_mutex_t*>(m)));
}
int cnd_timedwait(cnd_t* __restrict c, mtx_t* __restrict m, const struct timespec* __restrict ts) {
  return FromErrno(pthread_cond_timedwait(reinterpret_cast<pthread_cond_t*>(c),
                                          reinterpret_cast<pthread_mutex_t*>(m), ts));
}

}  // extern "C"
