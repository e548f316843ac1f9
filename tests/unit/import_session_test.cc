// ImportSession against a fake transactional sink and audit sink: subscription, protocol
// violations, replay filter, transactions, dead letters, fail-closed audit, lag.
#include "broker/import/import_session.h"

#include "absl/strings/str_cat.h"
#include "core/provenance.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace uop::broker {
namespace {

namespace fed = uop::federation::v1;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Records what was produced and committed; can refuse records or fail the commit.
class FakeSink final : public TransactionalSink {
 public:
  struct Written {
    OutRecord::Target target;
    int32_t partition;
    int64_t offset;
    bool has_value;
    std::map<std::string, std::string> headers;
  };
  absl::Status Begin() override {
    open_.clear();
    ++begun;
    return absl::OkStatus();
  }
  absl::Status Produce(const OutRecord& r, std::string* refused) override {
    refused->clear();
    const int64_t offset = r.record->offset();
    if ((r.target == OutRecord::Target::kMirror && refuse_mirror.contains(offset)) ||
        (r.target == OutRecord::Target::kDeadLetter &&
         refuse_deadletter_with_value.contains(offset) && !r.drop_value)) {
      *refused = "kafka refused the record: too large";
      return absl::OkStatus();
    }
    Written w{r.target, r.partition, offset, r.record->has_value() && !r.drop_value, {}};
    for (const auto& [k, v] : r.extra_headers) w.headers[std::string(k)] = v;
    open_.push_back(std::move(w));
    return absl::OkStatus();
  }
  absl::Status Commit(const Positions& positions, std::vector<RefusedRecord>* refused) override {
    if (!commit_error.ok()) {
      *refused = late_refusals;
      absl::Status s = commit_error;
      commit_error = absl::OkStatus();
      return s;
    }
    committed.insert(committed.end(), open_.begin(), open_.end());
    open_.clear();
    for (const auto& [tp, cp] : positions) committed_positions[tp.second] = cp;
    return absl::OkStatus();
  }
  absl::Status Abort() override {
    ++aborted;
    open_.clear();
    return absl::OkStatus();
  }

  std::set<int64_t> refuse_mirror, refuse_deadletter_with_value;
  absl::Status commit_error = absl::OkStatus();
  std::vector<RefusedRecord> late_refusals;
  std::vector<Written> committed;
  std::map<int32_t, core::PartitionCheckpoint> committed_positions;
  int begun = 0, aborted = 0;

