// The receipt layout of receipt.h, written and read field by field.
#include "audit/receipt.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace uop::audit {
namespace {

constexpr uint8_t kReceiptVersion = 1;
constexpr absl::string_view kDomain = "uop-audit-receipt/v1\n";

void PutBE(std::string* out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

class Cursor {
 public:
  explicit Cursor(absl::string_view in) : in_(in) {}
  bool Take(size_t n, absl::string_view* out) {
    if (in_.size() < n) return false;
    *out = in_.substr(0, n);
    in_.remove_prefix(n);
    return true;
  }
  bool Number(int bytes, uint64_t* out) {
    absl::string_view v;
    if (!Take(bytes, &v)) return false;
    *out = 0;
    for (char c : v) *out = (*out << 8) | static_cast<uint8_t>(c);
    return true;
  }
  bool String(int length_bytes, std::string* out) {
    uint64_t n = 0;
    absl::string_view v;
    if (!Number(length_bytes, &n) || n == 0 || !Take(n, &v)) return false;
    *out = std::string(v);
    return true;
  }
  size_t left() const { return in_.size(); }

 private:
  absl::string_view in_;
};

absl::Status Bad(absl::string_view why) {
  return absl::DataLossError(absl::StrCat("malformed receipt: ", why));
}

absl::Status Differs(absl::string_view field, const auto& got, const auto& want) {
  return absl::FailedPreconditionError(
      absl::StrCat("receipt ", field, " is ", got, ", the batch sent has ", want));
}

absl::StatusOr<std::string> EncodeBody(const Receipt& r, uint32_t key_id) {
  if (r.receiver.empty() || r.receiver.size() > 255 || r.origin.empty() || r.origin.size() > 255 ||
      r.topic.empty() || r.topic.size() > 65535) {
    return absl::InvalidArgumentError("receipt names must be 1..255 bytes, topic 1..65535");
  }
  if (r.batch_sha256.size() != 32)
    return absl::InvalidArgumentError("batch digest must be 32 bytes");
  std::string out;
  out.push_back(static_cast<char>(kReceiptVersion));
  PutBE(&out, key_id, 4);
  PutBE(&out, r.receiver.size(), 1);
  out += r.receiver;
  PutBE(&out, r.origin.size(), 1);
  out += r.origin;
  PutBE(&out, r.topic.size(), 2);
  out += r.topic;
  PutBE(&out, static_cast<uint32_t>(r.partition), 4);
  PutBE(&out, static_cast<uint64_t>(r.first_offset), 8);
  PutBE(&out, static_cast<uint64_t>(r.last_offset), 8);
  PutBE(&out, r.record_count, 8);
  out += r.batch_sha256;
  PutBE(&out, r.log_index, 8);
  PutBE(&out, static_cast<uint64_t>(r.time_micros), 8);
  return out;
}

absl::StatusOr<Receipt> Parse(absl::string_view bytes, uint32_t* key_id, absl::string_view* body,
                              absl::string_view* signature) {
  if (bytes.size() > kMaxReceiptBytes) return Bad("too long");
  Cursor c(bytes);
  Receipt r;
  uint64_t version = 0, id = 0, partition = 0, first = 0, last = 0, time = 0;
  absl::string_view digest;
  if (!c.Number(1, &version)) return Bad("empty");
  if (version != kReceiptVersion) return Bad(absl::StrCat("unknown version ", version));
  if (!c.Number(4, &id) || !c.String(1, &r.receiver) || !c.String(1, &r.origin) ||
      !c.String(2, &r.topic) || !c.Number(4, &partition) || !c.Number(8, &first) ||
      !c.Number(8, &last) || !c.Number(8, &r.record_count) || !c.Take(32, &digest) ||
      !c.Number(8, &r.log_index) || !c.Number(8, &time)) {
    return Bad("truncated");
  }
  if (c.left() != 64)
    return Bad(absl::StrCat("expected a 64-byte signature, ", c.left(), " bytes left"));
  r.partition = static_cast<int32_t>(partition);
  r.first_offset = static_cast<int64_t>(first);
  r.last_offset = static_cast<int64_t>(last);
  r.batch_sha256 = std::string(digest);
  r.time_micros = static_cast<int64_t>(time);
  *key_id = static_cast<uint32_t>(id);
  *body = bytes.substr(0, bytes.size() - 64);
  *signature = bytes.substr(bytes.size() - 64);
  return r;
}

}  // namespace

absl::StatusOr<Receipt> ReceiptFor(const Entry& e, absl::string_view receiver,
                                   absl::string_view origin) {
  if (e.type != EntryType::kBatchReceived) {
    return absl::InvalidArgumentError("receipts are for batch_received entries");
  }
  if (!e.partition || !e.first_offset || !e.last_offset || !e.record_count ||
      e.batch_sha256.size() != 32 || e.topic.empty()) {
    return absl::InvalidArgumentError(
        "batch_received entry needs topic, partition, offsets, record count and digest");
  }
  Receipt r;
  r.receiver = std::string(receiver);
  r.origin = std::string(origin);
  r.topic = e.topic;
  r.partition = *e.partition;
  r.first_offset = *e.first_offset;
  r.last_offset = *e.last_offset;
  r.record_count = *e.record_count;
  r.batch_sha256 = e.batch_sha256;
  r.log_index = e.index;
  r.time_micros = e.time_micros;
  return r;
}

absl::StatusOr<std::string> SignReceipt(const Receipt& receipt, const Signer& signer) {
  if (receipt.receiver != signer.name()) {
    return absl::InvalidArgumentError("receipt receiver must be the signer's name");
  }
  absl::StatusOr<std::string> body = EncodeBody(receipt, signer.verifier().note_key_id());
  if (!body.ok()) return body.status();
  return *body + signer.Sign(absl::StrCat(kDomain, *body));
}

absl::StatusOr<Receipt> ParseReceipt(absl::string_view bytes) {
  uint32_t id = 0;
  absl::string_view body, sig;
  return Parse(bytes, &id, &body, &sig);
}

absl::StatusOr<Receipt> VerifyReceipt(absl::string_view bytes, const Verifier& receiver_key) {
  uint32_t id = 0;
  absl::string_view body, sig;
  absl::StatusOr<Receipt> r = Parse(bytes, &id, &body, &sig);
  if (!r.ok()) return r.status();
  if (r->receiver != receiver_key.name() || id != receiver_key.note_key_id()) {
    return absl::UnauthenticatedError(absl::StrCat("receipt is from ", r->receiver, " with key id ",
                                                   absl::Hex(id, absl::kZeroPad8), ", expected ",
                                                   receiver_key.Vkey()));
  }
  if (!receiver_key.Verify(absl::StrCat(kDomain, body), sig)) {
    return absl::UnauthenticatedError(
        absl::StrCat("receipt signature does not verify with the key of ", receiver_key.name()));
  }
  return r;
}

absl::Status CheckReceiptMatches(const Receipt& r, const Entry& sent) {
  if (r.receiver != sent.peer) return Differs("receiver", r.receiver, sent.peer);
  if (r.topic != sent.topic) return Differs("topic", r.topic, sent.topic);
  if (r.partition != sent.partition.value_or(-1)) {
    return Differs("partition", r.partition, sent.partition.value_or(-1));
  }
  if (r.first_offset != sent.first_offset.value_or(-1) ||
      r.last_offset != sent.last_offset.value_or(-1)) {
    return Differs(
        "offset range", absl::StrCat(r.first_offset, "..", r.last_offset),
        absl::StrCat(sent.first_offset.value_or(-1), "..", sent.last_offset.value_or(-1)));
  }
  if (r.record_count != sent.record_count.value_or(0)) {
    return Differs("record count", r.record_count, sent.record_count.value_or(0));
  }
  if (r.batch_sha256 != sent.batch_sha256) {
    return Differs("batch digest", absl::BytesToHexString(r.batch_sha256),
                   absl::BytesToHexString(sent.batch_sha256));
  }
  return absl::OkStatus();
}

Entry ReceiptEntry(const Receipt& r, absl::string_view receipt_bytes, absl::string_view dataset) {
  Entry e;
  e.type = EntryType::kReceipt;
  e.peer = r.receiver;
  e.dataset = std::string(dataset);
  e.topic = r.topic;
  e.partition = r.partition;
  e.first_offset = r.first_offset;
  e.last_offset = r.last_offset;
  e.record_count = r.record_count;
  e.batch_sha256 = r.batch_sha256;
  e.payload = std::string(receipt_bytes);
  return e;
}

absl::StatusOr<std::string> SignReceiptFor(const Entry& received, uint64_t index,
                                           int64_t time_micros, const Signer& receiver,
                                           absl::string_view owner) {
  Entry e = received;
  e.index = index;
  e.time_micros = time_micros;
  absl::StatusOr<Receipt> r = ReceiptFor(e, receiver.name(), owner);
  if (!r.ok()) return r.status();
  return SignReceipt(*r, receiver);
}

absl::StatusOr<Entry> AcceptReceipt(absl::string_view receipt_bytes, const Verifier& receiver_key,
                                    absl::string_view owner, const Entry& sent) {
  absl::StatusOr<Receipt> r = VerifyReceipt(receipt_bytes, receiver_key);
  if (!r.ok()) return r.status();
  if (r->origin != owner) {
    return absl::FailedPreconditionError(
        absl::StrCat("receipt acknowledges a batch of ", r->origin, ", not of ", owner));
  }
  if (absl::Status s = CheckReceiptMatches(*r, sent); !s.ok()) return s;
  return ReceiptEntry(*r, receipt_bytes, sent.dataset);
}

}  // namespace uop::audit
