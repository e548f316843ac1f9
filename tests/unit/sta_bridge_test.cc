// The bridge's logic without sockets: MQTT topics, batches acknowledged only after delivery,
// dead letters, and config errors with positions.
#include <gtest/gtest.h>

#include <deque>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "connectors/bridge/bridge_config.h"
#include "connectors/bridge/mqtt_batch.h"
#include "connectors/sta/errors.h"

namespace uop::sta_bridge {
namespace {

const std::string kCatalogue =
    std::string(UOP_SOURCE_DIR) + "/tests/unit/testdata/sta_catalogue.json";

// Holds every record until the test reports it: Kafka that answers when told to.
class FakeSink final : public RecordSink {
 public:
  absl::Status Send(const OutRecord& record, Done done) override {
    absl::MutexLock l(&mu_);
    if (full_) return absl::ResourceExhaustedError("full");
    pending_.push_back({record, std::move(done)});
    return absl::OkStatus();
  }
  int InFlight() const override {
    absl::MutexLock l(&mu_);
    return static_cast<int>(pending_.size());
  }
  // Reports the oldest pending record with `status`; returns its record.
  OutRecord Report(absl::Status status) {
    std::pair<OutRecord, Done> p;
    {
      absl::MutexLock l(&mu_);
      p = std::move(pending_.front());
      pending_.pop_front();
    }
    p.second(status);
    return p.first;
  }

 private:
  mutable absl::Mutex mu_;
  std::deque<std::pair<OutRecord, Done>> pending_ ABSL_GUARDED_BY(mu_);
  bool full_ = false;
};

class MqttBatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = sta::EntityCatalogue::LoadFile(kCatalogue);
    ASSERT_TRUE(c.ok()) << c.status();
    ingestor_ =
        std::make_unique<Ingestor>(std::make_shared<const sta::EntityCatalogue>(std::move(*c)),
                                   IngestOptions{"obs", "obs.dlq", "http://b/v1.1"}, &metrics_);
  }
  BridgeMetrics metrics_;
  std::unique_ptr<Ingestor> ingestor_;
  FakeSink sink_;
};

TEST(ObservationTopicTest, Forms) {
  auto t = ParseObservationTopic("v1.1/Datastreams(42)/Observations");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ((*t)->text, "42");
  EXPECT_TRUE((*t)->numeric);
  t = ParseObservationTopic("v1.1/Datastreams('it''s')/Observations");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ((*t)->text, "it's");
  t = ParseObservationTopic("v1.1/Observations");
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->has_value());
  t = ParseObservationTopic("v1.1/Things(1)/Observations");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().message(),
            "topic: 'v1.1/Things(1)/Observations' is not an Observations topic (v1.1/Observations "
            "or v1.1/Datastreams(ID)/Observations)");
  EXPECT_EQ(sta::ErrorReason(t.status()), "bad_topic");
  t = ParseObservationTopic("v1.1/Datastreams(4x)/Observations");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().message(),
            "topic: 'v1.1/Datastreams(4x)/Observations': a Datastream id is a number or a quoted "
            "string");
  EXPECT_FALSE(ParseObservationTopic("v2/Observations").ok());
}

TEST_F(MqttBatchTest, CompleteOnlyAfterEveryDeliveryAndResponsesThen) {
  MqttBatch batch(ingestor_.get(), &sink_);
  batch.Add({"v1.1/Datastreams(42)/Observations",
             R"({"phenomenonTime":"2026-12-02T12:00:00Z","result":60})", "resp/a", "c1"});
  batch.Add({"v1.1/Observations", R"({"phenomenonTime":"2026-12-02T12:00:00Z","result":1})",
             "resp/b", "c2"});
  batch.Add({"v1.1/Observations", "not json", "", ""});
  EXPECT_EQ(sink_.InFlight(), 3);
  EXPECT_FALSE(batch.WaitComplete(absl::Now()));
  OutRecord good = sink_.Report(absl::OkStatus());
  EXPECT_EQ(good.topic, "obs");
  EXPECT_EQ(good.key, "42");
  OutRecord dead1 = sink_.Report(absl::OkStatus());
  EXPECT_EQ(dead1.topic, "obs.dlq");
  EXPECT_EQ(dead1.key, "v1.1/Observations");
  EXPECT_EQ(dead1.value, R"({"phenomenonTime":"2026-12-02T12:00:00Z","result":1})");
  const std::vector<std::pair<std::string, std::string>> want_headers = {
      {"uop.deadletter.reason", "missing_field"},
      {"uop.deadletter.field", "Datastream"},
      {"uop.deadletter.message",
       "Datastream: missing (POST to Datastreams(ID)/Observations or link a Datastream)"},
      {"uop.deadletter.source", "v1.1/Observations"}};
  EXPECT_EQ(dead1.headers, want_headers);
  EXPECT_FALSE(batch.WaitComplete(absl::Now()));
  sink_.Report(absl::OkStatus());
  EXPECT_TRUE(batch.WaitComplete(absl::Now()));
  std::vector<MqttResponse> responses = batch.TakeResponses();
  ASSERT_EQ(responses.size(), 2u);
  EXPECT_EQ(responses[0].topic, "resp/a");
  EXPECT_EQ(responses[0].correlation_data, "c1");
  // The response carries the selfLink of the record Kafka took (its header says which).
  ASSERT_EQ(good.headers.size(), 3u);
  EXPECT_EQ(good.headers[2].first, "sensorthings.selfLink");
  EXPECT_TRUE(absl::StartsWith(good.headers[2].second, "http://b/v1.1/Observations('"));
  EXPECT_EQ(responses[0].payload,
            absl::StrCat(R"j({"@iot.selfLink":")j", good.headers[2].second, R"j("})j"));
  EXPECT_EQ(responses[1].topic, "resp/b");
  EXPECT_EQ(
      responses[1].payload,
      R"j({"code":400,"type":"error","message":"Datastream: missing (POST to Datastreams(ID)/Observations or link a Datastream)","field":"Datastream","reason":"missing_field"})j");
  EXPECT_EQ(metrics_.accepted("mqtt"), 1);
  EXPECT_EQ(metrics_.rejected("mqtt", "missing_field"), 1);
  EXPECT_EQ(metrics_.rejected("mqtt", "malformed_json"), 1);
}

