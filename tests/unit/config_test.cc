// Node config parsing: accepted shapes and exact error positions.
#include "broker/config.h"
#include "broker/export/export_service.h"

#include <filesystem>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace uop::broker {
namespace {

using ::testing::HasSubstr;

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("uop-config-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_ / "pki");
    std::filesystem::create_directories(dir_ / "policies");
    for (const char* f : {"pki/node.pem", "pki/node.key", "pki/tallinn-ca.pem"}) {
      std::ofstream(dir_ / f) << "x";
    }
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  absl::StatusOr<NodeConfig> Parse(const std::string& yaml) {
    return ParseNodeConfig(yaml, (dir_ / "node.yaml").string());
  }

  std::filesystem::path dir_;
};

constexpr char kValid[] = R"(node: helsinki
listen: 0.0.0.0:7443
admin: 127.0.0.1:9464
tls: {cert: pki/node.pem, key: pki/node.key}
peers:
  - name: tallinn
    address: 127.0.0.1:7444
    ca: pki/tallinn-ca.pem
    identity: uopd.tallinn.example
kafka:
  embedded: {topics: {noise.observations: 3}}
  properties: {linger.ms: "5"}
policies: policies/
link: {heartbeat_interval_ms: 500, dead_peer_timeout_ms: 3000}
)";

TEST_F(ConfigTest, ParsesAFullConfigAndResolvesPathsAgainstTheFile) {
  auto config = Parse(kValid);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->node, "helsinki");
  EXPECT_EQ(config->listen, "0.0.0.0:7443");
  EXPECT_EQ(config->tls.cert_file, (dir_ / "pki/node.pem").string());
  ASSERT_EQ(config->peers.size(), 1u);
  EXPECT_EQ(config->peers[0].name, "tallinn");
  EXPECT_EQ(config->peers[0].identity, "uopd.tallinn.example");
  EXPECT_EQ(config->peers[0].ca_file, (dir_ / "pki/tallinn-ca.pem").string());
  ASSERT_TRUE(config->kafka.embedded.has_value());
  EXPECT_EQ(config->kafka.embedded->topics.at("noise.observations"), 3);
  EXPECT_EQ(config->kafka.properties.at("linger.ms"), "5");
  EXPECT_EQ(config->link.heartbeat_interval, std::chrono::milliseconds(500));
  EXPECT_EQ(config->link.dead_peer_timeout, std::chrono::milliseconds(3000));
  EXPECT_EQ(config->policies_dir, (dir_ / "policies").string());
  EXPECT_NE(config->FindPeer("tallinn"), nullptr);
  EXPECT_EQ(config->FindPeer("riga"), nullptr);
}

TEST_F(ConfigTest, ReadAheadDefaultsTo32MiBAndIsBoundedByLibrdkafkasRange) {
  auto config = Parse(kValid);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->link.read_ahead_bytes, int64_t{32} << 20);

  std::string yaml = kValid;
  yaml.replace(yaml.find("link: {"), 7, "link: {read_ahead_bytes: 8388608, ");
  config = Parse(yaml);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->link.read_ahead_bytes, 8388608);

  yaml = kValid;
  yaml.replace(yaml.find("link: {"), 7, "link: {read_ahead_bytes: 4096, ");
  config = Parse(yaml);
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(), HasSubstr("node.yaml:14:"));
  EXPECT_THAT(config.status().message(), HasSubstr("read_ahead_bytes"));
}

TEST_F(ConfigTest, ReceiveBufferDefaultsTo64MiBAndIsAtLeastOneMiB) {
  auto config = Parse(kValid);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->link.receive_buffer_bytes, int64_t{64} << 20);

  std::string yaml = kValid;
  yaml.replace(yaml.find("link: {"), 7, "link: {receive_buffer_bytes: 536870912, ");
  config = Parse(yaml);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->link.receive_buffer_bytes, 536870912);

  yaml = kValid;
  yaml.replace(yaml.find("link: {"), 7, "link: {receive_buffer_bytes: 65536, ");
  config = Parse(yaml);
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(), HasSubstr("node.yaml:14:"));
  EXPECT_THAT(config.status().message(), HasSubstr("receive_buffer_bytes"));
}

TEST(StreamReadAheadTest, CutToTheSharesOfTheExportBufferWithinOneAndReadAheadMiB) {
  LinkTuning link;  // read_ahead_bytes 32 MiB, export_buffer_bytes 128 MiB
  EXPECT_EQ(StreamReadAhead(link, 0), int64_t{32} << 20);
  EXPECT_EQ(StreamReadAhead(link, 1), int64_t{32} << 20);
  EXPECT_EQ(StreamReadAhead(link, 4), int64_t{32} << 20);
  EXPECT_EQ(StreamReadAhead(link, 8), int64_t{16} << 20);
  EXPECT_EQ(StreamReadAhead(link, 100), (int64_t{128} << 20) / 100);
  EXPECT_EQ(StreamReadAhead(link, 1000), int64_t{1} << 20);
}

