// Catalogue loading and record enrichment: exact records, exact rejections.
#include "connectors/sta/record.h"

#include <gtest/gtest.h>

#include "connectors/sta/catalogue.h"
#include "connectors/sta/errors.h"

namespace uop::sta {
namespace {

const std::string kCatalogue =
    std::string(UOP_SOURCE_DIR) + "/tests/unit/testdata/sta_catalogue.json";

class RecordTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = EntityCatalogue::LoadFile(kCatalogue);
    ASSERT_TRUE(c.ok()) << c.status();
    catalogue_ = std::move(*c);
  }
  absl::StatusOr<Record> Build(absl::string_view json) {
    auto obs = parser_.Parse(json, std::nullopt);
    if (!obs.ok()) return obs.status();
    absl::Time at;
    std::string err;
    EXPECT_TRUE(absl::ParseTime(absl::RFC3339_full, "2026-12-02T12:00:02.5Z", &at, &err));
    return BuildRecord(*obs, catalogue_, {"http://bridge:8080/v1.1", "http", at});
  }
  void ExpectError(absl::string_view json, absl::string_view message, absl::string_view field,
                   absl::string_view reason) {
    auto r = Build(json);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().message(), message);
    EXPECT_EQ(ErrorField(r.status()), field);
    EXPECT_EQ(ErrorReason(r.status()), reason);
  }
  ObservationParser parser_;
  EntityCatalogue catalogue_;
};

TEST_F(RecordTest, CatalogueContents) {
  EXPECT_EQ(catalogue_.datastream_count(), 4u);
  EXPECT_EQ(catalogue_.feature_count(), 1u);
  const DatastreamInfo* ds = catalogue_.FindDatastream(EntityId{"42", true});
  ASSERT_NE(ds, nullptr);
  EXPECT_EQ(ds->unit_symbol, "dB(A)");
  EXPECT_EQ(ds->thing_name, "Mannerheimintie noise sensor");
  EXPECT_EQ(ds->location_geojson, R"j({"type":"Point","coordinates":[24.9402,60.1689]})j");
  EXPECT_EQ(
      ds->observed_property_json,
      R"j({"@iot.id":7,"name":"LAeq","definition":"https://www.iso.org/standard/45103.html"})j");
  // Lookups compare id text: 42 in a topic and "42" in a body name the same Datastream.
  EXPECT_EQ(catalogue_.FindDatastream(EntityId{"42", false}), ds);
  EXPECT_EQ(catalogue_.FindDatastream(EntityId{"43", true}), nullptr);
}

TEST_F(RecordTest, EnrichedWithThingLocation) {
  auto r = Build(R"j({"@iot.id":1001,"phenomenonTime":"2026-12-02T14:00:00+02:00",
                     "resultTime":"2026-12-02T12:00:01Z","result":61.4,
                     "Datastream":{"@iot.id":42}})j");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->key, "42");
  EXPECT_EQ(r->id, "1001");
  EXPECT_EQ(r->self_link, "http://bridge:8080/v1.1/Observations(1001)");
  EXPECT_EQ(
      r->value,
      R"j({"@iot.id":1001,"@iot.selfLink":"http://bridge:8080/v1.1/Observations(1001)",)j"
      R"j("phenomenonTime":"2026-12-02T12:00:00Z","resultTime":"2026-12-02T12:00:01Z",)j"
      R"j("result":61.4,"Datastream":{"@iot.id":42,"name":"LAeq 1 min",)j"
      R"j("unitOfMeasurement":{"name":"decibel (A-weighted)","symbol":"dB(A)",)j"
      R"j("definition":"http://qudt.org/vocab/unit/DeciB_A"},)j"
      R"j("observationType":"http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement",)j"
      R"j("ObservedProperty":{"@iot.id":7,"name":"LAeq","definition":"https://www.iso.org/standard/45103.html"},)j"
      R"j("Sensor":{"@iot.id":3,"name":"Class 1 sound level meter","encodingType":"text/html","metadata":"https://example.org/slm"},)j"
      R"j("Thing":{"@iot.id":1,"name":"Mannerheimintie noise sensor",)j"
      R"j("properties":{"city":"helsinki","site":"mannerheimintie"}}},)j"
      R"j("FeatureOfInterest":{"name":"Mannerheimintie 5","encodingType":"application/geo+json",)j"
      R"j("feature":{"type":"Point","coordinates":[24.9402,60.1689]}},)j"
      R"j("uop":{"via":"http","ingestedAt":"2026-12-02T12:00:02.5Z","locationSource":"Thing.Location"}})j");
}

