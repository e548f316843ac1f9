// ConsumerPool against fake consumers and a manual clock: streams of one peer share a consumer,
// a partition is never read by two sources of one consumer, idle consumers close, failures
// give their partitions back.
#include "broker/export/consumer_pool.h"

#include <atomic>
#include <thread>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace uop::broker {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

struct Started {
  int consumer;
  std::string topic;
  std::vector<int32_t> partitions;
};

// Records what was started and stopped on it.
struct Ledger {
  absl::Mutex mu;  // the concurrency test starts sources from two threads
  int created = 0;
  int destroyed = 0;
  std::vector<Started> started;
  std::vector<Started> stopped;
  int polls = 0;
  absl::Status next_start_error = absl::OkStatus();
};

class FakeSource final : public RecordSource {
 public:
  FakeSource(Ledger* ledger, Started what) : ledger_(ledger), what_(std::move(what)) {}
  ~FakeSource() override { ledger_->stopped.push_back(what_); }
  absl::Status Read(size_t /*max*/, std::vector<SourceRecord>* /*out*/) override {
    return absl::OkStatus();
  }
  Progress PartitionProgress(int32_t /*partition*/) override { return {}; }
  void CommitForMonitoring(const std::map<int32_t, int64_t>& /*next_offsets*/) override {}

 private:
  Ledger* ledger_;
  Started what_;
};

class FakeConsumer final : public PartitionConsumer {
 public:
  FakeConsumer(Ledger* ledger, int id) : ledger_(ledger), id_(id) {}
  ~FakeConsumer() override { ++ledger_->destroyed; }
  absl::StatusOr<std::unique_ptr<RecordSource>> Start(
      const std::string& topic, const std::vector<PartitionStartOffset>& starts,
      std::function<void()> /*on_ready*/) override {
    if (!ledger_->next_start_error.ok()) {
      return std::exchange(ledger_->next_start_error, absl::OkStatus());
    }
    Started s{id_, topic, {}};
    for (const PartitionStartOffset& p : starts) s.partitions.push_back(p.partition);
    absl::MutexLock lock(&ledger_->mu);
    ledger_->started.push_back(s);
    return std::make_unique<FakeSource>(ledger_, s);
  }
  void Poll() override { ++ledger_->polls; }

 private:
  Ledger* ledger_;
  int id_;
};

class ConsumerPoolTest : public ::testing::Test {
 protected:
  ConsumerPoolTest()
      : pool_(
            [this](const std::string& peer) -> absl::StatusOr<std::unique_ptr<PartitionConsumer>> {
              if (!factory_error_.ok()) return factory_error_;
              peers_.push_back(peer);
              return std::make_unique<FakeConsumer>(&ledger_, ++ledger_.created);
            },
            absl::Seconds(30), &clock_) {}

  std::unique_ptr<RecordSource> Open(const std::string& peer, const std::string& topic,
                                     std::vector<int32_t> partitions) {
    std::vector<PartitionStartOffset> starts;
    for (int32_t p : partitions) starts.push_back({p, -2});
    absl::StatusOr<std::unique_ptr<RecordSource>> s = pool_.Open(peer, topic, starts, nullptr);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }

  Ledger ledger_;
  core::ManualClock clock_;
  absl::Status factory_error_ = absl::OkStatus();
  std::vector<std::string> peers_;
  ConsumerPool pool_;
};

TEST_F(ConsumerPoolTest, StreamsOfOnePeerShareOneConsumer) {
  auto a = Open("tallinn", "t1", {0, 1, 2});
  auto b = Open("tallinn", "t2", {0, 1, 2});
  auto c = Open("tallinn", "t1", {3, 4, 5});
  EXPECT_EQ(ledger_.created, 1);
  EXPECT_EQ(pool_.consumers(), 1);
  ASSERT_EQ(ledger_.started.size(), 3u);
  for (const Started& s : ledger_.started) EXPECT_EQ(s.consumer, 1);
  EXPECT_THAT(peers_, ElementsAre("tallinn"));
}

TEST_F(ConsumerPoolTest, EachPeerHasItsOwnConsumer) {
  auto a = Open("tallinn", "t1", {0});
  auto b = Open("riga", "t1", {0});
  EXPECT_EQ(ledger_.created, 2);
  EXPECT_THAT(peers_, ElementsAre("tallinn", "riga"));
  EXPECT_EQ(ledger_.started[0].consumer, 1);
  EXPECT_EQ(ledger_.started[1].consumer, 2);
}

TEST_F(ConsumerPoolTest, APartitionReadTwiceAtOnceGoesToASecondConsumer) {
  auto old_stream = Open("tallinn", "t1", {0, 1});
  auto reconnect = Open("tallinn", "t1", {1, 2});  // overlaps on partition 1
  EXPECT_EQ(ledger_.created, 2);
  EXPECT_EQ(ledger_.started[1].consumer, 2);
  // Once the old stream is gone its partitions are free again on the first consumer.
  old_stream.reset();
  auto next = Open("tallinn", "t1", {0, 1});
  EXPECT_EQ(ledger_.created, 2);
  EXPECT_EQ(ledger_.started[2].consumer, 1);
}

