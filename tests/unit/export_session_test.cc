// ExportSession against a fake source and a manual clock: credit, batch cutting, acks, loops,
// heartbeats with progress, liveness, protocol violations.
#include "broker/export/export_session.h"

#include <deque>

#include "core/metrics.h"
#include "core/provenance.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace uop::broker {
namespace {

namespace fed = uop::federation::v1;
using ::testing::ElementsAre;
using ::testing::Pair;

class FakeSource final : public RecordSource {
 public:
  void Add(int32_t partition, int64_t offset, std::string value, bool from_peer = false) {
    SourceRecord r;
    r.partition = partition;
    r.record.set_offset(offset);
    r.record.set_timestamp_ms(1000 + offset);
    r.record.set_value(std::move(value));
    if (from_peer) {
      fed::Header* h = r.record.add_headers();
      h->set_key(std::string(core::kHeaderOrigin));
      h->set_value("tallinn");
    }
    pending_.push_back(std::move(r));
  }
  absl::Status Read(size_t max, std::vector<SourceRecord>* out) override {
    ++reads;
    if (!error.ok()) return error;
    while (max-- > 0 && !pending_.empty()) {
      out->push_back(std::move(pending_.front()));
      pending_.pop_front();
    }
    return absl::OkStatus();
  }
  Progress PartitionProgress(int32_t partition) override { return progress[partition]; }
  void CommitForMonitoring(const std::map<int32_t, int64_t>& next_offsets) override {
    commits.push_back(next_offsets);
  }

  std::map<int32_t, Progress> progress;
  std::vector<std::map<int32_t, int64_t>> commits;
  absl::Status error = absl::OkStatus();
  int reads = 0;

 private:
  std::deque<SourceRecord> pending_;
};

fed::ReceiverMessage CreditMsg(uint32_t batches, uint64_t bytes) {
  fed::ReceiverMessage m;
  m.mutable_credit()->set_batches(batches);
  m.mutable_credit()->set_bytes(bytes);
  return m;
}

fed::ReceiverMessage AckMsg(uint64_t through) {
  fed::ReceiverMessage m;
  m.mutable_ack()->set_through_batch_seq(through);
  return m;
}

class ExportSessionTest : public ::testing::Test {
 protected:
  std::unique_ptr<ExportSession> Make(uint32_t batches, uint64_t bytes,
                                      ExportSession::Options options = {}) {
    fed::Credit credit;
    credit.set_batches(batches);
    credit.set_bytes(bytes);
    counters_ = {metrics_.Counter("records", ""), metrics_.Counter("bytes", ""),
                 metrics_.Counter("batches", ""), metrics_.Counter("acked", ""),
                 metrics_.Counter("loop", ""),    metrics_.Counter("withheld", "")};
    return std::make_unique<ExportSession>(options, "sha256:0123456789abcdef",
                                           std::vector<int32_t>{0, 1}, credit, &source_,
                                           &transform_, &clock_, counters_);
  }
  // Next() that must return a batch.
  fed::RecordBatch NextBatch(ExportSession& s) {
    auto next = s.Next();
    EXPECT_TRUE(next.ok()) << next.status();
    EXPECT_TRUE(next->has_value());
    EXPECT_TRUE((*next)->has_batch());
    return (*next)->batch();
  }

