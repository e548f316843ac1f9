// `uopctl audit`: each subcommand loads logs with audit/loaded_log.h, checks them with
// audit/log_check.h and prints what it found; exit 0 when everything verifies, 1 when not.
#include "tools/uopctl/audit_cmd.h"

#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "audit/audit_log.h"
#include "audit/checkpoint.h"
#include "audit/file_system.h"
#include "audit/keys.h"
#include "audit/loaded_log.h"
#include "audit/log_check.h"
#include "audit/proof.h"
#include "audit/receipt.h"
#include "audit/reconcile.h"

namespace uop::tools {
namespace {

using audit::CheckLog;
using audit::CheckOptions;
using audit::CheckReport;
using audit::Entry;
using audit::EntryType;
using audit::LoadedEntry;
using audit::LoadedLog;
using audit::Verifier;

int Fail(const std::string& message) {
  std::fprintf(stderr, "uopctl audit: %s\n", message.c_str());
  return 1;
}

std::optional<std::string> ReadText(const std::string& path) {
  absl::StatusOr<std::string> s = audit::FileSystem::Default()->ReadFile(path);
  if (!s.ok()) return std::nullopt;
  return *s;
}

// A key file: a vkey (as `keygen` writes to audit.vkey), or NAME=PATH of a PEM public key.
absl::StatusOr<Verifier> LoadKey(const std::string& spec) {
  std::string name, path = spec;
  if (size_t eq = spec.find('='); eq != std::string::npos && !ReadText(spec)) {
    name = spec.substr(0, eq);
    path = spec.substr(eq + 1);
  }
  std::optional<std::string> text = ReadText(path);
  if (!text) return absl::NotFoundError(absl::StrCat(path, ": cannot read"));
  if (absl::StartsWith(*text, "-----BEGIN")) {
    if (name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": a PEM public key needs a name: pass NAME=", path));
    }
    return Verifier::FromPem(name, *text);
  }
  absl::StatusOr<Verifier> v = Verifier::FromVkey(absl::StripAsciiWhitespace(*text));
  if (!v.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", v.status().message()));
  return v;
}

bool LoadKeys(const std::optional<std::string>& key, const std::vector<std::string>& peers,
              CheckOptions* options) {
  if (key) {
    absl::StatusOr<Verifier> v = LoadKey(*key);
    if (!v.ok()) return Fail(std::string(v.status().message())) == 0;
    options->log_key = *v;
  }
  for (const std::string& p : peers) {
    absl::StatusOr<Verifier> v = LoadKey(p);
    if (!v.ok()) return Fail(std::string(v.status().message())) == 0;
    options->peer_keys.push_back(*v);
  }
  return true;
}

// Loads and checks; prints the failure. nullopt on failure.
struct Checked {
  LoadedLog log;
  CheckReport report;
  Verifier key;
};

std::optional<Checked> LoadAndCheck(const std::string& path, const CheckOptions& options,
                                    bool quiet_warnings = false) {
  absl::StatusOr<audit::LoadResult> loaded = audit::LoadPath(path);
  if (!loaded.ok()) {
    Fail(std::string(loaded.status().message()));
    return std::nullopt;
  }
  if (loaded->failure) {
    std::printf("FAIL %s: %s\n", path.c_str(), loaded->failure->ToString().c_str());
    return std::nullopt;
  }
  CheckReport report = CheckLog(loaded->log, options);
  if (!quiet_warnings) {
    for (const std::string& w : report.warnings) std::printf("warning: %s\n", w.c_str());
  }
  if (!report.ok()) {
    std::printf("FAIL %s: %s\n", path.c_str(), report.failure->ToString().c_str());
    return std::nullopt;
  }
  Verifier key = options.log_key ? *options.log_key : *loaded->log.log_key;
  return Checked{std::move(loaded->log), std::move(report), key};
}

std::string FormatSeconds(int64_t seconds) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixSeconds(seconds),
                          absl::UTCTimeZone());
}

std::string FormatTime(int64_t micros) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", absl::FromUnixMicros(micros),
                          absl::UTCTimeZone());
}

bool ParseWhen(const std::string& s, std::optional<int64_t>* out) {
  if (s.empty()) return true;
  int64_t seconds = 0;
  if (absl::SimpleAtoi(s, &seconds)) {
    *out = seconds * 1000000;
    return true;
  }
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, s, &t, &err)) return false;
  *out = absl::ToUnixMicros(t);
  return true;
}

