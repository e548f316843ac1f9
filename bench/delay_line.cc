// DelayLine: a FIFO of arrival chunks, each released `delay` after it arrived.
#include "bench/delay_line.h"

#include <algorithm>

#include "core/check.h"

namespace uop::bench {

DelayLine::DelayLine(std::chrono::nanoseconds delay, size_t max_buffered)
    : delay_(delay), max_buffered_(max_buffered) {
  UOP_CHECK(delay.count() >= 0, "negative delay");
  UOP_CHECK(max_buffered > 0, "a line must hold at least one byte");
}

void DelayLine::Push(TimePoint arrival, std::string_view bytes) {
  UOP_CHECK(!ended_, "bytes pushed after the end");
  UOP_CHECK(bytes.size() <= room(), "pushed more than room()");
  if (bytes.empty()) return;
  const TimePoint due = arrival + delay_;
  UOP_CHECK(chunks_.empty() || chunks_.back().due <= due, "arrival times went backwards");
  chunks_.push_back(Chunk{due, std::string(bytes)});
  buffered_ += bytes.size();
}

void DelayLine::PushEnd(TimePoint arrival) {
  UOP_CHECK(!ended_, "two ends");
  const TimePoint due = arrival + delay_;
  UOP_CHECK(chunks_.empty() || chunks_.back().due <= due, "arrival times went backwards");
  chunks_.push_back(Chunk{due, {}, 0, true});
  ended_ = true;
}

std::optional<DelayLine::TimePoint> DelayLine::NextDue() const {
  if (chunks_.empty()) return std::nullopt;
  return chunks_.front().due;
}

std::string_view DelayLine::Ready(TimePoint now) const {
  if (chunks_.empty()) return {};
  const Chunk& head = chunks_.front();
  if (head.end || head.due > now) return {};
  return std::string_view(head.bytes).substr(head.offset);
}

void DelayLine::Consume(TimePoint now, size_t n) {
  if (n == 0) return;
  UOP_CHECK(!chunks_.empty() && !chunks_.front().end, "consumed bytes the line does not hold");
  Chunk& head = chunks_.front();
  UOP_CHECK(head.due <= now, "consumed bytes that were not due");
  UOP_CHECK(n <= head.bytes.size() - head.offset, "consumed beyond the head chunk");
  head.offset += n;
  buffered_ -= n;
  if (head.offset == head.bytes.size()) {
    const std::chrono::nanoseconds late = now - head.due;
    max_lateness_ = std::max(max_lateness_, late);
    total_lateness_ += late;
    ++chunks_forwarded_;
    chunks_.pop_front();
  }
}

bool DelayLine::EndDue(TimePoint now) const {
  return !chunks_.empty() && chunks_.front().end && chunks_.front().due <= now;
}

}  // namespace uop::bench