  FakeSource source_;
  IdentityTransform transform_;
  core::ManualClock clock_;
  core::Metrics metrics_;
  ExportCounters counters_;
};

TEST_F(ExportSessionTest, CutsOneBatchPerPartitionInOffsetOrderWithTokensAndSequence) {
  auto s = Make(8, 1 << 20);
  source_.Add(0, 10, "a");
  source_.Add(1, 5, "b");
  source_.Add(0, 12, "c");
  source_.progress[0] = {20, 13};
  fed::RecordBatch b1 = NextBatch(*s);
  fed::RecordBatch b2 = NextBatch(*s);
  EXPECT_EQ(b1.batch_seq(), 1u);
  EXPECT_EQ(b1.partition(), 0);
  EXPECT_EQ(b1.policy_version(), "sha256:0123456789abcdef");
  EXPECT_EQ(b1.high_watermark(), 20);
  ASSERT_EQ(b1.records_size(), 2);
  EXPECT_EQ(b1.records(0).offset(), 10);
  EXPECT_EQ(b1.records(0).value(), "a");
  EXPECT_EQ(b1.records(1).offset(), 12);
  EXPECT_EQ(core::DecodeOffsetToken(b1.records(0).resume_token()), 11);
  EXPECT_EQ(core::DecodeOffsetToken(b1.records(1).resume_token()), 13);
  EXPECT_EQ(b2.batch_seq(), 2u);
  EXPECT_EQ(b2.partition(), 1);
  EXPECT_EQ(b2.high_watermark(), -1);
  EXPECT_EQ(s->last_sent_seq(), 2u);
  EXPECT_EQ(counters_.records->Get(), 3);
  EXPECT_EQ(counters_.batches->Get(), 2);
}

TEST_F(ExportSessionTest, CutsAtBatchMaxBytes) {
  ExportSession::Options options;
  options.batch_max_bytes = 1024;
  auto s = Make(8, 1 << 20, options);
  for (int i = 0; i < 5; ++i) source_.Add(0, i, std::string(400, 'x'));  // 432 B each
  std::vector<int> sizes;
  for (int i = 0; i < 3; ++i) sizes.push_back(NextBatch(*s).records_size());
  EXPECT_THAT(sizes, ElementsAre(2, 2, 1));
}

TEST_F(ExportSessionTest, SendsOnlyWhileBothCreditsArePositiveAndChargesSerializedSize) {
  auto s = Make(2, 1 << 20);
  for (int i = 0; i < 2; ++i) {
    source_.Add(0, i, "v");
    NextBatch(*s);  // one record per read: each read is cut into its own batch
  }
  source_.Add(0, 2, "v");
  auto next = s->Next();
  ASSERT_TRUE(next.ok());
  EXPECT_FALSE(next->has_value()) << "no batch credit left";
  EXPECT_FALSE(s->has_credit());
  ASSERT_TRUE(s->OnReceiverMessage(CreditMsg(1, 0)).ok());
  EXPECT_EQ(NextBatch(*s).records(0).offset(), 2);

  // Byte credit: one batch may overshoot it, then nothing until bytes come back.
  auto t = Make(8, 10);
  source_.Add(0, 3, std::string(100, 'y'));
  source_.Add(1, 3, "z");
  EXPECT_EQ(NextBatch(*t).partition(), 0);
  next = t->Next();
  ASSERT_TRUE(next.ok());
  EXPECT_FALSE(next->has_value()) << "byte credit is negative";
  ASSERT_TRUE(t->OnReceiverMessage(CreditMsg(0, 1000)).ok());
  EXPECT_EQ(NextBatch(*t).partition(), 1);
}

TEST_F(ExportSessionTest, ReadsNothingWithoutCredit) {
  auto s = Make(0, 0);
  source_.Add(0, 1, "v");
  auto next = s->Next();
  ASSERT_TRUE(next.ok());
  EXPECT_FALSE(next->has_value());
  EXPECT_EQ(source_.reads, 0);
}

TEST_F(ExportSessionTest, NeverExportsRecordsThatCameFromAPeer) {
  auto s = Make(8, 1 << 20);
  source_.Add(0, 1, "mine");
  source_.Add(0, 2, "theirs", /*from_peer=*/true);
  source_.Add(0, 3, "mine too");
  fed::RecordBatch b = NextBatch(*s);
  ASSERT_EQ(b.records_size(), 2);
  EXPECT_EQ(b.records(0).offset(), 1);
  EXPECT_EQ(b.records(1).offset(), 3);
  EXPECT_EQ(counters_.loop_skipped->Get(), 1);
}

TEST_F(ExportSessionTest, AckCommitsNextOffsetsForMonitoringAndCountsRecords) {
  auto s = Make(8, 1 << 20);
  source_.Add(0, 1, "a");
  NextBatch(*s);
  source_.Add(1, 7, "b");
  source_.Add(1, 8, "c");
  NextBatch(*s);
  ASSERT_TRUE(s->OnReceiverMessage(AckMsg(2)).ok());
  ASSERT_EQ(source_.commits.size(), 1u);
  EXPECT_THAT(source_.commits[0], ElementsAre(Pair(0, 2), Pair(1, 9)));
  EXPECT_EQ(counters_.acked->Get(), 3);
  EXPECT_EQ(s->acked_through(), 2u);
  ASSERT_TRUE(s->OnReceiverMessage(AckMsg(2)).ok()) << "a repeated cumulative ack is harmless";
  EXPECT_EQ(source_.commits.size(), 1u);
}

TEST_F(ExportSessionTest, RefusesAckBeyondWhatWasSent) {
  auto s = Make(8, 1 << 20);
  source_.Add(0, 1, "a");
  NextBatch(*s);
  absl::Status st = s->OnReceiverMessage(AckMsg(5));
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "ack through batch 5 but only 1 batches were sent on this stream");
  EXPECT_EQ(counters_.acked->Get(), 0) << "nothing counted as delivered";
}

TEST_F(ExportSessionTest, RefusesAckThatGoesBackwards) {
  auto s = Make(8, 1 << 20);
  for (int i = 0; i < 2; ++i) {
    source_.Add(0, i, "a");
    NextBatch(*s);
  }
  ASSERT_TRUE(s->OnReceiverMessage(AckMsg(2)).ok());
  absl::Status st = s->OnReceiverMessage(AckMsg(1));
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "ack through batch 1 after an ack through batch 2: acks are cumulative");
}

