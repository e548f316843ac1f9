// The policy language: what loads, what is refused (with file:line:column and key), what
// warns, and what changes the version.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "policy/policy_snapshot.h"

namespace uop::policy {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

const std::set<std::string> kPeers = {"tallinn", "riga"};
const std::string kKey = "0123456789abcdef0123456789abcdef";

absl::StatusOr<std::shared_ptr<const PolicySnapshot>> Load(
    const std::string& yaml, std::map<std::string, std::string> extra = {}) {
  extra["noise.yaml"] = yaml;
  if (!extra.contains("keys/tallinn-2026.key")) extra["keys/tallinn-2026.key"] = kKey + "\n";
  return PolicySnapshot::FromFiles(extra, kPeers);
}

std::string Error(const std::string& yaml, std::map<std::string, std::string> extra = {}) {
  auto s = Load(yaml, std::move(extra));
  return s.ok() ? "(loaded)" : std::string(s.status().message());
}

std::vector<std::string> Warnings(const std::string& yaml) {
  auto s = Load(yaml);
  EXPECT_TRUE(s.ok()) << s.status();
  std::vector<std::string> out;
  if (s.ok()) {
    for (const Warning& w : (*s)->warnings()) out.push_back(w.ToString());
  }
  return out;
}

const char kFull[] = R"(dataset: noise.observations
format: sensorthings-observation
owner: {organisation: City of Helsinki, contact: data@hel.example}
shares:
  - peer: tallinn
    purpose: cross-border-noise-map
    licence: CC-BY-4.0
    valid: {from: 2026-01-01T00:00:00Z, until: 2027-01-01T00:00:00Z}
    retention: 30d
    fields:
      keep: [result, phenomenonTime, Datastream.@iot.id, FeatureOfInterest]
      drop: [FeatureOfInterest.description]
      pseudonymise: [Datastream.@iot.id]
      pseudonym_key: tallinn-2026
      record_key: pseudonymise
    spatial:
      within: {bbox: [24.5, 59.9, 25.3, 60.4]}
      generalise: {grid_m: 250}
      no_location: deny
    rate: {records_per_s: 500}
  - peer: riga
    aggregate: {window: 15m, lateness: 2m, values: [mean, max, count], min_count: 5}
)";

TEST(PolicyRulesTest, FullShareCompiles) {
  auto s = Load(kFull);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE((*s)->warnings().empty()) << (*s)->warnings()[0].ToString();
  const Share* t = (*s)->FindShare("noise.observations", "tallinn");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->format, Format::kSensorThingsObservation);
  EXPECT_EQ(t->location, "FeatureOfInterest.feature");  // the SensorThings default
  EXPECT_EQ(t->owner_organisation, "City of Helsinki");
  EXPECT_EQ(t->purpose, "cross-border-noise-map");
  EXPECT_EQ(t->licence, "CC-BY-4.0");
  EXPECT_EQ(*t->valid_from, absl::FromUnixSeconds(1767225600));
  EXPECT_EQ(*t->valid_until, absl::FromUnixSeconds(1798761600));
  EXPECT_EQ(*t->retention, absl::Hours(24 * 30));
  EXPECT_THAT(t->fields.keep,
              ElementsAre("result", "phenomenonTime", "Datastream.@iot.id", "FeatureOfInterest"));
  EXPECT_EQ(t->fields.key->name(), "tallinn-2026");
  EXPECT_EQ(t->fields.record_key, RecordKeyRule::kPseudonymise);
  EXPECT_EQ(t->spatial.generalise, SpatialRules::Generalise::kGrid);
  EXPECT_EQ(t->spatial.grid_m, 250);
  EXPECT_EQ(*t->records_per_s, 500);
  EXPECT_FALSE(t->identity());
  const Share* r = (*s)->FindShare("noise.observations", "riga");
  ASSERT_NE(r, nullptr);
  ASSERT_TRUE(r->aggregate.has_value());
  EXPECT_EQ(r->aggregate->by, "Datastream.@iot.id");
  EXPECT_EQ(r->aggregate->of, "result");
  EXPECT_EQ(r->aggregate->time, "phenomenonTime");
  EXPECT_EQ(r->aggregate->window, absl::Minutes(15));
  EXPECT_EQ(r->aggregate->lateness, absl::Minutes(2));
  EXPECT_EQ(r->aggregate->min_count, 5);
  EXPECT_THAT(r->aggregate->values, ElementsAre(AggregateFunction::kMean, AggregateFunction::kMax,
                                                AggregateFunction::kCount));
  EXPECT_EQ((*s)->StateAt("noise.observations", "tallinn", absl::FromUnixSeconds(1767225599)),
            ShareState::kNotYetValid);
  EXPECT_EQ((*s)->StateAt("noise.observations", "tallinn", absl::FromUnixSeconds(1767225600)),
            ShareState::kActive);
  EXPECT_EQ((*s)->StateAt("noise.observations", "tallinn", absl::FromUnixSeconds(1798761600)),
            ShareState::kExpired);
  EXPECT_EQ((*s)->StateAt("noise.observations", "riga", absl::FromUnixSeconds(0)),
            ShareState::kActive);
  EXPECT_EQ((*s)->StateAt("air", "riga", absl::FromUnixSeconds(0)), ShareState::kNoShare);
  EXPECT_TRUE((*s)->Allows("noise.observations", "tallinn"));
  EXPECT_FALSE((*s)->Allows("noise.observations", "tallinn", absl::FromUnixSeconds(1798761600)));
}

