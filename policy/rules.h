// The compiled form of the policy language: what the loader produces from YAML and what the
// evaluator runs. Plain immutable values, owned by a PolicySnapshot.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "policy/geometry.h"

namespace uop::policy {

// How the owner's records of a dataset are encoded.
enum class Format {
  kBytes,                    // opaque: only whole-record rules apply
  kJson,                     // one JSON value per record
  kSensorThingsObservation,  // a JSON SensorThings Observation (result, phenomenonTime, ...)
};
const char* FormatName(Format format);

// A pseudonymisation key (at least 32 bytes). Its bytes never leave this type except to HMAC.
class SecretKey {
 public:
  SecretKey(std::string name, std::string bytes);
  ~SecretKey();
  SecretKey(const SecretKey&) = delete;
  SecretKey& operator=(const SecretKey&) = delete;

  const std::string& name() const { return name_; }  // the file's name, safe to show
  // sha256 of the key, 16 hex digits: goes into the policy version, reveals nothing.
  const std::string& fingerprint() const { return fingerprint_; }
  const std::string& bytes() const { return bytes_; }

 private:
  std::string name_;
  std::string bytes_;
  std::string fingerprint_;
};

// What happens to the Kafka record key of a kept record.
enum class RecordKeyRule { kKeep, kDrop, kPseudonymise };

struct FieldRules {
  std::vector<std::string> keep;  // dotted JSON paths; empty: keep everything
  std::vector<std::string> drop;
  std::vector<std::string> pseudonymise;
  std::shared_ptr<const SecretKey> key;  // set iff pseudonymise is non-empty or record_key is
  RecordKeyRule record_key = RecordKeyRule::kKeep;
  bool empty() const {
    return keep.empty() && drop.empty() && pseudonymise.empty() &&
           record_key == RecordKeyRule::kKeep;
  }
};

struct SpatialRules {
  std::shared_ptr<const Area> within;  // null: no area filter
  std::string within_source;           // "bbox [..]" or the polygon file's name, for explain
  enum class Generalise { kNone, kGrid, kDecimals } generalise = Generalise::kNone;
  double grid_m = 0;
  int decimals = 0;
  bool deny_without_location = true;  // no_location: deny (default) | allow
  bool active = false;                // a spatial block is present: location rules apply
  bool empty() const { return !active; }
};

enum class AggregateFunction { kCount, kSum, kMean, kMin, kMax };
const char* AggregateFunctionName(AggregateFunction f);

struct AggregateRules {
  absl::Duration window;
  absl::Duration lateness;
  std::string by;    // dotted path of the grouping key; empty: one group per partition
  std::string of;    // dotted path of the numeric value
  std::string time;  // dotted path of the event time (RFC 3339); empty: the record timestamp
  std::vector<AggregateFunction> values;
  int64_t min_count = 1;
};

// One (dataset, peer) share, fully compiled.
struct Share {
  std::string dataset;
  std::string peer;
  Format format = Format::kBytes;
  std::string location;  // dotted path of the GeoJSON geometry; empty: none
  std::string purpose;
  std::string licence;
  std::optional<absl::Time> valid_from;
  std::optional<absl::Time> valid_until;  // exclusive
  std::optional<absl::Duration> retention;
  FieldRules fields;
  SpatialRules spatial;
  std::optional<AggregateRules> aggregate;
  std::optional<double> records_per_s;
  // Owner metadata of the dataset, for the receiver's catalogue.
  std::string owner_organisation;
  std::string owner_contact;
  std::string file;  // where the share is defined (for explain and diff)
  int line = 0;
  // This share's block of the snapshot's canonical text: two snapshots apply the same rules to
  // (dataset, peer) iff their blocks are equal (a reload restarts only the streams it changes).
  std::string canonical;

  // True when records leave byte for byte (no JSON rules): the transform does not parse them.
  bool identity() const { return fields.empty() && spatial.empty() && !aggregate.has_value(); }
};

// A receiving city's rule for one (peer, dataset) it accepts.
struct AcceptRule {
  std::string peer;
  std::string dataset;  // the owner's dataset name (not the mirror topic)
  std::optional<int64_t> max_record_bytes;
  std::optional<Format> format;  // required format of every record
  std::optional<absl::Duration> max_retention;
  std::string file;
  int line = 0;
};

}  // namespace uop::policy