TEST_F(ExportSessionTest, SecondSubscribeIsRefusedUnknownKindsIgnored) {
  auto s = Make(8, 1 << 20);
  fed::ReceiverMessage sub;
  sub.mutable_subscribe()->set_topic("x");
  absl::Status st = s->OnReceiverMessage(sub);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "unexpected message after subscribe");
  EXPECT_TRUE(s->OnReceiverMessage(fed::ReceiverMessage()).ok());
}

TEST_F(ExportSessionTest, HeartbeatWhenIdleCarriesEndAndNextOffset) {
  ExportSession::Options options;
  options.heartbeat_interval = absl::Seconds(1);
  options.dead_peer_timeout = absl::Seconds(10);
  auto s = Make(8, 1 << 20, options);
  source_.progress[0] = {50, 48};  // e.g. a transaction marker at 48..49 not yet passed
  source_.progress[1] = {-1, -1};  // unknown: left out
  auto next = s->Next();
  ASSERT_TRUE(next.ok());
  EXPECT_FALSE(next->has_value()) << "not due yet";
  clock_.Advance(absl::Seconds(1));
  next = s->Next();
  ASSERT_TRUE(next.ok());
  ASSERT_TRUE(next->has_value());
  ASSERT_TRUE((*next)->has_heartbeat());
  const fed::Heartbeat& hb = (*next)->heartbeat();
  EXPECT_EQ(hb.sent_unix_ms(), absl::ToUnixMillis(clock_.Now()));
  ASSERT_EQ(hb.progress_size(), 1);
  EXPECT_EQ(hb.progress(0).partition(), 0);
  EXPECT_EQ(hb.progress(0).high_watermark(), 50);
  EXPECT_EQ(hb.progress(0).next_offset(), 48);
}

TEST_F(ExportSessionTest, HeartbeatNextOffsetStopsAtTheFirstUnsentRecord) {
  ExportSession::Options options;
  options.heartbeat_interval = absl::Seconds(1);
  auto s = Make(1, 1 << 20, options);
  source_.Add(0, 3, "a");
  NextBatch(*s);  // uses the only batch credit
  ASSERT_TRUE(s->OnReceiverMessage(CreditMsg(0, 0)).ok());
  source_.progress[0] = {10, 10};
  // Credit arrives, a read cuts offsets 4.., then credit runs out again before they are sent.
  ASSERT_TRUE(s->OnReceiverMessage(CreditMsg(1, 0)).ok());
  source_.Add(0, 4, "b");
  source_.Add(1, 0, "c");
  EXPECT_EQ(NextBatch(*s).partition(), 0);  // 4 goes out; partition 1's batch waits
  clock_.Advance(absl::Seconds(2));
  ASSERT_TRUE(s->OnReceiverMessage(fed::ReceiverMessage()).ok());  // alive
  source_.progress[1] = {5, 5};
  auto next = s->Next();
  ASSERT_TRUE(next.ok());
  ASSERT_TRUE(next->has_value() && (*next)->has_heartbeat());
  ASSERT_EQ((*next)->heartbeat().progress_size(), 2);
  EXPECT_EQ((*next)->heartbeat().progress(0).next_offset(), 10);
  EXPECT_EQ((*next)->heartbeat().progress(1).next_offset(), 0) << "offset 0 is still unsent";
}

TEST_F(ExportSessionTest, SilentReceiverEndsTheStreamAfterTheDeadPeerTimeout) {
  ExportSession::Options options;
  options.heartbeat_interval = absl::Seconds(1);
  options.dead_peer_timeout = absl::Seconds(5);
  auto s = Make(8, 1 << 20, options);
  clock_.Advance(absl::Seconds(4));
  ASSERT_TRUE(s->OnReceiverMessage(CreditMsg(0, 0)).ok());
  clock_.Advance(absl::Seconds(4));
  EXPECT_TRUE(s->Next().ok()) << "heard 4 s ago";
  EXPECT_EQ(s->NextDeadline(), clock_.Now() + absl::Seconds(1));
  clock_.Advance(absl::Seconds(2));
  auto next = s->Next();
  EXPECT_EQ(next.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(next.status().message(), "no message from peer within the dead-peer timeout");
}

TEST_F(ExportSessionTest, SourceErrorEndsTheStream) {
  auto s = Make(8, 1 << 20);
  source_.error = absl::UnavailableError("kafka: broker down");
  auto next = s->Next();
  EXPECT_EQ(next.status(), absl::UnavailableError("kafka: broker down"));
}

}  // namespace
}  // namespace uop::broker
