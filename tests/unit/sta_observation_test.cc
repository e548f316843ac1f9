// Observation parsing: FROST-Server-style payloads are accepted; malformed ones get exact errors.
#include "connectors/sta/observation.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "connectors/sta/errors.h"

namespace uop::sta {
namespace {

class ObservationTest : public ::testing::Test {
 protected:
  absl::StatusOr<Observation> Parse(absl::string_view json,
                                    std::optional<EntityId> path = std::nullopt) {
    return parser_.Parse(json, path);
  }
  // The exact message, field and reason of a rejection.
  void ExpectError(absl::string_view json, absl::string_view message, absl::string_view field,
                   absl::string_view reason, std::optional<EntityId> path = std::nullopt) {
    auto r = Parse(json, path);
    ASSERT_FALSE(r.ok()) << json;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(r.status().message(), message);
    EXPECT_EQ(ErrorField(r.status()), field);
    EXPECT_EQ(ErrorReason(r.status()), reason);
  }
  ObservationParser parser_;
};

// What FROST-Server returns for GET Observations(1), posted back as is.
TEST_F(ObservationTest, AcceptsFrostServerEntityWithAnnotations) {
  auto r = Parse(R"j({
    "@iot.selfLink": "http://localhost:8080/FROST-Server/v1.1/Observations(1)",
    "@iot.id": 1,
    "phenomenonTime": "2026-12-02T14:00:00.000+02:00",
    "resultTime": "2026-12-02T12:00:01Z",
    "result": 61.4,
    "Datastream@iot.navigationLink": "http://localhost:8080/FROST-Server/v1.1/Observations(1)/Datastream",
    "FeatureOfInterest@iot.navigationLink": "http://localhost:8080/FROST-Server/v1.1/Observations(1)/FeatureOfInterest",
    "Datastream": {"@iot.id": 42}
  })j");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->id.has_value());
  EXPECT_EQ(r->id->text, "1");
  EXPECT_TRUE(r->id->numeric);
  EXPECT_EQ(r->datastream->text, "42");
  EXPECT_EQ(r->phenomenon_time.ToString(), "2026-12-02T12:00:00Z");
  EXPECT_FALSE(r->phenomenon_time.interval);
  EXPECT_EQ(r->result_time->ToString(), "2026-12-02T12:00:01Z");
  EXPECT_EQ(r->result, "61.4");
  EXPECT_EQ(r->result_kind, JsonKind::kNumber);
}

TEST_F(ObservationTest, ResultOfEveryJsonType) {
  struct Case {
    std::string result;
    std::string minified;
    JsonKind kind;
  };
  for (const Case& c :
       std::vector<Case>{{"17", "17", JsonKind::kInteger},
                         {"-3.25e1", "-32.5", JsonKind::kNumber},
                         {R"j("quiet")j", R"j("quiet")j", JsonKind::kString},
                         {"true", "true", JsonKind::kBoolean},
                         {R"j({ "LAeq": 61.2, "LAmax": 75 })j", R"j({"LAeq":61.2,"LAmax":75})j",
                          JsonKind::kObject},
                         {"[ 50.1, 52.3, null ]", "[50.1,52.3,null]", JsonKind::kArray}}) {
    auto r = Parse(R"j({"phenomenonTime":"2026-12-02T12:00:00Z","result":)j" + c.result +
                   R"j(,"Datastream":{"@iot.id":42}})j");
    ASSERT_TRUE(r.ok()) << c.result << ": " << r.status();
    EXPECT_EQ(r->result, c.minified);
    EXPECT_EQ(r->result_kind, c.kind) << c.result;
  }
}

TEST_F(ObservationTest, IntervalPhenomenonTimeValidTimeParametersAndInlineFeature) {
  auto r = Parse(R"j({
    "phenomenonTime": "2026-12-02T12:00:00Z/2026-12-02T12:15:00.5Z",
    "validTime": "2026-12-02T12:00:00Z/2026-12-03T12:00:00Z",
    "resultTime": null,
    "result": 58,
    "resultQuality": {"uncertainty": 1.5},
    "parameters": {"windSpeed": 3.2, "unitOfMeasurement": {"symbol": "dB(A)"}},
    "FeatureOfInterest": {"name": "Kauppatori", "encodingType": "application/geo+json",
                          "feature": {"type": "Point", "coordinates": [24.9525, 60.1675]}}
  })j",
                 EntityId{"42", true});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->phenomenon_time.interval);
  EXPECT_EQ(r->phenomenon_time.ToString(), "2026-12-02T12:00:00Z/2026-12-02T12:15:00.5Z");
  EXPECT_EQ(r->valid_time->ToString(), "2026-12-02T12:00:00Z/2026-12-03T12:00:00Z");
  EXPECT_FALSE(r->result_time.has_value());
  EXPECT_EQ(r->result_quality, R"j({"uncertainty":1.5})j");
  EXPECT_EQ(r->parameters, R"j({"windSpeed":3.2,"unitOfMeasurement":{"symbol":"dB(A)"}})j");
  EXPECT_EQ(r->unit_symbol, "dB(A)");
  EXPECT_EQ(r->feature_of_interest_name, "Kauppatori");
  EXPECT_EQ(r->feature_of_interest_feature,
            R"j({"type":"Point","coordinates":[24.9525,60.1675]})j");
  EXPECT_EQ(r->datastream->text, "42");
}

