// Keyed pseudonyms: HMAC-SHA256 (RFC 2104) with OpenSSL, the pads digested once per key.
#pragma once

#include <string>
#include <string_view>

struct evp_md_ctx_st;

namespace uop::policy {

// Not thread-safe (reuses digest contexts); one per transform. Holds key-derived state only:
// the key's bytes are not kept.
class Pseudonymiser {
 public:
  explicit Pseudonymiser(std::string_view key);
  ~Pseudonymiser();
  Pseudonymiser(const Pseudonymiser&) = delete;
  Pseudonymiser& operator=(const Pseudonymiser&) = delete;

  // Writes HMAC-SHA256(key, data) as 64 lowercase hex digits to `out` (appended).
  void AppendHex(std::string_view data, std::string* out);

 private:
  evp_md_ctx_st* inner_;  // SHA-256 state after key ^ ipad
  evp_md_ctx_st* outer_;  // SHA-256 state after key ^ opad
  evp_md_ctx_st* work_;
};

}  // namespace uop::policy
