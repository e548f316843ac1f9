// HMAC-SHA256 by hand over EVP digests: precomputing the padded-key states saves two SHA-256
// blocks and all setup per pseudonym, against EVP_MAC's per-call initialisation.
#include "policy/pseudonymiser.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>

namespace uop::policy {

Pseudonymiser::Pseudonymiser(std::string_view key)
    : inner_(EVP_MD_CTX_new()), outer_(EVP_MD_CTX_new()), work_(EVP_MD_CTX_new()) {
  constexpr size_t kBlock = 64;
  unsigned char k[kBlock] = {0};
  if (key.size() > kBlock) {
    unsigned int len = 0;
    EVP_Digest(key.data(), key.size(), k, &len, EVP_sha256(), nullptr);
  } else {
    std::copy(key.begin(), key.end(), k);
  }
  unsigned char pad[kBlock];
  for (size_t i = 0; i < kBlock; ++i) pad[i] = k[i] ^ 0x36;
  if (inner_ == nullptr || outer_ == nullptr || work_ == nullptr ||
      EVP_DigestInit_ex(inner_, EVP_sha256(), nullptr) != 1 ||
      EVP_DigestUpdate(inner_, pad, kBlock) != 1) {
    std::abort();  // out of memory or a broken OpenSSL: nothing sensible to do
  }
  for (size_t i = 0; i < kBlock; ++i) pad[i] = k[i] ^ 0x5c;
  if (EVP_DigestInit_ex(outer_, EVP_sha256(), nullptr) != 1 ||
      EVP_DigestUpdate(outer_, pad, kBlock) != 1) {
    std::abort();
  }
  OPENSSL_cleanse(k, sizeof(k));
  OPENSSL_cleanse(pad, sizeof(pad));
}

Pseudonymiser::~Pseudonymiser() {
  EVP_MD_CTX_free(inner_);
  EVP_MD_CTX_free(outer_);
  EVP_MD_CTX_free(work_);
}

void Pseudonymiser::AppendHex(std::string_view data, std::string* out) {
  char hex[kHexSize];
  Hex(data, hex);
  out->append(hex, kHexSize);
}

void Pseudonymiser::Hex(std::string_view data, char* hex) {
  Slot* slot = nullptr;
  if (data.size() <= kMaxCachedInput) {
    slot = &cache_[std::hash<std::string_view>{}(data) % kSlots];
    if (slot->used && slot->input == data) {
      std::memcpy(hex, slot->hex, kHexSize);
      return;
    }
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_MD_CTX_copy_ex(work_, inner_) != 1 ||
      EVP_DigestUpdate(work_, data.data(), data.size()) != 1 ||
      EVP_DigestFinal_ex(work_, digest, &len) != 1 || EVP_MD_CTX_copy_ex(work_, outer_) != 1 ||
      EVP_DigestUpdate(work_, digest, len) != 1 || EVP_DigestFinal_ex(work_, digest, &len) != 1 ||
      len * 2 != kHexSize) {
    std::abort();
  }
  static constexpr char kHexDigits[] = "0123456789abcdef";
  for (unsigned int i = 0; i < len; ++i) {
    hex[2 * i] = kHexDigits[digest[i] >> 4];
    hex[2 * i + 1] = kHexDigits[digest[i] & 0xf];
  }
  if (slot != nullptr) {
    slot->input.assign(data);
    std::memcpy(slot->hex, hex, kHexSize);
    slot->used = true;
  }
}

}  // namespace uop::policy
