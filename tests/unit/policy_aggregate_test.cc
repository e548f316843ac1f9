// Tumbling event-time windows: exact aggregates, late records, min_count, closing by time, and
// every window exactly once across a restart at any output.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "policy/share_transform.h"

namespace uop::policy {
namespace {

const std::set<std::string> kPeers = {"tallinn"};

std::shared_ptr<const PolicySnapshot> Snapshot(const std::string& share_rules) {
  auto s = PolicySnapshot::FromFiles(
      {{"noise.yaml",
        "dataset: noise.observations\nformat: sensorthings-observation\nshares:\n  "
        "- peer: tallinn\n" +
            share_rules},
       {"keys/tallinn-2026.key", "0123456789abcdef0123456789abcdef"}},
      kPeers);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *s : nullptr;
}

const char kRules[] =
    "    aggregate: {window: 15m, lateness: 2m, values: [count, mean, max, min, sum], "
    "min_count: 2}\n";

std::string Obs(const std::string& ds, const std::string& hhmm, int result) {
  return R"({"phenomenonTime":"2026-03-01T)" + hhmm + R"(:00Z","result":)" +
         std::to_string(result) + R"(,"Datastream":{"@iot.id":")" + ds + R"("}})";
}

// The stream of partition 0, in offset order.
const std::vector<std::string>& Stream() {
  static const std::vector<std::string> s = {
      Obs("A", "12:01", 50),  // 0
      Obs("B", "12:02", 60),  // 1
      Obs("A", "12:05", 52),  // 2
      Obs("C", "12:07", 70),  // 3: C's window has one record: withheld (min_count 2)
      Obs("B", "12:10", 62),  // 4
      Obs("A", "12:16", 54),  // 5: next window; 12:00 stays open until 12:17
      Obs("B", "12:14", 64),  // 6: not late yet
      Obs("A", "12:18", 56),  // 7: watermark 12:18 closes the 12:00 windows (A, B, C)
      Obs("B", "12:13", 99),  // 8: late
      Obs("B", "12:20", 66),  // 9
      Obs("A", "12:33", 58),  // 10: closes 12:15 (A; B has one record)
      Obs("A", "12:34", 60),  // 11
  };
  return s;
}

const absl::Time kCaughtUp = absl::FromUnixSeconds(1772370000);  // 13:00, Advance closes 12:30

std::string Window(const std::string& start, const std::string& end, const std::string& key,
                   const std::string& stats) {
  return R"({"dataset":"noise.observations","window_start":"2026-03-01T)" + start +
         R"(:00Z","window_end":"2026-03-01T)" + end + R"(:00Z","partition":0,"key":")" + key +
         R"(",)" + stats + "}";
}

struct FeedResult {
  std::vector<OutputRecord> out;
  std::vector<Decision> decisions;
  int64_t below_min_count = 0;
};

// Feeds the stream from the transform's NextReadOffset, then Advance(kCaughtUp).
FeedResult Feed(ShareTransform* t) {
  FeedResult run;
  TransformOutput out;
  int64_t from = t->NextReadOffset() == kOffsetBeginning ? 0 : t->NextReadOffset();
  for (int64_t offset = from; offset < static_cast<int64_t>(Stream().size()); ++offset) {
    SourceRecord rec{0, offset, 0, "", Stream()[offset], {}};
    run.decisions.push_back(t->Apply(rec, kCaughtUp, &out));
  }
  t->Advance(kCaughtUp, &out);
  run.out = std::move(out.records);
  run.below_min_count = out.below_min_count_records;
  return run;
}