TEST(PolicyRulesTest, CanonicalFormNeverHoldsTheKey) {
  auto s = Load(kFull);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_THAT((*s)->canonical(), Not(HasSubstr(kKey)));
  EXPECT_THAT((*s)->canonical(), HasSubstr("fields.pseudonym_key: tallinn-2026 (sha256:"));
}

TEST(PolicyRulesTest, VersionFollowsRulesNotFormatting) {
  auto a = Load(kFull);
  auto b = Load(std::string("# a comment\n") + kFull + "\n\n");
  auto c = Load(kFull, {{"keys/tallinn-2026.key", "another key of at least thirty-two bytes"}});
  std::string tighter = kFull;
  tighter.replace(tighter.find("grid_m: 250"), 11, "grid_m: 500");
  auto d = Load(tighter);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok() && d.ok());
  EXPECT_EQ((*a)->version(), (*b)->version());
  EXPECT_NE((*a)->version(), (*c)->version());  // a new key: new pseudonyms
  EXPECT_NE((*a)->version(), (*d)->version());
  auto empty = PolicySnapshot::FromFiles({}, kPeers);
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ((*empty)->version(), "sha256:e3b0c44298fc1c14");  // sha256 of ""
}

TEST(PolicyRulesTest, ErrorsNameFileLineColumnAndKey) {
  EXPECT_EQ(Error("dataset: n\nformat: xml\n"),
            "noise.yaml:2:9: key 'format': expected one of: json, sensorthings-observation, bytes");
  EXPECT_EQ(Error("dataset: n\nshares:\n  - peer: tallinn\n    fields: {drop: [a]}\n"),
            "noise.yaml:4:13: key 'shares[0].fields': 'fields' rules need a JSON dataset; this "
            "dataset's format is 'bytes' (set format: json or sensorthings-observation)");
  EXPECT_EQ(Error("dataset: n\nformat: json\nshares:\n  - peer: tallinn\n    spatial: {within: "
                  "{bbox: [0, 0, 1, 1]}}\n"),
            "noise.yaml:5:14: key 'shares[0].spatial': spatial rules need the dataset's "
            "'location' (the JSON path of its geometry)");
  EXPECT_EQ(Error("dataset: n\nformat: json\nshares:\n  - peer: tallinn\n    fields:\n      "
                  "pseudonymise: [id]\n"),
            "noise.yaml:6:7: key 'shares[0].fields.pseudonym_key': missing: pseudonymisation "
            "needs a key name (the file keys/NAME.key)");
  EXPECT_EQ(Error("dataset: n\nformat: json\nshares:\n  - peer: tallinn\n    fields: "
                  "{pseudonymise: [id], pseudonym_key: nokey}\n"),
            "noise.yaml:5:49: key 'shares[0].fields.pseudonym_key': pseudonymisation key 'nokey' "
            "not found (keys/nokey.key)");
  EXPECT_EQ(Error("dataset: n\nformat: json\nlocation: g\nshares:\n  - peer: tallinn\n    "
                  "spatial: {within: {bbox: [25, 60, 24, 61]}}\n"),
            "noise.yaml:6:30: key 'shares[0].spatial.within.bbox': min is above max: expected "
            "[min_lon, min_lat, max_lon, max_lat]");
  EXPECT_EQ(Error("dataset: n\nformat: json\nlocation: g\nshares:\n  - peer: tallinn\n    "
                  "spatial: {within: {bbox: [24, 60, 25, 91]}}\n"),
            "noise.yaml:6:43: key 'shares[0].spatial.within.bbox[3]': latitude out of range "
            "-90..90");
  EXPECT_EQ(Error("dataset: n\nshares:\n  - peer: tallinn\n    retention: 30 days\n"),
            "noise.yaml:4:16: key 'shares[0].retention': expected a duration: a positive whole "
            "number and ms, s, m, h, d or w (e.g. 30d)");
  EXPECT_EQ(Error("dataset: n\nshares:\n  - peer: tallinn\n    valid: {from: 2027-01-01T00:00:00Z, "
                  "until: 2026-01-01T00:00:00Z}\n"),
            "noise.yaml:4:48: key 'shares[0].valid.until': is not after valid.from");
  EXPECT_EQ(Error("dataset: n\nformat: json\nshares:\n  - peer: tallinn\n    aggregate: {window: "
                  "15m, of: v, values: [median]}\n"),
            "noise.yaml:5:46: key 'shares[0].aggregate.values[0]': expected one of: mean, max, "
            "min, count, sum");
  EXPECT_EQ(Error("dataset: n\nformat: json\nshares:\n  - peer: tallinn\n    aggregate: {window: "
                  "15m, values: [mean]}\n"),
            "noise.yaml:5:16: key 'shares[0].aggregate.of': missing: the JSON path of the numeric "
            "value");
  EXPECT_EQ(Error("dataset: n\nformat: json\nshares:\n  - peer: tallinn\n    aggregate: {window: "
                  "15m, lateness: 32d, of: v, values: [mean]}\n"),
            "noise.yaml:5:40: key 'shares[0].aggregate.lateness': expected at most 31d");
  EXPECT_EQ(Error("dataset: n\nshares:\n  - peer: tallinn\n    rate: {records_per_s: -1}\n"),
            "noise.yaml:4:27: key 'shares[0].rate.records_per_s': expected more than 0 and at "
            "most 1e9");
  EXPECT_EQ(Error("dataset: n\nformat: json\nshares:\n  - peer: tallinn\n    fields: {keep: "
                  "[a..b]}\n"),
            "noise.yaml:5:21: key 'shares[0].fields.keep[0]': 'a..b' is not a path: an empty "
            "segment");
  EXPECT_EQ(Error("dataset: n\nshares:\n  - peer: tallinn\n    colour: blue\n"),
            "noise.yaml:4:5: key 'shares[0].colour': unknown key; expected one of: peer, purpose, "
            "licence, valid, retention, fields, spatial, aggregate, rate");
  EXPECT_EQ(Error("dataset: n\nshares:\n  - peer: tallinn\n  - peer: tallinn\n"),
            "noise.yaml:4:11: key 'shares[1].peer': peer 'tallinn' listed twice");
  EXPECT_EQ(Error("dataset: n\nshares: [\n"),
            "noise.yaml:3:1: key '(syntax)': end of sequence flow not found");
}

