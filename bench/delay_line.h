// One direction of the benchmark's delay-line proxy, without sockets: bytes pushed at their
// arrival time become writable `delay` later, in arrival order, with no bandwidth cap.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>

namespace uop::bench {

// Not thread-safe: the proxy's event loop owns each line. Time is passed in by the caller (the
// proxy reads steady_clock; tests pass whatever they like), so nothing here sleeps or reads a
// clock.
class DelayLine {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  // `max_buffered` bounds the bytes held (pushed, not yet consumed): the proxy stops reading a
  // socket whose line is full, which is TCP backpressure and never a rate limit as long as
  // max_buffered exceeds rate x delay.
  DelayLine(std::chrono::nanoseconds delay, size_t max_buffered);

  // How many more bytes Push may take now.
  size_t room() const { return buffered_ < max_buffered_ ? max_buffered_ - buffered_ : 0; }
  size_t buffered() const { return buffered_; }
  bool empty() const { return chunks_.empty(); }

  // `bytes` arrived at `arrival` (non-decreasing from call to call). Bytes beyond room() are a
  // caller bug and crash.
  void Push(TimePoint arrival, std::string_view bytes);
  // The sender closed its side at `arrival`: once every byte before it has been consumed and the
  // end is due, EndDue() says so (the proxy then half-closes the other socket).
  void PushEnd(TimePoint arrival);

  // When the head of the line is due; nullopt when nothing is queued.
  std::optional<TimePoint> NextDue() const;
  // The contiguous due bytes at the head (one arrival chunk, from where the last Consume left
  // off); empty when nothing is due at `now` or the head is the end marker.
  std::string_view Ready(TimePoint now) const;
  // `n` bytes of Ready() were written. The nanoseconds by which the head chunk was late (now
  // minus its due time) are added to the lateness statistics once the chunk is finished.
  void Consume(TimePoint now, size_t n);
  // True when the head is the end marker and it is due.
  bool EndDue(TimePoint now) const;

  // Forwarding quality: how late the chunks went out compared with arrival + delay.
  int64_t chunks_forwarded() const { return chunks_forwarded_; }
  std::chrono::nanoseconds max_lateness() const { return max_lateness_; }
  std::chrono::nanoseconds total_lateness() const { return total_lateness_; }

 private:
  struct Chunk {
    TimePoint due;
    std::string bytes;  // empty for the end marker
    size_t offset = 0;  // bytes already consumed
    bool end = false;
  };

  const std::chrono::nanoseconds delay_;
  const size_t max_buffered_;
  size_t buffered_ = 0;
  bool ended_ = false;
  std::deque<Chunk> chunks_;
  int64_t chunks_forwarded_ = 0;
  std::chrono::nanoseconds max_lateness_{0};
  std::chrono::nanoseconds total_lateness_{0};
};

}  // namespace uop::bench
