// The receiver's record stage over the audit log: one batch_received entry per batch of a
// transaction, durable before the transaction commits, and a receipt per batch signed with the
// node's audit key for the Ack sent after the commit (docs/audit.md sections 3 and 6).
#pragma once

#include <string>
#include <vector>

#include "audit/audit_log.h"
#include "audit/keys.h"
#include "broker/import/import_session.h"

namespace uop::broker {

// Thread-safe; `log` and `signer` must outlive it. A null `signer`: entries but no receipts
// (the owner has no audit key of ours configured).
class LogImportAudit final : public AuditSink {
 public:
  LogImportAudit(audit::AuditSink* log, const audit::Signer* signer) : log_(log), signer_(signer) {}

  // Blocks until every entry is durable (one group commit for all of them). Any failure is
  // UNAVAILABLE naming why: the transaction must not commit.
  absl::Status RecordReceived(const WrittenBatches& written,
                              std::vector<uop::federation::v1::BatchReceipt>* receipts) override;

 private:
  audit::AuditSink* log_;
  const audit::Signer* signer_;
};

// The batch_received entry for `batch` of `written` (peer = the owner, dataset = origin topic).
audit::Entry ReceivedEntry(const WrittenBatches& written, const WrittenBatch& batch);

}  // namespace uop::broker
