// Both cities' records of the same exchanges side by side: for every batch that crossed
// between the two logs (either direction), what the sender logged (batch_sent, receipt) and
// what the receiver logged (batch_received), and every way they disagree.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "audit/loaded_log.h"
#include "audit/log_check.h"

namespace uop::audit {

struct ReconciledBatch {
  std::string sender, receiver;
  std::string topic;
  int32_t partition = 0;
  int64_t first_offset = 0;
  int64_t last_offset = 0;
  std::optional<uint64_t> sent_entry, receipt_entry, received_entry;  // leaf indices
  std::vector<std::string> problems;                                  // empty when both sides agree
};

struct ReconcileReport {
  std::vector<ReconciledBatch> batches;   // sorted by sender, topic, partition, offset
  std::vector<std::string> log_problems;  // e.g. a log rewritten after the other cosigned it
  uint64_t agreeing = 0;
  uint64_t disagreeing = 0;
};

// `a` and `b` are two verified logs (their CheckReports ok) of two peers; their names are their
// keys' names (CheckOptions::log_key or the source's own).
ReconcileReport Reconcile(const LoadedLog& a, const CheckReport& a_report, const Verifier& a_key,
                          const LoadedLog& b, const CheckReport& b_report, const Verifier& b_key);

}  // namespace uop::audit