 private:
  std::vector<Written> open_;
};

class FakeAudit final : public AuditSink {
 public:
  absl::Status RecordReceived(const WrittenBatches& w, std::vector<fed::BatchReceipt>*) override {
    if (!error.ok()) return error;
    if (sink != nullptr) committed_before = sink->committed.size();
    written.push_back(w);
    return absl::OkStatus();
  }
  absl::Status error = absl::OkStatus();
  std::vector<WrittenBatches> written;
  const FakeSink* sink = nullptr;
  size_t committed_before = 0;  // records the sink had committed when the last batches recorded
};

fed::OwnerMessage Batch(uint64_t seq, int32_t partition, std::vector<int64_t> offsets,
                        int64_t high_watermark = -1) {
  fed::OwnerMessage m;
  fed::RecordBatch* b = m.mutable_batch();
  b->set_batch_seq(seq);
  b->set_partition(partition);
  b->set_policy_version("sha256:feedfacecafebeef");
  b->set_high_watermark(high_watermark);
  for (int64_t o : offsets) {
    fed::Record* r = b->add_records();
    r->set_offset(o);
    r->set_timestamp_ms(1'700'000'000'000 + o);
    r->set_value("v" + std::to_string(o));
    r->set_resume_token(core::EncodeOffsetToken(o + 1));
  }
  return m;
}

fed::OwnerMessage Subscribed(int partitions, const std::string& topic = "noise.observations") {
  fed::OwnerMessage m;
  m.mutable_subscribed()->set_topic(topic);
  m.mutable_subscribed()->set_partitions(partitions);
  m.mutable_subscribed()->set_policy_version("sha256:feedfacecafebeef");
  return m;
}

class ImportSessionTest : public ::testing::Test {
 protected:
  std::unique_ptr<ImportSession> Make(std::map<int32_t, core::PartitionCheckpoint> checkpoints,
                                      int window_batches = 8) {
    auto s = std::make_unique<ImportSession>(
        ImportSession::Options{window_batches, 1 << 20, false, nullptr}, "helsinki",
        "noise.observations", std::move(checkpoints), &clock_);
    EXPECT_TRUE(s->OnSubscribed(Subscribed(3), 3).ok());
    return s;
  }
  core::ManualClock clock_;
  FakeSink sink_;
  FakeAudit audit_;
  RefusedRecords refused_;
};

TEST_F(ImportSessionTest, SubscribeCarriesOurPartitionsTokensAndWindow) {
  auto s = Make({{0, {}}, {2, core::PartitionCheckpoint(41, core::EncodeOffsetToken(42))}});
  fed::Hello hello;
  hello.set_node("tallinn");
  fed::ReceiverMessage m = s->SubscribeMessage(hello);
  ASSERT_TRUE(m.has_subscribe());
  EXPECT_EQ(m.subscribe().hello().node(), "tallinn");
  EXPECT_EQ(m.subscribe().topic(), "noise.observations");
  ASSERT_EQ(m.subscribe().partitions_size(), 2);
  EXPECT_EQ(m.subscribe().partitions(0).partition(), 0);
  EXPECT_EQ(m.subscribe().partitions(0).resume_token(), "");
  EXPECT_EQ(m.subscribe().partitions(1).partition(), 2);
  EXPECT_EQ(core::DecodeOffsetToken(m.subscribe().partitions(1).resume_token()), 42);
  EXPECT_EQ(m.subscribe().initial_credit().batches(), 8u);
  EXPECT_EQ(m.subscribe().initial_credit().bytes(), uint64_t{1} << 20);
}

TEST_F(ImportSessionTest, RefusesAnOwnerWhosePartitionCountOrTopicDiffers) {
  ImportSession s({8, 1 << 20, false, nullptr}, "helsinki", "noise.observations", {{0, {}}},
                  &clock_);
  absl::Status st = s.OnSubscribed(Subscribed(4), 3);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(st.message(), "owner answered subscribe with an unexpected message or partition count");
  st = s.OnSubscribed(Subscribed(3, "air.quality"), 3);
  EXPECT_EQ(st.message(),
            "owner answered subscribe for topic 'air.quality', not 'noise.observations'");
  EXPECT_EQ(s.OnSubscribed(Batch(1, 0, {1}), 3).message(),
            "owner answered subscribe with an unexpected message or partition count");
}

TEST_F(ImportSessionTest, RefusesABatchForAPartitionItDidNotSubscribe) {
  auto s = Make({{0, {}}});
  absl::Status st = s->OnOwnerMessage(Batch(1, 1, {5}));
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(),
            "owner sent a batch for partition 1, which this stream did not subscribe");
  EXPECT_FALSE(s->has_queued());
}

TEST_F(ImportSessionTest, RefusesABatchSeqThatJumpsOrRepeats) {
  auto s = Make({{0, {}}});
  ASSERT_TRUE(s->OnOwnerMessage(Batch(1, 0, {1})).ok());
  EXPECT_EQ(s->OnOwnerMessage(Batch(3, 0, {2})).message(), "owner sent batch_seq 3 after 1");
  EXPECT_EQ(s->OnOwnerMessage(Batch(1, 0, {2})).message(), "owner sent batch_seq 1 after 1");
}

TEST_F(ImportSessionTest, RefusesOffsetsThatGoBackwardsWithinAndAcrossBatches) {
  auto s = Make({{0, {}}});
  EXPECT_EQ(s->OnOwnerMessage(Batch(1, 0, {5, 4})).message(),
            "owner sent offset 4 of partition 0 after offset 5");
  auto t = Make({{0, {}}});
  ASSERT_TRUE(t->OnOwnerMessage(Batch(1, 0, {5, 6})).ok());
  EXPECT_EQ(t->OnOwnerMessage(Batch(2, 0, {6})).message(),
            "owner sent offset 6 of partition 0 after offset 6 with a resume token that does not "
            "order after the previous one");
}

// An aggregate's resume token (policy/share_transform.cc, version 2): what orders the records
// one source record released is (trigger offset, window start, window key).
std::string AggregateToken(int64_t trigger, int64_t window_start, const std::string& key) {
  std::string t(1, '\2');
  for (int64_t v : {int64_t{0}, int64_t{0}, trigger, window_start}) {
    for (int shift = 56; shift >= 0; shift -= 8) {
      t.push_back(static_cast<char>(static_cast<uint64_t>(v) >> shift));
    }
  }
  return t + key;
}