TEST(PolicyRulesTest, ShortKeyIsRefusedWithoutShowingIt) {
  const std::string message = Error(
      "dataset: n\nformat: json\nshares:\n  - peer: tallinn\n    fields: {pseudonymise: "
      "[id], pseudonym_key: tallinn-2026}\n",
      {{"keys/tallinn-2026.key", "s3cr3t-short"}});
  EXPECT_EQ(message,
            "noise.yaml:5:49: key 'shares[0].fields.pseudonym_key': pseudonymisation key "
            "'tallinn-2026' is shorter than 32 bytes; make one with: openssl rand -hex 32");
  EXPECT_THAT(message, Not(HasSubstr("s3cr3t")));
}

TEST(PolicyRulesTest, PolygonFileErrors) {
  const std::string yaml =
      "dataset: n\nformat: json\nlocation: g\nshares:\n  - peer: tallinn\n    spatial: {within: "
      "{polygon: areas/hel.geojson}}\n";
  EXPECT_EQ(Error(yaml),
            "noise.yaml:6:33: key 'shares[0].spatial.within.polygon': cannot read "
            "'areas/hel.geojson'");
  EXPECT_EQ(Error(yaml, {{"areas/hel.geojson", R"({"type":"Point","coordinates":[1,2]})"}}),
            "noise.yaml:6:33: key 'shares[0].spatial.within.polygon': areas/hel.geojson: (top "
            "level): type 'Point': expected Polygon or MultiPolygon");
  // A bow tie: self-intersecting.
  EXPECT_THAT(
      Error(yaml, {{"areas/hel.geojson",
                    R"({"type":"Polygon","coordinates":[[[0,0],[2,2],[2,0],[0,2],[0,0]]]})"}}),
      HasSubstr("areas/hel.geojson: invalid polygon: a ring crosses itself"));
  EXPECT_EQ(
      Error(yaml, {{"areas/hel.geojson", R"({"type":"Polygon","coordinates":[[[0,0],[1,0]]]})"}}),
      "noise.yaml:6:33: key 'shares[0].spatial.within.polygon': areas/hel.geojson: "
      "(top level).coordinates: expected closed rings of at least 4 [lon, lat]");
}