TEST(PolicyAggregateTest, WindowsAreExact) {
  auto snapshot = Snapshot(kRules);
  auto t = ShareTransform::Resume(snapshot, "noise.observations", "tallinn", 0, "");
  ASSERT_TRUE(t.ok()) << t.status();
  FeedResult run = Feed(t->get());
  ASSERT_EQ(run.out.size(), 4u);
  EXPECT_EQ(run.out[0].value, Window("12:00", "12:15", "A",
                                     R"("count":2,"mean":51.0,"max":52.0,"min":50.0,"sum":102.0)"));
  EXPECT_EQ(run.out[1].value, Window("12:00", "12:15", "B",
                                     R"("count":3,"mean":62.0,"max":64.0,"min":60.0,"sum":186.0)"));
  EXPECT_EQ(run.out[2].value, Window("12:15", "12:30", "A",
                                     R"("count":2,"mean":55.0,"max":56.0,"min":54.0,"sum":110.0)"));
  EXPECT_EQ(
      run.out[3].value,  // closed by Advance: the source was caught up at 13:00
      Window("12:30", "12:45", "A", R"("count":2,"mean":59.0,"max":60.0,"min":58.0,"sum":118.0)"));
  EXPECT_EQ(run.out[0].key, "A");
  EXPECT_EQ(run.out[0].timestamp_ms, 1772367300000);  // the window's end
  EXPECT_EQ(run.out[0].source_offset, 7);
  EXPECT_EQ(run.out[3].source_offset, 11);
  EXPECT_EQ(run.below_min_count, 2);  // C at 12:00 and B at 12:15, one record each
  ASSERT_EQ(run.decisions.size(), 12u);
  EXPECT_EQ(run.decisions[8].verdict, Decision::Verdict::kWithheld);
  EXPECT_EQ(run.decisions[8].reason, WithheldReason::kLate);
  for (size_t i = 0; i < run.decisions.size(); ++i) {
    if (i != 8) {
      EXPECT_EQ(run.decisions[i].verdict, Decision::Verdict::kAggregated) << i;
    }
    EXPECT_FALSE(run.decisions[i].replay);
  }
}

TEST(PolicyAggregateTest, EveryWindowExactlyOnceAcrossARestartAtAnyOutput) {
  auto snapshot = Snapshot(kRules);
  auto first = ShareTransform::Resume(snapshot, "noise.observations", "tallinn", 0, "");
  ASSERT_TRUE(first.ok());
  const FeedResult whole = Feed(first->get());
  ASSERT_EQ(whole.out.size(), 4u);
  // The receiver durably wrote the first k outputs, then either side was killed: the owner
  // resumes from the token of output k-1 (nothing written: no token).
  for (size_t k = 0; k <= whole.out.size(); ++k) {
    SCOPED_TRACE(k);
    const std::string token = k == 0 ? "" : whole.out[k - 1].resume_token;
    auto t = ShareTransform::Resume(snapshot, "noise.observations", "tallinn", 0, token);
    ASSERT_TRUE(t.ok()) << t.status();
    TransformOutput early;
    (*t)->Advance(kCaughtUp, &early);  // replaying: must not close half-rebuilt windows
    if (k > 0 && k < whole.out.size()) {
      EXPECT_TRUE(early.records.empty());
    }
    const int64_t from = (*t)->NextReadOffset();
    FeedResult rest = Feed(t->get());
    for (const OutputRecord& o : early.records) rest.out.insert(rest.out.begin(), o);
    std::vector<std::string> got, want;
    for (size_t i = 0; i < k; ++i) got.push_back(whole.out[i].value + whole.out[i].resume_token);
    for (const OutputRecord& o : rest.out) got.push_back(o.value + o.resume_token);
    for (const OutputRecord& o : whole.out) want.push_back(o.value + o.resume_token);
    EXPECT_EQ(got, want);
    // Records the owner had already decided before the restart are flagged as replays.
    if (k > 0) {
      const int64_t trigger = whole.out[k - 1].source_offset;
      for (size_t i = 0; i < rest.decisions.size(); ++i) {
        EXPECT_EQ(rest.decisions[i].replay, from + static_cast<int64_t>(i) <= trigger) << i;
      }
    }
  }
  // The receiver can tell replays by token: outputs of one partition are strictly ordered, even
  // the two windows closed by offset 7 (same uop.origin.offset).
  EXPECT_EQ(whole.out[0].source_offset, whole.out[1].source_offset);
  for (size_t i = 1; i < whole.out.size(); ++i) {
    EXPECT_EQ(CompareResumeTokens(whole.out[i - 1].resume_token, whole.out[i].resume_token),
              std::strong_ordering::less)
        << i;
    EXPECT_EQ(CompareResumeTokens(whole.out[i].resume_token, whole.out[i].resume_token),
              std::strong_ordering::equal);
  }
  EXPECT_EQ(CompareResumeTokens(EncodeOffsetToken(3), EncodeOffsetToken(4)),
            std::strong_ordering::less);
  EXPECT_EQ(CompareResumeTokens(EncodeOffsetToken(3), whole.out[0].resume_token), std::nullopt);
  EXPECT_EQ(CompareResumeTokens("junk", whole.out[0].resume_token), std::nullopt);
  // The resume positions themselves: after W(12:00,A) the oldest open window is B's (offset 1).
  auto t = ShareTransform::Resume(snapshot, "noise.observations", "tallinn", 0,
                                  whole.out[0].resume_token);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ((*t)->NextReadOffset(), 1);
  t = ShareTransform::Resume(snapshot, "noise.observations", "tallinn", 0,
                             whole.out[2].resume_token);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ((*t)->NextReadOffset(), 9);  // B(12:15) at 9 was still to be decided at offset 10
}

