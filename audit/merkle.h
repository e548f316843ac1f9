// RFC 9162 (Certificate Transparency v2) Merkle tree hashing over audit entries: leaf hash
// SHA-256(0x00 || entry), interior SHA-256(0x01 || left || right); inclusion and consistency
// proofs, generated from leaf hashes and verified as RFC 9162 sections 2.1.3.2 and 2.1.4.2 say.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace uop::audit {

using Hash = std::array<uint8_t, 32>;

Hash Sha256(absl::string_view data);
Hash LeafHash(absl::string_view entry);
Hash NodeHash(const Hash& left, const Hash& right);
Hash EmptyTreeRoot();  // SHA-256 of the empty string
std::string HashToHex(const Hash& h);
absl::string_view HashBytes(const Hash& h);  // the 32 raw bytes, viewing h
bool HashFromBytes(absl::string_view bytes, Hash* out);

// The right edge of a tree (one hash per set bit of its size), enough to append leaves and
// compute the root in O(log n) memory. A value type; not thread-safe.
class CompactTree {
 public:
  void Append(const Hash& leaf);
  uint64_t size() const { return size_; }
  Hash Root() const;

 private:
  uint64_t size_ = 0;
  std::vector<Hash> frontier_;  // perfect subtrees, largest (leftmost) first
};

// MTH(D[n]) over leaf hashes.
Hash RootOf(std::span<const Hash> leaves);
// PATH(index, D[n]) over leaf hashes; index < leaves.size().
std::vector<Hash> InclusionProof(std::span<const Hash> leaves, uint64_t index);
// PROOF(old_size, D[n]) over leaf hashes; old_size <= leaves.size().
std::vector<Hash> ConsistencyProof(std::span<const Hash> leaves, uint64_t old_size);

absl::Status VerifyInclusion(uint64_t index, uint64_t tree_size, const Hash& leaf_hash,
                             std::span<const Hash> proof, const Hash& root);
absl::Status VerifyConsistency(uint64_t old_size, uint64_t new_size, const Hash& old_root,
                               const Hash& new_root, std::span<const Hash> proof);

}  // namespace uop::audit