std::string JsonString(absl::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c < 0x20) {
      absl::StrAppendFormat(&out, "\\u%04x", c);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out + "\"";
}

std::string Range(const Entry& e) {
  if (!e.first_offset) return "";
  return absl::StrCat(*e.first_offset, "..", e.last_offset.value_or(*e.first_offset));
}

std::string EntryJson(const LoadedEntry& le) {
  const Entry& e = le.entry;
  std::vector<std::string> f = {
      absl::StrCat("\"index\":", le.position),
      absl::StrCat("\"time\":", JsonString(FormatTime(e.time_micros))),
      absl::StrCat("\"type\":", JsonString(audit::EntryTypeName(e.type)))};
  auto str = [&](const char* k, const std::string& v) {
    if (!v.empty()) f.push_back(absl::StrCat("\"", k, "\":", JsonString(v)));
  };
  auto num = [&](const char* k, const auto& v) {
    if (v) f.push_back(absl::StrCat("\"", k, "\":", *v));
  };
  str("peer", e.peer);
  str("dataset", e.dataset);
  str("topic", e.topic);
  num("partition", e.partition);
  num("first_offset", e.first_offset);
  num("last_offset", e.last_offset);
  num("record_count", e.record_count);
  num("byte_count", e.byte_count);
  if (!e.batch_sha256.empty()) str("batch_sha256", absl::BytesToHexString(e.batch_sha256));
  str("policy_version", e.policy_version);
  str("identity", e.identity);
  str("reason", e.reason);
  str("segment", le.file);
  f.push_back(absl::StrCat("\"offset\":", le.offset));
  return absl::StrCat("{", absl::StrJoin(f, ","), "}");
}

bool WriteOut(const std::string& path, const std::string& data) {
  if (path.empty() || path == "-") {
    std::fwrite(data.data(), 1, data.size(), stdout);
    return true;
  }
  if (absl::Status s = audit::FileSystem::Default()->WriteFileAtomically(path, data); !s.ok()) {
    Fail(std::string(s.message()));
    return false;
  }
  return true;
}

// ---- subcommands ----

int Keygen(const std::string& name, const std::string& out_dir) {
  absl::StatusOr<std::unique_ptr<audit::Signer>> signer = audit::Signer::Generate(name);
  if (!signer.ok()) return Fail(std::string(signer.status().message()));
  const std::string key_path = out_dir + "/audit.key";
  struct stat st;
  if (::stat(key_path.c_str(), &st) == 0) {
    return Fail(absl::StrCat(key_path, " exists; refusing to overwrite an audit key"));
  }
  audit::FileSystem* fs = audit::FileSystem::Default();
  if (absl::Status s = fs->CreateDir(out_dir); !s.ok()) return Fail(std::string(s.message()));
  const mode_t old = ::umask(077);  // the private key is readable by its owner only
  absl::Status s = fs->WriteFileAtomically(key_path, (*signer)->PrivateKeyPem());
  ::umask(old);
  if (!s.ok()) return Fail(std::string(s.message()));
  const std::string vkey = (*signer)->verifier().Vkey();
  if (!(s = fs->WriteFileAtomically(out_dir + "/audit.pub", (*signer)->verifier().PublicKeyPem()))
           .ok() ||
      !(s = fs->WriteFileAtomically(out_dir + "/audit.vkey", vkey + "\n")).ok()) {
    return Fail(std::string(s.message()));
  }
  std::printf(
      "private key: %s (mode 0600; never share it)\npublic key:  %s/audit.pub\n"
      "verifier key (give it to peers and auditors): %s\n",
      key_path.c_str(), out_dir.c_str(), vkey.c_str());
  return 0;
}

