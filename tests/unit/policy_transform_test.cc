// Per-record rules: exactly which bytes leave for a peer, or why a record is withheld.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/provenance.h"
#include "policy/share_transform.h"

namespace uop::policy {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

const std::set<std::string> kPeers = {"tallinn", "riga"};
const std::string kKey = "0123456789abcdef0123456789abcdef";
const absl::Time kNow = absl::FromUnixSeconds(1772366400);  // 2026-03-01T12:00:00Z

// openssl dgst -sha256 -hmac 0123456789abcdef0123456789abcdef of each string.
const char kPseudoKauppatori[] = "bd97eccabee9be063728d9ad034348c437a36d815a4b3b816089a9cd722bab0b";
const char kPseudo42[] = "3b12d0412db185c98ff58825ed4c81cfbc7bdabcf33ac48bdaaae5f39fc65445";

const char kObservation[] =
    R"({"@iot.id":1,"phenomenonTime":"2026-03-01T12:00:05Z","result":61.5,)"
    R"("parameters":{"operator":"Jane","site":"hel-kauppatori"},)"
    R"("Datastream":{"@iot.id":"hel-kauppatori-laeq","name":"LAeq"},)"
    R"("FeatureOfInterest":{"name":"Kauppatori","description":"market square",)"
    R"("feature":{"type":"Point","coordinates":[24.9525,60.1675]}}})";

struct Result {
  Decision decision;
  std::vector<OutputRecord> out;
  std::string value() const {
    return out.size() == 1 ? out[0].value : "(" + std::to_string(out.size()) + " records)";
  }
};

class Policy {
 public:
  explicit Policy(const std::string& yaml, std::map<std::string, std::string> extra = {}) {
    extra["noise.yaml"] = yaml;
    extra["keys/tallinn-2026.key"] = kKey;
    auto s = PolicySnapshot::FromFiles(extra, kPeers);
    EXPECT_TRUE(s.ok()) << s.status();
    if (s.ok()) snapshot_ = *s;
  }

  Result Run(std::string_view value, std::string_view key = "k", absl::Time now = kNow,
             int64_t timestamp_ms = absl::ToUnixMillis(kNow)) {
    Result r;
    if (snapshot_ == nullptr) return r;
    auto t = ShareTransform::Resume(snapshot_, "noise.observations", "tallinn", 0, "");
    EXPECT_TRUE(t.ok()) << t.status();
    if (!t.ok()) return r;
    SourceRecord rec{0, 7, timestamp_ms, key, value, {{"content-type", "application/json"}}};
    TransformOutput out;
    r.decision = (*t)->Apply(rec, now, &out);
    r.out = std::move(out.records);
    return r;
  }

  std::string Reason(std::string_view value) {
    Result r = Run(value);
    if (r.decision.verdict != Decision::Verdict::kWithheld) return "kept: " + r.value();
    return std::string(WithheldReasonName(r.decision.reason));
  }

 private:
  std::shared_ptr<const PolicySnapshot> snapshot_;
};

const char kHelsinkiToTallinn[] = R"(dataset: noise.observations
format: sensorthings-observation
shares:
  - peer: tallinn
    fields:
      keep: [result, phenomenonTime, Datastream.@iot.id, FeatureOfInterest]
      drop: [FeatureOfInterest.description]
      pseudonymise: [Datastream.@iot.id]
      pseudonym_key: tallinn-2026
      record_key: pseudonymise
    spatial:
      within: {bbox: [24.5, 59.9, 25.3, 60.4]}
      generalise: {grid_m: 250}
)";