TEST_F(MqttBatchTest, FailedDeliveryIsSentAgainNotAcknowledged) {
  MqttBatch batch(ingestor_.get(), &sink_);
  batch.Add({"v1.1/Datastreams(42)/Observations",
             R"({"phenomenonTime":"2026-12-02T12:00:00Z","result":60})", "", ""});
  OutRecord first = sink_.Report(absl::UnavailableError("kafka: Local: Message timed out"));
  EXPECT_FALSE(batch.WaitComplete(absl::Now() + absl::Milliseconds(50)));
  EXPECT_EQ(sink_.InFlight(), 1);  // re-sent
  OutRecord second = sink_.Report(absl::OkStatus());
  EXPECT_EQ(first.value, second.value);
  EXPECT_TRUE(batch.WaitComplete(absl::Now()));
}

class BridgeConfigTest : public ::testing::Test {
 protected:
  std::string Error(const std::string& yaml) {
    auto c = ParseBridgeConfig(yaml, "bridge.yaml");
    EXPECT_FALSE(c.ok());
    return c.ok() ? "" : std::string(c.status().message());
  }
};

TEST_F(BridgeConfigTest, Complete) {
  auto c = ParseBridgeConfig(R"(node: helsinki-sta
kafka:
  bootstrap: embedded
  topic: noise.observations
  partitions: 3
  properties: {linger.ms: "5"}
catalogue:
  file: catalogue.json
mqtt:
  broker: 127.0.0.1:1883
  topics: [v1.1/+/Observations]
http:
  listen: 0.0.0.0:0
  threads: 4
)",
                             "/etc/uop/bridge.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->kafka.cluster.embedded.has_value());
  EXPECT_EQ(c->kafka.cluster.bootstrap, "");
  EXPECT_EQ(c->kafka.cluster.embedded->topics.at("noise.observations"), 3);
  EXPECT_EQ(c->kafka.cluster.embedded->topics.at("noise.observations.deadletter"), 3);
  EXPECT_EQ(c->kafka.cluster.properties.at("linger.ms"), "5");
  EXPECT_EQ(c->catalogue_file, "/etc/uop/catalogue.json");
  EXPECT_EQ(c->mqtt->client_id, "helsinki-sta");
  EXPECT_EQ(c->mqtt->topics, std::vector<std::string>{"v1.1/+/Observations"});
  EXPECT_EQ(c->http->threads, 4);
  EXPECT_EQ(c->http->port, 0);
}

TEST_F(BridgeConfigTest, ErrorsHavePositions) {
  EXPECT_EQ(Error("kafka:\n  bootstrap: embedded\n  topik: x\n"),
            "bridge.yaml:3:3: key 'kafka.topik': unknown key; expected one of: bootstrap, "
            "dead_letter_topic, embedded_brokers, max_in_flight, partitions, properties, topic");
  EXPECT_EQ(Error("kafka:\n  bootstrap: embedded\ncatalogue:\n  file: c.json\nhttp:\n  listen: "
                  "localhost\n"),
            "bridge.yaml:6:11: key 'http.listen': expected host:port (port 0 = any free port)");
  EXPECT_EQ(Error("kafka:\n  bootstrap: embedded\ncatalogue:\n  file: c.json\n  url: http://x\n"
                  "http:\n  listen: a:1\n"),
            "bridge.yaml:4:3: key 'catalogue': give exactly one of file and url");
  EXPECT_EQ(Error("kafka:\n  bootstrap: embedded\ncatalogue:\n  file: c.json\nmqtt:\n  broker: "
                  "h:1\n  keepalive_s: 2\n"),
            "bridge.yaml:7:16: key 'mqtt.keepalive_s': must be between 5 and 65535");
  EXPECT_EQ(Error("kafka: [1\n"), "bridge.yaml:2:1: end of sequence flow not found");
}

}  // namespace
}  // namespace uop::sta_bridge
