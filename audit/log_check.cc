// One pass over the leaves: the tree of the first i leaves is at hand when entry i is checked,
// so a checkpoint at position i must sign exactly that tree.
#include "audit/log_check.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "audit/receipt.h"

namespace uop::audit {
namespace {

class Checker {
 public:
  Checker(const LoadedLog& log, const CheckOptions& options, CheckReport* report)
      : log_(log), report_(*report) {
    if (options.log_key.has_value()) {
      log_key_ = options.log_key;
      if (log.log_key.has_value() && log.log_key->Vkey() != options.log_key->Vkey()) {
        report_.warnings.push_back(absl::StrCat(log.source, " names another key (",
                                                log.log_key->Vkey(), ") than the one given"));
      }
    } else if (log.log_key.has_value()) {
      log_key_ = log.log_key;
      report_.warnings.push_back(absl::StrCat(
          "log key taken from ", log.source,
          " itself: this proves the log is intact, not who wrote it; pass the key you trust"));
    }
    for (const Verifier& k : options.peer_keys) report_.keys.emplace(k.name(), k);
    for (const Verifier& k : log.peer_keys) {
      if (report_.keys.emplace(k.name(), k).second) {
        report_.warnings.push_back(
            absl::StrCat("key of peer ", k.name(), " taken from the bundle manifest"));
      }
    }
  }

  void Run() {
    report_.leaves = log_.leaves.size();
    if (!log_key_.has_value()) {
      Fail(log_.source, 0, std::nullopt, "no key to verify the log with");
      return;
    }
    CompactTree tree;
    size_t next = 0;
    for (uint64_t i = 0; i < log_.leaves.size(); ++i) {
      if (next < log_.entries.size() && log_.entries[next].position == i) {
        if (!CheckEntry(log_.entries[next], tree)) return;
        ++next;
      }
      tree.Append(log_.leaves[i]);
    }
    const uint64_t unsigned_tail =
        report_.checkpoints == 0 ? log_.leaves.size() : log_.leaves.size() - last_checkpoint_ - 1;
    if (unsigned_tail > 0) {
      report_.warnings.push_back(
          absl::StrCat(unsigned_tail, " entries after the last checkpoint ", "are not signed yet"));
    }
  }

 private:
  bool Fail(const std::string& file, uint64_t offset, std::optional<uint64_t> entry,
            std::string reason) {
    report_.failure = Finding{file, offset, entry, std::move(reason)};
    return false;
  }

  const Verifier* PeerKey(const std::string& peer) {
    auto it = report_.keys.find(peer);
    return it == report_.keys.end() ? nullptr : &it->second;
  }