TEST(PolicyTransformTest, HelsinkiToTallinnExactBytes) {
  Policy p(kHelsinkiToTallinn);
  Result r = p.Run(kObservation, "hel-kauppatori-laeq");
  ASSERT_EQ(r.decision.verdict, Decision::Verdict::kKept);
  ASSERT_EQ(r.out.size(), 1u);
  EXPECT_EQ(r.out[0].value,
            std::string(R"({"phenomenonTime":"2026-03-01T12:00:05Z","result":61.5,)") +
                R"("Datastream":{"@iot.id":")" + kPseudoKauppatori + R"("},)" +
                R"("FeatureOfInterest":{"name":"Kauppatori",)" +
                R"("feature":{"type":"Point","coordinates":[24.9540547,60.1680348]}}})");
  EXPECT_EQ(r.out[0].key, kPseudoKauppatori);  // the Kafka key is the same identifier
  EXPECT_EQ(r.out[0].timestamp_ms, absl::ToUnixMillis(kNow));
  EXPECT_THAT(r.out[0].headers, ElementsAre(Pair("content-type", "application/json")));
  EXPECT_EQ(r.out[0].source_offset, 7);
}

TEST(PolicyTransformTest, IdentityShareIsByteForByteWithTheBrokersTokens) {
  Policy p("dataset: noise.observations\nshares:\n  - peer: tallinn\n");
  const std::string opaque("\x00\xff not json", 11);
  Result r = p.Run(opaque, "key");
  ASSERT_EQ(r.out.size(), 1u);
  EXPECT_EQ(r.out[0].value, opaque);
  EXPECT_EQ(r.out[0].key, "key");
  EXPECT_EQ(r.out[0].resume_token, core::EncodeOffsetToken(8));
  for (int64_t offset : {int64_t{0}, int64_t{1} << 40}) {
    EXPECT_EQ(EncodeOffsetToken(offset), core::EncodeOffsetToken(offset));
    EXPECT_EQ(DecodeOffsetToken(core::EncodeOffsetToken(offset)), offset);
  }
}

TEST(PolicyTransformTest, DropOnlyKeepsEverythingElseAndNumbersAsTheyWere) {
  Policy p(
      "dataset: noise.observations\nformat: json\nshares:\n  - peer: tallinn\n    fields: {drop: "
      "[parameters.operator, Datastream.name]}\n");
  EXPECT_EQ(
      p.Run(kObservation).value(),
      R"({"@iot.id":1,"phenomenonTime":"2026-03-01T12:00:05Z","result":61.5,)"
      R"("parameters":{"site":"hel-kauppatori"},"Datastream":{"@iot.id":"hel-kauppatori-laeq"},)"
      R"("FeatureOfInterest":{"name":"Kauppatori","description":"market square",)"
      R"("feature":{"type":"Point","coordinates":[24.9525,60.1675]}}})");
}

TEST(PolicyTransformTest, MissingFieldsAndWrongTypes) {
  Policy p(
      "dataset: noise.observations\nformat: json\nshares:\n  - peer: tallinn\n    fields:\n      "
      "keep: [a.b, missing, n, s, o]\n      pseudonymise: [n, o]\n      pseudonym_key: "
      "tallinn-2026\n      record_key: keep\n");
  // a is a number, not an object: a.b cannot be there; "missing" is missing.
  EXPECT_EQ(p.Run(R"({"a":5,"n":42,"s":"x","o":{"z":1}})").value(),
            std::string(R"({"n":")") + kPseudo42 + R"(","s":"x","o":")" +
                "2b717b1e7e5a3fb2cfae6467d871f8dfd31da6d41e06900f654b4c497ceed42b" + R"("})");
  // a.b's parent is an object without b: nothing of it leaves, not even {}.
  EXPECT_EQ(p.Run(R"({"a":{"c":1},"s":"y"})").value(), R"({"s":"y"})");
  EXPECT_EQ(p.Run(R"({"a":{"b":[1,{"x":null}],"c":1}})").value(), R"({"a":{"b":[1,{"x":null}]}})");
  // A record that is not an object: no path can address it; it leaves as JSON.
  EXPECT_EQ(p.Run(R"([1,2])").value(), "[1,2]");
}

TEST(PolicyTransformTest, UnicodeKeysAndEscapes) {
  Policy p(
      "dataset: noise.observations\nformat: json\nshares:\n  - peer: tallinn\n    fields: {keep: "
      "[\"Äänitaso.µ\", \"tab\"]}\n");
  EXPECT_EQ(p.Run(R"({"Äänitaso":{"µ":"€ \u0001 \"q\" \\","x":1},"tab":"a\tb\/c","z":0})").value(),
            "{\"Äänitaso\":{\"µ\":\"€ \\u0001 \\\"q\\\" \\\\\"},\"tab\":\"a\\tb/c\"}");
}