int Verify(const std::string& path, const CheckOptions& options,
           const std::vector<std::string>& witnessed) {
  std::optional<Checked> c = LoadAndCheck(path, options);
  if (!c) return 1;
  const CheckReport& r = c->report;
  for (const std::string& file : witnessed) {
    std::optional<std::string> note = ReadText(file);
    if (!note) return Fail(absl::StrCat(file, ": cannot read"));
    absl::Status s = absl::NotFoundError(absl::StrCat(file, ": not cosigned by any --peer-key"));
    for (const auto& [name, key] : r.keys) {
      s = audit::CheckAgainstWitnessed(c->log, *note, c->key, key);
      if (s.ok() || s.code() == absl::StatusCode::kDataLoss) break;
    }
    if (!s.ok()) {
      std::printf("FAIL %s: against %s: %s\n", path.c_str(), file.c_str(),
                  std::string(s.message()).c_str());
      return 1;
    }
    std::printf("witnessed checkpoint %s is consistent with the log\n", file.c_str());
  }
  std::printf(
      "OK %s: log of %s, %llu leaves, %llu entries checked; %llu checkpoints (latest signs %llu "
      "entries), %llu receipts, %llu cosignatures by peers, %llu peer checkpoints cosigned\n",
      path.c_str(), c->key.name().c_str(), static_cast<unsigned long long>(r.leaves),
      static_cast<unsigned long long>(r.entries), static_cast<unsigned long long>(r.checkpoints),
      static_cast<unsigned long long>(r.signed_size), static_cast<unsigned long long>(r.receipts),
      static_cast<unsigned long long>(r.cosignatures),
      static_cast<unsigned long long>(r.peer_checkpoints));
  return 0;
}

struct QueryFilter {
  std::string peer, dataset, type, since, until;
  bool json = false;
};

int Query(const std::string& path, const QueryFilter& q) {
  absl::StatusOr<audit::LoadResult> loaded = audit::LoadPath(path);
  if (!loaded.ok()) return Fail(std::string(loaded.status().message()));
  std::optional<int64_t> since, until;
  if (!ParseWhen(q.since, &since) || !ParseWhen(q.until, &until)) {
    return Fail("--since/--until: expected RFC 3339 (2026-12-02T15:00:00Z) or Unix seconds");
  }
  std::optional<EntryType> type;
  if (!q.type.empty()) {
    type = audit::EntryTypeFromName(q.type);
    if (!type) return Fail(absl::StrCat("--type ", q.type, ": unknown entry type"));
  }
  if (!q.json) {
    std::printf("%-6s %-27s %-15s %-9s %-12s %-22s %-13s %8s %-12s %s\n", "INDEX", "TIME", "TYPE",
                "PEER", "DATASET", "TOPIC/PARTITION", "OFFSETS", "RECORDS", "SHA-256", "DETAIL");
  }
  for (const LoadedEntry& le : loaded->log.entries) {
    const Entry& e = le.entry;
    if ((!q.peer.empty() && e.peer != q.peer) || (!q.dataset.empty() && e.dataset != q.dataset) ||
        (type && e.type != *type) || (since && e.time_micros < *since) ||
        (until && e.time_micros > *until)) {
      continue;
    }
    if (q.json) {
      std::printf("%s\n", EntryJson(le).c_str());
      continue;
    }
    std::string topic = e.topic;
    if (e.partition) absl::StrAppend(&topic, "/", *e.partition);
    std::string detail = !e.reason.empty() ? e.reason : !e.identity.empty() ? e.identity : "";
    if (e.type == EntryType::kCheckpoint) {
      absl::StatusOr<audit::SignedNote> n = audit::ParseNote(e.payload);
      if (n.ok()) {
        std::vector<std::string> lines = absl::StrSplit(n->body, '\n');
        if (lines.size() > 1) detail = absl::StrCat("signs ", lines[1], " entries");
      }
    }
    std::printf("%-6llu %-27s %-15s %-9s %-12s %-22s %-13s %8s %-12s %s\n",
                static_cast<unsigned long long>(le.position), FormatTime(e.time_micros).c_str(),
                std::string(audit::EntryTypeName(e.type)).c_str(), e.peer.c_str(),
                e.dataset.c_str(), topic.c_str(), Range(e).c_str(),
                e.record_count ? absl::StrCat(*e.record_count).c_str() : "",
                absl::BytesToHexString(e.batch_sha256).substr(0, 12).c_str(), detail.c_str());
  }
  if (loaded->failure) {
    std::printf("FAIL %s: %s (entries after it not shown)\n", path.c_str(),
                loaded->failure->ToString().c_str());
    return 1;
  }
  return 0;
}

const LoadedEntry* CheckpointAtSize(const LoadedLog& log, uint64_t size) {
  for (const LoadedEntry& le : log.entries) {
    if (le.entry.type == EntryType::kCheckpoint && le.position == size) return &le;
  }
  return nullptr;
}

