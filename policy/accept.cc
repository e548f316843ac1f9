// The receiver's accept stage: does one incoming record meet this city's own rules?
#include <simdjson.h>

#include "absl/strings/str_cat.h"
#include "policy/policy_snapshot.h"

namespace uop::policy {

AcceptDecision PolicySnapshot::CheckIncoming(absl::string_view peer, absl::string_view dataset,
                                             absl::string_view key, absl::string_view value) const {
  const AcceptRule* rule = FindAccept(peer, dataset);
  if (rule == nullptr) {
    return {false, "not_accepted",
            absl::StrCat("no accept rule for dataset '", dataset, "' from peer '", peer, "'")};
  }
  const int64_t size = static_cast<int64_t>(key.size() + value.size());
  if (rule->max_record_bytes && size > *rule->max_record_bytes) {
    return {false, "too_large",
            absl::StrCat("record of ", size, " bytes (key + value) exceeds max_record_bytes ",
                         *rule->max_record_bytes)};
  }
  if (rule->format && *rule->format != Format::kBytes) {
    // One parser per thread: the snapshot is shared by all import threads.
    thread_local simdjson::dom::parser parser;
    simdjson::dom::element root;
    if (auto err = parser.parse(value.data(), value.size()).get(root); err) {
      return {false, "wrong_format", absl::StrCat("not JSON: ", simdjson::error_message(err))};
    }
    if (*rule->format == Format::kSensorThingsObservation) {
      simdjson::dom::object obj;
      std::string_view t;
      if (root.get_object().get(obj) != simdjson::SUCCESS ||
          obj["result"].error() != simdjson::SUCCESS ||
          obj["phenomenonTime"].get_string().get(t) != simdjson::SUCCESS) {
        return {false, "wrong_format",
                "not a SensorThings Observation (an object with 'result' and a string "
                "'phenomenonTime')"};
      }
    }
  }
  return {true, "", ""};
}

}  // namespace uop::policy
