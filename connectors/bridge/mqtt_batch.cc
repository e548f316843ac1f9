// Batching MQTT publishes into Kafka with acknowledgement only after delivery.
#include "connectors/bridge/mqtt_batch.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "connectors/sta/errors.h"
#include "connectors/sta/json_text.h"

namespace uop::sta_bridge {

absl::StatusOr<std::optional<sta::EntityId>> ParseObservationTopic(absl::string_view topic) {
  absl::string_view rest = topic;
  if (!absl::ConsumePrefix(&rest, "v1.1/") && !absl::ConsumePrefix(&rest, "v1.0/")) {
    return sta::FieldError("topic", sta::Reason::kBadTopic,
                           absl::StrCat("'", topic, "' is not a SensorThings topic (v1.1/...)"));
  }
  if (rest == "Observations") return std::optional<sta::EntityId>();
  if (absl::ConsumePrefix(&rest, "Datastreams(") && absl::ConsumeSuffix(&rest, ")/Observations") &&
      !rest.empty()) {
    sta::EntityId id;
    if (rest.size() >= 2 && rest.front() == '\'' && rest.back() == '\'') {
      // OData string key: quotes doubled inside.
      absl::string_view inner = rest.substr(1, rest.size() - 2);
      for (size_t i = 0; i < inner.size(); ++i) {
        if (inner[i] == '\'') {
          if (i + 1 >= inner.size() || inner[i + 1] != '\'') {
            return sta::FieldError("topic", sta::Reason::kBadTopic,
                                   absl::StrCat("'", topic, "': bad quoting in the Datastream id"));
          }
          ++i;
        }
        id.text.push_back(inner[i]);
      }
      if (id.text.empty()) {
        return sta::FieldError("topic", sta::Reason::kBadTopic,
                               absl::StrCat("'", topic, "': empty Datastream id"));
      }
      return std::optional<sta::EntityId>(id);
    }
    for (char c : rest) {
      if (c < '0' || c > '9') {
        return sta::FieldError(
            "topic", sta::Reason::kBadTopic,
            absl::StrCat("'", topic, "': a Datastream id is a number or a quoted string"));
      }
    }
    id.text = std::string(rest);
    id.numeric = true;
    return std::optional<sta::EntityId>(id);
  }
  return sta::FieldError("topic", sta::Reason::kBadTopic,
                         absl::StrCat("'", topic,
                                      "' is not an Observations topic (v1.1/Observations or "
                                      "v1.1/Datastreams(ID)/Observations)"));
}

void MqttBatch::Add(MqttMessage message) {
  Entry e;
  e.response_topic = std::move(message.response_topic);
  e.correlation_data = std::move(message.correlation_data);
  absl::StatusOr<sta::Record> rec = [&]() -> absl::StatusOr<sta::Record> {
    auto ds = ParseObservationTopic(message.topic);
    if (!ds.ok()) {
      ingestor_->metrics()->Rejected("mqtt", sta::ErrorReason(ds.status()));
      return ds.status();
    }
    return ingestor_->Ingest(message.payload, *ds, "mqtt");
  }();
  if (rec.ok()) {
    e.response = absl::StrCat("{\"@iot.selfLink\":", sta::JsonString(rec->self_link), "}");
    e.record = ingestor_->ToKafka(std::move(*rec));
  } else {
    e.rejected = true;
    e.response = ErrorJson(400, rec.status());
    e.record = ingestor_->DeadLetter(message.topic, message.payload, rec.status());
  }
  entries_.push_back(std::move(e));
  SendEntry(entries_.size() - 1);
}

void MqttBatch::SendEntry(size_t index) {
  State* st = state_.get();
  {
    absl::MutexLock l(&st->mu);
    ++st->outstanding;
  }
  while (true) {
    absl::Status s =
        sink_->Send(entries_[index].record, [state = state_, index](absl::Status result) {
          absl::MutexLock l(&state->mu);
          --state->outstanding;
          if (!result.ok()) state->failed.push_back(index);
        });
    if (s.ok()) return;
    // Queue full (Kafka slow or down): wait for room; memory stays bounded by the queue.
    ingestor_->metrics()->Unavailable("mqtt");
    absl::MutexLock l(&st->mu);
    auto drained = [st]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(st->mu) { return st->outstanding <= 1; };
    st->mu.AwaitWithTimeout(absl::Condition(&drained), absl::Milliseconds(50));
  }
}

bool MqttBatch::WaitComplete(absl::Time deadline) {
  State* st = state_.get();
  while (true) {
    std::vector<size_t> retry;
    {
      absl::MutexLock l(&st->mu);
      auto settled = [st]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(st->mu) {
        return st->outstanding == 0 || !st->failed.empty();
      };
      if (!st->mu.AwaitWithDeadline(absl::Condition(&settled), deadline)) return false;
      if (st->failed.empty()) return true;
      retry.swap(st->failed);
    }
    for (size_t i : retry) {
      ingestor_->metrics()->KafkaRetry();
      SendEntry(i);
    }
  }
}

std::vector<MqttResponse> MqttBatch::TakeResponses() {
  std::vector<MqttResponse> out;
  int64_t accepted = 0, dead = 0;
  for (Entry& e : entries_) {
    (e.rejected ? dead : accepted)++;
    if (!e.response_topic.empty()) {
      out.push_back(
          {std::move(e.response_topic), std::move(e.response), std::move(e.correlation_data)});
    }
  }
  if (accepted) ingestor_->metrics()->Accepted("mqtt", accepted);
  if (dead) ingestor_->metrics()->DeadLettered(dead);
  entries_.clear();
  return out;
}

}  // namespace uop::sta_bridge