TEST(PolicyTransformTest, EscapesAfterTheFirstEightBytes) {
  Policy p(
      "dataset: noise.observations\nformat: json\nshares:\n  - peer: tallinn\n    fields: {drop: "
      "[x]}\n");
  EXPECT_EQ(p.Run(R"({"s":"0123456789abcdefgh\"ij\\k\u001fÄäö€ 0123456789abcdef\n"})").value(),
            R"({"s":"0123456789abcdefgh\"ij\\k\u001fÄäö€ 0123456789abcdef\n"})");
  EXPECT_EQ(p.Run(R"({"s":"\u00e4\u00e4\u00e4\u00e4\u00e4\u00e4\u00e4\u00e4\u00e4"})").value(),
            R"({"s":"äääääääää"})");
}

TEST(PolicyTransformTest, InvalidUtf8AndBrokenJsonAreWithheld) {
  Policy p(
      "dataset: noise.observations\nformat: json\nshares:\n  - peer: tallinn\n    fields: {drop: "
      "[x]}\n");
  EXPECT_EQ(p.Reason("{\"a\":\"\xc3\x28\"}"), "not_json");
  EXPECT_EQ(p.Reason("{\"a\":"), "not_json");
  EXPECT_EQ(p.Reason(""), "not_json");
  EXPECT_EQ(p.Reason("{\"a\":1} trailing"), "not_json");
}

TEST(PolicyTransformTest, HugeNumbers) {
  Policy p(
      "dataset: noise.observations\nformat: json\nshares:\n  - peer: tallinn\n    fields: {drop: "
      "[x]}\n");
  EXPECT_EQ(p.Run(R"({"a":1e308,"b":18446744073709551615,"c":-9223372036854775808,)"
                  R"("d":-0.0,"e":5.0,"f":1.5e-300})")
                .value(),
            R"({"a":1e+308,"b":18446744073709551615,"c":-9223372036854775808,)"
            R"("d":-0.0,"e":5.0,"f":1.5e-300})");
  // Beyond 64-bit integers and doubles: simdjson refuses, and so do we (documented).
  EXPECT_EQ(p.Reason(R"({"a":123456789012345678901234567890})"), "not_json");
  EXPECT_EQ(p.Reason(R"({"a":1e400})"), "not_json");
}

TEST(PolicyTransformTest, DeeplyNestedJson) {
  Policy p(
      "dataset: noise.observations\nformat: json\nshares:\n  - peer: tallinn\n    fields: {drop: "
      "[x]}\n");
  auto nested = [](int depth) {
    std::string s;
    for (int i = 0; i < depth; ++i) s += "{\"a\":";
    s += "1";
    for (int i = 0; i < depth; ++i) s += "}";
    return s;
  };
  const std::string deep = nested(1000);
  EXPECT_EQ(p.Run(deep).value(), deep);
  EXPECT_EQ(p.Reason(nested(5000)), "not_json");  // beyond simdjson's depth limit of 1024
}

TEST(PolicyTransformTest, OneMebibyteRecord) {
  Policy p(
      "dataset: noise.observations\nformat: json\nshares:\n  - peer: tallinn\n    fields: {drop: "
      "[x]}\n");
  const std::string big = R"({"x":"secret","blob":")" + std::string(1 << 20, 'b') + R"("})";
  EXPECT_EQ(p.Run(big).value(), R"({"blob":")" + std::string(1 << 20, 'b') + R"("})");
}

TEST(PolicyTransformTest, SensorThingsFormatNeedsAnObservation) {
  Policy p(
      "dataset: noise.observations\nformat: sensorthings-observation\nshares:\n  - peer: "
      "tallinn\n    fields: {drop: [parameters]}\n    spatial: {no_location: allow}\n");
  EXPECT_EQ(p.Reason(R"({"result":1})"), "not_observation");
  EXPECT_EQ(p.Reason(R"({"result":1,"phenomenonTime":5})"), "not_observation");
  EXPECT_EQ(p.Reason(R"([1])"), "not_observation");
  EXPECT_EQ(p.Reason(R"({"result":null,"phenomenonTime":"t"})"),
            R"(kept: {"result":null,"phenomenonTime":"t"})");
}

