// FetchCatalogue against an in-process HTTP server that pages like FROST-Server.
#include <httplib.h>

#include <thread>

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "connectors/sta/catalogue.h"

namespace uop::sta {
namespace {

class FakeStaServer {
 public:
  FakeStaServer() {
    port_ = server_.bind_to_any_port("127.0.0.1");
    const std::string base = absl::StrCat("http://127.0.0.1:", port_, "/FROST-Server/v1.1");
    server_.Get("/FROST-Server/v1.1/Things", [this, base](const httplib::Request& req,
                                                          httplib::Response& res) {
      ++requests_;
      if (req.has_param("$skip")) {
        res.set_content(
            R"j({"value":[{"@iot.id":2,"name":"Tallinn harbour","Locations":[)j"
            R"j({"location":{"type":"Point","coordinates":[24.7720,59.4440]}}],)j"
            R"j("Datastreams":[{"@iot.id":"t-1","unitOfMeasurement":{"symbol":"dB(A)"}}]}]})j",
            "application/json");
        return;
      }
      first_expand_ = req.get_param_value("$expand");
      res.set_content(absl::StrCat(R"j({"@iot.count":2,"@iot.nextLink":")j", base,
                                   R"j(/Things?$skip=1","value":[{"@iot.id":1,"name":"A",)j"
                                   R"j("Datastreams":[{"@iot.id":42,"unitOfMeasurement":{}}]}]})j"),
                      "application/json");
    });
    server_.Get("/FROST-Server/v1.1/FeaturesOfInterest",
                [](const httplib::Request&, httplib::Response& res) {
                  res.set_content(R"j({"value":[{"@iot.id":9,"name":"f","feature":)j"
                                  R"j({"type":"Point","coordinates":[24.9,60.1]}}]})j",
                                  "application/json");
                });
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    // cpp-httplib 0.11 has no wait_until_ready: poll the condition against a deadline.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!server_.is_running() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::yield();
    }
  }
  ~FakeStaServer() {
    server_.stop();
    thread_.join();
  }
  std::string base() const {
    return absl::StrCat("http://127.0.0.1:", port_, "/FROST-Server/v1.1");
  }
  int requests() const { return requests_; }
  std::string first_expand() const { return first_expand_; }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::atomic<int> requests_{0};
  std::string first_expand_;
  std::thread thread_;
};

TEST(CatalogueFetchTest, FollowsNextLinksAndExpands) {
  FakeStaServer server;
  auto c = FetchCatalogue(server.base() + "/", 5000);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(server.requests(), 2);
  EXPECT_EQ(server.first_expand(), "Locations,Datastreams($expand=ObservedProperty,Sensor)");
  EXPECT_EQ(c->datastream_count(), 2u);
  EXPECT_EQ(c->feature_count(), 1u);
  const DatastreamInfo* t1 = c->FindDatastream(EntityId{"t-1", false});
  ASSERT_NE(t1, nullptr);
  EXPECT_EQ(t1->thing_name, "Tallinn harbour");
  EXPECT_EQ(t1->location_geojson, R"j({"type":"Point","coordinates":[24.772,59.444]})j");
}

TEST(CatalogueFetchTest, UnreachableServer) {
  httplib::Server s;
  const int port = s.bind_to_any_port("127.0.0.1");  // bound, never listening: refused
  s.stop();
  auto c = FetchCatalogue(absl::StrCat("http://127.0.0.1:", port, "/v1.1"), 2000);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StartsWith(
      c.status().message(), absl::StrCat("GET http://127.0.0.1:", port, "/v1.1/Things?$expand=")))
      << c.status().message();
}

TEST(CatalogueFetchTest, OnlyPlainHttp) {
  auto c = FetchCatalogue("https://example.org/v1.1", 1000);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(
      c.status().message(),
      "catalogue url 'https://example.org/v1.1/Things?$expand=Locations,Datastreams(%24expand%3D"
      "ObservedProperty,Sensor)': only http:// is supported");
}

}  // namespace
}  // namespace uop::sta