  bool CheckEntry(const LoadedEntry& le, const CompactTree& tree) {
    const Entry& e = le.entry;
    const uint64_t i = le.position;
    auto fail = [&](std::string reason) { return Fail(le.file, le.offset, i, std::move(reason)); };
    ++report_.entries;
    if (e.index != i) {
      return fail(absl::StrCat("entry at position ", i, " says it is entry ", e.index,
                               " (entries deleted, inserted or reordered)"));
    }
    if (e.time_micros < last_time_) {
      return fail(
          absl::StrCat("time ", e.time_micros, " is before the previous entry's ", last_time_));
    }
    last_time_ = e.time_micros;
    switch (e.type) {
      case EntryType::kCheckpoint: {
        absl::StatusOr<Checkpoint> c = VerifyCheckpoint(e.payload, *log_key_);
        if (!c.ok()) return fail(std::string(c.status().message()));
        if (c->size != i) {
          return fail(absl::StrCat("checkpoint of size ", c->size, " stored at position ", i));
        }
        if (c->root != tree.Root()) {
          return fail(absl::StrCat("checkpoint signs root ", HashToHex(c->root), " for ", i,
                                   " entries, the entries hash to ", HashToHex(tree.Root())));
        }
        if (!origin_.empty() && c->origin != origin_) {
          return fail(absl::StrCat("checkpoint origin ", c->origin, ", earlier ", origin_));
        }
        origin_ = c->origin;
        ++report_.checkpoints;
        report_.signed_size = c->size;
        report_.latest_checkpoint = e.payload;
        report_.checkpoint_roots[c->size] = c->root;
        last_checkpoint_ = i;
        return true;
      }
      case EntryType::kReceipt: {
        const Verifier* key = PeerKey(e.peer);
        if (key == nullptr)
          return fail(absl::StrCat("no key of peer ", e.peer, " for its receipt"));
        absl::StatusOr<Receipt> r = VerifyReceipt(e.payload, *key);
        if (!r.ok()) return fail(std::string(r.status().message()));
        if (r->origin != log_key_->name()) {
          return fail(absl::StrCat("receipt acknowledges a batch of ", r->origin, ", not of ",
                                   log_key_->name()));
        }
        if (ReceiptEntry(*r, e.payload, e.dataset) != WithoutIndex(e)) {
          return fail("receipt entry fields differ from the signed receipt");
        }
        ++report_.receipts;
        return true;
      }
      case EntryType::kCosignature: {
        const Verifier* key = PeerKey(e.peer);
        if (key == nullptr) {
          return fail(absl::StrCat("no key of peer ", e.peer, " for its cosignature"));
        }
        absl::StatusOr<Checkpoint> c = VerifyCosigned(e.payload, *log_key_, *key);
        if (!c.ok()) return fail(std::string(c.status().message()));
        auto it = report_.checkpoint_roots.find(c->size);
        if (it == report_.checkpoint_roots.end() || it->second != c->root) {
          return fail(absl::StrCat("peer ", e.peer, " cosigned a checkpoint of size ", c->size,
                                   " that is not one of this log's checkpoints"));
        }
        ++report_.cosignatures;
        uint64_t& w = report_.witnessed_size[e.peer];
        w = std::max(w, c->size);
        return true;
      }
      case EntryType::kPeerCheckpoint: {
        const Verifier* key = PeerKey(e.peer);
        if (key == nullptr) {
          return fail(absl::StrCat("no key of peer ", e.peer, " for its checkpoint"));
        }
        absl::StatusOr<Checkpoint> c = VerifyCosigned(e.payload, *key, *log_key_);
        if (!c.ok()) return fail(std::string(c.status().message()));
        ++report_.peer_checkpoints;
        return true;
      }
      case EntryType::kPeerKey: {
        absl::StatusOr<Verifier> k = Verifier::FromVkey(e.payload);
        if (!k.ok()) return fail(absl::StrCat("peer key: ", k.status().message()));
        if (k->name() != e.peer) {
          return fail(absl::StrCat("peer key of ", e.peer, " is named ", k->name()));
        }
        const Verifier* known = PeerKey(e.peer);
        if (known == nullptr) {
          report_.keys.emplace(e.peer, *k);
          report_.warnings.push_back(
              absl::StrCat("key of peer ", e.peer, " taken from the log's pinned entry ", i));
        } else if (known->Vkey() != k->Vkey()) {
          return fail(absl::StrCat("log pins key ", k->Vkey(), " for ", e.peer, ", expected ",
                                   known->Vkey()));
        }
        return true;
      }
      case EntryType::kBatchSent:
      case EntryType::kBatchReceived:
        if (e.peer.empty() || e.topic.empty() || !e.partition || !e.first_offset ||
            !e.last_offset || !e.record_count || e.batch_sha256.size() != 32) {
          return fail("batch entry lacks peer, topic, partition, offsets, count or digest");
        }
        if (*e.first_offset > *e.last_offset) return fail("batch offset range is reversed");
        return true;
      default:
        return true;
    }
  }

  static Entry WithoutIndex(Entry e) {
    e.index = 0;
    e.time_micros = 0;
    return e;
  }

  const LoadedLog& log_;
  CheckReport& report_;
  std::optional<Verifier> log_key_;
  std::string origin_;
  int64_t last_time_ = INT64_MIN;
  uint64_t last_checkpoint_ = 0;
};

}  // namespace

CheckReport CheckLog(const LoadedLog& log, const CheckOptions& options) {
  CheckReport report;
  Checker(log, options, &report).Run();
  return report;
}

absl::Status CheckAgainstWitnessed(const LoadedLog& log, absl::string_view cosigned_note,
                                   const Verifier& log_key, const Verifier& witness) {
  int64_t at = 0;
  absl::StatusOr<Checkpoint> c = VerifyCosigned(cosigned_note, log_key, witness, &at);
  if (!c.ok()) return c.status();
  if (c->size > log.leaves.size()) {
    return absl::DataLossError(absl::StrCat("log truncated: ", witness.name(), " cosigned ",
                                            c->size, " entries at ", at, ", the log has ",
                                            log.leaves.size()));
  }
  std::span<const Hash> leaves(log.leaves);
  const Hash now = RootOf(leaves.first(c->size));
  if (now != c->root) {
    return absl::DataLossError(
        absl::StrCat("log rewritten: its first ", c->size, " entries hash to ", HashToHex(now),
                     ", ", witness.name(), " cosigned ", HashToHex(c->root), " at ", at));
  }
  // The same statement as a verifier without the leaves would check it: a consistency proof
  // from the witnessed tree to the whole log.
  const Hash full = RootOf(leaves);
  return VerifyConsistency(c->size, leaves.size(), c->root, full,
                           ConsistencyProof(leaves, c->size));
}

}  // namespace uop::audit