const char kBboxPolicy[] = R"(dataset: noise.observations
format: json
location: g
shares:
  - peer: tallinn
    spatial:
      within: {bbox: [24.5, 59.9, 25.3, 60.4]}
)";

std::string PointAt(double lon, double lat) {
  char buf[128];
  std::snprintf(buf, sizeof(buf), R"({"g":{"type":"Point","coordinates":[%.17g,%.17g]}})", lon,
                lat);
  return buf;
}

TEST(PolicyTransformTest, BboxEdgesAreInside) {
  Policy p(kBboxPolicy);
  EXPECT_EQ(p.Reason(R"({"g":{"type":"Point","coordinates":[24.5,59.9]}})"),
            R"(kept: {"g":{"type":"Point","coordinates":[24.5,59.9]}})");  // a corner
  EXPECT_EQ(p.Reason(R"({"g":{"type":"Point","coordinates":[25.3,60.0,12]}})"),
            R"(kept: {"g":{"type":"Point","coordinates":[25.3,60.0,12]}})");  // an edge
  EXPECT_EQ(p.Reason(PointAt(std::nextafter(25.3, 26.0), 60.0)), "outside_area");
  EXPECT_EQ(p.Reason(PointAt(24.9, std::nextafter(59.9, 0.0))), "outside_area");
  EXPECT_EQ(p.Reason(R"({"g":{"type":"LineString","coordinates":[[24.6,60],[25.4,60]]}})"),
            "outside_area");
  EXPECT_EQ(
      p.Reason(R"({"g":{"type":"Feature","geometry":{"type":"Point","coordinates":[25,60]}}})"),
      R"(kept: {"g":{"type":"Feature","geometry":{"type":"Point","coordinates":[25,60]}}})");
}

TEST(PolicyTransformTest, MissingAndBadLocations) {
  Policy deny(kBboxPolicy);
  EXPECT_EQ(deny.Reason(R"({"x":1})"), "no_location");
  EXPECT_EQ(deny.Reason(R"({"g":null})"), "no_location");
  EXPECT_EQ(deny.Reason(R"({"g":{"type":"Point","coordinates":[25]}})"), "bad_location");
  EXPECT_EQ(deny.Reason(R"({"g":{"type":"Point","coordinates":["25","60"]}})"), "bad_location");
  EXPECT_EQ(deny.Reason(R"({"g":{"type":"Circle","coordinates":[25,60]}})"), "bad_location");
  EXPECT_EQ(deny.Reason(R"j({"g":"POINT(25 60)"})j"), "bad_location");
  // The same key twice: which one would the receiver read? Withheld.
  EXPECT_EQ(deny.Reason(R"({"g":{"type":"Point","coordinates":[25,60]},"g":{"type":"Point",)"
                        R"("coordinates":[0,0]}})"),
            "bad_location");
  Policy allow(std::string(kBboxPolicy) + "      no_location: allow\n");
  EXPECT_EQ(allow.Reason(R"({"x":1})"), R"(kept: {"x":1})");
  EXPECT_EQ(allow.Reason(PointAt(0, 0)), "outside_area");
}

const char kHolePolygon[] = R"({"type":"Feature","properties":{},"geometry":{"type":"Polygon",
  "coordinates":[[[0,0],[10,0],[10,10],[0,10],[0,0]],[[4,4],[4,6],[6,6],[6,4],[4,4]]]}})";

