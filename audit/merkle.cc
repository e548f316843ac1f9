// RFC 9162 section 2.1: MTH, PATH, PROOF and the two verification algorithms, step by step.
#include "audit/merkle.h"

#include <openssl/evp.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace uop::audit {
namespace {

Hash Digest(std::initializer_list<absl::string_view> parts) {
  Hash out;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  for (absl::string_view p : parts) EVP_DigestUpdate(ctx, p.data(), p.size());
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx, out.data(), &n);
  EVP_MD_CTX_free(ctx);
  return out;
}

// The largest power of two strictly smaller than n (n > 1).
uint64_t SplitPoint(uint64_t n) {
  uint64_t k = 1;
  while (k << 1 < n) k <<= 1;
  return k;
}

void SubProof(std::span<const Hash> leaves, uint64_t m, bool complete, std::vector<Hash>* out) {
  const uint64_t n = leaves.size();
  if (m == n) {
    if (!complete) out->push_back(RootOf(leaves));
    return;
  }
  const uint64_t k = SplitPoint(n);
  if (m <= k) {
    SubProof(leaves.subspan(0, k), m, complete, out);
    out->push_back(RootOf(leaves.subspan(k)));
  } else {
    SubProof(leaves.subspan(k), m - k, false, out);
    out->push_back(RootOf(leaves.subspan(0, k)));
  }
}

}  // namespace

Hash Sha256(absl::string_view data) { return Digest({data}); }

Hash LeafHash(absl::string_view entry) {
  static constexpr char kLeaf = 0x00;
  return Digest({absl::string_view(&kLeaf, 1), entry});
}

Hash NodeHash(const Hash& left, const Hash& right) {
  static constexpr char kNode = 0x01;
  return Digest({absl::string_view(&kNode, 1), HashBytes(left), HashBytes(right)});
}

Hash EmptyTreeRoot() { return Digest({}); }

std::string HashToHex(const Hash& h) { return absl::BytesToHexString(HashBytes(h)); }

absl::string_view HashBytes(const Hash& h) {
  return absl::string_view(reinterpret_cast<const char*>(h.data()), h.size());
}

bool HashFromBytes(absl::string_view bytes, Hash* out) {
  if (bytes.size() != out->size()) return false;
  std::copy(bytes.begin(), bytes.end(), out->begin());
  return true;
}

void CompactTree::Append(const Hash& leaf) {
  Hash h = leaf;
  // Merge equal-sized perfect subtrees: one per trailing one-bit of the old size.
  for (uint64_t s = size_; s & 1; s >>= 1) {
    h = NodeHash(frontier_.back(), h);
    frontier_.pop_back();
  }
  frontier_.push_back(h);
  ++size_;
}

Hash CompactTree::Root() const {
  if (frontier_.empty()) return EmptyTreeRoot();
  Hash h = frontier_.back();
  for (size_t i = frontier_.size() - 1; i-- > 0;) h = NodeHash(frontier_[i], h);
  return h;
}

Hash RootOf(std::span<const Hash> leaves) {
  if (leaves.empty()) return EmptyTreeRoot();
  if (leaves.size() == 1) return leaves[0];
  const uint64_t k = SplitPoint(leaves.size());
  return NodeHash(RootOf(leaves.subspan(0, k)), RootOf(leaves.subspan(k)));
}

std::vector<Hash> InclusionProof(std::span<const Hash> leaves, uint64_t index) {
  std::vector<Hash> path;
  while (leaves.size() > 1) {
    const uint64_t k = SplitPoint(leaves.size());
    if (index < k) {
      path.push_back(RootOf(leaves.subspan(k)));
      leaves = leaves.subspan(0, k);
    } else {
      path.push_back(RootOf(leaves.subspan(0, k)));
      leaves = leaves.subspan(k);
      index -= k;
    }
  }
  // Built top-down; RFC 9162 orders the path from the leaf up.
  std::reverse(path.begin(), path.end());
  return path;
}

std::vector<Hash> ConsistencyProof(std::span<const Hash> leaves, uint64_t old_size) {
  std::vector<Hash> proof;
  if (old_size == 0 || old_size >= leaves.size()) return proof;
  SubProof(leaves, old_size, true, &proof);
  return proof;
}

absl::Status VerifyInclusion(uint64_t index, uint64_t tree_size, const Hash& leaf_hash,
                             std::span<const Hash> proof, const Hash& root) {
  if (index >= tree_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("inclusion proof: index ", index, " is not below tree size ", tree_size));
  }
  uint64_t fn = index;
  uint64_t sn = tree_size - 1;
  Hash r = leaf_hash;
  for (const Hash& p : proof) {
    if (sn == 0) return absl::DataLossError("inclusion proof: longer than the tree is deep");
    if ((fn & 1) || fn == sn) {
      r = NodeHash(p, r);
      if (!(fn & 1)) {
        while (!(fn & 1) && fn != 0) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      r = NodeHash(r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn != 0) return absl::DataLossError("inclusion proof: shorter than the tree is deep");
  if (r != root) {
    return absl::DataLossError(absl::StrCat("inclusion proof: computed root ", HashToHex(r),
                                            " differs from the checkpoint's ", HashToHex(root)));
  }
  return absl::OkStatus();
}

absl::Status VerifyConsistency(uint64_t old_size, uint64_t new_size, const Hash& old_root,
                               const Hash& new_root, std::span<const Hash> proof) {
  if (old_size > new_size) {
    return absl::DataLossError(absl::StrCat("consistency proof: old size ", old_size,
                                            " is larger than new size ", new_size));
  }
  if (old_size == new_size) {
    if (!proof.empty()) return absl::DataLossError("consistency proof: must be empty");
    if (old_root != new_root) {
      return absl::DataLossError(
          absl::StrCat("consistency proof: two different roots for tree size ", old_size));
    }
    return absl::OkStatus();
  }
  if (old_size == 0) {
    if (!proof.empty()) return absl::DataLossError("consistency proof: must be empty");
    return absl::OkStatus();
  }
  if (proof.empty()) return absl::DataLossError("consistency proof: empty");
  std::vector<Hash> path;
  if ((old_size & (old_size - 1)) == 0) path.push_back(old_root);
  path.insert(path.end(), proof.begin(), proof.end());
  uint64_t fn = old_size - 1;
  uint64_t sn = new_size - 1;
  while (fn & 1) {
    fn >>= 1;
    sn >>= 1;
  }
  Hash fr = path[0];
  Hash sr = path[0];
  for (size_t i = 1; i < path.size(); ++i) {
    const Hash& c = path[i];
    if (sn == 0) return absl::DataLossError("consistency proof: longer than expected");
    if ((fn & 1) || fn == sn) {
      fr = NodeHash(c, fr);
      sr = NodeHash(c, sr);
      if (!(fn & 1)) {
        while (!(fn & 1) && fn != 0) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      sr = NodeHash(sr, c);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn != 0) return absl::DataLossError("consistency proof: shorter than expected");
  if (fr != old_root) {
    return absl::DataLossError(
        absl::StrCat("consistency proof: the old tree's root ", HashToHex(old_root),
                     " is not a prefix of the new (got ", HashToHex(fr), ")"));
  }
  if (sr != new_root) {
    return absl::DataLossError(absl::StrCat("consistency proof: computed new root ", HashToHex(sr),
                                            " differs from ", HashToHex(new_root)));
  }
  return absl::OkStatus();
}

}  // namespace uop::audit
