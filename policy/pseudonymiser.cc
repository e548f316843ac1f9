// HMAC-SHA256 by hand over EVP digests: precomputing the padded-key states saves two SHA-256
// blocks and all setup per pseudonym, against EVP_MAC's per-call initialisation.
#include "policy/pseudonymiser.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cstdlib>

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
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_MD_CTX_copy_ex(work_, inner_) != 1 ||
      EVP_DigestUpdate(work_, data.data(), data.size()) != 1 ||
      EVP_DigestFinal_ex(work_, digest, &len) != 1 || EVP_MD_CTX_copy_ex(work_, outer_) != 1 ||
      EVP_DigestUpdate(work_, digest, len) != 1 || EVP_DigestFinal_ex(work_, digest, &len) != 1) {
    std::abort();
  }
  static constexpr char kHex[] = "0123456789abcdef";
  const size_t at = out->size();
  out->resize(at + 2 * len);
  for (unsigned int i = 0; i < len; ++i) {
    (*out)[at + 2 * i] = kHex[digest[i] >> 4];
    (*out)[at + 2 * i + 1] = kHex[digest[i] & 0xf];
  }
}

}  // namespace uop::policy