TEST(PolicyTransformTest, PolygonWithHoleBoundariesAreInside) {
  Policy p(
      "dataset: noise.observations\nformat: json\nlocation: g\nshares:\n  - peer: tallinn\n    "
      "spatial: {within: {polygon: areas/hole.geojson}}\n",
      {{"areas/hole.geojson", kHolePolygon}});
  auto at = [&](double lon, double lat) {
    return p.Reason(PointAt(lon, lat)).substr(0, 4) == "kept" ? "in" : p.Reason(PointAt(lon, lat));
  };
  EXPECT_EQ(at(1, 1), "in");
  EXPECT_EQ(at(0, 0), "in");            // outer vertex
  EXPECT_EQ(at(5, 0), "in");            // outer edge
  EXPECT_EQ(at(4, 4), "in");            // hole vertex
  EXPECT_EQ(at(5, 4), "in");            // hole edge
  EXPECT_EQ(at(5, 5), "outside_area");  // in the hole
  EXPECT_EQ(at(10.000001, 5), "outside_area");
  EXPECT_EQ(at(-1, -1), "outside_area");
  // A line whose ends are inside but that crosses the hole is not within the area.
  EXPECT_EQ(p.Reason(R"({"g":{"type":"LineString","coordinates":[[1,5],[9,5]]}})"), "outside_area");
  EXPECT_EQ(p.Reason(R"({"g":{"type":"LineString","coordinates":[[1,1],[9,1]]}})"),
            R"(kept: {"g":{"type":"LineString","coordinates":[[1,1],[9,1]]}})");
  EXPECT_EQ(p.Reason(R"({"g":{"type":"Polygon","coordinates":[[[1,1],[3,1],[3,3],[1,3],[1,1]]]}})")
                .substr(0, 4),
            "kept");
  EXPECT_EQ(p.Reason(R"({"g":{"type":"Polygon","coordinates":[[[1,1],[5,1],[5,5],[1,5],[1,1]]]}})"),
            "outside_area");  // overlaps the hole
  EXPECT_EQ(p.Reason(R"({"g":{"type":"MultiPoint","coordinates":[[1,1],[5,5]]}})"), "outside_area");
  EXPECT_EQ(
      p.Reason(R"({"g":{"type":"GeometryCollection","geometries":[)"
               R"({"type":"Point","coordinates":[1,1]},{"type":"Point","coordinates":[20,1]}]}})"),
      "outside_area");
}

TEST(PolicyTransformTest, GeneraliseToDecimalsDropsTheGeometryBbox) {
  Policy p(
      "dataset: noise.observations\nformat: json\nlocation: f.g\nshares:\n  - peer: tallinn\n    "
      "spatial: {generalise: {decimals: 3}}\n");
  EXPECT_EQ(p.Run(R"({"f":{"g":{"type":"LineString","bbox":[24.95,60.16,24.96,60.17],)"
                  R"("coordinates":[[24.95256,60.16749,12.25],[-24.9996,-0.0004]]}},"bbox":[1,2]})")
                .value(),
            R"({"f":{"g":{"type":"LineString","coordinates":[[24.953,60.167,12.25],[-25.0,0.0]]}},)"
            R"("bbox":[1,2]})");
}

TEST(PolicyTransformTest, RetentionAndValidity) {
  Policy p(
      "dataset: noise.observations\nshares:\n  - peer: tallinn\n    retention: 1d\n    valid: "
      "{from: 2026-01-01T00:00:00Z, until: 2027-01-01T00:00:00Z}\n");
  const int64_t now_ms = absl::ToUnixMillis(kNow);
  EXPECT_EQ(p.Run("x", "k", kNow, now_ms - 86400000).out.size(), 1u);  // exactly one day old
  Result old = p.Run("x", "k", kNow, now_ms - 86400001);
  EXPECT_EQ(old.decision.reason, WithheldReason::kPastRetention);
  EXPECT_TRUE(old.out.empty());
  EXPECT_EQ(p.Run("x", "k", absl::FromUnixSeconds(1767225599), now_ms).decision.reason,
            WithheldReason::kNotValid);
  EXPECT_EQ(p.Run("x", "k", absl::FromUnixSeconds(1798761600), now_ms).decision.reason,
            WithheldReason::kNotValid);
}

