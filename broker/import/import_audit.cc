// Record stage: append all entries of a transaction, wait once, sign the receipts.
#include "broker/import/import_audit.h"

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "audit/receipt.h"

namespace uop::broker {

namespace fed = uop::federation::v1;

audit::Entry ReceivedEntry(const WrittenBatches& written, const WrittenBatch& batch) {
  audit::Entry e;
  e.type = audit::EntryType::kBatchReceived;
  e.peer = written.peer;
  e.dataset = written.origin_topic;
  e.topic = written.origin_topic;
  e.partition = batch.partition;
  e.first_offset = batch.first_offset;
  e.last_offset = batch.last_offset;
  e.record_count = batch.records;
  e.byte_count = batch.bytes;
  e.batch_sha256 = batch.sha256;
  e.policy_version = batch.policy_version;
  return e;
}

absl::Status LogImportAudit::RecordReceived(const WrittenBatches& written,
                                            std::vector<fed::BatchReceipt>* receipts) {
  if (absl::Status h = log_->Health(); !h.ok()) {
    return absl::UnavailableError(h.message());
  }
  struct State {
    absl::Mutex mu;
    size_t outstanding ABSL_GUARDED_BY(mu) = 0;
    std::vector<absl::StatusOr<audit::AppendResult>> results ABSL_GUARDED_BY(mu);
  } state;
  std::vector<audit::Entry> entries;
  entries.reserve(written.batches.size());
  for (const WrittenBatch& b : written.batches) entries.push_back(ReceivedEntry(written, b));
  {
    absl::MutexLock lock(&state.mu);
    state.outstanding = entries.size();
    state.results.assign(entries.size(), absl::UnknownError("not appended"));
  }
  for (size_t i = 0; i < entries.size(); ++i) {
    log_->Append(entries[i], [&state, i](absl::StatusOr<audit::AppendResult> r) {
      absl::MutexLock lock(&state.mu);
      state.results[i] = std::move(r);
      --state.outstanding;
    });
  }
  std::vector<absl::StatusOr<audit::AppendResult>> results;
  {
    absl::MutexLock lock(&state.mu);
    auto done = [&state]()
                    ABSL_EXCLUSIVE_LOCKS_REQUIRED(state.mu) { return state.outstanding == 0; };
    state.mu.Await(absl::Condition(&done));
    results = std::move(state.results);
  }
  for (size_t i = 0; i < entries.size(); ++i) {
    if (!results[i].ok()) return absl::UnavailableError(results[i].status().message());
    if (signer_ == nullptr) continue;
    absl::StatusOr<std::string> receipt = audit::SignReceiptFor(
        entries[i], results[i]->index, results[i]->time_micros, *signer_, written.peer);
    if (!receipt.ok()) {
      return absl::InternalError(absl::StrCat("receipt for batch ", written.batches[i].batch_seq,
                                              ": ", receipt.status().message()));
    }
    fed::BatchReceipt& out = receipts->emplace_back();
    out.set_batch_seq(written.batches[i].batch_seq);
    out.set_receipt(*std::move(receipt));
  }
  return absl::OkStatus();
}

}  // namespace uop::broker