int Prove(const std::string& path, const CheckOptions& options, const std::string& batch,
          const std::string& type_name, const std::string& consistency, uint64_t checkpoint_size,
          const std::string& out) {
  std::optional<Checked> c = LoadAndCheck(path, options, /*quiet_warnings=*/true);
  if (!c) return 1;
  const LoadedLog& log = c->log;
  std::span<const audit::Hash> leaves(log.leaves);
  audit::Proof proof;
  if (!batch.empty()) {
    std::vector<std::string> parts = absl::StrSplit(batch, ':');
    int32_t partition = 0;
    int64_t offset = 0;
    if (parts.size() < 3 || !absl::SimpleAtoi(parts[parts.size() - 2], &partition) ||
        !absl::SimpleAtoi(parts.back(), &offset)) {
      return Fail("--batch: expected TOPIC:PARTITION:OFFSET");
    }
    parts.resize(parts.size() - 2);
    const std::string topic = absl::StrJoin(parts, ":");
    std::optional<EntryType> want;
    if (!type_name.empty() && !(want = audit::EntryTypeFromName(type_name))) {
      return Fail(absl::StrCat("--type ", type_name, ": unknown entry type"));
    }
    const LoadedEntry* found = nullptr;
    for (const LoadedEntry& le : log.entries) {
      const Entry& e = le.entry;
      const bool batch_type =
          want ? e.type == *want
               : (e.type == EntryType::kBatchSent || e.type == EntryType::kBatchReceived);
      if (batch_type && e.topic == topic && e.partition == partition && e.first_offset &&
          *e.first_offset <= offset && offset <= e.last_offset.value_or(-1)) {
        found = &le;
        break;
      }
    }
    if (found == nullptr) return Fail(absl::StrCat("no batch entry holds ", batch, " in ", path));
    const LoadedEntry* cp = nullptr;
    for (const LoadedEntry& le : log.entries) {
      if (le.entry.type != EntryType::kCheckpoint || le.position <= found->position) continue;
      if (checkpoint_size == 0 || le.position == checkpoint_size) cp = &le;
      if (checkpoint_size != 0 && cp != nullptr) break;
    }
    if (cp == nullptr) {
      return Fail(absl::StrCat("no signed checkpoint covers entry ", found->position, " yet"));
    }
    proof.type = audit::Proof::Type::kInclusion;
    proof.index = found->position;
    proof.entry = found->bytes;
    proof.note = cp->entry.payload;
    proof.hashes = audit::InclusionProof(leaves.first(cp->position), found->position);
  } else {
    std::vector<std::string> sizes = absl::StrSplit(consistency, ':');
    uint64_t old_size = 0, new_size = c->report.signed_size;
    if (sizes.empty() || sizes.size() > 2 || !absl::SimpleAtoi(sizes[0], &old_size) ||
        (sizes.size() == 2 && !absl::SimpleAtoi(sizes[1], &new_size))) {
      return Fail("--consistency: expected OLD_SIZE[:NEW_SIZE] (sizes of two checkpoints)");
    }
    const LoadedEntry* old_cp = CheckpointAtSize(log, old_size);
    const LoadedEntry* new_cp = CheckpointAtSize(log, new_size);
    if (old_cp == nullptr || new_cp == nullptr || old_size > new_size) {
      return Fail(absl::StrCat("no checkpoints of sizes ", old_size, " and ", new_size,
                               " (old first) in ", path));
    }
    proof.type = audit::Proof::Type::kConsistency;
    proof.old_note = old_cp->entry.payload;
    proof.note = new_cp->entry.payload;
    proof.hashes = audit::ConsistencyProof(leaves.first(new_size), old_size);
  }
  return WriteOut(out, audit::FormatProof(proof)) ? 0 : 1;
}

