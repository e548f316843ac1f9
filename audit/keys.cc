// Ed25519 through OpenSSL 3 EVP; raw 32-byte keys for note key IDs and vkeys.
#include "audit/keys.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "audit/merkle.h"

namespace uop::audit {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

std::string BioToString(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(n));
}

absl::StatusOr<PublicKey> RawPublicKey(EVP_PKEY* pkey) {
  PublicKey key;
  size_t n = key.size();
  if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_ED25519 ||
      EVP_PKEY_get_raw_public_key(pkey, key.data(), &n) != 1 || n != key.size()) {
    return absl::InvalidArgumentError("not an Ed25519 key");
  }
  return key;
}

}  // namespace

absl::Status ValidateKeyName(absl::string_view name) {
  if (name.empty()) return absl::InvalidArgumentError("key name is empty");
  for (char c : name) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == '+' || c == 0x7f) {
      return absl::InvalidArgumentError(
          absl::StrCat("key name \"", absl::CHexEscape(name),
                       "\" must not contain spaces, '+' or control characters"));
    }
  }
  return absl::OkStatus();
}

uint32_t KeyId(absl::string_view name, uint8_t type, const PublicKey& key) {
  std::string material(name);
  material.push_back('\n');
  material.push_back(static_cast<char>(type));
  material.append(reinterpret_cast<const char*>(key.data()), key.size());
  Hash h = Sha256(material);
  return (uint32_t{h[0]} << 24) | (uint32_t{h[1]} << 16) | (uint32_t{h[2]} << 8) | h[3];
}

absl::StatusOr<Verifier> Verifier::FromVkey(absl::string_view vkey) {
  std::vector<absl::string_view> parts = absl::StrSplit(vkey, absl::MaxSplits('+', 2));
  if (parts.size() != 3) {
    return absl::InvalidArgumentError("vkey must be <name>+<key id>+<base64 key>");
  }
  if (absl::Status s = ValidateKeyName(parts[0]); !s.ok()) return s;
  uint32_t id = 0;
  if (parts[1].size() != 8 || !absl::SimpleHexAtoi(parts[1], &id)) {
    return absl::InvalidArgumentError("vkey key id must be 8 hex digits");
  }
  std::string raw;
  if (!absl::Base64Unescape(parts[2], &raw) || raw.size() != 33 ||
      static_cast<uint8_t>(raw[0]) != kNoteKeyType) {
    return absl::InvalidArgumentError("vkey key must be base64 of 0x01 and a 32-byte Ed25519 key");
  }
  PublicKey key;
  std::copy(raw.begin() + 1, raw.end(), key.begin());
  Verifier v(std::string(parts[0]), key);
  if (v.note_key_id() != id) {
    return absl::InvalidArgumentError("vkey key id does not match its name and key");
  }
  return v;
}

absl::StatusOr<Verifier> Verifier::FromPem(absl::string_view name, absl::string_view pem) {
  if (absl::Status s = ValidateKeyName(name); !s.ok()) return s;
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  EVP_PKEY* pkey = PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr);
  if (pkey == nullptr) return absl::InvalidArgumentError("not a PEM public key");
  absl::StatusOr<PublicKey> key = RawPublicKey(pkey);
  EVP_PKEY_free(pkey);
  if (!key.ok()) return key.status();
  return Verifier(std::string(name), *key);
}

std::string Verifier::Vkey() const {
  std::string raw(1, static_cast<char>(kNoteKeyType));
  raw.append(reinterpret_cast<const char*>(key_.data()), key_.size());
  return absl::StrFormat("%s+%08x+%s", name_, note_key_id(), absl::Base64Escape(raw));
}

std::string Verifier::PublicKeyPem() const {
  EVP_PKEY* pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, key_.data(), key_.size());
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PUBKEY(bio.get(), pkey);
  EVP_PKEY_free(pkey);
  return BioToString(bio.get());
}

bool Verifier::Verify(absl::string_view message, absl::string_view signature) const {
  if (signature.size() != 64) return false;
  EVP_PKEY* pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, key_.data(), key_.size());
  if (pkey == nullptr) return false;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool ok = EVP_DigestVerifyInit(ctx, nullptr, nullptr, nullptr, pkey) == 1 &&
            EVP_DigestVerify(
                ctx, reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                reinterpret_cast<const unsigned char*>(message.data()), message.size()) == 1;
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(pkey);
  return ok;
}

absl::StatusOr<std::unique_ptr<Signer>> Signer::Generate(absl::string_view name) {
  if (absl::Status s = ValidateKeyName(name); !s.ok()) return s;
  EVP_PKEY* pkey = nullptr;
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr);
  bool ok = ctx != nullptr && EVP_PKEY_keygen_init(ctx) == 1 && EVP_PKEY_keygen(ctx, &pkey) == 1;
  EVP_PKEY_CTX_free(ctx);
  if (!ok) return absl::InternalError("Ed25519 key generation failed");
  absl::StatusOr<PublicKey> key = RawPublicKey(pkey);
  if (!key.ok()) {
    EVP_PKEY_free(pkey);
    return key.status();
  }
  return std::unique_ptr<Signer>(new Signer(pkey, Verifier(std::string(name), *key)));
}

absl::StatusOr<std::unique_ptr<Signer>> Signer::FromPem(absl::string_view name,
                                                        absl::string_view pem) {
  if (absl::Status s = ValidateKeyName(name); !s.ok()) return s;
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  EVP_PKEY* pkey = PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr);
  if (pkey == nullptr) return absl::InvalidArgumentError("not a PEM private key (PKCS#8)");
  absl::StatusOr<PublicKey> key = RawPublicKey(pkey);
  if (!key.ok()) {
    EVP_PKEY_free(pkey);
    return absl::InvalidArgumentError("the private key is not an Ed25519 key");
  }
  return std::unique_ptr<Signer>(new Signer(pkey, Verifier(std::string(name), *key)));
}

Signer::~Signer() { EVP_PKEY_free(pkey_); }

std::string Signer::Sign(absl::string_view message) const {
  std::string sig(64, '\0');
  size_t n = sig.size();
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool ok =
      EVP_DigestSignInit(ctx, nullptr, nullptr, nullptr, pkey_) == 1 &&
      EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &n,
                     reinterpret_cast<const unsigned char*>(message.data()), message.size()) == 1;
  EVP_MD_CTX_free(ctx);
  // Ed25519 signing of an in-memory key cannot fail short of memory exhaustion: a broken
  // invariant, not an environment error.
  if (!ok || n != 64) std::abort();
  return sig;
}

std::string Signer::PrivateKeyPem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), pkey_, nullptr, nullptr, 0, nullptr, nullptr);
  return BioToString(bio.get());
}

}  // namespace uop::audit