TEST_F(ConsumerPoolTest, SourceStopsItsPartitionsBeforeTheyAreFree) {
  auto a = Open("tallinn", "t1", {0});
  a.reset();
  ASSERT_EQ(ledger_.stopped.size(), 1u);
  EXPECT_EQ(ledger_.stopped[0].topic, "t1");
  auto b = Open("tallinn", "t1", {0});
  EXPECT_EQ(ledger_.created, 1);
}

TEST_F(ConsumerPoolTest, IdleConsumerClosesAfterTheIdleTimeOnly) {
  auto a = Open("tallinn", "t1", {0});
  EXPECT_TRUE(pool_.Maintain().empty());
  EXPECT_EQ(ledger_.polls, 1);
  a.reset();
  clock_.Advance(absl::Seconds(29));
  EXPECT_TRUE(pool_.Maintain().empty());
  EXPECT_EQ(pool_.consumers(), 1);
  clock_.Advance(absl::Seconds(1));
  std::vector<std::shared_ptr<PartitionConsumer>> closed = pool_.Maintain();
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(pool_.consumers(), 0);
  EXPECT_EQ(ledger_.destroyed, 0);  // the caller frees it, where blocking is fine
  closed.clear();
  EXPECT_EQ(ledger_.destroyed, 1);
  auto b = Open("tallinn", "t1", {0});
  EXPECT_EQ(ledger_.created, 2);
}

TEST_F(ConsumerPoolTest, ConsumerInUseIsNeverClosed) {
  auto a = Open("tallinn", "t1", {0});
  clock_.Advance(absl::Hours(1));
  EXPECT_TRUE(pool_.Maintain().empty());
  EXPECT_EQ(pool_.consumers(), 1);
}

TEST_F(ConsumerPoolTest, ReuseRestartsTheIdleClock) {
  auto a = Open("tallinn", "t1", {0});
  a.reset();
  clock_.Advance(absl::Seconds(20));
  auto b = Open("tallinn", "t1", {0});
  b.reset();
  clock_.Advance(absl::Seconds(20));
  EXPECT_TRUE(pool_.Maintain().empty());
}

TEST_F(ConsumerPoolTest, SourceOutlivesThePoolAndItsConsumer) {
  std::unique_ptr<RecordSource> a;
  {
    ConsumerPool pool(
        [this](const std::string&) -> absl::StatusOr<std::unique_ptr<PartitionConsumer>> {
          return std::make_unique<FakeConsumer>(&ledger_, ++ledger_.created);
        },
        absl::Seconds(30), &clock_);
    absl::StatusOr<std::unique_ptr<RecordSource>> s =
        pool.Open("tallinn", "t1", {{0, -2}}, nullptr);
    ASSERT_TRUE(s.ok());
    a = *std::move(s);
  }
  EXPECT_EQ(ledger_.destroyed, 0);
  a.reset();
  EXPECT_EQ(ledger_.stopped.size(), 1u);
  EXPECT_EQ(ledger_.destroyed, 1);  // after its source stopped
}

TEST_F(ConsumerPoolTest, FailedStartGivesThePartitionsBack) {
  auto a = Open("tallinn", "t1", {0});
  ledger_.next_start_error = absl::UnavailableError("kafka: start reading t1 partition 1: boom");
  absl::StatusOr<std::unique_ptr<RecordSource>> failed =
      pool_.Open("tallinn", "t1", {{1, -2}}, nullptr);
  EXPECT_EQ(failed.status(), absl::UnavailableError("kafka: start reading t1 partition 1: boom"));
  auto b = Open("tallinn", "t1", {1});
  EXPECT_EQ(ledger_.created, 1);
  a.reset();
  b.reset();
  clock_.Advance(absl::Seconds(30));
  EXPECT_EQ(pool_.Maintain().size(), 1u);  // no source count leaked by the failure
}

TEST(ConsumerPoolConcurrencyTest, FirstStreamsOfAPeerSetUpAtOnceCreateOneConsumer) {
  Ledger ledger;
  core::ManualClock clock;
  absl::Notification in_factory, release;
  std::atomic<int> created{0};
  ConsumerPool pool(
      [&](const std::string&) -> absl::StatusOr<std::unique_ptr<PartitionConsumer>> {
        if (created.fetch_add(1) == 0) {
          in_factory.Notify();
          release.WaitForNotification();
        }
        return std::make_unique<FakeConsumer>(&ledger, created.load());
      },
      absl::Seconds(30), &clock);
  std::unique_ptr<RecordSource> a, b;
  std::thread first([&] { a = *pool.Open("tallinn", "t1", {{0, -2}}, nullptr); });
  in_factory.WaitForNotification();
  std::thread second([&] { b = *pool.Open("tallinn", "t2", {{0, -2}}, nullptr); });
  release.Notify();
  first.join();
  second.join();
  EXPECT_EQ(created.load(), 1);
  EXPECT_EQ(pool.consumers(), 1);
}

TEST_F(ConsumerPoolTest, FactoryErrorIsReturned) {
  factory_error_ = absl::InvalidArgumentError("kafka client: bad property");
  absl::StatusOr<std::unique_ptr<RecordSource>> s = pool_.Open("tallinn", "t1", {{0, -2}}, nullptr);
  EXPECT_EQ(s.status(), absl::InvalidArgumentError("kafka client: bad property"));
  EXPECT_EQ(pool_.consumers(), 0);
}

}  // namespace
}  // namespace uop::broker