int VerifyProofCmd(const std::string& file, const CheckOptions& options) {
  if (!options.log_key) return Fail("verify-proof needs --key (the log's verifier key)");
  std::optional<std::string> text = ReadText(file);
  if (!text) return Fail(absl::StrCat(file, ": cannot read"));
  absl::StatusOr<audit::Proof> proof = audit::ParseProof(*text);
  absl::StatusOr<audit::ProvenProof> proven =
      proof.ok() ? audit::VerifyProof(*proof, *options.log_key) : proof.status();
  if (!proven.ok()) {
    std::printf("FAIL %s: %s\n", file.c_str(), std::string(proven.status().message()).c_str());
    return 1;
  }
  const audit::Checkpoint& cp = proven->checkpoint;
  if (proven->entry) {
    const Entry& e = *proven->entry;
    std::printf(
        "OK: entry %llu (%s %s %s/%d %s, %llu records, sha256 %s) is in the log of %s "
        "of %llu entries, root %s, signed at %s\n",
        static_cast<unsigned long long>(e.index), std::string(audit::EntryTypeName(e.type)).c_str(),
        e.peer.c_str(), e.topic.c_str(), e.partition.value_or(-1), Range(e).c_str(),
        static_cast<unsigned long long>(e.record_count.value_or(0)),
        absl::BytesToHexString(e.batch_sha256).c_str(), cp.origin.c_str(),
        static_cast<unsigned long long>(cp.size), audit::HashToHex(cp.root).c_str(),
        FormatSeconds(cp.time_seconds).c_str());
  } else {
    std::printf(
        "OK: the log of %s of %llu entries (signed at %s) extends its checkpoint of %llu "
        "entries (signed at %s) without changing it\n",
        cp.origin.c_str(), static_cast<unsigned long long>(cp.size),
        FormatSeconds(cp.time_seconds).c_str(),
        static_cast<unsigned long long>(proven->old_checkpoint->size),
        FormatSeconds(proven->old_checkpoint->time_seconds).c_str());
  }
  return 0;
}

int Export(const std::string& path, const CheckOptions& options, const std::string& since_s,
           const std::string& until_s, const std::string& out) {
  std::optional<Checked> c = LoadAndCheck(path, options);
  if (!c) return 1;
  audit::ExportOptions eo;
  if (!ParseWhen(since_s, &eo.since_micros) || !ParseWhen(until_s, &eo.until_micros)) {
    return Fail("--since/--until: expected RFC 3339 (2026-12-02T15:00:00Z) or Unix seconds");
  }
  for (const auto& [name, key] : c->report.keys) eo.peer_keys.push_back(key);
  absl::StatusOr<std::string> bundle = audit::ExportBundle(c->log, eo);
  if (!bundle.ok()) return Fail(std::string(bundle.status().message()));
  if (!WriteOut(out, *bundle)) return 1;
  audit::LoadResult back = audit::LoadBundle(*bundle, out);
  std::fprintf(stderr, "wrote %s: %zu of %zu entries, %zu leaves, %zu peer keys\n", out.c_str(),
               back.log.entries.size(), c->log.entries.size(), back.log.leaves.size(),
               eo.peer_keys.size());
  return 0;
}

int Reconcile(const std::string& local, const std::string& peer, const CheckOptions& local_opts,
              const CheckOptions& peer_opts, bool all) {
  std::optional<Checked> a = LoadAndCheck(local, local_opts);
  if (!a) return 1;
  std::optional<Checked> b = LoadAndCheck(peer, peer_opts);
  if (!b) return 1;
  audit::ReconcileReport r = audit::Reconcile(a->log, a->report, a->key, b->log, b->report, b->key);
  std::printf("%s (%s, %zu leaves) and %s (%s, %zu leaves)\n", a->key.name().c_str(), local.c_str(),
              a->log.leaves.size(), b->key.name().c_str(), peer.c_str(), b->log.leaves.size());
  for (const std::string& p : r.log_problems) std::printf("LOG: %s\n", p.c_str());
  std::printf("%-10s %-10s %-22s %-13s %6s %8s %9s  %s\n", "SENDER", "RECEIVER", "TOPIC/PARTITION",
              "OFFSETS", "SENT", "RECEIPT", "RECEIVED", "PROBLEMS");
  auto idx = [](const std::optional<uint64_t>& v) {
    return v ? absl::StrCat(*v) : std::string("-");
  };
  for (const audit::ReconciledBatch& x : r.batches) {
    if (x.problems.empty() && !all) continue;
    std::printf("%-10s %-10s %-22s %-13s %6s %8s %9s  %s\n", x.sender.c_str(), x.receiver.c_str(),
                absl::StrCat(x.topic, "/", x.partition).c_str(),
                absl::StrCat(x.first_offset, "..", x.last_offset).c_str(),
                idx(x.sent_entry).c_str(), idx(x.receipt_entry).c_str(),
                idx(x.received_entry).c_str(),
                x.problems.empty() ? "agree" : absl::StrJoin(x.problems, "; ").c_str());
  }
  std::printf("%zu batches: %llu agree, %llu disagree; %zu log problems\n", r.batches.size(),
              static_cast<unsigned long long>(r.agreeing),
              static_cast<unsigned long long>(r.disagreeing), r.log_problems.size());
  return r.disagreeing == 0 && r.log_problems.empty() ? 0 : 1;
}