TEST_F(RecordTest, FeatureOfInterestByIdWinsOverThingLocation) {
  auto r = Build(R"j({"phenomenonTime":"2026-12-02T12:00:00Z","result":70,
                     "Datastream":{"@iot.id":42},"FeatureOfInterest":{"@iot.id":9}})j");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_NE(r->value.find(R"j("FeatureOfInterest":{"@iot.id":9,"name":"Länsisatama terminal 2",)j"
                          R"j("encodingType":"application/geo+json","feature":{"type":"Point",)j"
                          R"j("coordinates":[24.9157,60.1527]}})j"),
            std::string::npos)
      << r->value;
  EXPECT_NE(r->value.find(R"j("locationSource":"FeatureOfInterest")j"), std::string::npos);
}

TEST_F(RecordTest, ContentIdIsStableAndDistinguishesObservations) {
  const std::string a =
      R"j({"phenomenonTime":"2026-12-02T12:00:00Z","result":70,"Datastream":{"@iot.id":42}})j";
  const std::string b =
      R"j({"phenomenonTime":"2026-12-02T12:01:00Z","result":70,"Datastream":{"@iot.id":42}})j";
  auto ra = Build(a), ra2 = Build(a), rb = Build(b);
  ASSERT_TRUE(ra.ok() && ra2.ok() && rb.ok());
  EXPECT_EQ(ra->id, ra2->id);
  EXPECT_NE(ra->id, rb->id);
  EXPECT_EQ(ra->id.size(), 16u);
  EXPECT_EQ(ra->self_link, "http://bridge:8080/v1.1/Observations('" + ra->id + "')");
}

TEST_F(RecordTest, UnknownDatastream) {
  ExpectError(
      R"j({"phenomenonTime":"2026-12-02T12:00:00Z","result":1,"Datastream":{"@iot.id":43}})j",
      "Datastream.@iot.id: no Datastream with @iot.id 43", "Datastream.@iot.id",
      "unknown_datastream");
}

TEST_F(RecordTest, ResultTypeAgainstObservationType) {
  ExpectError(
      R"j({"phenomenonTime":"2026-12-02T12:00:00Z","result":"loud","Datastream":{"@iot.id":42}})j",
      "result: Datastream 42 is an OM_Measurement: expected a number, got string", "result",
      "result_type");
  ExpectError(
      R"j({"phenomenonTime":"2026-12-02T12:00:00Z","result":1,"Datastream":{"@iot.id":"door-open"}})j",
      "result: Datastream door-open is an OM_TruthObservation: expected a boolean, got integer",
      "result", "result_type");
  // OM_Observation admits any result.
  EXPECT_TRUE(
      Build(
          R"j({"phenomenonTime":"2026-12-02T12:00:00Z","result":[1,2],"Datastream":{"@iot.id":44}})j")
          .ok());
}

TEST_F(RecordTest, UnitMismatch) {
  ExpectError(R"j({"phenomenonTime":"2026-12-02T12:00:00Z","result":1,"Datastream":{"@iot.id":42},
                  "parameters":{"unitOfMeasurement":{"symbol":"dB(C)"}}})j",
              "parameters.unitOfMeasurement: 'dB(C)' differs from Datastream 42's unit 'dB(A)'",
              "parameters.unitOfMeasurement", "unit_mismatch");
}

TEST_F(RecordTest, UnknownFeatureOfInterest) {
  ExpectError(R"j({"phenomenonTime":"2026-12-02T12:00:00Z","result":1,"Datastream":{"@iot.id":42},
                  "FeatureOfInterest":{"@iot.id":10}})j",
              "FeatureOfInterest.@iot.id: no FeatureOfInterest with @iot.id 10",
              "FeatureOfInterest.@iot.id", "unknown_feature_of_interest");
}

TEST_F(RecordTest, NoLocationAnywhere) {
  ExpectError(
      R"j({"phenomenonTime":"2026-12-02T12:00:00Z","result":1,"Datastream":{"@iot.id":50}})j",
      "FeatureOfInterest: missing, and Thing 2 of Datastream 50 has no Location to "
      "generate it from",
      "FeatureOfInterest", "missing_field");
}

TEST(CatalogueTest, ErrorsNameThePath) {
  auto c = EntityCatalogue::FromJson(
      R"j({"Things":[{"@iot.id":1,"Datastreams":[{"@iot.id":2,"name":"x"}]}]})j", "cat.json");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(),
            "cat.json: Things[0].Datastreams[0].unitOfMeasurement: missing or not an object");
  c = EntityCatalogue::FromJson(
      R"j({"Things":[{"@iot.id":1,"Locations":[{"location":{"type":"Point","coordinates":[1]}}]}]})j",
      "cat.json");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(),
            "cat.json: Things[0].Locations[0].location.coordinates: a position has 2 or 3 numbers");
  c = EntityCatalogue::FromJson(R"j({"things":[]})j", "cat.json");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(), "cat.json: Things: missing or not an array");
}

}  // namespace
}  // namespace uop::sta
