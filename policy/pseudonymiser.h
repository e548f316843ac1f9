// Keyed pseudonyms: HMAC-SHA256 (RFC 2104) with OpenSSL, the pads digested once per key.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

struct evp_md_ctx_st;

namespace uop::policy {

// Not thread-safe (reuses digest contexts); one per transform. Holds key-derived state only:
// the key's bytes are not kept. Identifiers repeat (a sensor reports every few seconds), so the
// last pseudonyms of short inputs are remembered in a small direct-mapped cache (256 slots,
// about 30 KiB): a hit costs a hash and a compare instead of two SHA-256 blocks.
class Pseudonymiser {
 public:
  explicit Pseudonymiser(std::string_view key);
  ~Pseudonymiser();
  Pseudonymiser(const Pseudonymiser&) = delete;
  Pseudonymiser& operator=(const Pseudonymiser&) = delete;

  static constexpr size_t kHexSize = 64;
  // Writes HMAC-SHA256(key, data) as 64 lowercase hex digits to `out` (appended).
  void AppendHex(std::string_view data, std::string* out);
  // The same into `hex` (exactly kHexSize characters, no terminator).
  void Hex(std::string_view data, char* hex);

 private:
  evp_md_ctx_st* inner_;  // SHA-256 state after key ^ ipad
  evp_md_ctx_st* outer_;  // SHA-256 state after key ^ opad
  evp_md_ctx_st* work_;
  struct Slot {
    std::string input;
    char hex[kHexSize];
    bool used = false;
  };
  static constexpr size_t kSlots = 256;
  static constexpr size_t kMaxCachedInput = 64;
  std::array<Slot, kSlots> cache_;
};

}  // namespace uop::policy
