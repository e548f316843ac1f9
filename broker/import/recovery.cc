// Recovery of a receiver's positions from its own Kafka.
#include "broker/import/recovery.h"

#include <algorithm>
#include <optional>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "broker/import/import_session.h"
#include "core/log.h"
#include "core/status_macros.h"
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
      // The consumer is the link's for every dataset: anything of an earlier read is not ours.
      if (m->rkt != nullptr && topic != rd_kafka_topic_name(m->rkt)) continue;
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

absl::StatusOr<PartitionAnswers> LookUpRetryingTransient(
    const TopicPartitions& partitions, const PartitionLookup& lookup, absl::string_view what,
    const core::Clock& clock, absl::Duration budget, const Sleep& sleep) {
  const absl::Time deadline = clock.Now() + budget;
  absl::Duration wait = absl::Milliseconds(100);
  PartitionAnswers done;
  TopicPartitions pending = partitions;
  while (!pending.empty()) {
    PartitionAnswers answers = lookup(pending);
    TopicPartitions again;
    std::pair<TopicPartition, rd_kafka_resp_err_t> last_transient;
    for (const TopicPartition& tp : pending) {
      auto it = answers.find(tp);
      const rd_kafka_resp_err_t err =
          it == answers.end() ? RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION : it->second.err;
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        done[tp] = std::move(it->second);
      } else if (kafka::IsTransientCode(err)) {
        again.push_back(tp);
        last_transient = {tp, err};
      } else {
        return kafka::FromCode(err, absl::StrCat(what, " of ", tp.first, "[", tp.second, "]"));
      }
    }
    if (!again.empty() && clock.Now() + wait > deadline) {
      const auto& [tp, err] = last_transient;
      return absl::DeadlineExceededError(absl::StrCat(
          what, " of ", tp.first, "[", tp.second, "] (and ", again.size() - 1, " more): still ",
          rd_kafka_err2str(err), " after ", absl::FormatDuration(budget)));
    }
    if (!again.empty()) {
      if (!sleep(wait)) return absl::CancelledError(absl::StrCat(what, ": stopping"));
      wait = std::min(wait * 2, absl::Seconds(1));
    }
    pending = std::move(again);
  }
  return done;
}

RecoveryReader::RecoveryReader(kafka::Env* kafka, std::string node, std::string group_id,
                               absl::Duration retry_budget)
    : kafka_(kafka),
      node_(std::move(node)),
      group_id_(std::move(group_id)),
      retry_budget_(retry_budget) {}

absl::StatusOr<rd_kafka_t*> RecoveryReader::Get(Client which) {
  absl::MutexLock lock(&mu_);
  kafka::Handle& handle = which == Client::kCommitted     ? committed_
                          : which == Client::kUncommitted ? uncommitted_
                                                          : group_;
  if (handle != nullptr) return handle.get();
  kafka::Properties properties;
  if (which == Client::kGroup) {
    // Never subscribes: it only reads the positions the link's transactions committed as the
    // group's offsets (read_committed: the fetch waits for a pending transactional commit).
    properties = {{"group.id", group_id_},
                  {"enable.auto.commit", "false"},
                  {"isolation.level", "read_committed"}};
  } else {
    properties = {
        {"group.id", absl::StrCat("uop-recover.", node_)},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"isolation.level", which == Client::kCommitted ? "read_committed" : "read_uncommitted"},
        {"enable.partition.eof", "true"}};
  }
  ASSIGN_OR_RETURN(handle, kafka_->NewClient(RD_KAFKA_CONSUMER, properties));
  return handle.get();
}

absl::StatusOr<PartitionAnswers> RecoveryReader::Offsets(rd_kafka_t* client,
                                                         const TopicPartitions& partitions,
                                                         int64_t which, absl::string_view what,
                                                         const std::function<bool()>& stopping) {
  // ListOffsets with the logical offset as its timestamp: -2 the log start, -1 the end (the
  // high watermark, or on a read_committed client the last stable offset); one request per
  // leader for all the partitions.
  PartitionLookup lookup = [client, which](const TopicPartitions& tps) {
    kafka::PartitionList list(rd_kafka_topic_partition_list_new(static_cast<int>(tps.size())));
    for (const auto& [topic, p] : tps) {
      rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), p)->offset = which;
    }
    const rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(client, list.get(), kTimeoutMs);
    PartitionAnswers answers;
    for (int i = 0; i < list->cnt; ++i) {
      const rd_kafka_topic_partition_t& tp = list->elems[i];
      answers[{tp.topic, tp.partition}] = {
          err != RD_KAFKA_RESP_ERR_NO_ERROR ? err : tp.err, tp.offset, {}};
    }
    return answers;
  };
  return LookUpRetryingTransient(partitions, lookup, what, *core::Clock::Real(), retry_budget_,
                                 RealSleep(stopping));
}

Sleep RecoveryReader::RealSleep(const std::function<bool()>& stopping) {
  return [stopping](absl::Duration d) {
    if (stopping()) return false;
    absl::SleepFor(d);
    return !stopping();
  };
}

