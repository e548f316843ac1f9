// Matching is by (sender, topic, partition, first offset): the one identity of a batch that
// both sides log.
#include "audit/reconcile.h"

#include <map>
#include <tuple>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "audit/receipt.h"

namespace uop::audit {
namespace {

using Key = std::tuple<std::string, std::string, int32_t, int64_t>;

struct Side {
  const LoadedLog* log;
  const CheckReport* report;
  const Verifier* key;
};

bool InWindow(const LoadedLog& log, int64_t t) {
  return (!log.since_micros || t >= *log.since_micros) &&
         (!log.until_micros || t <= *log.until_micros);
}

// The largest size of `subject`'s log that `witness` cosigned, from either log's records.
uint64_t WitnessedSize(const Side& subject, const Side& witness) {
  uint64_t size = 0;
  auto it = subject.report->witnessed_size.find(witness.key->name());
  if (it != subject.report->witnessed_size.end()) size = it->second;
  for (const LoadedEntry& le : witness.log->entries) {
    if (le.entry.type != EntryType::kPeerCheckpoint || le.entry.peer != subject.key->name()) {
      continue;
    }
    absl::StatusOr<Checkpoint> c = VerifyCosigned(le.entry.payload, *subject.key, *witness.key);
    if (c.ok()) size = std::max(size, c->size);
  }
  return size;
}

void CheckWitnessCopies(const Side& subject, const Side& witness, ReconcileReport* out) {
  for (const LoadedEntry& le : witness.log->entries) {
    if (le.entry.type != EntryType::kPeerCheckpoint || le.entry.peer != subject.key->name()) {
      continue;
    }
    absl::Status s =
        CheckAgainstWitnessed(*subject.log, le.entry.payload, *subject.key, *witness.key);
    if (!s.ok()) {
      out->log_problems.push_back(
          absl::StrCat(subject.key->name(), "'s log against the checkpoint ", witness.key->name(),
                       " cosigned (its entry ", le.position, "): ", s.message()));
    }
  }
}

void Direction(const Side& sender, const Side& receiver, ReconcileReport* out) {
  const std::string& s_name = sender.key->name();
  const std::string& r_name = receiver.key->name();
  std::map<Key, ReconciledBatch> rows;
  std::map<Key, const Entry*> sent, receipts, received, sender_refused, receiver_refused;
  auto row = [&](const Entry& e) -> ReconciledBatch& {
    ReconciledBatch& b = rows[Key{s_name, e.topic, *e.partition, *e.first_offset}];
    b.sender = s_name;
    b.receiver = r_name;
    b.topic = e.topic;
    b.partition = *e.partition;
    b.first_offset = *e.first_offset;
    b.last_offset = *e.last_offset;
    return b;
  };
  for (const LoadedEntry& le : sender.log->entries) {
    const Entry& e = le.entry;
    if (e.peer != r_name || !e.partition || !e.first_offset || !e.last_offset) continue;
    if (e.type == EntryType::kBatchSent) {
      row(e).sent_entry = le.position;
      sent[Key{s_name, e.topic, *e.partition, *e.first_offset}] = &e;
    } else if (e.type == EntryType::kReceipt) {
      row(e).receipt_entry = le.position;
      receipts[Key{s_name, e.topic, *e.partition, *e.first_offset}] = &e;
    } else if (e.type == EntryType::kBatchRefused) {
      sender_refused[Key{s_name, e.topic, *e.partition, *e.first_offset}] = &e;
    }
  }
  std::map<uint64_t, const Entry*> received_at;
  for (const LoadedEntry& le : receiver.log->entries) {
    const Entry& e = le.entry;
    if (e.peer != s_name || !e.partition || !e.first_offset || !e.last_offset) continue;
    if (e.type == EntryType::kBatchRefused) {
      receiver_refused[Key{s_name, e.topic, *e.partition, *e.first_offset}] = &e;
      continue;
    }
    if (e.type != EntryType::kBatchReceived) continue;
    row(e).received_entry = le.position;
    received[Key{s_name, e.topic, *e.partition, *e.first_offset}] = &e;
    received_at[le.position] = &e;
  }
  const uint64_t sender_witnessed = WitnessedSize(sender, receiver);
  const uint64_t receiver_witnessed = WitnessedSize(receiver, sender);
  for (auto& [key, b] : rows) {
    const Entry* s = sent.count(key) ? sent[key] : nullptr;
    const Entry* r = received.count(key) ? received[key] : nullptr;
    const Entry* rc = receipts.count(key) ? receipts[key] : nullptr;
    const Entry* any_sender = s != nullptr ? s : rc;
    if (s == nullptr && (r == nullptr || InWindow(*sender.log, r->time_micros))) {
      b.problems.push_back(absl::StrCat(s_name, " has no batch_sent entry"));
    }
    if (r == nullptr &&
        (any_sender == nullptr || InWindow(*receiver.log, any_sender->time_micros))) {
      b.problems.push_back(absl::StrCat(r_name, " has no batch_received entry"));
    }
    if (auto it = receiver_refused.find(key); it != receiver_refused.end()) {
      b.problems.push_back(absl::StrCat(r_name, " refused it: ", it->second->reason));
    }
    if (s != nullptr && r != nullptr && rc == nullptr) {
      auto it = sender_refused.find(key);
      b.problems.push_back(
          it != sender_refused.end()
              ? absl::StrCat(s_name, " refused ", r_name, "'s receipt: ", it->second->reason)
              : absl::StrCat(s_name, " logged no receipt from ", r_name));
    }
    if (s != nullptr && r != nullptr) {
      if (s->batch_sha256 != r->batch_sha256) {
        b.problems.push_back(absl::StrCat("digest differs: sent ",
                                          absl::BytesToHexString(s->batch_sha256), ", received ",
                                          absl::BytesToHexString(r->batch_sha256)));
      }
      if (s->record_count != r->record_count) {
        b.problems.push_back(absl::StrCat("record count differs: sent ",
                                          s->record_count.value_or(0), ", received ",
                                          r->record_count.value_or(0)));
      }
      if (s->last_offset != r->last_offset) {
        b.problems.push_back(absl::StrCat("offset range differs: sent ..", *s->last_offset,
                                          ", received ..", *r->last_offset));
      }
    }
    if (s != nullptr && rc != nullptr) {
      absl::StatusOr<Receipt> receipt = ParseReceipt(rc->payload);
      absl::Status m = receipt.ok() ? CheckReceiptMatches(*receipt, *s) : receipt.status();
      if (!m.ok()) b.problems.push_back(std::string(m.message()));
    }
    if (rc != nullptr) {
      absl::StatusOr<Receipt> receipt = ParseReceipt(rc->payload);
      if (receipt.ok() && receipt->log_index < receiver.log->leaves.size()) {
        auto it = received_at.find(receipt->log_index);
        const bool exported = InWindow(*receiver.log, receipt->time_micros);
        if (it == received_at.end() && exported) {
          b.problems.push_back(absl::StrCat("receipt names ", r_name, "'s entry ",
                                            receipt->log_index,
                                            ", which is not its batch_received"));
        } else if (it != received_at.end() && (it->second->batch_sha256 != receipt->batch_sha256 ||
                                               it->second->first_offset != receipt->first_offset)) {
          b.problems.push_back(absl::StrCat("receipt names ", r_name, "'s entry ",
                                            receipt->log_index, ", which records another batch"));
        }
      }
    }
    if (b.sent_entry && *b.sent_entry >= sender_witnessed) {
      b.problems.push_back(absl::StrCat("unwitnessed: ", s_name, "'s entry ", *b.sent_entry,
                                        " is beyond the last checkpoint ", r_name, " cosigned (",
                                        sender_witnessed, " entries)"));
    }
    if (b.received_entry && *b.received_entry >= receiver_witnessed) {
      b.problems.push_back(absl::StrCat("unwitnessed: ", r_name, "'s entry ", *b.received_entry,
                                        " is beyond the last checkpoint ", s_name, " cosigned (",
                                        receiver_witnessed, " entries)"));
    }
    (b.problems.empty() ? out->agreeing : out->disagreeing)++;
    out->batches.push_back(std::move(b));
  }
}

}  // namespace

ReconcileReport Reconcile(const LoadedLog& a, const CheckReport& a_report, const Verifier& a_key,
                          const LoadedLog& b, const CheckReport& b_report, const Verifier& b_key) {
  ReconcileReport out;
  Side sa{&a, &a_report, &a_key};
  Side sb{&b, &b_report, &b_key};
  CheckWitnessCopies(sa, sb, &out);
  CheckWitnessCopies(sb, sa, &out);
  Direction(sa, sb, &out);
  Direction(sb, sa, &out);
  return out;
}

}  // namespace uop::audit
