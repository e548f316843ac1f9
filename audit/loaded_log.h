// An audit log read whole for offline work (verify, query, prove, export, reconcile): from an
// audit directory or from an exported bundle, with the position of every entry.
//
// A bundle is one file in the segment framing (segment_format.h) whose entries are
//   0: the manifest, text lines: "uop-audit-bundle/v1", "log <vkey>", "peer <vkey>"...,
//      "leaves <n>", "entries <m>", "since <unix micros or ->", "until <unix micros or ->"
//   1: the n leaf hashes of the log's first n entries, 32 bytes each, concatenated
//   2..m+1: the exported entries (canonical bytes), in increasing index order
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "audit/entry.h"
#include "audit/file_system.h"
#include "audit/keys.h"
#include "audit/merkle.h"

namespace uop::audit {

// Where something is, and why it is wrong; what `uopctl audit verify` prints.
struct Finding {
  std::string file;  // segment file name or bundle path
  uint64_t offset = 0;
  std::optional<uint64_t> entry;  // leaf index
  std::string reason;
  std::string ToString() const;
  friend bool operator==(const Finding&, const Finding&) = default;
};

struct LoadedEntry {
  uint64_t position = 0;  // leaf index the entry occupies (its own index field should agree)
  std::string bytes;
  Entry entry;
  std::string file;
  uint64_t offset = 0;
};

struct LoadedLog {
  std::string source;
  bool is_bundle = false;
  std::vector<Hash> leaves;          // every leaf hash [0, leaves.size())
  std::vector<LoadedEntry> entries;  // the entries present, by increasing position
  std::optional<Verifier> log_key;   // the directory's key file or the bundle manifest
  std::vector<Verifier> peer_keys;   // bundle manifest only
  std::optional<int64_t> since_micros, until_micros;  // bundle window
};

struct LoadResult {
  LoadedLog log;                   // what was read before any failure
  std::optional<Finding> failure;  // framing or encoding damage
};

// Reads every segment of an audit directory (strictly: a torn tail is a finding here).
absl::StatusOr<LoadResult> LoadDir(const std::string& dir, FileSystem* fs = nullptr);
// Parses bundle bytes; `name` is used in findings.
LoadResult LoadBundle(absl::string_view bytes, const std::string& name);
// LoadDir or LoadBundle depending on whether `path` is a directory.
absl::StatusOr<LoadResult> LoadPath(const std::string& path);

struct ExportOptions {
  std::optional<int64_t> since_micros, until_micros;
  std::vector<Verifier> peer_keys;  // keys of peers whose receipts and cosignatures it holds
};

// The bundle of `log` up to and including its latest checkpoint entry: entries whose time is in
// the window, plus every checkpoint, cosignature, peer checkpoint and peer key entry (needed
// to verify the rest). Fails if the log has no checkpoint.
absl::StatusOr<std::string> ExportBundle(const LoadedLog& log, const ExportOptions& options);

}  // namespace uop::audit
