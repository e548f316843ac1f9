// PolicyManager: reloads that swap the snapshot or keep the last good one, the watcher's
// two-looks rule, and validity windows that stop and start shares by themselves.
#include "broker/policy_manager.h"

#include <filesystem>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "audit/fake_audit_sink.h"
#include "core/metrics.h"

namespace uop::broker {
namespace {

using ::testing::HasSubstr;

class PolicyManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           ("policy_manager_" +
            std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
  }
  std::unique_ptr<PolicyManager> Load() {
    PolicyManager::Options options;
    options.dir = dir_.string();
    options.peers = {"tallinn", "riga"};
    auto m = PolicyManager::Load(options, &metrics_, &audit_);
    EXPECT_TRUE(m.ok()) << m.status();
    return m.ok() ? *std::move(m) : nullptr;
  }
  double Metric(const std::string& needle) {
    const std::string text = "\n" + metrics_.Render();
    const size_t at = text.find("\n" + needle + " ");  // a sample line, not # HELP or # TYPE
    if (at == std::string::npos) return -1;
    return std::stod(text.substr(at + needle.size() + 2));
  }

  std::vector<audit::Entry> entries() const {
    std::vector<audit::Entry> all = audit_.durable();
    return std::vector<audit::Entry>(all.begin() + static_cast<std::ptrdiff_t>(skip_), all.end());
  }

  std::filesystem::path dir_;
  size_t skip_ = 0;  // entries before this are not looked at
  core::Metrics metrics_;
  audit::FakeAuditSink audit_{/*auto_complete=*/true};
};

constexpr char kShare[] = "dataset: noise\nshares:\n  - peer: tallinn\n";

TEST_F(PolicyManagerTest, AGoodReloadSwapsTheSnapshotAndABadOneKeepsTheLastGood) {
  Write("noise.yaml", kShare);
  std::unique_ptr<PolicyManager> m = Load();
  ASSERT_NE(m, nullptr);
  const std::string v1 = m->Current()->version();
  EXPECT_TRUE(m->Current()->Allows("noise", "tallinn"));

  PolicyManager::Result same = m->Reload("test");
  EXPECT_TRUE(same.ok);
  EXPECT_FALSE(same.changed);
  EXPECT_EQ(same.version, v1);

  Write("noise.yaml", "dataset: noise\nshares:\n  - peer: riga\n");
  PolicyManager::Result changed = m->Reload("test");
  EXPECT_TRUE(changed.ok);
  EXPECT_TRUE(changed.changed);
  EXPECT_NE(changed.version, v1);
  EXPECT_FALSE(m->Current()->Allows("noise", "tallinn"));
  EXPECT_TRUE(m->Current()->Allows("noise", "riga"));

  Write("noise.yaml", "dataset: noise\nshares:\n  - peer: oslo\n");  // not a peer of ours
  PolicyManager::Result bad = m->Reload("test");
  EXPECT_FALSE(bad.ok);
  EXPECT_THAT(bad.error, HasSubstr("noise.yaml:3:"));
  EXPECT_EQ(bad.version, changed.version);
  EXPECT_EQ(m->Current()->version(), changed.version);  // the last good set stays
  EXPECT_EQ(Metric("uop_policy_last_reload_ok"), 0);
  EXPECT_EQ(Metric("uop_policy_reloads_total{result=\"rejected\"}"), 1);
  EXPECT_EQ(Metric("uop_policy_reloads_total{result=\"ok\"}"), 1);
  const std::string status = m->StatusJson(absl::Now());
  EXPECT_THAT(status, HasSubstr("\"last_attempt_ok\":false"));
  EXPECT_THAT(status, HasSubstr("\"version\":\"" + changed.version + "\""));

  // Every load and rejection is in the audit log, with the version in force.
  std::vector<audit::EntryType> types;
  for (const audit::Entry& e : entries()) types.push_back(e.type);
  EXPECT_EQ(types, (std::vector<audit::EntryType>{audit::EntryType::kPolicyLoad,
                                                  audit::EntryType::kPolicyLoad,
                                                  audit::EntryType::kPolicyRejected}));
  EXPECT_EQ(entries().back().policy_version, changed.version);
}

TEST_F(PolicyManagerTest, TheWatcherLoadsAChangeOnceTwoLooksAgree) {
  Write("noise.yaml", kShare);
  std::unique_ptr<PolicyManager> m = Load();
  ASSERT_NE(m, nullptr);
  const std::string v1 = m->Current()->version();
  m->Poll(absl::Now());
  EXPECT_EQ(m->Current()->version(), v1);

  Write("more.yaml", "dataset: air\nshares:\n  - peer: riga\n");
  m->Poll(absl::Now());  // first look at the change: could be a save half-way
  EXPECT_EQ(m->Current()->version(), v1);
  m->Poll(absl::Now());  // unchanged since: loaded
  EXPECT_NE(m->Current()->version(), v1);
  EXPECT_TRUE(m->Current()->Allows("air", "riga"));
  EXPECT_THAT(m->StatusJson(absl::Now()), HasSubstr("\"loaded_by\":\"file change\""));
}

TEST_F(PolicyManagerTest, ValidityWindowsStopAndStartSharesByThemselves) {
  Write("noise.yaml",
        "dataset: noise\nshares:\n  - peer: tallinn\n"
        "    valid: {from: 2030-01-01T00:00:00Z, until: 2030-02-01T00:00:00Z}\n");
  std::unique_ptr<PolicyManager> m = Load();
  ASSERT_NE(m, nullptr);
  skip_ = audit_.durable().size();
  m->Poll(absl::FromUnixSeconds(1893456000 - 60));  // 2029-12-31T23:59:00Z: not yet valid
  EXPECT_TRUE(entries().empty());
  EXPECT_EQ(Metric("uop_policy_shares_active"), 0);
  m->Poll(absl::FromUnixSeconds(1893456000));  // 2030-01-01: starts
  EXPECT_EQ(Metric("uop_policy_shares_active"), 1);
  m->Poll(absl::FromUnixSeconds(1893456000 + 31 * 86400));  // 2030-02-01: expired
  EXPECT_EQ(Metric("uop_policy_shares_active"), 0);
  ASSERT_EQ(entries().size(), 2u);
  EXPECT_EQ(entries()[0].type, audit::EntryType::kPolicyExpired);
  EXPECT_THAT(entries()[0].reason, HasSubstr("started"));
  EXPECT_THAT(entries()[1].reason, HasSubstr("stopped: expired"));
  EXPECT_EQ(entries()[1].dataset, "noise");
  EXPECT_EQ(entries()[1].peer, "tallinn");
  EXPECT_THAT(m->StatusJson(absl::FromUnixSeconds(1893456000 + 31 * 86400)),
              HasSubstr("\"state\":\"expired\""));
}

TEST_F(PolicyManagerTest, AStartWithABadDirectoryFailsAndIsAudited) {
  Write("noise.yaml", "dataset: noise\nshares:\n  - peer: [\n");
  PolicyManager::Options options;
  options.dir = dir_.string();
  options.peers = {"tallinn"};
  auto m = PolicyManager::Load(options, &metrics_, &audit_);
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(), HasSubstr("noise.yaml:"));
  ASSERT_EQ(entries().size(), 1u);
  EXPECT_EQ(entries()[0].type, audit::EntryType::kPolicyRejected);
}

}  // namespace
}  // namespace uop::broker