absl::StatusOr<TopicPartitions> RecoveryReader::OpenTransactions(
    const RecoveryTarget& target, const std::function<bool()>& stopping) {
  ASSIGN_OR_RETURN(rd_kafka_t * committed, Get(Client::kCommitted));
  ASSIGN_OR_RETURN(rd_kafka_t * uncommitted, Get(Client::kUncommitted));
  TopicPartitions all;
  for (const std::string& topic : {target.mirror_topic, target.deadletter_topic}) {
    for (int32_t p : target.partitions) all.emplace_back(topic, p);
  }
  ASSIGN_OR_RETURN(PartitionAnswers stable,
                   Offsets(committed, all, RD_KAFKA_OFFSET_END, "last stable offset", stopping));
  ASSIGN_OR_RETURN(PartitionAnswers high,
                   Offsets(uncommitted, all, RD_KAFKA_OFFSET_END, "high watermark", stopping));
  TopicPartitions open;
  for (const TopicPartition& tp : all) {
    if (stable[tp].offset < high[tp].offset) open.push_back(tp);
  }
  return open;
}

absl::StatusOr<std::map<int32_t, core::PartitionCheckpoint>> RecoveryReader::RecoverPositions(
    const RecoveryTarget& target, bool tails_only, const std::function<bool()>& stopping) {
  std::map<int32_t, core::PartitionCheckpoint> checkpoints;
  for (int32_t p : target.partitions) checkpoints[p] = core::PartitionCheckpoint();
  ASSIGN_OR_RETURN(rd_kafka_t * consumer, Get(Client::kCommitted));
  TopicPartitions all;
  for (const std::string& topic : {target.mirror_topic, target.deadletter_topic}) {
    for (int32_t p : target.partitions) all.emplace_back(topic, p);
  }
  ASSIGN_OR_RETURN(PartitionAnswers low, Offsets(consumer, all, RD_KAFKA_OFFSET_BEGINNING,
                                                 "recover: log start", stopping));
  ASSIGN_OR_RETURN(PartitionAnswers high, Offsets(consumer, all, RD_KAFKA_OFFSET_END,
                                                  "recover: last stable offset", stopping));
  for (const std::string& topic : {target.mirror_topic, target.deadletter_topic}) {
    std::map<int32_t, std::pair<int64_t, int64_t>> ranges;  // partition -> [low, high)
    for (int32_t p : target.partitions) {
      const int64_t from = low[{topic, p}].offset, to = high[{topic, p}].offset;
      if (to > from) ranges[p] = {from, to};
    }
    if (ranges.empty()) continue;  // nothing to read (a new topic): no tail consumer needed
    absl::MutexLock lock(&tail_mu_);
    RETURN_IF_ERROR(ReadTails(consumer, topic, std::move(ranges), &checkpoints));
  }

  // The position committed with the last transaction, as the import group's offset: it
  // survives a mirror partition emptied by retention or delete-records, where the tails above
  // hold no record. It is used only then: when the tails hold records they decide. (librdkafka's
  // mock cluster accepts but does not keep transactional offsets: there, the tails always
  // decide.)
  if (tails_only) return checkpoints;
  TopicPartitions unknown;
  for (int32_t p : target.partitions) {
    if (checkpoints[p].last_offset() < 0) unknown.emplace_back(target.mirror_topic, p);
  }
  if (unknown.empty()) return checkpoints;
  ASSIGN_OR_RETURN(rd_kafka_t * group, Get(Client::kGroup));
  PartitionLookup committed_positions = [group](const TopicPartitions& tps) {
    kafka::PartitionList list(rd_kafka_topic_partition_list_new(static_cast<int>(tps.size())));
    for (const auto& [topic, p] : tps) {
      rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), p);
    }
    const rd_kafka_resp_err_t err = rd_kafka_committed(group, list.get(), kTimeoutMs);
    PartitionAnswers answers;
    for (int i = 0; i < list->cnt; ++i) {
      const rd_kafka_topic_partition_t& tp = list->elems[i];
      answers[{tp.topic, tp.partition}] = {
          err != RD_KAFKA_RESP_ERR_NO_ERROR ? err : tp.err, tp.offset,
          tp.metadata == nullptr
              ? std::string()
              : std::string(static_cast<const char*>(tp.metadata), tp.metadata_size)};
    }
    return answers;
  };
  // Never fall back to "nothing held" on an error: that would rewrite everything.
  ASSIGN_OR_RETURN(
      PartitionAnswers positions,
      LookUpRetryingTransient(unknown, committed_positions, "recover: committed position",
                              *core::Clock::Real(), retry_budget_, RealSleep(stopping)));
  for (const auto& [tp, answer] : positions) {
    if (answer.offset < 0 && answer.metadata.empty()) continue;
    std::optional<core::PartitionCheckpoint> position =
        core::DecodePositionMetadata(answer.metadata);
    core::PartitionCheckpoint& cp = checkpoints[tp.second];
    if (!position.has_value()) {
      // Not ours (e.g. kafka-consumer-groups --reset-offsets): say so, start from the tails.
      log::Warn("import_position_unreadable", {{"topic", target.mirror_topic},
                                               {"partition", std::to_string(tp.second)},
                                               {"group", group_id_},
                                               {"offset", std::to_string(answer.offset)}});
    } else if (IsAfter(cp, position->last_offset(), position->token())) {
      log::Warn("import_position_from_group",
                {{"topic", target.mirror_topic},
                 {"partition", std::to_string(tp.second)},
                 {"tail_offset", std::to_string(cp.last_offset())},
                 {"group_offset", std::to_string(position->last_offset())}});
      cp.Set(position->last_offset(), position->token());
    }
  }
  return checkpoints;
}

}  // namespace uop::broker
