// The broker's policy transform stage: what a share lets out of an export stream, the
// uop.policy.version header, the resume token, withheld records counted per reason, and
// aggregates (several records released by one, by time alone, and exactly once on resume).
#include <gtest/gtest.h>

#include "broker/export/policy_transform.h"
#include "core/provenance.h"

namespace uop::broker {
namespace {

namespace fed = uop::federation::v1;

const std::set<std::string> kPeers = {"tallinn", "riga"};

const char kShare[] = R"(dataset: noise.observations
format: sensorthings-observation
shares:
  - peer: tallinn
    fields:
      drop: [parameters.operator]
    spatial:
      within: {bbox: [24.5, 59.9, 25.3, 60.4]}
)";

std::string Observation(double lon, double lat) {
  return R"({"phenomenonTime":"2026-03-01T12:00:05Z","result":61.5,"parameters":{"operator":"Jane","site":"s"},)"
         R"("FeatureOfInterest":{"feature":{"type":"Point","coordinates":[)" +
         std::to_string(lon) + "," + std::to_string(lat) + "]}}}";
}

fed::Record MakeRecord(int64_t offset, const std::string& value) {
  fed::Record r;
  r.set_offset(offset);
  r.set_timestamp_ms(1772366400000);
  r.set_key("k");
  r.set_value(value);
  return r;
}

class PolicyExportTransformTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = policy::PolicySnapshot::FromFiles({{"noise.yaml", kShare}}, kPeers);
    ASSERT_TRUE(s.ok()) << s.status();
    snapshot_ = *s;
  }
  std::shared_ptr<const policy::PolicySnapshot> snapshot_;
  core::ManualClock clock_{absl::FromUnixSeconds(1772366400)};
  core::Metrics metrics_;
};

TEST_F(PolicyExportTransformTest, KeepsInsideDropsFieldAndStampsVersion) {
  auto t = PolicyTransform::Create(snapshot_, "noise.observations", "tallinn", &clock_, &metrics_);
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ((*t)->Start(0, core::EncodeOffsetToken(7)).value_or(-1), 7);
  fed::Record in = MakeRecord(7, Observation(24.95, 60.17));
  std::vector<fed::Record> emitted;
  ASSERT_EQ((*t)->Apply(0, &in, &emitted), RecordTransform::Outcome::kSend);
  EXPECT_TRUE(emitted.empty());
  EXPECT_EQ(in.offset(), 7);
  EXPECT_EQ(in.key(), "k");
  EXPECT_EQ(in.value().find("operator"), std::string::npos) << in.value();
  EXPECT_NE(in.value().find("\"site\""), std::string::npos) << in.value();
  ASSERT_GE(in.headers_size(), 1);
  EXPECT_EQ(in.headers(in.headers_size() - 1).key(), kHeaderPolicyVersion);
  EXPECT_EQ(in.headers(in.headers_size() - 1).value(), snapshot_->version());
  EXPECT_EQ(core::DecodeOffsetToken(in.resume_token()), 8);
}

TEST_F(PolicyExportTransformTest, WithholdsOutsideAreaAndCountsReason) {
  auto t = PolicyTransform::Create(snapshot_, "noise.observations", "tallinn", &clock_, &metrics_);
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ((*t)->Start(0, "").value_or(0), policy::kOffsetBeginning);
  std::vector<fed::Record> emitted;
  fed::Record out = MakeRecord(3, Observation(10.0, 50.0));
  EXPECT_EQ((*t)->Apply(0, &out, &emitted), RecordTransform::Outcome::kWithheld);
  fed::Record bad = MakeRecord(4, "not json");
  EXPECT_EQ((*t)->Apply(0, &bad, &emitted), RecordTransform::Outcome::kWithheld);
  EXPECT_TRUE(emitted.empty());
  EXPECT_EQ((*t)->withheld().at("outside_area"), 1);
  EXPECT_EQ((*t)->withheld().at("not_json"), 1);
  EXPECT_NE(metrics_.Render().find("uop_export_withheld_records_total{"), std::string::npos);
}

TEST_F(PolicyExportTransformTest, NoShareIsNotFound) {
  auto t = PolicyTransform::Create(snapshot_, "noise.observations", "riga", &clock_, &metrics_);
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(PolicyExportTransformTest, UnknownTokenIsRefused) {
  auto t = PolicyTransform::Create(snapshot_, "noise.observations", "tallinn", &clock_, &metrics_);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->Start(2, "\x09garbage").status().code(), absl::StatusCode::kInvalidArgument);
}

