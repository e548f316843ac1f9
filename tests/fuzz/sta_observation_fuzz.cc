// libFuzzer target for the Observation parser and record builder: any input either is rejected
// with a field error, or becomes a record that is itself valid JSON keyed by a known Datastream.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "connectors/sta/catalogue.h"
#include "connectors/sta/errors.h"
#include "connectors/sta/observation.h"
#include "connectors/sta/record.h"
#include "simdjson.h"

namespace {

const uop::sta::EntityCatalogue& Catalogue() {
  static const auto* catalogue = [] {
    auto c = uop::sta::EntityCatalogue::FromJson(
        R"j({"Things":[{"@iot.id":1,"name":"t","Locations":[{"location":{"type":"Point",
        "coordinates":[24.94,60.17]}}],"Datastreams":[
        {"@iot.id":42,"unitOfMeasurement":{"symbol":"dB(A)"},"observationType":
        "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement"},
        {"@iot.id":"s","unitOfMeasurement":{}}]}],
        "FeaturesOfInterest":[{"@iot.id":9,"feature":{"type":"Point","coordinates":[1,2]}}]})j",
        "fuzz");
    if (!c.ok()) std::abort();
    return new uop::sta::EntityCatalogue(std::move(*c));
  }();
  return *catalogue;
}

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant broken: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static uop::sta::ObservationParser parser;
  static simdjson::dom::parser checker;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  // Half the inputs come as if posted to Datastreams(42)/Observations.
  std::optional<uop::sta::EntityId> path;
  if (size > 0 && data[0] % 2 == 0) path = uop::sta::EntityId{"42", true};
  auto obs = parser.Parse(uop::sta::Sv(input), path);
  if (!obs.ok()) {
    Check(obs.status().code() == absl::StatusCode::kInvalidArgument, "rejection code");
    Check(uop::sta::ErrorReason(obs.status()) != "other", "rejection has a reason");
    return 0;
  }
  Check(obs->datastream.has_value(), "parsed Observation has a Datastream");
  auto rec = uop::sta::BuildRecord(*obs, Catalogue(), {"http://b/v1.1", "fuzz", absl::UnixEpoch()});
  if (!rec.ok()) {
    Check(uop::sta::ErrorReason(rec.status()) != "other", "record rejection has a reason");
    return 0;
  }
  simdjson::dom::element doc;
  Check(checker.parse(rec->value).get(doc) == simdjson::SUCCESS, "record is valid JSON");
  Check(doc["FeatureOfInterest"]["feature"]["type"].is_string(), "record has a geometry");
  Check(rec->key == obs->datastream->text, "record keyed by its Datastream");
  return 0;
}
