// Which consumer of a peer a new stream reads through, and when an unused one is closed.
#include "broker/export/consumer_pool.h"

namespace uop::broker {

struct ConsumerPool::Entry {
  std::string peer;
  std::shared_ptr<PartitionConsumer> consumer;
  std::set<std::pair<std::string, int32_t>> reading;  // (topic, partition) a source reads now
  int sources = 0;
  absl::Time idle_since;  // when `sources` last fell to 0
};

struct ConsumerPool::State {
  absl::Mutex mu;
  std::vector<std::shared_ptr<Entry>> entries ABSL_GUARDED_BY(mu);
};

// Gives the partitions back to the pool's bookkeeping when the stream's source goes away.
class ConsumerPool::PooledSource final : public RecordSource {
 public:
  PooledSource(std::shared_ptr<State> state, std::shared_ptr<Entry> entry, std::string topic,
               std::vector<int32_t> partitions, std::unique_ptr<RecordSource> inner,
               const core::Clock* clock)
      : state_(std::move(state)),
        entry_(std::move(entry)),
        consumer_(entry_->consumer),
        topic_(std::move(topic)),
        partitions_(std::move(partitions)),
        inner_(std::move(inner)),
        clock_(clock) {}

  ~PooledSource() override {
    inner_.reset();  // stops reading the partitions before another source may take them
    absl::MutexLock lock(&state_->mu);
    for (int32_t p : partitions_) entry_->reading.erase({topic_, p});
    if (--entry_->sources == 0) entry_->idle_since = clock_->Now();
  }

  absl::Status Read(size_t max, std::vector<SourceRecord>* out) override {
    return inner_->Read(max, out);
  }
  Progress PartitionProgress(int32_t partition) override {
    return inner_->PartitionProgress(partition);
  }
  void CommitForMonitoring(const std::map<int32_t, int64_t>& next_offsets) override {
    inner_->CommitForMonitoring(next_offsets);
  }

 private:
  std::shared_ptr<State> state_;
  std::shared_ptr<Entry> entry_;
  std::shared_ptr<PartitionConsumer> consumer_;  // outlives inner_, which reads through it
  const std::string topic_;
  const std::vector<int32_t> partitions_;
  std::unique_ptr<RecordSource> inner_;
  const core::Clock* clock_;
};

ConsumerPool::ConsumerPool(Factory factory, absl::Duration idle_close, const core::Clock* clock)
    : state_(std::make_shared<State>()),
      factory_(std::move(factory)),
      idle_close_(idle_close),
      clock_(clock) {}

ConsumerPool::~ConsumerPool() = default;

absl::StatusOr<std::unique_ptr<RecordSource>> ConsumerPool::Open(
    const std::string& peer, const std::string& topic,
    const std::vector<PartitionStartOffset>& starts, std::function<void()> on_ready) {
  std::vector<int32_t> partitions;
  partitions.reserve(starts.size());
  for (const PartitionStartOffset& s : starts) partitions.push_back(s.partition);

  // Claims the partitions on the peer's first consumer that reads none of them. Claimed before
  // Start() so that a concurrent Open() for the same partitions picks another consumer, and so
  // that Maintain() does not close this one meanwhile.
  auto claim = [&]() -> std::shared_ptr<Entry> {
    absl::MutexLock lock(&state_->mu);
    for (const std::shared_ptr<Entry>& e : state_->entries) {
      if (e->peer != peer) continue;
      bool free = true;
      for (int32_t p : partitions) free = free && !e->reading.contains({topic, p});
      if (!free) continue;
      for (int32_t p : partitions) e->reading.insert({topic, p});
      ++e->sources;
      return e;
    }
    return nullptr;
  };
  std::shared_ptr<Entry> entry = claim();
  if (entry == nullptr) {
    // One creation at a time, so that the first streams of a peer, set up at once, do not each
    // create a consumer; then look again, another Open() may have created one meanwhile.
    absl::MutexLock creating(&create_mu_);
    entry = claim();
    if (entry == nullptr) {
      absl::StatusOr<std::unique_ptr<PartitionConsumer>> consumer = factory_(peer);
      if (!consumer.ok()) return consumer.status();
      entry = std::make_shared<Entry>();
      entry->peer = peer;
      entry->consumer = *std::move(consumer);
      for (int32_t p : partitions) entry->reading.insert({topic, p});
      entry->sources = 1;
      absl::MutexLock lock(&state_->mu);
      state_->entries.push_back(entry);
    }
  }
  absl::StatusOr<std::unique_ptr<RecordSource>> inner =
      entry->consumer->Start(topic, starts, std::move(on_ready));
  if (!inner.ok()) {
    absl::MutexLock lock(&state_->mu);
    for (int32_t p : partitions) entry->reading.erase({topic, p});
    if (--entry->sources == 0) entry->idle_since = clock_->Now();
    return inner.status();
  }
  return std::make_unique<PooledSource>(state_, entry, topic, std::move(partitions),
                                        *std::move(inner), clock_);
}

std::vector<std::shared_ptr<PartitionConsumer>> ConsumerPool::Maintain() {
  std::vector<std::shared_ptr<PartitionConsumer>> live;
  std::vector<std::shared_ptr<PartitionConsumer>> closed;
  {
    const absl::Time now = clock_->Now();
    absl::MutexLock lock(&state_->mu);
    std::erase_if(state_->entries, [&](const std::shared_ptr<Entry>& e) {
      if (e->sources == 0 && now - e->idle_since >= idle_close_) {
        closed.push_back(std::move(e->consumer));
        return true;
      }
      live.push_back(e->consumer);
      return false;
    });
  }
  for (const std::shared_ptr<PartitionConsumer>& c : live) c->Poll();
  return closed;
}

int ConsumerPool::consumers() const {
  absl::MutexLock lock(&state_->mu);
  return static_cast<int>(state_->entries.size());
}

}  // namespace uop::broker
