// RFC 9162 hashing, proofs and their verification, against the tree computed the slow way.
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "audit/merkle.h"
#include "gtest/gtest.h"

namespace uop::audit {
namespace {

std::vector<Hash> Leaves(int n) {
  std::vector<Hash> leaves;
  for (int i = 0; i < n; ++i) leaves.push_back(LeafHash(absl::StrCat("entry ", i)));
  return leaves;
}

TEST(AuditMerkleTest, KnownAnswers) {
  // Certificate Transparency's empty tree and the leaf hash of the empty entry.
  EXPECT_EQ(HashToHex(EmptyTreeRoot()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(HashToHex(LeafHash("")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
  const std::vector<Hash> l = Leaves(3);
  EXPECT_EQ(RootOf(l), NodeHash(NodeHash(l[0], l[1]), l[2]));
}

TEST(AuditMerkleTest, CompactTreeMatchesFullTree) {
  const std::vector<Hash> leaves = Leaves(130);
  CompactTree tree;
  EXPECT_EQ(tree.Root(), EmptyTreeRoot());
  for (size_t n = 1; n <= leaves.size(); ++n) {
    tree.Append(leaves[n - 1]);
    ASSERT_EQ(tree.Root(), RootOf(std::span(leaves).first(n))) << n;
  }
}

TEST(AuditMerkleTest, EveryInclusionProofVerifiesAndNoOtherDoes) {
  const std::vector<Hash> all = Leaves(40);
  for (uint64_t n = 1; n <= all.size(); ++n) {
    std::span<const Hash> leaves = std::span(all).first(n);
    const Hash root = RootOf(leaves);
    for (uint64_t i = 0; i < n; ++i) {
      std::vector<Hash> proof = InclusionProof(leaves, i);
      ASSERT_TRUE(VerifyInclusion(i, n, leaves[i], proof, root).ok()) << i << "/" << n;
      // The same proof for another leaf, index or size fails.
      EXPECT_FALSE(VerifyInclusion(i, n, LeafHash("forged"), proof, root).ok());
      if (n > 1) {
        EXPECT_FALSE(VerifyInclusion((i + 1) % n, n, leaves[i], proof, root).ok());
      }
      // (The tree size itself is bound by the signed checkpoint, not by the path.)
      if (n < all.size()) {
        EXPECT_FALSE(
            VerifyInclusion(i, n + 1, leaves[i], proof, RootOf(std::span(all).first(n + 1))).ok());
      }
      for (size_t k = 0; k < proof.size(); ++k) {
        std::vector<Hash> bad = proof;
        bad[k][0] ^= 1;
        EXPECT_FALSE(VerifyInclusion(i, n, leaves[i], bad, root).ok());
      }
    }
  }
  EXPECT_EQ(VerifyInclusion(5, 5, all[0], {}, all[0]).message(),
            "inclusion proof: index 5 is not below tree size 5");
}

TEST(AuditMerkleTest, EveryConsistencyProofVerifiesAndNoOtherDoes) {
  const std::vector<Hash> all = Leaves(40);
  for (uint64_t n = 1; n <= all.size(); ++n) {
    std::span<const Hash> leaves = std::span(all).first(n);
    const Hash root = RootOf(leaves);
    for (uint64_t m = 1; m <= n; ++m) {
      const Hash old_root = RootOf(leaves.first(m));
      std::vector<Hash> proof = ConsistencyProof(leaves, m);
      ASSERT_TRUE(VerifyConsistency(m, n, old_root, root, proof).ok()) << m << "/" << n;
      if (m < n) {
        EXPECT_FALSE(VerifyConsistency(m, n, LeafHash("other"), root, proof).ok());
        EXPECT_FALSE(VerifyConsistency(m, n, old_root, LeafHash("other"), proof).ok());
        for (size_t k = 0; k < proof.size(); ++k) {
          std::vector<Hash> bad = proof;
          bad[k][31] ^= 0x80;
          EXPECT_FALSE(VerifyConsistency(m, n, old_root, root, bad).ok()) << m << "/" << n;
        }
      }
    }
  }
}

TEST(AuditMerkleTest, RewrittenHistoryHasNoConsistencyProof) {
  std::vector<Hash> honest = Leaves(20);
  std::vector<Hash> rewritten = honest;
  rewritten[7] = LeafHash("entry 7, rewritten");
  const Hash witnessed = RootOf(std::span(honest).first(12));
  absl::Status s =
      VerifyConsistency(12, 20, witnessed, RootOf(rewritten), ConsistencyProof(rewritten, 12));
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(absl::StartsWith(s.message(), "consistency proof: the old tree's root ")) << s;
}

}  // namespace
}  // namespace uop::audit
