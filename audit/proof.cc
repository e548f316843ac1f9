// Proof files: strict parsing (every line known, once), then signature and RFC 9162 checks.
#include "audit/proof.h"

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace uop::audit {
namespace {

constexpr absl::string_view kMagic = "uop-audit-proof/v1";
constexpr size_t kMaxProofBytes = 4 << 20;
constexpr size_t kMaxHashes = 128;

absl::Status Bad(absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("malformed proof: ", why));
}

bool Unbase64(absl::string_view in, std::string* out) {
  return absl::Base64Unescape(in, out) && absl::Base64Escape(*out) == in;
}

}  // namespace

std::string FormatProof(const Proof& p) {
  std::string out = absl::StrCat(kMagic, "\n");
  if (p.type == Proof::Type::kInclusion) {
    absl::StrAppend(&out, "type inclusion\nindex ", p.index, "\nentry ",
                    absl::Base64Escape(p.entry), "\n");
  } else {
    absl::StrAppend(&out, "type consistency\nold ", absl::Base64Escape(p.old_note), "\n");
  }
  absl::StrAppend(&out, "checkpoint ", absl::Base64Escape(p.note), "\n");
  for (const Hash& h : p.hashes)
    absl::StrAppend(&out, "hash ", absl::Base64Escape(HashBytes(h)), "\n");
  return out;
}

absl::StatusOr<Proof> ParseProof(absl::string_view text) {
  if (text.size() > kMaxProofBytes) return Bad("longer than 4 MiB");
  if (text.empty() || text.back() != '\n') return Bad("must end with a newline");
  std::vector<absl::string_view> lines = absl::StrSplit(text.substr(0, text.size() - 1), '\n');
  if (lines[0] != kMagic) return Bad(absl::StrCat("first line must be ", kMagic));
  Proof p;
  bool have_type = false, have_index = false, have_entry = false, have_old = false,
       have_note = false;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(lines[i], absl::MaxSplits(' ', 1));
    const std::string where = absl::StrCat("line ", i + 1, ": ");
    auto once = [&](bool& seen) -> absl::Status {
      if (seen) return Bad(absl::StrCat(where, kv.first, " repeated"));
      seen = true;
      return absl::OkStatus();
    };
    absl::Status s;
    if (kv.first == "type") {
      if (!(s = once(have_type)).ok()) return s;
      if (kv.second == "inclusion") {
        p.type = Proof::Type::kInclusion;
      } else if (kv.second == "consistency") {
        p.type = Proof::Type::kConsistency;
      } else {
        return Bad(absl::StrCat(where, "unknown type"));
      }
    } else if (kv.first == "index") {
      if (!(s = once(have_index)).ok()) return s;
      if (!absl::SimpleAtoi(kv.second, &p.index)) return Bad(absl::StrCat(where, "bad index"));
    } else if (kv.first == "entry") {
      if (!(s = once(have_entry)).ok()) return s;
      if (!Unbase64(kv.second, &p.entry)) return Bad(absl::StrCat(where, "entry is not base64"));
    } else if (kv.first == "old") {
      if (!(s = once(have_old)).ok()) return s;
      if (!Unbase64(kv.second, &p.old_note)) return Bad(absl::StrCat(where, "old is not base64"));
    } else if (kv.first == "checkpoint") {
      if (!(s = once(have_note)).ok()) return s;
      if (!Unbase64(kv.second, &p.note)) {
        return Bad(absl::StrCat(where, "checkpoint is not base64"));
      }
    } else if (kv.first == "hash") {
      std::string raw;
      Hash h;
      if (!Unbase64(kv.second, &raw) || !HashFromBytes(raw, &h)) {
        return Bad(absl::StrCat(where, "hash is not base64 of 32 bytes"));
      }
      if (p.hashes.size() == kMaxHashes) return Bad("too many hashes");
      p.hashes.push_back(h);
    } else {
      return Bad(absl::StrCat(where, "unknown field \"", absl::CHexEscape(kv.first), "\""));
    }
  }
  if (!have_type || !have_note) return Bad("needs type and checkpoint");
  if (p.type == Proof::Type::kInclusion && (!have_index || !have_entry || have_old)) {
    return Bad("an inclusion proof needs index and entry, and no old checkpoint");
  }
  if (p.type == Proof::Type::kConsistency && (!have_old || have_index || have_entry)) {
    return Bad("a consistency proof needs an old checkpoint, and no index or entry");
  }
  return p;
}

absl::StatusOr<ProvenProof> VerifyProof(const Proof& p, const Verifier& log_key) {
  ProvenProof out;
  absl::StatusOr<Checkpoint> c = VerifyCheckpoint(p.note, log_key);
  if (!c.ok()) return c.status();
  out.checkpoint = *c;
  if (p.type == Proof::Type::kInclusion) {
    absl::StatusOr<Entry> e = DecodeEntry(p.entry);
    if (!e.ok()) return e.status();
    if (e->index != p.index) {
      return absl::InvalidArgumentError(
          absl::StrCat("proof is for index ", p.index, ", the entry says ", e->index));
    }
    if (absl::Status s = VerifyInclusion(p.index, c->size, LeafHash(p.entry), p.hashes, c->root);
        !s.ok()) {
      return s;
    }
    out.entry = *std::move(e);
    return out;
  }
  absl::StatusOr<Checkpoint> old = VerifyCheckpoint(p.old_note, log_key);
  if (!old.ok()) return old.status();
  if (old->origin != c->origin) {
    return absl::InvalidArgumentError("the two checkpoints are of different logs");
  }
  if (absl::Status s = VerifyConsistency(old->size, c->size, old->root, c->root, p.hashes);
      !s.ok()) {
    return s;
  }
  out.old_checkpoint = *old;
  return out;
}

}  // namespace uop::audit