TEST_F(ObservationTest, DatastreamFromPathAndStringIds) {
  auto r = Parse(R"j({"phenomenonTime":"2026-12-02T12:00:00Z","result":1,
                     "Datastream":{"@iot.id":"ds-1"},"FeatureOfInterest":{"@iot.id":"foi-9"}})j",
                 EntityId{"ds-1", false});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->datastream->Json(), R"j("ds-1")j");
  EXPECT_EQ(r->feature_of_interest_id->text, "foi-9");
}

TEST_F(ObservationTest, MalformedJson) {
  ExpectError(R"j({"result": 1,)j",
              "body is not valid JSON: The JSON document has an improper structure: missing or "
              "superfluous commas, braces, missing keys, etc.",
              "", "malformed_json");
}

TEST_F(ObservationTest, NotAnObject) {
  ExpectError("[1,2]", "an Observation is a JSON object, got an array", "", "bad_type");
}

TEST_F(ObservationTest, MissingResult) {
  ExpectError(R"j({"phenomenonTime":"2026-12-02T12:00:00Z","Datastream":{"@iot.id":1}})j",
              "result: missing (required)", "result", "missing_field");
}

TEST_F(ObservationTest, NullResult) {
  ExpectError(R"j({"phenomenonTime":"2026-12-02T12:00:00Z","result":null})j",
              "result: must not be null", "result", "missing_field");
}

TEST_F(ObservationTest, MissingPhenomenonTime) {
  ExpectError(R"j({"result":1,"Datastream":{"@iot.id":1}})j", "phenomenonTime: missing (required)",
              "phenomenonTime", "missing_field");
}

TEST_F(ObservationTest, PhenomenonTimeNotAString) {
  ExpectError(R"j({"result":1,"phenomenonTime":1733140800})j",
              "phenomenonTime: expected an ISO 8601 string, got a number", "phenomenonTime",
              "bad_type");
}

TEST_F(ObservationTest, PhenomenonTimeWithoutOffset) {
  auto r = Parse(R"j({"result":1,"phenomenonTime":"2026-12-02T12:00:00"})j");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ErrorField(r.status()), "phenomenonTime");
  EXPECT_EQ(ErrorReason(r.status()), "bad_time");
  EXPECT_TRUE(absl::StartsWith(
      r.status().message(), "phenomenonTime: '2026-12-02T12:00:00' is not an ISO 8601 date-time"))
      << r.status().message();
}