// Two nodes' audit logs of a simulated exchange, written through the same AuditLog the
// broker uses: for trying the other subcommands (and docs/audit.md's worked example).
struct DemoCity {
  std::string name;
  std::shared_ptr<const audit::Signer> key;
  std::unique_ptr<audit::AuditLog> log;
};

absl::StatusOr<std::shared_ptr<const audit::Signer>> DemoKey(const std::string& dir,
                                                             const std::string& name) {
  const std::string key_dir = absl::StrCat(dir, "/", name, "-key");
  if (!ReadText(key_dir + "/audit.key")) {
    if (Keygen(name, key_dir) != 0) return absl::InternalError("keygen failed");
  }
  std::optional<std::string> pem = ReadText(key_dir + "/audit.key");
  if (!pem) return absl::NotFoundError(key_dir + "/audit.key");
  absl::StatusOr<std::unique_ptr<audit::Signer>> s = audit::Signer::FromPem(name, *pem);
  if (!s.ok()) return s.status();
  return std::shared_ptr<const audit::Signer>(std::move(*s));
}

int Demo(const std::string& dir, int batches, bool disagree) {
  if (absl::Status s = audit::FileSystem::Default()->CreateDir(dir); !s.ok()) {
    return Fail(std::string(s.message()));
  }
  DemoCity cities[2] = {{"helsinki", nullptr, nullptr}, {"tallinn", nullptr, nullptr}};
  for (DemoCity& c : cities) {
    absl::StatusOr<std::shared_ptr<const audit::Signer>> key = DemoKey(dir, c.name);
    if (!key.ok()) return Fail(std::string(key.status().message()));
    c.key = *key;
    audit::AuditLogOptions o;
    o.checkpoint_every_entries = 8;
    absl::StatusOr<std::unique_ptr<audit::AuditLog>> log =
        audit::AuditLog::Open(absl::StrCat(dir, "/", c.name, "-audit"), c.key, o);
    if (!log.ok()) return Fail(std::string(log.status().message()));
    c.log = std::move(*log);
  }
  auto append = [](DemoCity& c, Entry e) -> absl::StatusOr<audit::AppendResult> {
    return c.log->AppendAndWait(std::move(e));
  };
  for (int i = 0; i < 2; ++i) {
    DemoCity& c = cities[i];
    DemoCity& peer = cities[1 - i];
    Entry e;
    e.type = EntryType::kNodeStart;
    e.reason = "uopd 0.1.0";
    if (!append(c, e).ok()) return Fail("append failed");
    e = Entry{};
    e.type = EntryType::kPolicyLoad;
    e.policy_version = i == 0 ? "sha256:5be1c0de" : "sha256:77aa0f3e";
    e.reason = "/etc/uopd/policies.yaml";
    append(c, e).IgnoreError();
    e = Entry{};
    e.type = EntryType::kPeerKey;
    e.peer = peer.name;
    e.payload = peer.key->verifier().Vkey();
    append(c, e).IgnoreError();
    e = Entry{};
    e.type = EntryType::kLinkUp;
    e.peer = peer.name;
    e.identity = absl::StrCat("DNS:uopd.", peer.name, ".example");
    append(c, e).IgnoreError();
  }
  Entry refused;
  refused.type = EntryType::kLinkRefused;
  refused.identity = "DNS:uopd.riga.example";
  refused.reason = "certificate not issued by a trusted CA";
  append(cities[0], refused).IgnoreError();
  // Helsinki shares noise with Tallinn, Tallinn shares air quality with Helsinki.
  for (int b = 0; b < batches; ++b) {
    for (int dir_i = 0; dir_i < 2; ++dir_i) {
      DemoCity& owner = cities[dir_i];
      DemoCity& receiver = cities[1 - dir_i];
      Entry sent;
      sent.type = EntryType::kBatchSent;
      sent.peer = receiver.name;
      sent.dataset = dir_i == 0 ? "noise" : "air-quality";
      sent.topic = dir_i == 0 ? "noise.observations" : "air.observations";
      sent.partition = b % 2;
      sent.first_offset = (b / 2) * 1000;
      sent.last_offset = *sent.first_offset + 999;
      sent.record_count = 1000;
      sent.byte_count = 1000 * 212;
      audit::BatchDigest digest;
      for (int r = 0; r < 1000; ++r) {
        digest.AddRecord(absl::StrCat(owner.name, "-site-", r % 12),
                         absl::StrCat("{\"result\":", 55 + (b * 7 + r) % 20, ".", r % 10, "}"));
      }
      sent.batch_sha256 = digest.Finish();
      sent.policy_version = dir_i == 0 ? "sha256:5be1c0de" : "sha256:77aa0f3e";
      if (!append(owner, sent).ok()) return Fail("append failed");
      Entry received = sent;
      received.type = EntryType::kBatchReceived;
      received.peer = owner.name;
      if (disagree && dir_i == 0 && b == 3) received.record_count = 998;
      // What the receiver's record stage does: entry durable, then the receipt for the Ack.
      absl::StatusOr<audit::AppendResult> done = append(receiver, received);
      if (!done.ok()) return Fail(std::string(done.status().message()));
      absl::StatusOr<std::string> receipt = audit::SignReceiptFor(
          received, done->index, done->time_micros, *receiver.key, owner.name);
      if (!receipt.ok()) return Fail(std::string(receipt.status().message()));
      // What the owner does with the receipt in the Ack: accept it only for the exact batch it
      // sent; otherwise log the refusal (with the receipt as evidence) and do not count it.
      if (disagree && dir_i == 1 && b == 4) continue;  // an owner that fails to log a receipt
      absl::StatusOr<Entry> accepted =
          audit::AcceptReceipt(*receipt, receiver.key->verifier(), owner.name, sent);
      if (accepted.ok()) {
        append(owner, *accepted).IgnoreError();
      } else {
        Entry refused = sent;
        refused.type = EntryType::kBatchRefused;
        refused.reason = std::string(accepted.status().message());
        refused.payload = *receipt;
        append(owner, refused).IgnoreError();
      }
    }
    if (b == batches / 2 || b == batches - 1) {
      // Witnessing: each cosigns the other's latest checkpoint; both keep a copy.
      for (int i = 0; i < 2; ++i) {
        DemoCity& subject = cities[i];
        DemoCity& witness = cities[1 - i];
        absl::StatusOr<audit::SignedCheckpoint> cp = subject.log->CheckpointNow();
        if (!cp.ok()) return Fail(std::string(cp.status().message()));
        absl::StatusOr<std::string> cosigned =
            audit::Cosign(cp->note, *witness.key, absl::ToUnixSeconds(absl::Now()));
        Entry kept;
        kept.type = EntryType::kPeerCheckpoint;
        kept.peer = subject.name;
        kept.payload = *cosigned;
        append(witness, kept).IgnoreError();
        Entry back;
        back.type = EntryType::kCosignature;
        back.peer = witness.name;
        back.payload = *cosigned;
        append(subject, back).IgnoreError();
        WriteOut(absl::StrCat(dir, "/", subject.name, "-witnessed-by-", witness.name, ".note"),
                 *cosigned);
      }
    }
  }
  for (DemoCity& c : cities) {
    Entry stop;
    stop.type = EntryType::kNodeStop;
    stop.reason = "SIGTERM";
    append(c, stop).IgnoreError();
    if (absl::Status h = c.log->Health(); !h.ok()) return Fail(std::string(h.message()));
    c.log.reset();
  }
  std::printf("wrote %s/{helsinki,tallinn}-audit, -key and -witnessed-by-*.note\n", dir.c_str());
  return 0;
}

}  // namespace