const char kAggregate[] = R"(dataset: noise.observations
format: sensorthings-observation
shares:
  - peer: tallinn
    aggregate: {window: 15m, lateness: 2m, by: Datastream.@iot.id, values: [count, mean]}
)";

std::string At(const std::string& datastream, const std::string& hhmm, int result) {
  return R"({"phenomenonTime":"2026-03-01T)" + hhmm + R"(:00Z","result":)" +
         std::to_string(result) + R"(,"Datastream":{"@iot.id":")" + datastream + R"("}})";
}

// Feeds `values` from offset `from` on (skipping those before), then Idle at `idle`.
std::vector<fed::Record> Feed(PolicyTransform* t, const std::vector<std::string>& values,
                              int64_t from, absl::Time idle) {
  std::vector<fed::Record> sent;
  for (int64_t offset = std::max<int64_t>(from, 0); offset < static_cast<int64_t>(values.size());
       ++offset) {
    fed::Record in = MakeRecord(offset, values[offset]);
    EXPECT_EQ(t->Apply(0, &in, &sent), RecordTransform::Outcome::kConsumed) << offset;
  }
  t->Idle(0, idle, &sent);
  return sent;
}

TEST_F(PolicyExportTransformTest, AggregatesLeaveAsWindowsOnceEachAcrossAResume) {
  auto s = policy::PolicySnapshot::FromFiles({{"noise.yaml", kAggregate}}, kPeers);
  ASSERT_TRUE(s.ok()) << s.status();
  const std::vector<std::string> values = {
      At("A", "12:01", 50), At("B", "12:02", 60), At("A", "12:05", 52),
      At("B", "12:18", 64),  // closes both 12:00 windows: two records from one
      At("A", "12:19", 70),
  };
  const absl::Time idle = absl::FromUnixSeconds(1772370000);  // 13:00 closes the 12:15 ones
  auto t = PolicyTransform::Create(*s, "noise.observations", "tallinn", &clock_, &metrics_);
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ((*t)->Start(0, "").value_or(0), policy::kOffsetBeginning);
  const std::vector<fed::Record> whole = Feed(t->get(), values, 0, idle);
  ASSERT_EQ(whole.size(), 4u);
  EXPECT_EQ(whole[0].offset(), 3);  // the record that closed the window
  EXPECT_EQ(whole[1].offset(), 3);
  EXPECT_EQ(whole[2].offset(), 4);  // closed by time: the last record read
  EXPECT_EQ(whole[0].key(), "A");
  EXPECT_EQ(whole[1].key(), "B");
  EXPECT_NE(whole[0].value().find(R"("window_start":"2026-03-01T12:00:00Z")"), std::string::npos);
  EXPECT_NE(whole[0].value().find(R"("count":2,"mean":51.0)"), std::string::npos)
      << whole[0].value();
  EXPECT_EQ(whole[0].headers(whole[0].headers_size() - 1).key(), kHeaderPolicyVersion);
  // Tokens order the records that share an offset, as the receiver's replay filter needs.
  for (size_t i = 1; i < whole.size(); ++i) {
    EXPECT_EQ(policy::CompareResumeTokens(whole[i].resume_token(), whole[i - 1].resume_token()),
              std::strong_ordering::greater)
        << i;
  }
  // The receiver held the first k; a new stream from its token sends exactly the rest.
  for (size_t k = 1; k <= whole.size(); ++k) {
    auto again = PolicyTransform::Create(*s, "noise.observations", "tallinn", &clock_, nullptr);
    ASSERT_TRUE(again.ok());
    absl::StatusOr<int64_t> from = (*again)->Start(0, whole[k - 1].resume_token());
    ASSERT_TRUE(from.ok()) << from.status();
    const std::vector<fed::Record> rest = Feed(again->get(), values, *from, idle);
    ASSERT_EQ(rest.size(), whole.size() - k) << "after " << k;
    for (size_t i = 0; i < rest.size(); ++i) {
      EXPECT_EQ(rest[i].value(), whole[k + i].value()) << k << " " << i;
      EXPECT_EQ(rest[i].resume_token(), whole[k + i].resume_token()) << k << " " << i;
    }
  }
}

}  // namespace
}  // namespace uop::broker
