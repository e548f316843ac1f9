// The canonical entry encoding (see docs/audit.md, "Entries").
#include "audit/entry.h"

#include <openssl/evp.h>

#include <array>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace uop::audit {
namespace {

constexpr uint8_t kEntryVersion = 1;
constexpr size_t kFixedBytes = 1 + 1 + 8 + 8;

enum Tag : uint8_t {
  kTagPeer = 1,
  kTagDataset = 2,
  kTagTopic = 3,
  kTagPartition = 4,
  kTagFirstOffset = 5,
  kTagLastOffset = 6,
  kTagRecordCount = 7,
  kTagByteCount = 8,
  kTagBatchSha256 = 9,
  kTagPolicyVersion = 10,
  kTagIdentity = 11,
  kTagReason = 12,
  kTagPayload = 13,
};

constexpr std::array<absl::string_view, kMaxEntryType + 1> kTypeNames = {
    "unknown",     "node_start",      "node_stop",       "config_change",  "link_up",
    "link_down",   "link_refused",    "batch_sent",      "batch_received", "batch_refused",
    "receipt",     "policy_load",     "policy_rejected", "policy_expired", "checkpoint",
    "cosignature", "peer_checkpoint", "peer_key",        "witness_refused"};

void PutBE(std::string* out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t GetBE(absl::string_view in, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<uint8_t>(in[i]);
  return v;
}

void PutField(std::string* out, Tag tag, absl::string_view value) {
  out->push_back(static_cast<char>(tag));
  PutBE(out, value.size(), 4);
  out->append(value.data(), value.size());
}

void PutString(std::string* out, Tag tag, const std::string& value) {
  if (!value.empty()) PutField(out, tag, value);
}

void PutNumber(std::string* out, Tag tag, uint64_t value, int bytes) {
  std::string v;
  PutBE(&v, value, bytes);
  PutField(out, tag, v);
}

absl::Status Bad(absl::string_view why) {
  return absl::DataLossError(absl::StrCat("malformed entry: ", why));
}

}  // namespace

absl::string_view EntryTypeName(EntryType type) {
  auto v = static_cast<uint8_t>(type);
  return v <= kMaxEntryType ? kTypeNames[v] : kTypeNames[0];
}

std::optional<EntryType> EntryTypeFromName(absl::string_view name) {
  for (uint8_t v = 1; v <= kMaxEntryType; ++v) {
    if (kTypeNames[v] == name) return static_cast<EntryType>(v);
  }
  return std::nullopt;
}

std::string EncodeEntry(const Entry& e) {
  std::string out;
  out.reserve(kFixedBytes + 64 + e.payload.size() + e.reason.size());
  out.push_back(static_cast<char>(kEntryVersion));
  out.push_back(static_cast<char>(e.type));
  PutBE(&out, e.index, 8);
  PutBE(&out, static_cast<uint64_t>(e.time_micros), 8);
  PutString(&out, kTagPeer, e.peer);
  PutString(&out, kTagDataset, e.dataset);
  PutString(&out, kTagTopic, e.topic);
  if (e.partition) PutNumber(&out, kTagPartition, static_cast<uint32_t>(*e.partition), 4);
  if (e.first_offset) PutNumber(&out, kTagFirstOffset, static_cast<uint64_t>(*e.first_offset), 8);
  if (e.last_offset) PutNumber(&out, kTagLastOffset, static_cast<uint64_t>(*e.last_offset), 8);
  if (e.record_count) PutNumber(&out, kTagRecordCount, *e.record_count, 8);
  if (e.byte_count) PutNumber(&out, kTagByteCount, *e.byte_count, 8);
  PutString(&out, kTagBatchSha256, e.batch_sha256);
  PutString(&out, kTagPolicyVersion, e.policy_version);
  PutString(&out, kTagIdentity, e.identity);
  PutString(&out, kTagReason, e.reason);
  PutString(&out, kTagPayload, e.payload);
  return out;
}

absl::StatusOr<Entry> DecodeEntry(absl::string_view in) {
  if (in.size() > kMaxEntryBytes) return Bad("longer than 1 MiB");
  if (in.size() < kFixedBytes) return Bad("shorter than its fixed header");
  if (static_cast<uint8_t>(in[0]) != kEntryVersion) {
    return Bad(absl::StrCat("unknown version ", static_cast<uint8_t>(in[0])));
  }
  Entry e;
  const uint8_t type = static_cast<uint8_t>(in[1]);
  if (type == 0 || type > kMaxEntryType) return Bad(absl::StrCat("unknown type ", type));
  e.type = static_cast<EntryType>(type);
  e.index = GetBE(in.substr(2), 8);
  e.time_micros = static_cast<int64_t>(GetBE(in.substr(10), 8));
  in.remove_prefix(kFixedBytes);
  int last_tag = 0;
  while (!in.empty()) {
    if (in.size() < 5) return Bad("truncated field header");
    const uint8_t tag = static_cast<uint8_t>(in[0]);
    const uint64_t length = GetBE(in.substr(1), 4);
    in.remove_prefix(5);
    if (tag <= last_tag) return Bad(absl::StrCat("field ", tag, " out of order or repeated"));
    last_tag = tag;
    if (length > in.size()) return Bad(absl::StrCat("field ", tag, " runs past the end"));
    absl::string_view value = in.substr(0, length);
    in.remove_prefix(length);
    auto want = [&](size_t n) -> absl::Status {
      if (value.size() != n) return Bad(absl::StrCat("field ", tag, " must be ", n, " bytes"));
      return absl::OkStatus();
    };
    auto nonempty = [&]() -> absl::Status {
      if (value.empty()) return Bad(absl::StrCat("field ", tag, " is empty"));
      return absl::OkStatus();
    };
    absl::Status s;
    switch (tag) {
      case kTagPeer:
        if ((s = nonempty()).ok()) e.peer = std::string(value);
        break;
      case kTagDataset:
        if ((s = nonempty()).ok()) e.dataset = std::string(value);
        break;
      case kTagTopic:
        if ((s = nonempty()).ok()) e.topic = std::string(value);
        break;
      case kTagPartition:
        if ((s = want(4)).ok()) e.partition = static_cast<int32_t>(GetBE(value, 4));
        break;
      case kTagFirstOffset:
        if ((s = want(8)).ok()) e.first_offset = static_cast<int64_t>(GetBE(value, 8));
        break;
      case kTagLastOffset:
        if ((s = want(8)).ok()) e.last_offset = static_cast<int64_t>(GetBE(value, 8));
        break;
      case kTagRecordCount:
        if ((s = want(8)).ok()) e.record_count = GetBE(value, 8);
        break;
      case kTagByteCount:
        if ((s = want(8)).ok()) e.byte_count = GetBE(value, 8);
        break;
      case kTagBatchSha256:
        if ((s = want(32)).ok()) e.batch_sha256 = std::string(value);
        break;
      case kTagPolicyVersion:
        if ((s = nonempty()).ok()) e.policy_version = std::string(value);
        break;
      case kTagIdentity:
        if ((s = nonempty()).ok()) e.identity = std::string(value);
        break;
      case kTagReason:
        if ((s = nonempty()).ok()) e.reason = std::string(value);
        break;
      case kTagPayload:
        if ((s = nonempty()).ok()) e.payload = std::string(value);
        break;
      default:
        return Bad(absl::StrCat("unknown field ", tag));
    }
    if (!s.ok()) return s;
  }
  return e;
}

struct BatchDigest::State {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~State() { EVP_MD_CTX_free(ctx); }
};

BatchDigest::BatchDigest() : state_(new State) {
  EVP_DigestInit_ex(state_->ctx, EVP_sha256(), nullptr);
}
BatchDigest::~BatchDigest() { delete state_; }

void BatchDigest::AddRecord(absl::string_view key, absl::string_view value) {
  std::string len;
  PutBE(&len, key.size(), 4);
  EVP_DigestUpdate(state_->ctx, len.data(), len.size());
  EVP_DigestUpdate(state_->ctx, key.data(), key.size());
  len.clear();
  PutBE(&len, value.size(), 4);
  EVP_DigestUpdate(state_->ctx, len.data(), len.size());
  EVP_DigestUpdate(state_->ctx, value.data(), value.size());
}

std::string BatchDigest::Finish() {
  std::string out(32, '\0');
  unsigned int n = 0;
  EVP_DigestFinal_ex(state_->ctx, reinterpret_cast<unsigned char*>(out.data()), &n);
  return out;
}

}  // namespace uop::audit
