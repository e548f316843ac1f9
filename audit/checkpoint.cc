// C2SP signed-note parsing and signing, strict: a note that does not round-trip is refused.
#include "audit/checkpoint.h"

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace uop::audit {
namespace {

constexpr absl::string_view kSigPrefix = "\xe2\x80\x94 ";  // em dash, space
constexpr size_t kMaxNoteBytes = 1 << 16;

absl::Status Bad(absl::string_view why) {
  return absl::DataLossError(absl::StrCat("malformed checkpoint: ", why));
}

void PutBE32(std::string* out, uint32_t v) {
  for (int i = 3; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

std::string CosignedMessage(absl::string_view body, uint64_t timestamp) {
  return absl::StrCat("cosignature/v1\ntime ", timestamp, "\n", body);
}

bool ParseDecimal(absl::string_view s, uint64_t* out) {
  if (s.empty() || (s.size() > 1 && s[0] == '0')) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return absl::SimpleAtoi(s, out);
}

const NoteSignature* FindSignature(const SignedNote& note, absl::string_view name, uint32_t id) {
  for (const NoteSignature& sig : note.signatures) {
    if (sig.name == name && sig.key_id == id) return &sig;
  }
  return nullptr;
}

}  // namespace

std::string FormatCheckpointBody(const Checkpoint& c) {
  return absl::StrCat(c.origin, "\n", c.size, "\n", absl::Base64Escape(HashBytes(c.root)),
                      "\ntime ", c.time_seconds, "\n");
}

absl::StatusOr<Checkpoint> ParseCheckpointBody(absl::string_view body) {
  if (body.empty() || body.back() != '\n') return Bad("body must end with a newline");
  std::vector<absl::string_view> lines = absl::StrSplit(body.substr(0, body.size() - 1), '\n');
  if (lines.size() != 4) return Bad("expected origin, size, root and time lines");
  Checkpoint c;
  c.origin = std::string(lines[0]);
  if (c.origin.empty()) return Bad("empty origin");
  if (c.origin == "cosignature/v1" || absl::StartsWith(c.origin, "uop-audit-")) {
    return Bad("origin collides with a signing domain");
  }
  if (!ParseDecimal(lines[1], &c.size)) return Bad("tree size is not a decimal number");
  std::string root;
  if (!absl::Base64Unescape(lines[2], &root) || !HashFromBytes(root, &c.root) ||
      absl::Base64Escape(root) != lines[2]) {
    return Bad("root is not base64 of 32 bytes");
  }
  absl::string_view time = lines[3];
  uint64_t t = 0;
  if (!absl::ConsumePrefix(&time, "time ") || !ParseDecimal(time, &t) ||
      t > static_cast<uint64_t>(INT64_MAX)) {
    return Bad("time line is not \"time <unix seconds>\"");
  }
  c.time_seconds = static_cast<int64_t>(t);
  if (FormatCheckpointBody(c) != body) return Bad("not in canonical form");
  return c;
}

absl::StatusOr<SignedNote> ParseNote(absl::string_view text) {
  if (text.size() > kMaxNoteBytes) return Bad("note longer than 64 KiB");
  for (char c : text) {
    if (static_cast<unsigned char>(c) < 0x20 && c != '\n') return Bad("control character");
  }
  size_t split = text.find("\n\n");
  if (split == absl::string_view::npos) return Bad("no blank line before the signatures");
  SignedNote note;
  note.body = std::string(text.substr(0, split + 1));
  absl::string_view rest = text.substr(split + 2);
  if (rest.empty() || rest.back() != '\n') return Bad("signature lines must end with a newline");
  for (absl::string_view line : absl::StrSplit(rest.substr(0, rest.size() - 1), '\n')) {
    if (!absl::ConsumePrefix(&line, kSigPrefix)) return Bad("signature line without em dash");
    size_t space = line.find(' ');
    if (space == absl::string_view::npos) return Bad("signature line without a signature");
    NoteSignature sig;
    sig.name = std::string(line.substr(0, space));
    if (!ValidateKeyName(sig.name).ok()) return Bad("bad key name in a signature line");
    std::string raw;
    absl::string_view b64 = line.substr(space + 1);
    if (!absl::Base64Unescape(b64, &raw) || raw.size() < 5 || absl::Base64Escape(raw) != b64) {
      return Bad("signature is not base64 of a key id and a signature");
    }
    sig.key_id = (uint32_t{static_cast<uint8_t>(raw[0])} << 24) |
                 (uint32_t{static_cast<uint8_t>(raw[1])} << 16) |
                 (uint32_t{static_cast<uint8_t>(raw[2])} << 8) | static_cast<uint8_t>(raw[3]);
    sig.signature = raw.substr(4);
    note.signatures.push_back(std::move(sig));
  }
  if (note.signatures.empty()) return Bad("no signatures");
  return note;
}

std::string FormatNote(const SignedNote& note) {
  std::string out = note.body;
  out.push_back('\n');
  for (const NoteSignature& sig : note.signatures) {
    std::string raw;
    PutBE32(&raw, sig.key_id);
    raw += sig.signature;
    absl::StrAppend(&out, kSigPrefix, sig.name, " ", absl::Base64Escape(raw), "\n");
  }
  return out;
}

std::string SignCheckpoint(const Checkpoint& checkpoint, const Signer& signer) {
  SignedNote note;
  note.body = FormatCheckpointBody(checkpoint);
  note.signatures.push_back(
      {signer.name(), signer.verifier().note_key_id(), signer.Sign(note.body)});
  return FormatNote(note);
}

absl::StatusOr<Checkpoint> VerifyCheckpoint(absl::string_view note_text, const Verifier& log_key) {
  absl::StatusOr<SignedNote> note = ParseNote(note_text);
  if (!note.ok()) return note.status();
  absl::StatusOr<Checkpoint> c = ParseCheckpointBody(note->body);
  if (!c.ok()) return c.status();
  const NoteSignature* sig = FindSignature(*note, log_key.name(), log_key.note_key_id());
  if (sig == nullptr) {
    return absl::UnauthenticatedError(
        absl::StrCat("checkpoint has no signature by key ", log_key.Vkey()));
  }
  if (!log_key.Verify(note->body, sig->signature)) {
    return absl::UnauthenticatedError(
        absl::StrCat("checkpoint signature by ", log_key.name(), " does not verify"));
  }
  return c;
}

absl::StatusOr<std::string> Cosign(absl::string_view note_text, const Signer& witness,
                                   int64_t time_seconds) {
  absl::StatusOr<SignedNote> note = ParseNote(note_text);
  if (!note.ok()) return note.status();
  if (time_seconds < 0) return absl::InvalidArgumentError("cosignature time before 1970");
  const uint64_t t = static_cast<uint64_t>(time_seconds);
  std::string sig;
  for (int i = 7; i >= 0; --i) sig.push_back(static_cast<char>((t >> (8 * i)) & 0xff));
  sig += witness.Sign(CosignedMessage(note->body, t));
  const uint32_t id = witness.verifier().cosignature_key_id();
  std::erase_if(note->signatures,
                [&](const NoteSignature& s) { return s.name == witness.name() && s.key_id == id; });
  note->signatures.push_back({witness.name(), id, std::move(sig)});
  return FormatNote(*note);
}

absl::StatusOr<Checkpoint> VerifyCosigned(absl::string_view note_text, const Verifier& log_key,
                                          const Verifier& witness, int64_t* cosigned_at) {
  absl::StatusOr<Checkpoint> c = VerifyCheckpoint(note_text, log_key);
  if (!c.ok()) return c.status();
  absl::StatusOr<SignedNote> note = ParseNote(note_text);
  if (!note.ok()) return note.status();
  const NoteSignature* sig = FindSignature(*note, witness.name(), witness.cosignature_key_id());
  if (sig == nullptr) {
    return absl::UnauthenticatedError(
        absl::StrCat("checkpoint has no cosignature by witness ", witness.name()));
  }
  if (sig->signature.size() != 8 + 64) {
    return absl::UnauthenticatedError("cosignature is not a timestamp and a signature");
  }
  uint64_t t = 0;
  for (int i = 0; i < 8; ++i) t = (t << 8) | static_cast<uint8_t>(sig->signature[i]);
  if (t > static_cast<uint64_t>(INT64_MAX) ||
      !witness.Verify(CosignedMessage(note->body, t), sig->signature.substr(8))) {
    return absl::UnauthenticatedError(
        absl::StrCat("cosignature by witness ", witness.name(), " does not verify"));
  }
  if (cosigned_at != nullptr) *cosigned_at = static_cast<int64_t>(t);
  return c;
}

}  // namespace uop::audit
