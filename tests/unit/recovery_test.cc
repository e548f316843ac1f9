// LookUpRetryingTransient: transient partition errors are asked again in place, until the
// budget; other errors end the lookup at once.
#include "broker/import/recovery.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kafka/status.h"

namespace uop::broker {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A lookup whose answers are scripted per call; it records what each call asked for.
struct ScriptedLookup {
  std::vector<PartitionAnswers> script;  // one per call; a call past the end answers nothing
  std::vector<TopicPartitions> asked;
  PartitionLookup AsLookup() {
    return [this](const TopicPartitions& tps) {
      asked.push_back(tps);
      const size_t call = asked.size() - 1;
      return call < script.size() ? script[call] : PartitionAnswers();
    };
  }
};

class LookUpRetryingTransientTest : public ::testing::Test {
 protected:
  // Sleeps on the manual clock; says "stop" once `stop_after_` sleeps were taken.
  broker::Sleep Sleep() {
    return [this](absl::Duration d) {
      if (static_cast<int>(sleeps_.size()) >= stop_after_) return false;
      sleeps_.push_back(d);
      clock_.Advance(d);
      return true;
    };
  }
  int stop_after_ = 1000;
  core::ManualClock clock_;
  std::vector<absl::Duration> sleeps_;
};

const TopicPartition kMirror0{"helsinki.d", 0};
const TopicPartition kMirror1{"helsinki.d", 1};
const TopicPartition kDead0{"helsinki.d.deadletter", 0};

TEST_F(LookUpRetryingTransientTest, AnswersAtOnceWithoutSleeping) {
  ScriptedLookup lookup;
  lookup.script = {{{kMirror0, {RD_KAFKA_RESP_ERR_NO_ERROR, 7, ""}},
                    {kMirror1, {RD_KAFKA_RESP_ERR_NO_ERROR, 9, "m"}}}};
  auto answers = LookUpRetryingTransient({kMirror0, kMirror1}, lookup.AsLookup(), "watermarks",
                                         clock_, absl::Seconds(30), Sleep());
  ASSERT_TRUE(answers.ok()) << answers.status();
  EXPECT_EQ(answers->at(kMirror0).offset, 7);
  EXPECT_EQ(answers->at(kMirror1).offset, 9);
  EXPECT_EQ(answers->at(kMirror1).metadata, "m");
  EXPECT_EQ(lookup.asked.size(), 1u);
  EXPECT_TRUE(sleeps_.empty());
}

TEST_F(LookUpRetryingTransientTest, AsksAgainOnlyForTransientPartitionsWithGrowingWaits) {
  ScriptedLookup lookup;
  lookup.script = {
      {{kMirror0, {RD_KAFKA_RESP_ERR_NO_ERROR, 5, ""}},
       {kMirror1, {RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, -1, ""}},
       {kDead0, {RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE, -1, ""}}},
      {{kMirror1, {RD_KAFKA_RESP_ERR_NO_ERROR, 11, ""}}},  // kDead0 not answered: asked again
      {{kDead0, {RD_KAFKA_RESP_ERR_NO_ERROR, 0, ""}}},
  };
  auto answers = LookUpRetryingTransient({kMirror0, kMirror1, kDead0}, lookup.AsLookup(),
                                         "watermarks", clock_, absl::Seconds(30), Sleep());
  ASSERT_TRUE(answers.ok()) << answers.status();
  EXPECT_EQ(answers->at(kMirror0).offset, 5);
  EXPECT_EQ(answers->at(kMirror1).offset, 11);
  EXPECT_EQ(answers->at(kDead0).offset, 0);
  EXPECT_THAT(lookup.asked,
              ElementsAre(TopicPartitions{kMirror0, kMirror1, kDead0},
                          TopicPartitions{kMirror1, kDead0}, TopicPartitions{kDead0}));
  EXPECT_THAT(sleeps_, ElementsAre(absl::Milliseconds(100), absl::Milliseconds(200)));
}

TEST_F(LookUpRetryingTransientTest, AWholeRequestErrorCountsForEveryPartition) {
  ScriptedLookup lookup;
  lookup.script = {
      {{kMirror0, {RD_KAFKA_RESP_ERR__TIMED_OUT, -1, ""}},
       {kMirror1, {RD_KAFKA_RESP_ERR__TIMED_OUT, -1, ""}}},
      {{kMirror0, {RD_KAFKA_RESP_ERR_NO_ERROR, 1, ""}},
       {kMirror1, {RD_KAFKA_RESP_ERR_NO_ERROR, 2, ""}}},
  };
  auto answers = LookUpRetryingTransient({kMirror0, kMirror1}, lookup.AsLookup(), "watermarks",
                                         clock_, absl::Seconds(30), Sleep());
  ASSERT_TRUE(answers.ok()) << answers.status();
  EXPECT_EQ(lookup.asked.size(), 2u);
  EXPECT_EQ(answers->at(kMirror1).offset, 2);
}

TEST_F(LookUpRetryingTransientTest, APermanentErrorEndsTheLookupNamingThePartition) {
  ScriptedLookup lookup;
  lookup.script = {{{kMirror0, {RD_KAFKA_RESP_ERR_NO_ERROR, 1, ""}},
                    {kMirror1, {RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED, -1, ""}}}};
  auto answers = LookUpRetryingTransient({kMirror0, kMirror1}, lookup.AsLookup(), "watermarks",
                                         clock_, absl::Seconds(30), Sleep());
  ASSERT_FALSE(answers.ok());
  EXPECT_EQ(answers.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(answers.status().message(), HasSubstr("watermarks of helsinki.d[1]: "));
  EXPECT_EQ(lookup.asked.size(), 1u);
  EXPECT_TRUE(sleeps_.empty());
}

TEST_F(LookUpRetryingTransientTest, GivesUpWhenTheBudgetIsSpent) {
  ScriptedLookup lookup;
  for (int i = 0; i < 100; ++i) {
    lookup.script.push_back({{kMirror1, {RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, -1, ""}}});
  }
  auto answers = LookUpRetryingTransient({kMirror1}, lookup.AsLookup(), "watermarks", clock_,
                                         absl::Seconds(3), Sleep());
  ASSERT_FALSE(answers.ok());
  EXPECT_EQ(answers.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(answers.status().message(), HasSubstr("watermarks of helsinki.d[1] (and 0 more)"));
  EXPECT_THAT(answers.status().message(), HasSubstr("after 3s"));
  // 0.1 + 0.2 + 0.4 + 0.8 + 1 = 2.5 s slept; the next 1 s wait would pass the budget.
  EXPECT_THAT(sleeps_,
              ElementsAre(absl::Milliseconds(100), absl::Milliseconds(200), absl::Milliseconds(400),
                          absl::Milliseconds(800), absl::Seconds(1)));
  EXPECT_EQ(lookup.asked.size(), 6u);
}

TEST_F(LookUpRetryingTransientTest, AStoppingCallerEndsTheRetriesWithCancelled) {
  ScriptedLookup lookup;
  for (int i = 0; i < 10; ++i) {
    lookup.script.push_back({{kMirror1, {RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE, -1, ""}}});
  }
  stop_after_ = 2;
  auto answers = LookUpRetryingTransient({kMirror1}, lookup.AsLookup(), "watermarks", clock_,
                                         absl::Seconds(30), Sleep());
  ASSERT_FALSE(answers.ok());
  EXPECT_EQ(answers.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(answers.status().message(), "watermarks: stopping");
  EXPECT_EQ(lookup.asked.size(), 3u);
}

TEST(IsTransientCodeTest, LeadershipAndCoordinatorsInFluxButNotRefusals) {
  EXPECT_TRUE(kafka::IsTransientCode(RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION));
  EXPECT_TRUE(kafka::IsTransientCode(RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE));
  EXPECT_TRUE(kafka::IsTransientCode(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART));
  EXPECT_TRUE(kafka::IsTransientCode(RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS));
  EXPECT_TRUE(kafka::IsTransientCode(RD_KAFKA_RESP_ERR_UNSTABLE_OFFSET_COMMIT));
  EXPECT_FALSE(kafka::IsTransientCode(RD_KAFKA_RESP_ERR_NO_ERROR));
  EXPECT_FALSE(kafka::IsTransientCode(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED));
  EXPECT_FALSE(kafka::IsTransientCode(RD_KAFKA_RESP_ERR__FATAL));
  EXPECT_FALSE(kafka::IsTransientCode(RD_KAFKA_RESP_ERR_PRODUCER_FENCED));
}

}  // namespace
}  // namespace uop::broker
