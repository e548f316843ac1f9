// Reading audit directories and bundles for the offline tools; writing bundles.
#include "audit/loaded_log.h"

#include <sys/stat.h>

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "audit/audit_log.h"
#include "audit/segment_reader.h"
#include "audit/segment_writer.h"

namespace uop::audit {
namespace {

constexpr absl::string_view kBundleMagic = "uop-audit-bundle/v1";

class StringFile final : public WritableFile {
 public:
  explicit StringFile(std::string* out) : out_(out) {}
  absl::Status Append(absl::string_view data) override {
    out_->append(data.data(), data.size());
    return absl::OkStatus();
  }
  absl::Status Sync() override { return absl::OkStatus(); }
  absl::Status Close() override { return absl::OkStatus(); }
  absl::Status CheckLinked() override { return absl::OkStatus(); }

 private:
  std::string* out_;
};

bool IsStructural(EntryType t) {
  return t == EntryType::kCheckpoint || t == EntryType::kCosignature ||
         t == EntryType::kPeerCheckpoint || t == EntryType::kPeerKey;
}

bool ParseOptionalMicros(absl::string_view v, std::optional<int64_t>* out) {
  if (v == "-") return true;
  int64_t n = 0;
  if (!absl::SimpleAtoi(v, &n)) return false;
  *out = n;
  return true;
}

}  // namespace

std::string Finding::ToString() const {
  std::string s = absl::StrCat(file, " offset ", offset);
  if (entry.has_value()) absl::StrAppend(&s, " entry ", *entry);
  absl::StrAppend(&s, ": ", reason);
  return s;
}

absl::StatusOr<LoadResult> LoadDir(const std::string& dir, FileSystem* fs) {
  if (fs == nullptr) fs = FileSystem::Default();
  LoadResult result;
  LoadedLog& log = result.log;
  log.source = dir;
  absl::StatusOr<std::vector<std::string>> names = fs->ListDir(dir);
  if (!names.ok()) return names.status();
  std::vector<uint64_t> numbers;
  for (const std::string& name : *names) {
    uint64_t n = 0;
    if (ParseSegmentFileName(name, &n)) numbers.push_back(n);
  }
  std::sort(numbers.begin(), numbers.end());
  const std::string key_path = absl::StrCat(dir, "/", kKeyFileName);
  if (fs->Exists(key_path)) {
    absl::StatusOr<std::string> vkey = fs->ReadFile(key_path);
    if (!vkey.ok()) return vkey.status();
    absl::StatusOr<Verifier> key = Verifier::FromVkey(absl::StripAsciiWhitespace(*vkey));
    if (!key.ok()) {
      result.failure =
          Finding{std::string(kKeyFileName), 0, std::nullopt, std::string(key.status().message())};
      return result;
    }
    log.log_key = *key;
  }
  for (size_t i = 0; i < numbers.size(); ++i) {
    const std::string name = SegmentFileName(numbers[i]);
    if (numbers[i] != i + 1) {
      result.failure = Finding{SegmentFileName(i + 1), 0, log.leaves.size(), "segment is missing"};
      return result;
    }
    absl::StatusOr<std::string> contents = fs->ReadFile(absl::StrCat(dir, "/", name));
    if (!contents.ok()) return contents.status();
    SegmentReader reader(*contents);
    absl::string_view bytes;
    std::string scratch;
    uint64_t offset = 0;
    while (reader.ReadEntry(&bytes, &scratch, &offset)) {
      const uint64_t position = log.leaves.size();
      absl::StatusOr<Entry> entry = DecodeEntry(bytes);
      if (!entry.ok()) {
        result.failure = Finding{name, offset, position, std::string(entry.status().message())};
        return result;
      }
      log.leaves.push_back(LeafHash(bytes));
      log.entries.push_back(
          LoadedEntry{position, std::string(bytes), *std::move(entry), name, offset});
    }
    if (const std::optional<FramingError>& e = reader.error(); e.has_value()) {
      std::string reason = e->reason;
      if (e->at_tail && i + 1 == numbers.size()) {
        absl::StrAppend(&reason, " (torn tail: opening the log would cut it at offset ",
                        e->entry_start, ")");
      }
      result.failure = Finding{name, e->offset, log.leaves.size(), std::move(reason)};
      return result;
    }
  }
  return result;
}

LoadResult LoadBundle(absl::string_view bytes, const std::string& name) {
  LoadResult result;
  LoadedLog& log = result.log;
  log.source = name;
  log.is_bundle = true;
  SegmentReader reader(bytes);
  absl::string_view record;
  std::string scratch;
  uint64_t offset = 0;
  auto fail = [&](uint64_t at, std::optional<uint64_t> entry, std::string why) {
    result.failure = Finding{name, at, entry, std::move(why)};
    return result;
  };
  auto framing = [&]() {
    if (reader.error().has_value()) {
      return fail(reader.error()->offset, std::nullopt, reader.error()->reason);
    }
    return fail(bytes.size(), std::nullopt, "bundle ends before its manifest and leaves");
  };
  if (!reader.ReadEntry(&record, &scratch, &offset)) return framing();
  uint64_t leaves = 0, entries = 0;
  bool have_leaves = false, have_entries = false;
  std::vector<absl::string_view> lines = absl::StrSplit(record, '\n');
  if (lines.empty() || lines[0] != kBundleMagic) return fail(0, std::nullopt, "not a bundle");
  for (size_t i = 1; i < lines.size(); ++i) {
    if (lines[i].empty() && i + 1 == lines.size()) break;
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(lines[i], ' ');
    bool ok = true;
    if (kv.first == "log" || kv.first == "peer") {
      absl::StatusOr<Verifier> key = Verifier::FromVkey(kv.second);
      ok = key.ok();
      if (ok && kv.first == "log") log.log_key = *key;
      if (ok && kv.first == "peer") log.peer_keys.push_back(*key);
    } else if (kv.first == "leaves") {
      ok = absl::SimpleAtoi(kv.second, &leaves);
      have_leaves = true;
    } else if (kv.first == "entries") {
      ok = absl::SimpleAtoi(kv.second, &entries);
      have_entries = true;
    } else if (kv.first == "since") {
      ok = ParseOptionalMicros(kv.second, &log.since_micros);
    } else if (kv.first == "until") {
      ok = ParseOptionalMicros(kv.second, &log.until_micros);
    } else {
      ok = false;
    }
    if (!ok) return fail(offset, std::nullopt, absl::StrCat("bad manifest line ", i + 1));
  }
  if (!have_leaves || !have_entries || !log.log_key.has_value()) {
    return fail(offset, std::nullopt, "manifest lacks log, leaves or entries");
  }
  if (!reader.ReadEntry(&record, &scratch, &offset)) return framing();
  if (record.size() != leaves * 32 || leaves > bytes.size() / 32) {
    return fail(offset, std::nullopt,
                absl::StrCat("leaf hashes: ", record.size(), " bytes for ", leaves, " leaves"));
  }
  log.leaves.resize(leaves);
  for (uint64_t i = 0; i < leaves; ++i) {
    std::copy_n(reinterpret_cast<const uint8_t*>(record.data()) + 32 * i, 32,
                log.leaves[i].begin());
  }
  while (reader.ReadEntry(&record, &scratch, &offset)) {
    absl::StatusOr<Entry> entry = DecodeEntry(record);
    if (!entry.ok()) return fail(offset, std::nullopt, std::string(entry.status().message()));
    const uint64_t index = entry->index;
    if (index >= log.leaves.size()) {
      return fail(offset, index, "entry index beyond the bundle's leaves");
    }
    if (!log.entries.empty() && index <= log.entries.back().position) {
      return fail(offset, index, "entries out of order or repeated");
    }
    if (LeafHash(record) != log.leaves[index]) {
      return fail(offset, index, "entry does not hash to the leaf at its index");
    }
    log.entries.push_back(LoadedEntry{index, std::string(record), *std::move(entry), name, offset});
  }
  if (reader.error().has_value())
    return fail(reader.error()->offset, std::nullopt, reader.error()->reason);
  if (log.entries.size() != entries) {
    return fail(bytes.size(), std::nullopt,
                absl::StrCat("manifest announces ", entries, " entries, bundle holds ",
                             log.entries.size()));
  }
  return result;
}

absl::StatusOr<LoadResult> LoadPath(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return absl::NotFoundError(absl::StrCat(path, ": not found"));
  if (S_ISDIR(st.st_mode)) return LoadDir(path);
  absl::StatusOr<std::string> bytes = FileSystem::Default()->ReadFile(path);
  if (!bytes.ok()) return bytes.status();
  return LoadBundle(*bytes, path);
}

absl::StatusOr<std::string> ExportBundle(const LoadedLog& log, const ExportOptions& options) {
  if (!log.log_key.has_value()) return absl::FailedPreconditionError("the log's key is unknown");
  size_t last_checkpoint = log.entries.size();
  for (size_t i = log.entries.size(); i-- > 0;) {
    if (log.entries[i].entry.type == EntryType::kCheckpoint) {
      last_checkpoint = i;
      break;
    }
  }
  if (last_checkpoint == log.entries.size()) {
    return absl::FailedPreconditionError("the log has no signed checkpoint yet");
  }
  const uint64_t leaves = log.entries[last_checkpoint].position + 1;
  std::vector<const LoadedEntry*> chosen;
  for (size_t i = 0; i <= last_checkpoint; ++i) {
    const LoadedEntry& e = log.entries[i];
    const bool in_window =
        (!options.since_micros || e.entry.time_micros >= *options.since_micros) &&
        (!options.until_micros || e.entry.time_micros <= *options.until_micros);
    if (in_window || IsStructural(e.entry.type)) chosen.push_back(&e);
  }
  std::string manifest = absl::StrCat(kBundleMagic, "\nlog ", log.log_key->Vkey(), "\n");
  for (const Verifier& peer : options.peer_keys)
    absl::StrAppend(&manifest, "peer ", peer.Vkey(), "\n");
  auto micros = [](const std::optional<int64_t>& v) {
    return v.has_value() ? absl::StrCat(*v) : std::string("-");
  };
  absl::StrAppend(&manifest, "leaves ", leaves, "\nentries ", chosen.size(), "\nsince ",
                  micros(options.since_micros), "\nuntil ", micros(options.until_micros), "\n");
  std::string out;
  StringFile file(&out);
  SegmentWriter writer(&file, 0);
  if (absl::Status s = writer.AddEntry(manifest); !s.ok()) return s;
  std::string hashes;
  hashes.reserve(leaves * 32);
  for (uint64_t i = 0; i < leaves; ++i) {
    hashes.append(reinterpret_cast<const char*>(log.leaves[i].data()), 32);
  }
  if (absl::Status s = writer.AddEntry(hashes); !s.ok()) return s;
  for (const LoadedEntry* e : chosen) {
    if (absl::Status s = writer.AddEntry(e->bytes); !s.ok()) return s;
  }
  return out;
}

}  // namespace uop::audit