fed::OwnerMessage Aggregates(uint64_t seq, int64_t offset,
                             const std::vector<std::pair<int64_t, std::string>>& windows) {
  fed::OwnerMessage m = Batch(seq, 0, {});
  for (const auto& [start, key] : windows) {
    fed::Record* r = m.mutable_batch()->add_records();
    r->set_offset(offset);
    r->set_value(absl::StrCat(start, key));
    r->set_resume_token(AggregateToken(offset, start, key));
  }
  return m;
}

TEST_F(ImportSessionTest, AggregatesSharingAnOffsetAreOrderedByTokenAndReplaysDropped) {
  // The receiver holds the aggregate (900, "A") released by offset 7.
  auto s = Make({{0, core::PartitionCheckpoint(7, AggregateToken(7, 900, "\"A\""))}});
  ASSERT_TRUE(s->OnOwnerMessage(Aggregates(1, 7,
                                           {{900, "\"A\""},  // a replay: held
                                            {900, "\"B\""},
                                            {1800, "\"A\""}}))
                  .ok());
  ASSERT_TRUE(s->WriteQueued(&sink_, &audit_, &refused_).ok());
  ASSERT_EQ(sink_.committed.size(), 2u);
  EXPECT_EQ(sink_.committed[0].headers.at("uop.resume"), AggregateToken(7, 900, "\"B\""));
  EXPECT_EQ(sink_.committed[1].headers.at("uop.resume"), AggregateToken(7, 1800, "\"A\""));
  EXPECT_EQ(s->stats().duplicates, 1);
  EXPECT_EQ(s->checkpoints().at(0).token(), AggregateToken(7, 1800, "\"A\""));
  // Out of order at one offset is a protocol violation.
  auto t = Make({{0, {}}});
  EXPECT_EQ(t->OnOwnerMessage(Aggregates(1, 7, {{1800, "\"A\""}, {900, "\"B\""}})).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ImportSessionTest, RefusesEmptyBatchesAndBatchesBeyondTheGrantedCredit) {
  auto s = Make({{0, {}}}, /*window_batches=*/1);
  EXPECT_EQ(s->OnOwnerMessage(Batch(1, 0, {})).message(), "owner sent batch_seq 1 with no record");
  ASSERT_TRUE(s->OnOwnerMessage(Batch(1, 0, {1})).ok());
  EXPECT_EQ(s->OnOwnerMessage(Batch(2, 0, {2})).message(), "owner exceeded the granted credit");
  // After the write returns the credit, the next batch is fine.
  ASSERT_TRUE(s->WriteQueued(&sink_, &audit_, &refused_).ok());
  EXPECT_TRUE(s->OnOwnerMessage(Batch(2, 0, {2})).ok());
}

TEST_F(ImportSessionTest, WritesOneTransactionWithProvenanceDropsReplaysAndAcks) {
  auto s = Make({{0, core::PartitionCheckpoint(10, core::EncodeOffsetToken(11))}, {1, {}}});
  fed::OwnerMessage b1 = Batch(1, 0, {9, 10, 11, 12});  // 9 and 10 are held already
  const uint64_t size1 = b1.batch().ByteSizeLong();
  fed::OwnerMessage b2 = Batch(2, 1, {0});
  const uint64_t size2 = b2.batch().ByteSizeLong();
  ASSERT_TRUE(s->OnOwnerMessage(std::move(b1)).ok());
  ASSERT_TRUE(s->OnOwnerMessage(std::move(b2)).ok());
  auto replies = s->WriteQueued(&sink_, &audit_, &refused_);
  ASSERT_TRUE(replies.ok()) << replies.status();
  EXPECT_EQ(sink_.begun, 1);
  ASSERT_EQ(sink_.committed.size(), 3u);
  EXPECT_EQ(sink_.committed[0].offset, 11);
  EXPECT_EQ(sink_.committed[1].offset, 12);
  EXPECT_EQ(sink_.committed[2].partition, 1);
  const auto& h = sink_.committed[0].headers;
  EXPECT_EQ(h.at("uop.origin"), "helsinki");
  EXPECT_EQ(h.at("uop.origin.topic"), "noise.observations");
  EXPECT_EQ(h.at("uop.origin.partition"), "0");
  EXPECT_EQ(h.at("uop.origin.offset"), "11");
  EXPECT_EQ(h.at("uop.origin.timestamp"), "1700000000011");
  EXPECT_EQ(h.at("uop.policy.version"), "sha256:feedfacecafebeef");
  EXPECT_EQ(h.at("uop.resume"), core::EncodeOffsetToken(12));
  EXPECT_FALSE(h.contains("uop.deadletter.reason"));
  ASSERT_EQ(replies->size(), 2u);
  EXPECT_EQ((*replies)[0].ack().through_batch_seq(), 2u);
  EXPECT_EQ((*replies)[1].credit().batches(), 2u);
  EXPECT_EQ((*replies)[1].credit().bytes(), size1 + size2);
  EXPECT_EQ(s->stats().written, 3);
  EXPECT_EQ(s->stats().duplicates, 2);
  EXPECT_EQ(s->checkpoints().at(0).last_offset(), 12);
  EXPECT_EQ(s->checkpoints().at(1).last_offset(), 0);
  // The positions travel with the transaction (Kafka: the import group's committed offsets).
  ASSERT_EQ(sink_.committed_positions.size(), 2u);
  EXPECT_EQ(sink_.committed_positions.at(0).last_offset(), 12);
  EXPECT_EQ(sink_.committed_positions.at(0).token(), core::EncodeOffsetToken(13));
  EXPECT_EQ(sink_.committed_positions.at(1).last_offset(), 0);
  ASSERT_EQ(audit_.written.size(), 1u);
  EXPECT_EQ(audit_.written[0].first_seq, 1u);
  EXPECT_EQ(audit_.written[0].last_seq, 2u);
  ASSERT_EQ(audit_.written[0].ranges.size(), 2u);
  EXPECT_EQ(audit_.written[0].ranges[0].first_offset, 11);
  EXPECT_EQ(audit_.written[0].ranges[0].last_offset, 12);
  EXPECT_EQ(audit_.written[0].ranges[0].records, 2);
  EXPECT_FALSE(s->has_queued());
}

TEST_F(ImportSessionTest, ASmallerWindowIsReachedByReturningLessCreditNeverBelowZero) {
  auto s = Make({{0, {}}});  // a window of 1 MiB
  ASSERT_EQ(s->window_bytes(), 1 << 20);
  auto write = [&](uint64_t seq, int64_t offset) -> std::pair<uint64_t, uint64_t> {
    fed::OwnerMessage b = Batch(seq, 0, {offset});
    const uint64_t size = b.batch().ByteSizeLong();
    EXPECT_TRUE(s->OnOwnerMessage(std::move(b)).ok());
    auto replies = s->WriteQueued(&sink_, &audit_, &refused_);
    EXPECT_TRUE(replies.ok()) << replies.status();
    return {size, replies.ok() ? (*replies)[1].credit().bytes() : 0};
  };
  // Unchanged: what was written comes back.
  auto [size, credit] = write(1, 0);
  EXPECT_EQ(credit, size);
  // Shrunk by less than a batch: the next Credit returns the batch minus the difference.
  s->SetWindowBytes((1 << 20) - 10);
  std::tie(size, credit) = write(2, 1);
  EXPECT_EQ(credit, size - 10);
  EXPECT_EQ(s->window_bytes(), (1 << 20) - 10);
  // Shrunk by more than a batch: no byte credit comes back (the batches still do) until the
  // window fits; nothing already granted is taken back.
  s->SetWindowBytes(1000);
  std::tie(size, credit) = write(3, 2);
  EXPECT_EQ(credit, 0u);
  EXPECT_EQ(s->window_bytes(), (1 << 20) - 10 - static_cast<int64_t>(size));
  // Grown: the next Credit adds the difference to what was written.
  s->SetWindowBytes(2 << 20);
  const int64_t before = s->window_bytes();
  std::tie(size, credit) = write(4, 3);
  EXPECT_EQ(static_cast<int64_t>(credit), static_cast<int64_t>(size) + (2 << 20) - before);
  EXPECT_EQ(s->window_bytes(), 2 << 20);
}

TEST_F(ImportSessionTest, FailedCommitAcksNothingAndDeadLettersLateRefusalsNextTime) {
  auto s = Make({{0, {}}});
  ASSERT_TRUE(s->OnOwnerMessage(Batch(1, 0, {0, 1, 2})).ok());
  sink_.commit_error = absl::UnavailableError("commit transaction: broker down");
  sink_.late_refusals = {{0, 1, "kafka refused the record: Broker: Message size too large", {}}};
  auto replies = s->WriteQueued(&sink_, &audit_, &refused_);
  EXPECT_EQ(replies.status(), absl::UnavailableError("commit transaction: broker down"));
  EXPECT_TRUE(sink_.committed.empty());
  EXPECT_EQ(s->checkpoints().at(0).last_offset(), -1) << "position moves only after a commit";
  // Recorded before the commit: the log may hold a batch_received whose transaction failed,
  // never miss one whose transaction committed. The re-sent batch is recorded again.
  EXPECT_EQ(audit_.written.size(), 1u);

  // The stream restarts from recovery; the owner sends the same records again.
  auto again = Make({{0, {}}});
  ASSERT_TRUE(again->OnOwnerMessage(Batch(1, 0, {0, 1, 2})).ok());
  ASSERT_TRUE(again->WriteQueued(&sink_, &audit_, &refused_).ok());
  ASSERT_EQ(sink_.committed.size(), 3u);
  EXPECT_EQ(sink_.committed[1].target, OutRecord::Target::kDeadLetter);
  EXPECT_EQ(sink_.committed[1].headers.at("uop.deadletter.reason"),
            "kafka refused the record: Broker: Message size too large");
  EXPECT_EQ(again->stats().deadletters, 1);
  EXPECT_EQ(again->stats().written, 2);
  ASSERT_EQ(again->last_deadletters().size(), 1u);
  EXPECT_EQ(again->last_deadletters()[0].offset, 1);
  EXPECT_EQ(refused_.Find(0, 1), nullptr) << "forgotten once written";
}

TEST_F(ImportSessionTest, RecordRefusedByMirrorAndDeadLetterGoesWithoutItsValue) {
  auto s = Make({{0, {}}});
  sink_.refuse_mirror = {3};
  sink_.refuse_deadletter_with_value = {3};
  ASSERT_TRUE(s->OnOwnerMessage(Batch(1, 0, {3})).ok());
  ASSERT_TRUE(s->WriteQueued(&sink_, &audit_, &refused_).ok());
  ASSERT_EQ(sink_.committed.size(), 1u);
  EXPECT_EQ(sink_.committed[0].target, OutRecord::Target::kDeadLetter);
  EXPECT_FALSE(sink_.committed[0].has_value);
  EXPECT_EQ(sink_.committed[0].headers.at("uop.deadletter.reason"),
            "kafka refused the record: too large; value not stored: too large for the "
            "dead-letter topic too");
}

TEST_F(ImportSessionTest, AcceptRulesSendRefusedRecordsToTheDeadLetterTopicAndTellTheOwner) {
  // Our rule: records from helsinki's noise.observations at most 8 bytes (key + value).
  auto rules = policy::PolicySnapshot::FromFiles(
      {{"accept.yaml",
        "accept:\n  - peer: helsinki\n    dataset: noise.observations\n"
        "    max_record_bytes: 8\n"}},
      {"helsinki"});
  ASSERT_TRUE(rules.ok()) << rules.status();
  std::shared_ptr<const policy::PolicySnapshot> snapshot = *rules;
  ImportSession s({8, 1 << 20, false, [snapshot] { return snapshot; }}, "helsinki",
                  "noise.observations", {{0, {}}}, &clock_);
  ASSERT_TRUE(s.OnSubscribed(Subscribed(3), 3).ok());
  fed::OwnerMessage batch = Batch(1, 0, {0, 1, 2});
  batch.mutable_batch()->mutable_records(1)->set_value("a value of 21 bytes..");
  ASSERT_TRUE(s.OnOwnerMessage(std::move(batch)).ok());
  auto replies = s.WriteQueued(&sink_, &audit_, &refused_);
  ASSERT_TRUE(replies.ok()) << replies.status();
  ASSERT_EQ(sink_.committed.size(), 3u);
  EXPECT_EQ(sink_.committed[0].target, OutRecord::Target::kMirror);
  EXPECT_EQ(sink_.committed[1].target, OutRecord::Target::kDeadLetter);
  EXPECT_THAT(sink_.committed[1].headers.at("uop.deadletter.reason"),
              ::testing::StartsWith("refused by accept rule: too_large"));
  EXPECT_EQ(sink_.committed[2].target, OutRecord::Target::kMirror);
  const fed::Ack& ack = (*replies)[0].ack();
  EXPECT_EQ(ack.through_batch_seq(), 1u);
  ASSERT_EQ(ack.refusals_size(), 1);
  EXPECT_EQ(ack.refusals(0).partition(), 0);
  EXPECT_EQ(ack.refusals(0).offset(), 1);
  EXPECT_EQ(ack.refusals(0).reason(), "too_large");
  EXPECT_EQ(s.stats().refused_by_rule, 1);
  EXPECT_EQ(s.stats().deadletters, 1);
  EXPECT_EQ(s.checkpoints().at(0).last_offset(), 2);  // a refused record counts as done
}

TEST_F(ImportSessionTest, WithoutAnAcceptRuleNamingThePeerEverythingIsAccepted) {
  auto rules = policy::PolicySnapshot::FromFiles(
      {{"accept.yaml",
        "accept:\n  - peer: riga\n    dataset: noise.observations\n    max_record_bytes: 1\n"}},
      {"helsinki", "riga"});
  ASSERT_TRUE(rules.ok()) << rules.status();
  std::shared_ptr<const policy::PolicySnapshot> snapshot = *rules;
  ImportSession s({8, 1 << 20, false, [snapshot] { return snapshot; }}, "helsinki",
                  "noise.observations", {{0, {}}}, &clock_);
  ASSERT_TRUE(s.OnSubscribed(Subscribed(3), 3).ok());
  ASSERT_TRUE(s.OnOwnerMessage(Batch(1, 0, {0, 1})).ok());
  auto replies = s.WriteQueued(&sink_, &audit_, &refused_);
  ASSERT_TRUE(replies.ok()) << replies.status();
  EXPECT_EQ((*replies)[0].ack().refusals_size(), 0);
  EXPECT_EQ(s.stats().written, 2);
}

TEST_F(ImportSessionTest, AuditFailureAcknowledgesNothing) {
  auto s = Make({{0, {}}});
  ASSERT_TRUE(s->OnOwnerMessage(Batch(1, 0, {0})).ok());
  audit_.error = absl::UnavailableError("audit log: disk full");
  auto replies = s->WriteQueued(&sink_, &audit_, &refused_);
  EXPECT_EQ(replies.status(), absl::UnavailableError("audit log: disk full"));
  EXPECT_EQ(s->checkpoints().at(0).last_offset(), -1);
  // Not logged, so not committed: the transaction was aborted.
  EXPECT_TRUE(sink_.committed.empty());
  EXPECT_EQ(sink_.aborted, 1);
}

TEST_F(ImportSessionTest, BatchesAreRecordedBeforeTheirTransactionCommits) {
  auto s = Make({{0, {}}});
  audit_.sink = &sink_;
  ASSERT_TRUE(s->OnOwnerMessage(Batch(1, 0, {0, 1})).ok());
  ASSERT_TRUE(s->WriteQueued(&sink_, &audit_, &refused_).ok());
  ASSERT_EQ(audit_.written.size(), 1u);
  EXPECT_EQ(audit_.committed_before, 0u);
  EXPECT_EQ(sink_.committed.size(), 2u);
}

TEST_F(ImportSessionTest, LagCountsOwnerEndAndReachesZeroPastSkippedOffsets) {
  auto s = Make({{0, {}}});
  ASSERT_TRUE(s->OnOwnerMessage(Batch(1, 0, {0, 1, 2}, /*high_watermark=*/6)).ok());
  EXPECT_EQ(s->lag_records(), 6);
  // The owner's heartbeat says: everything below 6 that it will send was sent (3..5 are
  // transaction markers or records from a peer). Not applied before batch 1 is written.
  fed::OwnerMessage hb;
  fed::PartitionProgress* p = hb.mutable_heartbeat()->add_progress();
  p->set_partition(0);
  p->set_high_watermark(6);
  p->set_next_offset(6);
  ASSERT_TRUE(s->OnOwnerMessage(std::move(hb)).ok());
  EXPECT_EQ(s->lag_records(), 6);
  clock_.Advance(absl::Seconds(3));
  ASSERT_TRUE(s->WriteQueued(&sink_, &audit_, &refused_).ok());
  EXPECT_EQ(s->lag_records(), 0);
  EXPECT_EQ(s->lag_seconds(), 0);
}

TEST_F(ImportSessionTest, LagWithoutNextOffsetCountsFromWhatIsHeld) {
  auto s = Make({{0, {}}});
  ASSERT_TRUE(s->OnOwnerMessage(Batch(1, 0, {0, 1}, 10)).ok());
  ASSERT_TRUE(s->WriteQueued(&sink_, &audit_, &refused_).ok());
  EXPECT_EQ(s->lag_records(), 8);
  clock_.Advance(absl::Seconds(1));
  // Newest committed record has origin timestamp 1700000000001 ms; the clock says otherwise.
  EXPECT_GT(s->lag_seconds(), 0);
}

}  // namespace
}  // namespace uop::broker
