// Ed25519 audit keys (OpenSSL EVP): a node's Signer and the Verifier of any node, with C2SP
// signed-note key IDs and verifier keys ("vkeys"). The private key never leaves Signer except
// through PrivateKeyPem(), which only `uopctl audit keygen` calls.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

// OpenSSL's own declaration, repeated to avoid including its headers here.
typedef struct evp_pkey_st EVP_PKEY;  // NOLINT(modernize-use-using)

namespace uop::audit {

using PublicKey = std::array<uint8_t, 32>;

// Signature type bytes of C2SP signed-note (0x01, note signatures) and tlog-cosignature (0x04).
inline constexpr uint8_t kNoteKeyType = 0x01;
inline constexpr uint8_t kCosignatureKeyType = 0x04;

// SHA-256(name || "\n" || type || public key)[:4], big endian.
uint32_t KeyId(absl::string_view name, uint8_t type, const PublicKey& key);

// A public key with the name it signs under. A value type; thread-safe (const).
class Verifier {
 public:
  // C2SP vkey: <name>+<hex key id>+<base64(0x01 || 32-byte key)>.
  static absl::StatusOr<Verifier> FromVkey(absl::string_view vkey);
  // A PEM "PUBLIC KEY" (SubjectPublicKeyInfo) holding an Ed25519 key.
  static absl::StatusOr<Verifier> FromPem(absl::string_view name, absl::string_view pem);

  const std::string& name() const { return name_; }
  const PublicKey& public_key() const { return key_; }
  uint32_t note_key_id() const { return KeyId(name_, kNoteKeyType, key_); }
  uint32_t cosignature_key_id() const { return KeyId(name_, kCosignatureKeyType, key_); }
  std::string Vkey() const;
  std::string PublicKeyPem() const;
  // True when `signature` (64 bytes) is a valid Ed25519 signature of `message`.
  bool Verify(absl::string_view message, absl::string_view signature) const;

 private:
  friend class Signer;
  Verifier(std::string name, const PublicKey& key) : name_(std::move(name)), key_(key) {}
  std::string name_;
  PublicKey key_;
};

// A node's private audit key. Thread-safe: Sign may be called concurrently.
class Signer {
 public:
  static absl::StatusOr<std::unique_ptr<Signer>> Generate(absl::string_view name);
  // A PEM "PRIVATE KEY" (PKCS#8) holding an Ed25519 key. Errors never quote the input.
  static absl::StatusOr<std::unique_ptr<Signer>> FromPem(absl::string_view name,
                                                         absl::string_view pem);
  ~Signer();
  Signer(const Signer&) = delete;
  Signer& operator=(const Signer&) = delete;

  const std::string& name() const { return verifier_.name(); }
  const Verifier& verifier() const { return verifier_; }
  // 64-byte Ed25519 signature.
  std::string Sign(absl::string_view message) const;
  // For keygen only: the private key as PKCS#8 PEM. Never log it.
  std::string PrivateKeyPem() const;

 private:
  Signer(EVP_PKEY* pkey, Verifier verifier) : pkey_(pkey), verifier_(std::move(verifier)) {}
  EVP_PKEY* pkey_;
  Verifier verifier_;
};

// Checks a key name as C2SP signed-note requires: non-empty, no spaces, no '+', no control
// characters.
absl::Status ValidateKeyName(absl::string_view name);

}  // namespace uop::audit
