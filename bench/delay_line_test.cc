// DelayLine against hand-made time points (no clock, no sleeps): release times, order, partial
// writes, the end marker, the byte bound and the lateness statistics.
#include "bench/delay_line.h"

#include "gtest/gtest.h"

namespace uop::bench {
namespace {

using std::chrono::milliseconds;
using TP = DelayLine::TimePoint;

TP At(int64_t ms) { return TP(milliseconds(ms)); }

TEST(DelayLineTest, BytesBecomeReadyExactlyDelayAfterArrival) {
  DelayLine line(milliseconds(15), 1 << 20);
  EXPECT_FALSE(line.NextDue().has_value());
  line.Push(At(100), "abc");
  ASSERT_TRUE(line.NextDue().has_value());
  EXPECT_EQ(*line.NextDue(), At(115));
  EXPECT_EQ(line.Ready(At(114)), "");
  EXPECT_EQ(line.Ready(TP(milliseconds(115) - std::chrono::nanoseconds(1))), "");
  EXPECT_EQ(line.Ready(At(115)), "abc");
  EXPECT_EQ(line.Ready(At(500)), "abc");
}

TEST(DelayLineTest, ChunksLeaveInArrivalOrderEachOnItsOwnTime) {
  DelayLine line(milliseconds(15), 1 << 20);
  line.Push(At(0), "first");
  line.Push(At(10), "second");
  EXPECT_EQ(line.buffered(), 11u);
  EXPECT_EQ(line.Ready(At(15)), "first");
  line.Consume(At(15), 5);
  // The second chunk arrived 10 ms later, so it is not due with the first.
  EXPECT_EQ(*line.NextDue(), At(25));
  EXPECT_EQ(line.Ready(At(24)), "");
  EXPECT_EQ(line.Ready(At(25)), "second");
  line.Consume(At(25), 6);
  EXPECT_TRUE(line.empty());
  EXPECT_EQ(line.buffered(), 0u);
  EXPECT_FALSE(line.NextDue().has_value());
}

TEST(DelayLineTest, PartialWritesResumeWhereTheyStopped) {
  DelayLine line(milliseconds(1), 1 << 20);
  line.Push(At(0), "0123456789");
  line.Consume(At(1), 4);
  EXPECT_EQ(line.Ready(At(1)), "456789");
  EXPECT_EQ(line.buffered(), 6u);
  line.Consume(At(2), 6);
  EXPECT_TRUE(line.empty());
}

TEST(DelayLineTest, NoBandwidthCapEverythingDueAtOnceIsReadyAtOnce) {
  // A megabyte arriving in one read is due as one chunk: the line never paces bytes.
  DelayLine line(milliseconds(15), 8 << 20);
  const std::string big(1 << 20, 'x');
  line.Push(At(0), big);
  EXPECT_EQ(line.Ready(At(15)).size(), big.size());
}

TEST(DelayLineTest, RoomBoundsWhatIsHeldAndComesBackAsBytesLeave) {
  DelayLine line(milliseconds(15), 10);
  EXPECT_EQ(line.room(), 10u);
  line.Push(At(0), "1234567");
  EXPECT_EQ(line.room(), 3u);
  line.Push(At(1), "890");
  EXPECT_EQ(line.room(), 0u);
  EXPECT_DEATH(line.Push(At(2), "x"), "");
  line.Consume(At(15), 7);
  EXPECT_EQ(line.room(), 7u);
}

TEST(DelayLineTest, EndIsDueAfterTheBytesBeforeIt) {
  DelayLine line(milliseconds(15), 1 << 20);
  line.Push(At(0), "data");
  line.PushEnd(At(5));
  EXPECT_FALSE(line.EndDue(At(100)));  // "data" not written yet
  line.Consume(At(15), 4);
  EXPECT_FALSE(line.EndDue(At(19)));
  EXPECT_EQ(line.Ready(At(20)), "");  // the end marker carries no bytes
  EXPECT_TRUE(line.EndDue(At(20)));
  EXPECT_DEATH(line.Push(At(21), "late"), "after the end");
}

TEST(DelayLineTest, LatenessIsMeasuredPerFinishedChunk) {
  DelayLine line(milliseconds(10), 1 << 20);
  line.Push(At(0), "ab");
  line.Push(At(0), "cd");
  line.Consume(At(10), 1);  // partly written on time...
  line.Consume(At(13), 1);  // ...finished 3 ms late
  line.Consume(At(11), 2);
  EXPECT_EQ(line.chunks_forwarded(), 2);
  EXPECT_EQ(line.max_lateness(), milliseconds(3));
  EXPECT_EQ(line.total_lateness(), milliseconds(4));
}

TEST(DelayLineTest, ZeroDelayForwardsAtArrival) {
  DelayLine line(milliseconds(0), 1 << 20);
  line.Push(At(7), "now");
  EXPECT_EQ(line.Ready(At(7)), "now");
}

TEST(DelayLineTest, ConsumingBytesThatAreNotDueIsABug) {
  DelayLine line(milliseconds(15), 1 << 20);
  line.Push(At(0), "abc");
  EXPECT_DEATH(line.Consume(At(14), 1), "not due");
}

}  // namespace
}  // namespace uop::bench
