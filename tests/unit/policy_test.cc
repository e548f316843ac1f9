// Sharing rules: deny by default, exact errors, content-hash versions.
#include "policy/policy_snapshot.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace uop::policy {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const std::set<std::string> kPeers = {"tallinn", "riga"};

TEST(PolicySnapshotTest, AllowsOnlyWhatIsShared) {
  auto s = PolicySnapshot::FromFiles(
      {{"noise.yaml", "dataset: noise.observations\nshares:\n  - peer: tallinn\n"},
       {"air.yaml", "dataset: air.quality\nshares:\n  - peer: riga\n  - peer: tallinn\n"},
       {"traffic.yaml", "dataset: traffic.counts\n"}},
      kPeers);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE((*s)->Allows("noise.observations", "tallinn"));
  EXPECT_FALSE((*s)->Allows("noise.observations", "riga"));
  EXPECT_FALSE((*s)->Allows("traffic.counts", "tallinn"));
  EXPECT_FALSE((*s)->Allows("unknown.topic", "tallinn"));
  EXPECT_THAT((*s)->TopicsFor("tallinn"), ElementsAre("air.quality", "noise.observations"));
  EXPECT_THAT((*s)->TopicsFor("riga"), ElementsAre("air.quality"));
}

TEST(PolicySnapshotTest, VersionIsAContentHash) {
  auto a =
      PolicySnapshot::FromFiles({{"n.yaml", "dataset: a\nshares: [{peer: tallinn}]\n"}}, kPeers);
  auto b =
      PolicySnapshot::FromFiles({{"n.yaml", "dataset: a\nshares: [{peer: tallinn}]\n"}}, kPeers);
  auto c = PolicySnapshot::FromFiles({{"n.yaml", "dataset: a\nshares: [{peer: riga}]\n"}}, kPeers);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ((*a)->version(), (*b)->version());
  EXPECT_NE((*a)->version(), (*c)->version());
  EXPECT_EQ((*a)->version().rfind("sha256:", 0), 0u);
  EXPECT_EQ((*a)->version().size(), 7u + 16u);
}

TEST(PolicySnapshotTest, UnknownPeerErrorHasPosition) {
  auto s = PolicySnapshot::FromFiles(
      {{"p/noise.yaml", "dataset: noise.observations\nshares:\n  - peer: stockholm\n"}}, kPeers);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(),
              HasSubstr("p/noise.yaml:3:11: key 'shares[0].peer': unknown peer 'stockholm'; "
                        "configured peers: riga, tallinn"));
}

TEST(PolicySnapshotTest, UnknownKeyAndBadTopic) {
  auto s = PolicySnapshot::FromFiles({{"x.yaml", "dataset: ok\nsharez: []\n"}}, kPeers);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("x.yaml:2:1: key 'sharez': unknown key"));
  s = PolicySnapshot::FromFiles({{"old.yaml", "dataset: ok\nshare:\n  - peer: tallinn\n"}}, kPeers);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("old.yaml:2:1: key 'share': renamed to 'shares'"));
  s = PolicySnapshot::FromFiles({{"y.yaml", "dataset: bad topic!\n"}}, kPeers);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("y.yaml:1:10: key 'dataset'"));
}

TEST(PolicySnapshotTest, DatasetDefinedTwice) {
  auto s =
      PolicySnapshot::FromFiles({{"a.yaml", "dataset: n\n"}, {"b.yaml", "dataset: n\n"}}, kPeers);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(),
              HasSubstr("b.yaml:1:10: key 'dataset': 'n' is already defined in a.yaml"));
}

TEST(PolicySnapshotTest, EmptyDirectoryDeniesEverything) {
  auto s = PolicySnapshot::FromFiles({}, kPeers);
  ASSERT_TRUE(s.ok());
  EXPECT_FALSE((*s)->Allows("noise.observations", "tallinn"));
  EXPECT_TRUE((*s)->TopicsFor("tallinn").empty());
}

TEST(TopicNameTest, Rules) {
  EXPECT_TRUE(IsValidTopicName("helsinki.noise.observations"));
  EXPECT_TRUE(IsValidTopicName("a_b-c"));
  EXPECT_FALSE(IsValidTopicName(""));
  EXPECT_FALSE(IsValidTopicName(".."));
  EXPECT_FALSE(IsValidTopicName("a/b"));
  EXPECT_FALSE(IsValidTopicName(std::string(250, 'a')));
}

}  // namespace
}  // namespace uop::policy