TEST(PolicyRulesTest, DeadAndContradictoryRulesWarn) {
  EXPECT_THAT(
      Warnings("dataset: n\nformat: json\nshares:\n  - peer: tallinn\n    fields:\n      keep: "
               "[a, b.c]\n      drop: [a, x]\n"),
      ElementsAre("noise.yaml:7:14: key 'shares[0].fields.drop[0]': warning: contradicts keep "
                  "'a': the drop wins, 'a' does not leave",
                  "noise.yaml:7:17: key 'shares[0].fields.drop[1]': warning: dead rule: 'x' is "
                  "not kept anyway"));
  EXPECT_THAT(
      Warnings("dataset: n\nformat: json\nlocation: g\nshares:\n  - peer: tallinn\n    spatial: "
               "{within: {bbox: [24, 60, 24, 61]}}\n"),
      ElementsAre("noise.yaml:6:30: key 'shares[0].spatial.within.bbox': warning: the box has no "
                  "area: only points exactly on its line pass"));
  EXPECT_THAT(
      Warnings("dataset: n\nformat: json\nshares:\n  - peer: tallinn\n    fields: {pseudonymise: "
               "[id], pseudonym_key: tallinn-2026}\n"),
      ElementsAre("noise.yaml:5:28: key 'shares[0].fields.record_key': warning: fields are "
                  "pseudonymised but the Kafka record key leaves as it is (often the same "
                  "identifier): set record_key: pseudonymise, drop or keep"));
  EXPECT_THAT(
      Warnings("dataset: n\nformat: sensorthings-observation\nshares:\n  - peer: tallinn\n    "
               "fields: {drop: [parameters]}\n    aggregate: {window: 15m, values: [count]}\n"),
      ElementsAre("noise.yaml:5:13: key 'shares[0].fields': warning: dead rule: only the aggregate "
                  "leaves, keep and drop do not apply"));
}