TEST_F(ConfigTest, UnknownKeyNamesFileLineColumnAndKey) {
  std::string yaml = kValid;
  yaml.replace(yaml.find("admin:"), 6, "admn:");
  auto config = Parse(yaml);
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(),
              HasSubstr((dir_ / "node.yaml").string() + ":3:1: key 'admn': unknown key"));
}

TEST_F(ConfigTest, BadListenAddressIsReportedAtItsValue) {
  std::string yaml = kValid;
  yaml.replace(yaml.find("0.0.0.0:7443"), 12, "nowhere");
  auto config = Parse(yaml);
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(),
              HasSubstr("node.yaml:2:9: key 'listen': expected host:port, got 'nowhere'"));
}

TEST_F(ConfigTest, MissingCaFileIsReportedWithThePeerIndex) {
  std::string yaml = kValid;
  yaml.replace(yaml.find("pki/tallinn-ca.pem"), 18, "pki/missing.pem");
  auto config = Parse(yaml);
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(),
              HasSubstr("node.yaml:8:9: key 'peers[0].ca': file not found"));
}

TEST_F(ConfigTest, MissingRequiredKey) {
  std::string yaml = kValid;
  yaml.erase(yaml.find("listen:"), std::string("listen: 0.0.0.0:7443\n").size());
  auto config = Parse(yaml);
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(), HasSubstr("key 'listen': missing (required)"));
}

TEST_F(ConfigTest, KafkaNeedsExactlyOneOfEmbeddedAndBootstrap) {
  std::string yaml = kValid;
  yaml.replace(yaml.find("  properties"), 0, "  bootstrap: kafka:9092\n");
  auto config = Parse(yaml);
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(),
              HasSubstr("key 'kafka': set exactly one of 'embedded' and 'bootstrap'"));
}

TEST_F(ConfigTest, NodeNameMustBeUsableAsTopicPrefix) {
  std::string yaml = kValid;
  yaml.replace(0, std::string("node: helsinki").size(), "node: Hel.sinki");
  auto config = Parse(yaml);
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(), HasSubstr("node.yaml:1:7: key 'node'"));
}

TEST_F(ConfigTest, DuplicatePeerIsRefused) {
  std::string yaml = kValid;
  const std::string peer = "  - name: tallinn\n    ca: pki/tallinn-ca.pem\n    identity: other\n";
  yaml.insert(yaml.find("kafka:"), peer);
  auto config = Parse(yaml);
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(),
              HasSubstr("node.yaml:10:11: key 'peers[1].name': duplicate peer 'tallinn'"));
}

TEST_F(ConfigTest, YamlSyntaxErrorHasAPosition) {
  auto config = Parse("node: helsinki\nlisten: [unclosed\n");
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(), HasSubstr("node.yaml:3:"));
}

TEST_F(ConfigTest, LinkTimeoutMustExceedHeartbeat) {
  std::string yaml = kValid;
  yaml.replace(yaml.find("dead_peer_timeout_ms: 3000"), 26, "dead_peer_timeout_ms: 400");
  auto config = Parse(yaml);
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(), HasSubstr("link.dead_peer_timeout_ms"));
}

TEST_F(ConfigTest, InstanceNamesThisNodeAmongTheCitysNodes) {
  std::string yaml = kValid;
  // Default: host name and listen port.
  auto config = Parse(yaml);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_THAT(config->instance, ::testing::EndsWith("-7443"));
  // Port 0 says nothing about the node: the config file's path tells two nodes apart and stays
  // the same across restarts.
  yaml.replace(yaml.find("0.0.0.0:7443"), 12, "127.0.0.1:0");
  auto a = ParseNodeConfig(yaml, (dir_ / "node-a.yaml").string());
  auto a_again = ParseNodeConfig(yaml, (dir_ / "node-a.yaml").string());
  auto b = ParseNodeConfig(yaml, (dir_ / "node-b.yaml").string());
  ASSERT_TRUE(a.ok() && a_again.ok() && b.ok());
  EXPECT_EQ(a->instance, a_again->instance);
  EXPECT_NE(a->instance, b->instance);
  EXPECT_THAT(a->instance, ::testing::HasSubstr("-0-"));
  // Set explicitly: used as is, validated.
  std::string set = kValid;
  set.insert(set.find("listen:"), "instance: hel-a.1\n");
  config = Parse(set);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->instance, "hel-a.1");
  std::string bad = kValid;
  bad.insert(bad.find("listen:"), "instance: \"a b\"\n");
  config = Parse(bad);
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(), HasSubstr("node.yaml:2:11: key 'instance'"));
}

TEST(NodeNameTest, Rules) {
  EXPECT_TRUE(IsValidNodeName("helsinki"));
  EXPECT_TRUE(IsValidNodeName("tallinn-2"));
  EXPECT_FALSE(IsValidNodeName(""));
  EXPECT_FALSE(IsValidNodeName("-x"));
  EXPECT_FALSE(IsValidNodeName("a.b"));
  EXPECT_FALSE(IsValidNodeName("Helsinki"));
  EXPECT_FALSE(IsValidNodeName(std::string(64, 'a')));
}

}  // namespace
}  // namespace uop::broker
