// The broker's policy transform stage: what a share lets out of an export stream, the
// uop.policy.version header, the resume token, and withheld records counted per reason.
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
  fed::Record in = MakeRecord(7, Observation(24.95, 60.17));
  ASSERT_TRUE((*t)->Apply(0, &in));
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
  fed::Record out = MakeRecord(3, Observation(10.0, 50.0));
  EXPECT_FALSE((*t)->Apply(0, &out));
  fed::Record bad = MakeRecord(4, "not json");
  EXPECT_FALSE((*t)->Apply(0, &bad));
  EXPECT_EQ((*t)->withheld().at("outside_area"), 1);
  EXPECT_EQ((*t)->withheld().at("not_json"), 1);
  EXPECT_NE(metrics_.Render().find("uop_export_withheld_records_total{"), std::string::npos);
}

TEST_F(PolicyExportTransformTest, NoShareIsNotFound) {
  auto t = PolicyTransform::Create(snapshot_, "noise.observations", "riga", &clock_, &metrics_);
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(PolicyExportTransformTest, AggregatingShareIsRefused) {
  const char kAgg[] = R"(dataset: noise.observations
format: sensorthings-observation
shares:
  - peer: tallinn
    aggregate: {window: 15m, of: result, values: [mean]}
)";
  auto s = policy::PolicySnapshot::FromFiles({{"noise.yaml", kAgg}}, kPeers);
  ASSERT_TRUE(s.ok()) << s.status();
  auto t = PolicyTransform::Create(*s, "noise.observations", "tallinn", &clock_, &metrics_);
  EXPECT_EQ(t.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(t.status().message().find("noise.observations"), std::string::npos);
}

}  // namespace
}  // namespace uop::broker