TEST_F(ObservationTest, ImpossibleDate) {
  ExpectError(R"j({"result":1,"phenomenonTime":"2026-02-30T12:00:00Z"})j",
              "phenomenonTime: '2026-02-30T12:00:00Z' is not an ISO 8601 date-time with an offset "
              "(Out-of-range field)",
              "phenomenonTime", "bad_time");
}

TEST_F(ObservationTest, IntervalEndingBeforeStart) {
  ExpectError(
      R"j({"result":1,"phenomenonTime":"2026-12-02T12:15:00Z/2026-12-02T12:00:00Z"})j",
      "phenomenonTime: interval '2026-12-02T12:15:00Z/2026-12-02T12:00:00Z' ends before it starts",
      "phenomenonTime", "bad_time");
}

TEST_F(ObservationTest, ResultTimeMustBeAnInstant) {
  ExpectError(
      R"j({"result":1,"phenomenonTime":"2026-12-02T12:00:00Z","resultTime":"2026-12-02T12:00:00Z/2026-12-02T12:01:00Z"})j",
      "resultTime: '2026-12-02T12:00:00Z/2026-12-02T12:01:00Z' is an interval; an instant is "
      "required",
      "resultTime", "bad_time");
}

TEST_F(ObservationTest, ValidTimeMustBeAnInterval) {
  ExpectError(
      R"j({"result":1,"phenomenonTime":"2026-12-02T12:00:00Z","validTime":"2026-12-02T12:00:00Z"})j",
      "validTime: '2026-12-02T12:00:00Z' is an instant; an interval start/end is required",
      "validTime", "bad_time");
}

TEST_F(ObservationTest, UnknownField) {
  ExpectError(R"j({"result":1,"phenomenonTime":"2026-12-02T12:00:00Z","reslt":2})j",
              "reslt: unknown field (an Observation has phenomenonTime, resultTime, result, "
              "resultQuality, validTime, parameters, Datastream, FeatureOfInterest)",
              "reslt", "unknown_field");
}

TEST_F(ObservationTest, DuplicateField) {
  ExpectError(R"j({"result":1,"result":2,"phenomenonTime":"2026-12-02T12:00:00Z"})j",
              "result: appears twice", "result", "malformed_json");
}

TEST_F(ObservationTest, MissingDatastream) {
  ExpectError(R"j({"result":1,"phenomenonTime":"2026-12-02T12:00:00Z"})j",
              "Datastream: missing (POST to Datastreams(ID)/Observations or link a Datastream)",
              "Datastream", "missing_field");
}

TEST_F(ObservationTest, DatastreamWithoutId) {
  ExpectError(
      R"j({"result":1,"phenomenonTime":"2026-12-02T12:00:00Z","Datastream":{"name":"new"}})j",
      "Datastream.@iot.id: missing (the bridge links to existing entities only)",
      "Datastream.@iot.id", "missing_field");
}

TEST_F(ObservationTest, DatastreamIdOfWrongType) {
  ExpectError(
      R"j({"result":1,"phenomenonTime":"2026-12-02T12:00:00Z","Datastream":{"@iot.id":4.5}})j",
      "Datastream.@iot.id: expected an integer or a string, got a number", "Datastream.@iot.id",
      "bad_type");
}

TEST_F(ObservationTest, DatastreamContradictingPath) {
  ExpectError(
      R"j({"result":1,"phenomenonTime":"2026-12-02T12:00:00Z","Datastream":{"@iot.id":7}})j",
      "Datastream.@iot.id: names Datastream 7 but the path names Datastream 42",
      "Datastream.@iot.id", "datastream_mismatch", EntityId{"42", true});
}

TEST_F(ObservationTest, ParametersNotAnObject) {
  ExpectError(R"j({"result":1,"phenomenonTime":"2026-12-02T12:00:00Z","parameters":[1]})j",
              "parameters: expected an object, got an array", "parameters", "bad_type");
}

