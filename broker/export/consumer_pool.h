// The owner's Kafka consumers, shared per peer: every Replicate stream of one peer reads its
// partitions through the same consumer, so Kafka clients (and librdkafka's threads) grow with
// peers, not with streams or partitions. A second consumer for a peer exists only while two of
// its streams want the same partition at once (a receiver that reconnects before the owner has
// seen its old stream end).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "broker/export/export_session.h"
#include "core/clock.h"

namespace uop::broker {

// Where a stream starts reading one partition.
struct PartitionStartOffset {
  int32_t partition;
  int64_t offset;  // RD_KAFKA_OFFSET_BEGINNING (-2) for "from the start"
};

// One Kafka client that many streams read through, each its own partitions. Thread-safe.
class PartitionConsumer {
 public:
  virtual ~PartitionConsumer() = default;
  // Starts reading `starts` of `topic` into a source of their own. No partition in `starts` is
  // being read by another source of this consumer (the pool sees to it). `on_ready` is called
  // from a Kafka thread when records arrive for the source: it must only schedule work.
  virtual absl::StatusOr<std::unique_ptr<RecordSource>> Start(
      const std::string& topic, const std::vector<PartitionStartOffset>& starts,
      std::function<void()> on_ready) = 0;
  // Serves the client's own events (errors, logs); called by the pool's Maintain().
  virtual void Poll() = 0;
};

// Thread-safe. Sources returned by Open() may outlive the pool (each keeps its consumer alive).
class ConsumerPool {
 public:
  using Factory =
      std::function<absl::StatusOr<std::unique_ptr<PartitionConsumer>>(const std::string& peer)>;
  // `idle_close`: a consumer that no source has used for this long is closed by Maintain().
  // `clock` must outlive the pool and its sources.
  ConsumerPool(Factory factory, absl::Duration idle_close, const core::Clock* clock);
  ~ConsumerPool();

  // A source reading `starts` of `topic` for `peer`, on the peer's first consumer that reads
  // none of these partitions now (a new consumer if there is none).
  absl::StatusOr<std::unique_ptr<RecordSource>> Open(
      const std::string& peer, const std::string& topic,
      const std::vector<PartitionStartOffset>& starts, std::function<void()> on_ready);

  // Polls every consumer; takes the idle ones out of the pool and returns them: closing a
  // Kafka client blocks, so the caller frees them where blocking is fine.
  std::vector<std::shared_ptr<PartitionConsumer>> Maintain();

  // Consumers in the pool now (for the node's metrics and tests).
  int consumers() const;

 private:
  struct Entry;
  struct State;
  class PooledSource;
  std::shared_ptr<State> state_;
  absl::Mutex create_mu_;  // held while a consumer is created (not while one is started)
  Factory factory_;
  const absl::Duration idle_close_;
  const core::Clock* clock_;
};

}  // namespace uop::broker
