// Recovery of a receiver's positions from its own Kafka.
#include "broker/import/recovery.h"

#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "broker/import/import_session.h"
#include "core/log.h"
#include "kafka/status.h"

namespace uop::broker {

namespace {

constexpr int kTimeoutMs = 10000;

std::string HeaderString(rd_kafka_headers_t* headers, absl::string_view name) {
  const void* value = nullptr;
  size_t size = 0;
  if (headers == nullptr ||
      rd_kafka_header_get_last(headers, std::string(name).c_str(), &value, &size) !=
          RD_KAFKA_RESP_ERR_NO_ERROR ||
      value == nullptr) {
    return {};
  }
  return std::string(static_cast<const char*>(value), size);
}

absl::StatusOr<kafka::Handle> RecoveryConsumer(kafka::Env* kafka, const std::string& node,
                                               const char* isolation) {
  return kafka->NewClient(RD_KAFKA_CONSUMER, {{"group.id", absl::StrCat("uop-recover.", node)},
                                              {"enable.auto.commit", "false"},
                                              {"enable.auto.offset.store", "false"},
                                              {"isolation.level", isolation},
                                              {"enable.partition.eof", "true"}});
}

// Reads the last records of `ranges` (partition -> [low, high)) of `topic` and advances
// `checkpoints` with the origin offsets they carry. Partitions whose window held no mirrored
// record (only transaction markers or aborted data) are read again with a wider window, down to
// the start of the partition.
absl::Status ReadTails(rd_kafka_t* consumer, const std::string& topic,
                       std::map<int32_t, std::pair<int64_t, int64_t>> ranges,
                       std::map<int32_t, core::PartitionCheckpoint>* checkpoints) {
  int64_t window = 64;
  while (!ranges.empty()) {
    kafka::PartitionList list(rd_kafka_topic_partition_list_new(static_cast<int>(ranges.size())));
    std::map<int32_t, int64_t> starts;
    for (const auto& [p, range] : ranges) {
      starts[p] = std::max(range.first, range.second - window);
      rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), p)->offset = starts[p];
    }
    if (rd_kafka_resp_err_t err = rd_kafka_assign(consumer, list.get()); err) {
      return absl::UnavailableError(absl::StrCat("recover: assign: ", rd_kafka_err2str(err)));
    }
    std::set<int32_t> open;
    for (const auto& [p, range] : ranges) open.insert(p);
    std::set<int32_t> found;
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    while (!open.empty()) {
      if (absl::Now() > deadline) {
        rd_kafka_assign(consumer, nullptr);
        return absl::DeadlineExceededError(
            absl::StrCat("recover: reading the tail of ", topic, " took more than 60 s"));
      }
      kafka::Message m(rd_kafka_consumer_poll(consumer, 200));
      if (!m) continue;
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        open.erase(m->partition);
        continue;
      }
      if (m->err) {
        rd_kafka_assign(consumer, nullptr);
        return absl::UnavailableError(
            absl::StrCat("recover: reading ", topic, ": ", rd_kafka_message_errstr(m.get())));
      }
      rd_kafka_headers_t* headers = nullptr;
      rd_kafka_message_headers(m.get(), &headers);
      int64_t origin_offset = -1;
      if (!absl::SimpleAtoi(HeaderString(headers, core::kHeaderOriginOffset), &origin_offset)) {
        continue;
      }
      // Records of a partition come in order, but the mirror and dead-letter topics are read
      // one after the other: keep whichever is newer.
      core::PartitionCheckpoint& cp = (*checkpoints)[m->partition];
      std::string token = HeaderString(headers, core::kHeaderResume);
      if (IsAfter(cp, origin_offset, token)) cp.Set(origin_offset, std::move(token));
      found.insert(m->partition);
    }
    rd_kafka_assign(consumer, nullptr);
    for (auto it = ranges.begin(); it != ranges.end();) {
      if (found.contains(it->first) || starts[it->first] <= it->second.first) {
        it = ranges.erase(it);
      } else {
        ++it;
      }
    }
    window *= 16;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TopicPartitions> OpenTransactions(kafka::Env* kafka, const std::string& node,
                                                 const RecoveryTarget& target) {
  auto committed = RecoveryConsumer(kafka, node, "read_committed");
  if (!committed.ok()) return committed.status();
  auto uncommitted = RecoveryConsumer(kafka, node, "read_uncommitted");
  if (!uncommitted.ok()) return uncommitted.status();
  TopicPartitions open;
  for (const std::string& topic : {target.mirror_topic, target.deadletter_topic}) {
    for (int32_t p : target.partitions) {
      int64_t low = 0, stable = 0, high = 0;
      rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(committed->get(), topic.c_str(), p,
                                                                 &low, &stable, kTimeoutMs);
      if (!err) {
        err = rd_kafka_query_watermark_offsets(uncommitted->get(), topic.c_str(), p, &low, &high,
                                               kTimeoutMs);
      }
      if (err) {
        return absl::UnavailableError(
            absl::StrCat("watermarks of ", topic, "[", p, "]: ", rd_kafka_err2str(err)));
      }
      if (stable < high) open.emplace_back(topic, p);
    }
  }
  return open;
}

absl::StatusOr<std::map<int32_t, core::PartitionCheckpoint>> RecoverPositions(
    kafka::Env* kafka, const std::string& node, const std::string& group_id,
    const RecoveryTarget& target, bool tails_only) {
  std::map<int32_t, core::PartitionCheckpoint> checkpoints;
  for (int32_t p : target.partitions) checkpoints[p] = core::PartitionCheckpoint();
  {
    auto consumer = RecoveryConsumer(kafka, node, "read_committed");
    if (!consumer.ok()) return consumer.status();
    for (const std::string& topic : {target.mirror_topic, target.deadletter_topic}) {
      std::map<int32_t, std::pair<int64_t, int64_t>> ranges;  // partition -> [low, high)
      for (int32_t p : target.partitions) {
        int64_t low = 0, high = 0;
        rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(consumer->get(), topic.c_str(),
                                                                   p, &low, &high, kTimeoutMs);
        if (err) {
          return absl::UnavailableError(
              absl::StrCat("recover: watermarks of ", topic, "[", p, "]: ", rd_kafka_err2str(err)));
        }
        if (high > low) ranges[p] = {low, high};
      }
      if (absl::Status s = ReadTails(consumer->get(), topic, std::move(ranges), &checkpoints);
          !s.ok()) {
        return s;
      }
    }
    rd_kafka_consumer_close(consumer->get());
  }

  // The position committed with the last transaction, as the import group's offset: it
  // survives a mirror partition emptied by retention or delete-records, where the tails above
  // hold no record. It is used only then: when the tails hold records they decide. (librdkafka's
  // mock cluster accepts but does not keep transactional offsets: there, the tails always
  // decide.)
  if (tails_only) return checkpoints;
  kafka::PartitionList committed(
      rd_kafka_topic_partition_list_new(static_cast<int>(target.partitions.size())));
  for (int32_t p : target.partitions) {
    if (checkpoints[p].last_offset() < 0) {
      rd_kafka_topic_partition_list_add(committed.get(), target.mirror_topic.c_str(), p);
    }
  }
  if (committed->cnt == 0) return checkpoints;
  auto group = kafka->NewClient(RD_KAFKA_CONSUMER, {{"group.id", group_id},
                                                    {"enable.auto.commit", "false"},
                                                    {"isolation.level", "read_committed"}});
  if (!group.ok()) return group.status();
  // read_committed: the fetch waits for a pending transactional commit (require_stable).
  if (absl::Status s =
          kafka::FromCode(rd_kafka_committed(group->get(), committed.get(), kTimeoutMs),
                          "recover: committed position");
      !s.ok()) {
    return s;
  }
  for (int i = 0; i < committed->cnt; ++i) {
    const rd_kafka_topic_partition_t& tp = committed->elems[i];
    if (absl::Status s = kafka::FromCode(tp.err, "recover: committed position of a partition");
        !s.ok()) {
      return s;  // never fall back to "nothing held" on an error: that would rewrite everything
    }
    if (tp.offset < 0 && tp.metadata_size == 0) continue;
    std::optional<core::PartitionCheckpoint> position = core::DecodePositionMetadata(
        absl::string_view(static_cast<const char*>(tp.metadata), tp.metadata_size));
    core::PartitionCheckpoint& cp = checkpoints[tp.partition];
    if (!position.has_value()) {
      // Not ours (e.g. kafka-consumer-groups --reset-offsets): say so, start from the tails.
      log::Warn("import_position_unreadable", {{"topic", target.mirror_topic},
                                               {"partition", std::to_string(tp.partition)},
                                               {"group", group_id},
                                               {"offset", std::to_string(tp.offset)}});
    } else if (IsAfter(cp, position->last_offset(), position->token())) {
      log::Warn("import_position_from_group",
                {{"topic", target.mirror_topic},
                 {"partition", std::to_string(tp.partition)},
                 {"tail_offset", std::to_string(cp.last_offset())},
                 {"group_offset", std::to_string(position->last_offset())}});
      cp.Set(position->last_offset(), position->token());
    }
  }
  rd_kafka_consumer_close(group->get());
  return checkpoints;
}

}  // namespace uop::broker