TEST(PolicyTransformTest, ExplainTracesEveryRuleAndNeverTheKey) {
  auto s = PolicySnapshot::FromFiles(
      {{"noise.yaml", kHelsinkiToTallinn}, {"keys/tallinn-2026.key", kKey}}, kPeers);
  ASSERT_TRUE(s.ok()) << s.status();
  RecordEvaluator evaluator((*s)->FindShare("noise.observations", "tallinn"));
  std::vector<std::string> trace;
  std::string key, value;
  ASSERT_EQ(evaluator.Evaluate("hel-kauppatori-laeq", kObservation, 0, kNow, &key, &value, nullptr,
                               &trace),
            WithheldReason::kNone);
  EXPECT_THAT(
      trace,
      ElementsAre("spatial.within bbox [24.5, 59.9, 25.3, 60.4]: inside",
                  "fields.record_key: pseudonymise: key replaced by HMAC-SHA256",
                  "fields.keep: only these leave: result, phenomenonTime, Datastream.@iot.id, "
                  "FeatureOfInterest",
                  "fields.keep: @iot.id not kept", "fields.keep: parameters not kept",
                  "fields.pseudonymise: Datastream.@iot.id replaced by HMAC-SHA256 (key "
                  "'tallinn-2026')",
                  "fields.drop: FeatureOfInterest.description removed",
                  "spatial.generalise: FeatureOfInterest.feature snapped to a 250 m grid"));
  for (const std::string& line : trace) EXPECT_EQ(line.find(kKey), std::string::npos) << line;
  trace.clear();
  EXPECT_EQ(evaluator.Evaluate("k", PointAt(0, 0), 0, kNow, &key, &value, nullptr, &trace),
            WithheldReason::kNotObservation);
  EXPECT_THAT(trace, ElementsAre("format sensorthings-observation: not an object with 'result' "
                                 "and a string 'phenomenonTime': withheld"));
}

TEST(PolicyTransformTest, ResumeRejectsForeignTokensAndUnsharedDatasets) {
  auto s = PolicySnapshot::FromFiles({{"n.yaml",
                                       "dataset: noise.observations\nshares:\n  - "
                                       "peer: tallinn\n"}},
                                     kPeers);
  ASSERT_TRUE(s.ok());
  auto none = ShareTransform::Resume(*s, "noise.observations", "riga", 0, "");
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
  auto bad = ShareTransform::Resume(*s, "noise.observations", "tallinn", 3, "garbage");
  EXPECT_EQ(bad.status().message(), "partition 3: unknown resume token");
  auto fresh = ShareTransform::Resume(*s, "noise.observations", "tallinn", 0, "");
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ((*fresh)->NextReadOffset(), kOffsetBeginning);
  auto resumed =
      ShareTransform::Resume(*s, "noise.observations", "tallinn", 0, EncodeOffsetToken(42));
  ASSERT_TRUE(resumed.ok());
  EXPECT_EQ((*resumed)->NextReadOffset(), 42);
}

TEST(PolicyTransformTest, PseudonymiserMatchesRfc4231) {
  // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
  Pseudonymiser p("Jefe");
  std::string out;
  p.AppendHex("what do ya want for nothing?", &out);
  EXPECT_EQ(out, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  // Test case 6: a key longer than the block (131 bytes of 0xaa).
  Pseudonymiser longkey(std::string(131, '\xaa'));
  out.clear();
  longkey.AppendHex("Test Using Larger Than Block-Size Key - Hash Key First", &out);
  EXPECT_EQ(out, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

TEST(PolicyTransformTest, RatePacerPacesAndNeverDrops) {
  RatePacer pacer(2);  // 2 records/s, a burst of 2
  const absl::Time t0 = absl::FromUnixSeconds(100);
  EXPECT_EQ(pacer.Admit(t0), t0);
  EXPECT_EQ(pacer.Admit(t0), t0);
  EXPECT_EQ(pacer.Admit(t0), t0 + absl::Milliseconds(500));
  EXPECT_EQ(pacer.Admit(t0), t0 + absl::Seconds(1));
  // After a quiet period the burst is back, but not more than it.
  const absl::Time t1 = t0 + absl::Seconds(10);
  EXPECT_EQ(pacer.Admit(t1), t1);
  EXPECT_EQ(pacer.Admit(t1), t1);
  EXPECT_EQ(pacer.Admit(t1), t1 + absl::Milliseconds(500));
}

}  // namespace
}  // namespace uop::policy