TEST(PolicyRulesTest, AcceptRules) {
  auto s = PolicySnapshot::FromFiles(
      {{"accept.yaml",
        "accept:\n  - peer: tallinn\n    dataset: noise.observations\n    max_record_bytes: 100\n"
        "    format: sensorthings-observation\n    max_retention: 7d\n  - peer: riga\n"
        "    dataset: raw\n"}},
      kPeers);
  ASSERT_TRUE(s.ok()) << s.status();
  const AcceptDecision ok = (*s)->CheckIncoming("tallinn", "noise.observations", "k",
                                                R"({"result":1,"phenomenonTime":"t"})");
  EXPECT_TRUE(ok.accepted) << ok.detail;
  const AcceptDecision big =
      (*s)->CheckIncoming("tallinn", "noise.observations", "kk", std::string(99, 'x'));
  EXPECT_FALSE(big.accepted);
  EXPECT_EQ(big.reason, "too_large");
  EXPECT_EQ(big.detail, "record of 101 bytes (key + value) exceeds max_record_bytes 100");
  const AcceptDecision wrong =
      (*s)->CheckIncoming("tallinn", "noise.observations", "", R"({"result":1})");
  EXPECT_EQ(wrong.reason, "wrong_format");
  EXPECT_EQ((*s)->CheckIncoming("tallinn", "noise.observations", "", "not json").reason,
            "wrong_format");
  EXPECT_EQ((*s)->CheckIncoming("riga", "noise.observations", "", "{}").reason, "not_accepted");
  EXPECT_TRUE((*s)->CheckIncoming("riga", "raw", "", "\xff\xfe any bytes").accepted);
  // The lower retention wins; either side alone applies.
  EXPECT_EQ((*s)->EffectiveRetention("tallinn", "noise.observations", absl::Hours(24 * 30)),
            absl::Hours(24 * 7));
  EXPECT_EQ((*s)->EffectiveRetention("tallinn", "noise.observations", absl::Hours(24)),
            absl::Hours(24));
  EXPECT_EQ((*s)->EffectiveRetention("riga", "raw", absl::Hours(5)), absl::Hours(5));
  EXPECT_EQ((*s)->EffectiveRetention("riga", "raw", std::nullopt), std::nullopt);
  EXPECT_EQ((*s)->EffectiveRetention("tallinn", "noise.observations", std::nullopt),
            absl::Hours(24 * 7));

  auto dup = PolicySnapshot::FromFiles(
      {{"a.yaml", "accept:\n  - {peer: riga, dataset: x}\n  - {peer: riga, dataset: x}\n"}},
      kPeers);
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.status().message(),
            "a.yaml:3:5: key 'accept[1]': peer 'riga' and dataset 'x' are already accepted by "
            "another rule");
}

TEST(PolicyRulesTest, LoadDirectoryReadsAreasAndKeysBesideTheRules) {
  const std::string dir = std::string(UOP_SOURCE_DIR) + "/deploy/examples/policies-helsinki";
  auto s = PolicySnapshot::LoadDirectory(dir, {"tallinn"});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE((*s)->warnings().empty());
  const Share* air = (*s)->FindShare("air.quality", "tallinn");
  ASSERT_NE(air, nullptr);
  ASSERT_NE(air->spatial.within, nullptr);
  EXPECT_EQ(air->spatial.within_source, "polygon areas/helsinki.geojson");
  EXPECT_TRUE(air->spatial.within->CoversPoint(24.95, 60.17));    // the centre
  EXPECT_FALSE(air->spatial.within->CoversPoint(25.05, 60.145));  // Santahamina, the hole
  EXPECT_TRUE(air->spatial.within->CoversPoint(25.03, 60.145));   // the hole's edge
  EXPECT_EQ(air->fields.key->name(), "tallinn-2026");
  // Keys elsewhere: the directory's own keys/ is not read.
  auto other = PolicySnapshot::LoadDirectory(dir, {"tallinn"}, {.keys_dir = "/nonexistent"});
  ASSERT_FALSE(other.ok());
  EXPECT_THAT(other.status().message(),
              HasSubstr("key 'shares[0].fields.pseudonym_key': pseudonymisation key "
                        "'tallinn-2026' not found (keys/tallinn-2026.key)"));
  EXPECT_EQ(PolicySnapshot::LoadDirectory(dir + "/missing", {"tallinn"}).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(PolicyRulesTest, Durations) {
  EXPECT_EQ(ParsePolicyDuration("30d"), absl::Hours(720));
  EXPECT_EQ(ParsePolicyDuration("15m"), absl::Minutes(15));
  EXPECT_EQ(ParsePolicyDuration("500ms"), absl::Milliseconds(500));
  EXPECT_EQ(ParsePolicyDuration("2w"), absl::Hours(336));
  EXPECT_EQ(ParsePolicyDuration("0s"), std::nullopt);
  EXPECT_EQ(ParsePolicyDuration("-1s"), std::nullopt);
  EXPECT_EQ(ParsePolicyDuration("1.5h"), std::nullopt);
  EXPECT_EQ(ParsePolicyDuration("10"), std::nullopt);
  EXPECT_EQ(ParsePolicyDuration("99999999999999d"), std::nullopt);
}

}  // namespace
}  // namespace uop::policy