int AuditMain(int argc, char** argv) {
  CLI::App app{"uopctl audit: verify, query, prove and reconcile audit logs"};
  app.name("uopctl audit");
  app.require_subcommand(1);

  std::string name, out_dir = ".";
  auto* keygen = app.add_subcommand("keygen", "Generate a node's Ed25519 audit key");
  keygen->add_option("--name", name, "Key name (the node's audit origin, e.g. helsinki)")
      ->required();
  keygen->add_option("--out", out_dir, "Directory for audit.key, audit.pub, audit.vkey");

  std::string path, key, witness_file;
  std::vector<std::string> peer_keys, witnessed;
  auto add_keys = [&](CLI::App* c) {
    c->add_option("--key", key, "The log's key: a vkey file, or NAME=PEM_FILE");
    c->add_option("--peer-key", peer_keys, "A peer's key (receipts, cosignatures); repeatable");
  };
  auto* verify = app.add_subcommand("verify", "Verify an audit directory or bundle offline");
  verify->add_option("path", path, "Audit directory or bundle")->required();
  add_keys(verify);
  verify->add_option("--witnessed", witnessed,
                     "A checkpoint of this log cosigned by a peer, as the peer kept it");

  QueryFilter q;
  auto* query = app.add_subcommand("query", "List entries");
  query->add_option("path", path, "Audit directory or bundle")->required();
  query->add_option("--peer", q.peer);
  query->add_option("--dataset", q.dataset);
  query->add_option("--type", q.type, "Entry type, e.g. batch_sent, receipt, link_refused");
  query->add_option("--since", q.since, "RFC 3339 or Unix seconds");
  query->add_option("--until", q.until, "RFC 3339 or Unix seconds");
  query->add_flag("--json", q.json, "JSON lines");

  std::string batch, type_name, consistency, out;
  uint64_t checkpoint_size = 0;
  auto* prove = app.add_subcommand("prove", "Inclusion or consistency proof");
  prove->add_option("path", path, "Audit directory or bundle")->required();
  add_keys(prove);
  auto* batch_opt = prove->add_option("--batch", batch, "TOPIC:PARTITION:OFFSET of a batch");
  prove->add_option("--type", type_name, "batch_sent, batch_received or receipt");
  prove->add_option("--checkpoint", checkpoint_size, "Size of the checkpoint to prove against");
  auto* cons_opt =
      prove->add_option("--consistency", consistency, "OLD_SIZE[:NEW_SIZE] of two checkpoints");
  batch_opt->excludes(cons_opt);
  prove->add_option("--out", out, "Proof file (default stdout)");

  std::string proof_file;
  auto* vproof = app.add_subcommand("verify-proof", "Check a proof with the log's public key");
  vproof->add_option("proof", proof_file)->required();
  vproof->add_option("--key", key, "The log's key: a vkey file, or NAME=PEM_FILE")->required();

  std::string since, until;
  auto* exp = app.add_subcommand("export", "Write a self-contained bundle");
  exp->add_option("path", path, "Audit directory")->required();
  add_keys(exp);
  exp->add_option("--since", since, "RFC 3339 or Unix seconds");
  exp->add_option("--until", until, "RFC 3339 or Unix seconds");
  exp->add_option("--out", out, "Bundle file")->required();

  std::string peer_path, peer_log_key;
  bool all = false;
  auto* rec = app.add_subcommand("reconcile", "Compare both sides' records of their exchanges");
  rec->add_option("local", path, "Local audit directory or bundle")->required();
  rec->add_option("peer", peer_path, "The peer's bundle")->required();
  rec->add_option("--key", key, "Local log's key");
  rec->add_option("--peer-key", peer_log_key, "The peer log's key");
  rec->add_flag("--all", all, "List agreeing batches too");

  std::string demo_dir;
  int demo_batches = 8;
  bool demo_disagree = false;
  auto* demo = app.add_subcommand("demo", "Write two example logs of a simulated exchange");
  demo->add_option("--out", demo_dir, "Directory")->required();
  demo->add_option("--batches", demo_batches, "Batches each way");
  demo->add_flag("--disagree", demo_disagree,
                 "Make the two sides disagree (a record count, a missing receipt)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  CheckOptions options;
  if (*keygen) return Keygen(name, out_dir);
  if (*demo) return Demo(demo_dir, demo_batches, demo_disagree);
  if (*rec) {
    CheckOptions peer_options;
    std::vector<std::string> none;
    if (!LoadKeys(key.empty() ? std::nullopt : std::optional(key),
                  peer_log_key.empty() ? none : std::vector<std::string>{peer_log_key}, &options) ||
        !LoadKeys(peer_log_key.empty() ? std::nullopt : std::optional(peer_log_key),
                  key.empty() ? none : std::vector<std::string>{key}, &peer_options)) {
      return 2;
    }
    return Reconcile(path, peer_path, options, peer_options, all);
  }
  if (!LoadKeys(key.empty() ? std::nullopt : std::optional(key), peer_keys, &options)) return 2;
  if (*verify) return Verify(path, options, witnessed);
  if (*query) return Query(path, q);
  if (*prove) {
    if (batch.empty() && consistency.empty()) return Fail("prove needs --batch or --consistency");
    return Prove(path, options, batch, type_name, consistency, checkpoint_size, out);
  }
  if (*vproof) return VerifyProofCmd(proof_file, options);
  if (*exp) return Export(path, options, since, until, out);
  return 2;
}

}  // namespace uop::tools
