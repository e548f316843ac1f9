// Turns a parsed Observation into the Kafka record of docs/records.md: checked against the
// entity catalogue (known Datastream, result type, unit, FeatureOfInterest) and enriched with
// the Datastream, Thing and location context. Pure: no I/O, no clock of its own.
#pragma once

#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "connectors/sta/catalogue.h"
#include "connectors/sta/observation.h"

namespace uop::sta {

struct RecordContext {
  absl::string_view base_url;  // e.g. http://bridge.helsinki:8080/v1.1, for @iot.selfLink
  absl::string_view via;       // "mqtt" or "http"
  absl::Time ingested_at;
};

struct Record {
  std::string key;  // the Datastream's @iot.id text: Kafka partitions by Datastream
  std::string value;
  std::string id;         // the Observation's @iot.id text
  std::string self_link;  // <base_url>/Observations(<id>)
};

// `prefix` goes before field names in errors (CreateObservations rows).
absl::StatusOr<Record> BuildRecord(const Observation& obs, const EntityCatalogue& catalogue,
                                   const RecordContext& ctx, absl::string_view prefix = "");

// The id given to an Observation without @iot.id: a hash of what it says (Datastream,
// phenomenonTime, resultTime, result, parameters, FeatureOfInterest), so that a retry of the
// same Observation after a timeout or a crash gets the same id and consumers can drop the copy.
std::string ContentId(const Observation& obs);

}  // namespace uop::sta
