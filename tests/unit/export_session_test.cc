// ExportSession against a fake source and a manual clock: credit, batch cutting, acks, loops,
// heartbeats with progress, liveness, protocol violations, transforms that release several
// records or release by time (aggregation), and rate limits.
#include "broker/export/export_session.h"

#include <algorithm>
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
    asked.push_back(max);
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
  std::vector<size_t> asked;  // the max of every Read

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
                                           transform_in_use_, &clock_, counters_);
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
  RecordTransform* transform_in_use_ = &transform_;
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

TEST_F(ExportSessionTest, ReadsAboutWhatTheByteCreditLetsOut) {
  auto s = Make(64, 2000);
  for (int i = 0; i < 1000; ++i) source_.Add(0, i, std::string(400, 'x'));  // costs 432 each
  // The first read knows no record sizes yet: 2000 / 32 + 1 records.
  const fed::RecordBatch first = NextBatch(*s);
  EXPECT_EQ(first.records_size(), 63);
  ASSERT_TRUE(s->OnReceiverMessage(CreditMsg(1, first.ByteSizeLong())).ok());  // 2000 again
  EXPECT_EQ(NextBatch(*s).records_size(), 2000 / 432 + 1);
  EXPECT_THAT(source_.asked, ElementsAre(63, 5));
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

// Like an aggregating share: a record with value "close" releases two records at its offset
// ("w1", "w2"); others go into state; Idle releases "idle" once per call on a partition that
// has something open.
class WindowingTransform final : public RecordTransform {
 public:
  absl::StatusOr<int64_t> Start(int32_t, absl::string_view) override { return 0; }
  Outcome Apply(int32_t partition, fed::Record* record,
                std::vector<fed::Record>* emitted) override {
    open_[partition] = record->offset();
    if (record->value() == "drop") return Outcome::kWithheld;
    if (record->value() != "close") return Outcome::kConsumed;
    for (const char* v : {"w1", "w2"}) {
      fed::Record& r = emitted->emplace_back();
      r.set_offset(record->offset());
      r.set_value(v);
      r.set_resume_token(v);
    }
    open_.erase(partition);
    return Outcome::kConsumed;
  }
  void Idle(int32_t partition, absl::Time, std::vector<fed::Record>* emitted) override {
    idle_calls.push_back(partition);
    auto it = open_.find(partition);
    if (it == open_.end()) return;
    fed::Record& r = emitted->emplace_back();
    r.set_offset(it->second);
    r.set_value("idle");
    open_.erase(it);
  }
  std::vector<int32_t> idle_calls;

 private:
  std::map<int32_t, int64_t> open_;
};

std::vector<std::string> Values(const fed::RecordBatch& b) {
  std::vector<std::string> v;
  for (const fed::Record& r : b.records()) v.push_back(r.value());
  return v;
}

TEST_F(ExportSessionTest, ReleasedRecordsGoOutInOrderAndTimeReleasesOnlyCaughtUpPartitions) {
  WindowingTransform windows;
  transform_in_use_ = &windows;
  auto s = Make(8, 1 << 20);
  source_.Add(0, 1, "a");
  source_.Add(0, 2, "close");
  source_.Add(0, 3, "drop");
  source_.Add(1, 7, "b");
  source_.progress[0] = {4, 4};  // partition 0 read to its end
  source_.progress[1] = {9, 8};  // partition 1 not: its window must not be closed by time
  fed::RecordBatch b = NextBatch(*s);
  EXPECT_EQ(b.partition(), 0);
  EXPECT_THAT(Values(b), ElementsAre("w1", "w2", "idle"));
  EXPECT_EQ(b.records(0).offset(), 2);
  EXPECT_EQ(b.records(1).offset(), 2);
  EXPECT_EQ(b.records(2).offset(), 3);
  EXPECT_THAT(windows.idle_calls, ElementsAre(0));
  EXPECT_EQ(counters_.withheld->Get(), 1);
  auto next = s->Next();
  ASSERT_TRUE(next.ok());
  EXPECT_FALSE(next->has_value()) << "partition 1's record is still in its window";
  source_.progress[1] = {9, 9};
  b = NextBatch(*s);
  EXPECT_EQ(b.partition(), 1);
  EXPECT_THAT(Values(b), ElementsAre("idle"));
}

TEST_F(ExportSessionTest, RateLimitPacesAndNeverDrops) {
  ExportSession::Options options;
  options.records_per_s = 10;
  options.heartbeat_interval = absl::Seconds(100);
  options.dead_peer_timeout = absl::Seconds(100);
  auto s = Make(1000, 1 << 30, options);
  for (int i = 0; i < 35; ++i) source_.Add(i % 2, i, "v");
  const absl::Time start = clock_.Now();
  std::vector<int64_t> sent;
  int records = 0;
  // A second's burst at once, then one record per 100 ms; nothing more is read meanwhile.
  while (records < 35) {
    ASSERT_LT(clock_.Now() - start, absl::Seconds(10));
    auto next = s->Next();
    ASSERT_TRUE(next.ok()) << next.status();
    if (next->has_value()) {
      records += (*next)->batch().records_size();
      for (const fed::Record& r : (*next)->batch().records()) sent.push_back(r.offset());
      continue;
    }
    EXPECT_EQ(source_.reads, 1) << "records wait in the session, not re-read";
    ASSERT_GT(s->NextDeadline(), clock_.Now());
    // Not more than the rate allows by now: a burst of 10, then 10 per second.
    EXPECT_LE(records, 10 + 10 * absl::ToDoubleSeconds(clock_.Now() - start) + 1e-9);
    clock_.Advance(s->NextDeadline() - clock_.Now());
  }
  EXPECT_EQ(records, 35);
  // The last of 35 at 10/s after a burst of 10: 2.5 s.
  EXPECT_EQ(clock_.Now() - start, absl::Milliseconds(2500));
  std::vector<int64_t> even, odd;  // per partition, in offset order
  for (int64_t o : sent) (o % 2 == 0 ? even : odd).push_back(o);
  EXPECT_TRUE(std::is_sorted(even.begin(), even.end()));
  EXPECT_TRUE(std::is_sorted(odd.begin(), odd.end()));
  EXPECT_EQ(even.size() + odd.size(), 35u);
}

}  // namespace
}  // namespace uop::broker
