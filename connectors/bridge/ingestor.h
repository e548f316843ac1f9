// What the MQTT and HTTP paths share: body in, Kafka record (or field error) out, counted.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "connectors/bridge/metrics.h"
#include "connectors/bridge/record_sink.h"
#include "connectors/sta/catalogue.h"
#include "connectors/sta/observation.h"
#include "connectors/sta/record.h"
#include "simdjson.h"

namespace uop::sta_bridge {

struct IngestOptions {
  std::string topic = "noise.observations";
  std::string dead_letter_topic = "noise.observations.deadletter";
  std::string base_url = "http://localhost/v1.1";  // for @iot.selfLink
};

// Thread-safe: parsers are per thread; the catalogue is immutable.
class Ingestor {
 public:
  Ingestor(std::shared_ptr<const sta::EntityCatalogue> catalogue, IngestOptions options,
           BridgeMetrics* metrics)
      : catalogue_(std::move(catalogue)), options_(std::move(options)), metrics_(metrics) {}

  // Parses, checks and enriches one Observation. Rejections are counted here.
  absl::StatusOr<sta::Record> Ingest(absl::string_view body,
                                     const std::optional<sta::EntityId>& path_datastream,
                                     absl::string_view via) const;
  // Same for an element of a CreateObservations request already parsed.
  absl::StatusOr<sta::Record> IngestElement(simdjson::dom::element value,
                                            const std::optional<sta::EntityId>& path_datastream,
                                            absl::string_view via, absl::string_view prefix) const;

  OutRecord ToKafka(sta::Record record) const;
  // The dead-letter record: the payload as received, the reason in headers.
  OutRecord DeadLetter(absl::string_view source, absl::string_view payload,
                       const absl::Status& why) const;

  const IngestOptions& options() const { return options_; }
  // Only before any request is served (the HTTP port may be known only after binding).
  void set_base_url(std::string url) { options_.base_url = std::move(url); }
  BridgeMetrics* metrics() const { return metrics_; }

  static sta::ObservationParser& ThreadParser();

 private:
  std::shared_ptr<const sta::EntityCatalogue> catalogue_;
  IngestOptions options_;
  BridgeMetrics* metrics_;
};

// The FROST-Server error body: {"code":400,"type":"error","message":...,"field":...}.
std::string ErrorJson(int code, const absl::Status& status);

}  // namespace uop::sta_bridge