TEST(PolicyAggregateTest, PseudonymisedKeyAndAPlainTokenStartsFresh) {
  auto snapshot = Snapshot(
      "    fields: {pseudonymise: [Datastream.@iot.id], pseudonym_key: tallinn-2026, "
      "record_key: drop}\n" +
      std::string(kRules));
  // A plain share's token (the policy changed to aggregation): windows start at that offset.
  auto t =
      ShareTransform::Resume(snapshot, "noise.observations", "tallinn", 0, EncodeOffsetToken(5));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->NextReadOffset(), 5);
  FeedResult run = Feed(t->get());
  ASSERT_EQ(run.out.size(), 2u);
  // printf A | openssl dgst -sha256 -hmac 0123456789abcdef0123456789abcdef
  const std::string a = "6b7f1f3f74e61ec8d2a0cfb4c3cd480cfa4926709c045ef50b037c3ae38041aa";
  EXPECT_EQ(run.out[0].key, a);
  EXPECT_EQ(run.out[0].value, Window("12:15", "12:30", a,
                                     R"("count":2,"mean":55.0,"max":56.0,"min":54.0,"sum":110.0)"));
}

TEST(PolicyAggregateTest, RecordsWithoutTheValueAreWithheld) {
  auto snapshot = Snapshot(kRules);
  auto t = ShareTransform::Resume(snapshot, "noise.observations", "tallinn", 0, "");
  ASSERT_TRUE(t.ok());
  TransformOutput out;
  auto reason = [&](int64_t offset, const std::string& v) {
    SourceRecord rec{0, offset, 0, "", v, {}};
    return std::string(WithheldReasonName((*t)->Apply(rec, kCaughtUp, &out).reason));
  };
  EXPECT_EQ(reason(0, R"({"phenomenonTime":"2026-03-01T12:00:00Z","result":"loud",)"
                      R"("Datastream":{"@iot.id":"A"}})"),
            "no_aggregate_value");
  EXPECT_EQ(reason(1, R"({"phenomenonTime":"yesterday","result":1,"Datastream":{"@iot.id":"A"}})"),
            "no_aggregate_value");
  EXPECT_EQ(reason(2, R"({"phenomenonTime":"2026-03-01T12:00:00Z","result":1})"),
            "no_aggregate_value");
  EXPECT_EQ(reason(3, R"({"phenomenonTime":"2026-03-01T12:00:00+02:00/2026-03-01T12:05:00+02:00",)"
                      R"("result":1,"Datastream":{"@iot.id":{"x":1}}})"),
            "no_aggregate_value");
  EXPECT_EQ(reason(4, R"({"phenomenonTime":"2026-03-01T12:00:00+02:00/2026-03-01T12:05:00+02:00",)"
                      R"("result":1,"Datastream":{"@iot.id":7}})"),
            "none");
  // Years beyond 9999 would overflow the window arithmetic (found by record_eval_fuzz).
  EXPECT_EQ(reason(5, R"({"phenomenonTime":"24444444052-03-01T12:00:05Z","result":1,)"
                      R"("Datastream":{"@iot.id":"A"}})"),
            "no_aggregate_value");
  EXPECT_TRUE(out.records.empty());
}

}  // namespace
}  // namespace uop::policy
