// PartitionCounts against counting fakes and a manual clock: one request for all topics, kept
// for max_age; a topic missing from the snapshot is asked for alone.
#include "broker/export/partition_counts.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace uop::broker {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

class PartitionCountsTest : public ::testing::Test {
 protected:
  PartitionCountsTest()
      : counts_(
            [this]() -> absl::StatusOr<std::map<std::string, int>> {
              ++all_requests_;
              if (!all_error_.ok()) return all_error_;
              return cluster_;
            },
            [this](const std::string& topic) -> absl::StatusOr<int> {
              one_requests_.push_back(topic);
              auto it = cluster_.find(topic);
              if (it == cluster_.end()) return absl::NotFoundError("topic " + topic + " not found");
              return it->second;
            },
            absl::Seconds(2), &clock_) {}

  std::map<std::string, int> cluster_ = {{"a", 6}, {"b", 3}, {"c", 12}};
  absl::Status all_error_ = absl::OkStatus();
  int all_requests_ = 0;
  std::vector<std::string> one_requests_;
  core::ManualClock clock_;
  PartitionCounts counts_;
};

TEST_F(PartitionCountsTest, ManyTopicsOneRequest) {
  absl::StatusOr<std::map<std::string, int>> got = counts_.ForTopics({"a", "c", "missing"});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(*got, ElementsAre(Pair("a", 6), Pair("c", 12)));
  EXPECT_EQ(all_requests_, 1);
  EXPECT_TRUE(one_requests_.empty());
}

TEST_F(PartitionCountsTest, SnapshotServesCallsWithinMaxAge) {
  ASSERT_TRUE(counts_.ForTopics({"a"}).ok());
  clock_.Advance(absl::Milliseconds(1999));
  EXPECT_EQ(*counts_.Count("b"), 3);
  EXPECT_EQ(*counts_.Count("c"), 12);
  EXPECT_THAT(*counts_.ForTopics({"b"}), ElementsAre(Pair("b", 3)));
  EXPECT_EQ(all_requests_, 1);
  EXPECT_TRUE(one_requests_.empty());
}

TEST_F(PartitionCountsTest, OldSnapshotIsRetaken) {
  ASSERT_TRUE(counts_.ForTopics({"a"}).ok());
  clock_.Advance(absl::Seconds(2));
  cluster_["a"] = 9;
  EXPECT_THAT(*counts_.ForTopics({"a"}), ElementsAre(Pair("a", 9)));
  EXPECT_EQ(all_requests_, 2);
}

TEST_F(PartitionCountsTest, CountWithoutFreshSnapshotAsksForTheTopicAlone) {
  EXPECT_EQ(*counts_.Count("a"), 6);
  ASSERT_TRUE(counts_.ForTopics({"a"}).ok());
  clock_.Advance(absl::Seconds(3));
  EXPECT_EQ(*counts_.Count("b"), 3);
  EXPECT_THAT(one_requests_, ElementsAre("a", "b"));
  EXPECT_EQ(all_requests_, 1);  // Count never takes a snapshot of everything
}

TEST_F(PartitionCountsTest, TopicCreatedSinceTheSnapshotIsFound) {
  ASSERT_TRUE(counts_.ForTopics({"a"}).ok());
  cluster_["new"] = 4;
  EXPECT_EQ(*counts_.Count("new"), 4);
  EXPECT_THAT(one_requests_, ElementsAre("new"));
  EXPECT_EQ(counts_.Count("gone").status(), absl::NotFoundError("topic gone not found"));
}

TEST_F(PartitionCountsTest, FailedSnapshotIsAnErrorAndNotKept) {
  all_error_ = absl::UnavailableError("kafka metadata at x: Local: Broker transport failure");
  EXPECT_EQ(counts_.ForTopics({"a"}).status(), all_error_);
  all_error_ = absl::OkStatus();
  EXPECT_THAT(*counts_.ForTopics({"a"}), ElementsAre(Pair("a", 6)));
  EXPECT_EQ(all_requests_, 2);
}

}  // namespace
}  // namespace uop::broker
