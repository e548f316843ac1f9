// Mirror naming, resume tokens and replay filtering.
#include "core/provenance.h"

#include <gtest/gtest.h>

namespace uop::core {
namespace {

TEST(ProvenanceTest, MirrorNamesFollowTheMirrorMakerConvention) {
  EXPECT_EQ(MirrorTopicName("helsinki", "noise.observations"), "helsinki.noise.observations");
  EXPECT_EQ(DeadLetterTopicName("helsinki", "noise.observations"),
            "helsinki.noise.observations.deadletter");
}

TEST(ProvenanceTest, OffsetTokensRoundTrip) {
  for (int64_t offset : {int64_t{0}, int64_t{1}, int64_t{255}, int64_t{256}, int64_t{1} << 40,
                         std::numeric_limits<int64_t>::max()}) {
    const std::string token = EncodeOffsetToken(offset);
    EXPECT_EQ(token.size(), 9u);
    EXPECT_EQ(DecodeOffsetToken(token), offset);
  }
}

TEST(ProvenanceTest, ForeignTokensAreRejected) {
  EXPECT_EQ(DecodeOffsetToken(""), std::nullopt);
  EXPECT_EQ(DecodeOffsetToken("12345678"), std::nullopt);
  std::string wrong_version = EncodeOffsetToken(7);
  wrong_version[0] = 2;
  EXPECT_EQ(DecodeOffsetToken(wrong_version), std::nullopt);
  EXPECT_EQ(DecodeOffsetToken(EncodeOffsetToken(-5)), std::nullopt);
}

TEST(PartitionCheckpointTest, DropsReplaysAndOnlyMovesForward) {
  PartitionCheckpoint cp;
  EXPECT_EQ(cp.last_offset(), -1);
  EXPECT_TRUE(cp.token().empty());
  EXPECT_TRUE(cp.ShouldWrite(0));
  cp.Advance(0, EncodeOffsetToken(1));
  cp.Advance(1, EncodeOffsetToken(2));
  EXPECT_FALSE(cp.ShouldWrite(0));
  EXPECT_FALSE(cp.ShouldWrite(1));
  EXPECT_TRUE(cp.ShouldWrite(2));
  cp.Advance(1, "stale");  // a replay never moves the position back
  EXPECT_EQ(cp.last_offset(), 1);
  EXPECT_EQ(cp.token(), EncodeOffsetToken(2));
  cp.Advance(10, EncodeOffsetToken(11));  // gaps (compaction, skipped loop records) are fine
  EXPECT_EQ(cp.last_offset(), 10);
  EXPECT_FALSE(cp.ShouldWrite(5));
}

TEST(PositionMetadata, RoundTripsAndRefusesWhatIsNotOurs) {
  PartitionCheckpoint cp(41, EncodeOffsetToken(42));
  const std::string md = EncodePositionMetadata(cp);
  EXPECT_EQ(md, "uop1 41 01000000000000002a");
  std::optional<PartitionCheckpoint> back = DecodePositionMetadata(md);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->last_offset(), 41);
  EXPECT_EQ(back->token(), EncodeOffsetToken(42));
  EXPECT_EQ(DecodePositionMetadata("uop1 -1 ")->last_offset(), -1);
  EXPECT_FALSE(DecodePositionMetadata("").has_value());
  EXPECT_FALSE(DecodePositionMetadata("uop2 41 01").has_value());
  EXPECT_FALSE(DecodePositionMetadata("uop1 x 01").has_value());
  EXPECT_FALSE(DecodePositionMetadata("uop1 41 0").has_value());
  EXPECT_FALSE(DecodePositionMetadata("uop1 41 0G").has_value());
  EXPECT_FALSE(DecodePositionMetadata("uop1 -5 01").has_value());
}

}  // namespace
}  // namespace uop::core