TEST_F(ObservationTest, InlineFeatureWithBadGeometry) {
  ExpectError(R"j({"result":1,"phenomenonTime":"2026-12-02T12:00:00Z","FeatureOfInterest":{
                  "name":"x","encodingType":"application/geo+json",
                  "feature":{"type":"Point","coordinates":[60.17,124.94]}}})j",
              "FeatureOfInterest.feature.coordinates: latitude out of range [-90, 90]",
              "FeatureOfInterest.feature.coordinates", "bad_type");
  ExpectError(R"j({"result":1,"phenomenonTime":"2026-12-02T12:00:00Z","FeatureOfInterest":{
                  "name":"x","feature":{"type":"Circle","coordinates":[1,2]}}})j",
              "FeatureOfInterest.feature.type: 'Circle' is not a GeoJSON geometry or Feature type",
              "FeatureOfInterest.feature.type", "bad_type");
  ExpectError(R"j({"result":1,"phenomenonTime":"2026-12-02T12:00:00Z","FeatureOfInterest":{
                  "name":"x","encodingType":"application/vnd.geo+json"}})j",
              "FeatureOfInterest.feature: missing (an inline FeatureOfInterest needs its GeoJSON "
              "feature)",
              "FeatureOfInterest.feature", "missing_field");
}

TEST_F(ObservationTest, TooLarge) {
  std::string big(ObservationParser::kMaxBytes + 1, ' ');
  ExpectError(big, "body of 1048577 bytes exceeds 1048576", "", "too_large");
}

// FormatInstant is written by hand for speed: it must print what absl's "%E*S" format prints.
TEST(IsoTimeTest, FormatInstantMatchesAbsl) {
  auto absl_form = [](absl::Time t) {
    return absl::FormatTime("%Y-%m-%dT%H:%M:%E*SZ", t, absl::UTCTimeZone());
  };
  std::vector<absl::Time> times = {
      absl::UnixEpoch(),
      absl::FromUnixSeconds(1796191200),  // 2026-12-02T06:00:00Z
      absl::FromUnixMillis(1796191200500),
      absl::FromUnixNanos(1796191200000000001),
      absl::FromUnixMicros(-1),             // 1969-12-31T23:59:59.999999
      absl::FromUnixSeconds(951782400),     // 2000-02-29
      absl::FromUnixSeconds(-30610224000),  // 1000-01-01
      absl::FromUnixSeconds(253402300799),  // 9999-12-31T23:59:59
      absl::FromUnixSeconds(253402300800),  // 10000: absl's form
      absl::FromUnixSeconds(-30610224001),  // 999: absl prints no padding
      absl::FromUnixSeconds(-62167219200)};
  uint64_t x = 88172645463325252ull;
  for (int i = 0; i < 20000; ++i) {  // xorshift over +-285 years, nanosecond resolution
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    // Shifted in unsigned arithmetic (the signed subtraction overflowed, UBSan): C++20 converts
    // the wrapped value to the negative one.
    times.push_back(absl::FromUnixNanos(
        static_cast<int64_t>(x % 18000000000000000000ull - 9000000000000000000ull)));
  }
  for (absl::Time t : times) EXPECT_EQ(FormatInstant(t), absl_form(t)) << absl_form(t);
  EXPECT_EQ(FormatInstant(absl::FromUnixMillis(1796191200250)), "2026-12-02T06:00:00.25Z");
}

TEST(JsonTextTest, EscapesOnlyWhatJsonRequires) {
  EXPECT_EQ(JsonString(""), "\"\"");
  EXPECT_EQ(JsonString("Mannerheimintie \xc3\xa4"), "\"Mannerheimintie \xc3\xa4\"");
  EXPECT_EQ(JsonString(std::string("a\"b\\c\nd\re\tf\bg\fh\x01i\x1f")),
            "\"a\\\"b\\\\c\\nd\\re\\tf\\bg\\fh\\u0001i\\u001f\"");
  EXPECT_EQ(JsonString("\"\""), "\"\\\"\\\"\"");
}

}  // namespace
}  // namespace uop::sta
