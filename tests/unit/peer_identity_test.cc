// Certificate-to-peer mapping against the demo PKI: each bad certificate is refused with the
// reason an operator needs.
#include "broker/peer_identity.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "broker/tls_listener.h"

namespace uop::broker {
namespace {

using ::testing::HasSubstr;

class PeerIdentityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pki_ = new std::filesystem::path(std::filesystem::temp_directory_path() /
                                     ("uop-pki-test-" + std::to_string(::getpid())));
    const std::string cmd =
        std::string(UOP_SOURCE_DIR) + "/deploy/pki/make-pki.sh " + pki_->string() + " >/dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*pki_);
    delete pki_;
  }

  // Helsinki's view: tallinn is its only peer.
  static NodeConfig HelsinkiConfig() {
    NodeConfig config;
    config.node = "helsinki";
    config.tls = {(*pki_ / "helsinki/node.pem").string(), (*pki_ / "helsinki/node.key").string()};
    config.peers.push_back(
        {"tallinn", "", (*pki_ / "tallinn/ca.pem").string(), "uopd.tallinn.example", ""});
    return config;
  }

  static std::string Pem(const std::string& relative) {
    auto pem = ReadFile((*pki_ / relative).string());
    EXPECT_TRUE(pem.ok()) << pem.status();
    return pem.ok() ? *pem : std::string();
  }

  static std::filesystem::path* pki_;
};

std::filesystem::path* PeerIdentityTest::pki_ = nullptr;

TEST_F(PeerIdentityTest, GoodCertificateMapsToItsPeer) {
  auto auth = PeerAuthenticator::Create(HelsinkiConfig());
  ASSERT_TRUE(auth.ok()) << auth.status();
  auto peer = (*auth)->Authenticate(Pem("tallinn/node.pem"), std::nullopt);
  ASSERT_TRUE(peer.ok()) << peer.status();
  EXPECT_EQ(*peer, "tallinn");
  EXPECT_TRUE((*auth)->Authenticate(Pem("tallinn/node.pem"), "tallinn").ok());
}

TEST_F(PeerIdentityTest, CertificateOfAnotherCaIsRefused) {
  auto auth = PeerAuthenticator::Create(HelsinkiConfig());
  ASSERT_TRUE(auth.ok());
  auto peer = (*auth)->Authenticate(Pem("bad/other-ca-tallinn.pem"), std::nullopt);
  ASSERT_FALSE(peer.ok());
  EXPECT_EQ(peer.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(peer.status().message(),
              HasSubstr("does not verify against the CA of peer 'tallinn'"));
  EXPECT_THAT(peer.status().message(), HasSubstr("unable to get local issuer certificate"));
}

TEST_F(PeerIdentityTest, WrongSanIsRefusedAndNamed) {
  auto auth = PeerAuthenticator::Create(HelsinkiConfig());
  ASSERT_TRUE(auth.ok());
  auto peer = (*auth)->Authenticate(Pem("bad/wrong-san-tallinn.pem"), std::nullopt);
  ASSERT_FALSE(peer.ok());
  EXPECT_EQ(peer.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(peer.status().message(), HasSubstr("uopd.evil.example"));
  EXPECT_THAT(peer.status().message(), HasSubstr("match no configured peer identity"));
}

TEST_F(PeerIdentityTest, ExpiredCertificateIsRefused) {
  auto auth = PeerAuthenticator::Create(HelsinkiConfig());
  ASSERT_TRUE(auth.ok());
  auto peer = (*auth)->Authenticate(Pem("bad/expired-tallinn.pem"), std::nullopt);
  ASSERT_FALSE(peer.ok());
  EXPECT_THAT(peer.status().message(), HasSubstr("certificate has expired"));
}

TEST_F(PeerIdentityTest, OwnCityCertificateIsNotAPeer) {
  // Helsinki's own node certificate is valid, but under helsinki's CA, which is not a peer CA
  // here, and its name is not a peer identity.
  auto auth = PeerAuthenticator::Create(HelsinkiConfig());
  ASSERT_TRUE(auth.ok());
  EXPECT_FALSE((*auth)->Authenticate(Pem("helsinki/node.pem"), std::nullopt).ok());
}

TEST_F(PeerIdentityTest, ExpectedPeerMustMatch) {
  NodeConfig config = HelsinkiConfig();
  config.peers.push_back(
      {"riga", "", (*pki_ / "helsinki/ca.pem").string(), "uopd.helsinki.example", ""});
  auto auth = PeerAuthenticator::Create(config);
  ASSERT_TRUE(auth.ok());
  // A valid tallinn certificate presented where riga was dialled is refused.
  auto peer = (*auth)->Authenticate(Pem("tallinn/node.pem"), "riga");
  ASSERT_FALSE(peer.ok());
  EXPECT_THAT(peer.status().message(), HasSubstr("not the identity of peer 'riga'"));
}

TEST_F(PeerIdentityTest, NoCertificateIsRefused) {
  auto auth = PeerAuthenticator::Create(HelsinkiConfig());
  ASSERT_TRUE(auth.ok());
  auto peer = (*auth)->Authenticate("", std::nullopt);
  ASSERT_FALSE(peer.ok());
  EXPECT_THAT(peer.status().message(), HasSubstr("no client certificate presented"));
}

// A node certificate issued by an intermediate CA, with only the root in the peer's bundle.
TEST_F(PeerIdentityTest, LeafPlusIntermediateVerifiesAgainstTheRoot) {
  auto auth = PeerAuthenticator::Create(HelsinkiConfig());
  ASSERT_TRUE(auth.ok());
  auto peer = (*auth)->Authenticate(Pem("tallinn/intermediate/node.pem"), std::nullopt);
  ASSERT_TRUE(peer.ok()) << peer.status();
  EXPECT_EQ(*peer, "tallinn");
}

TEST_F(PeerIdentityTest, LeafWithoutItsIntermediateIsRefused) {
  auto auth = PeerAuthenticator::Create(HelsinkiConfig());
  ASSERT_TRUE(auth.ok());
  auto peer = (*auth)->Authenticate(Pem("tallinn/intermediate/leaf.pem"), std::nullopt);
  ASSERT_FALSE(peer.ok());
  EXPECT_EQ(peer.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(peer.status().message(), HasSubstr("unable to get local issuer certificate"));
}

TEST_F(PeerIdentityTest, LeafAloneVerifiesWhenTheBundleHoldsTheIntermediate) {
  const std::filesystem::path bundle = *pki_ / "tallinn-root-and-intermediate.pem";
  std::ofstream(bundle) << Pem("tallinn/ca.pem") << Pem("tallinn/intermediate/ca.pem");
  NodeConfig config = HelsinkiConfig();
  config.peers[0].ca_file = bundle.string();
  auto auth = PeerAuthenticator::Create(config);
  ASSERT_TRUE(auth.ok()) << auth.status();
  auto peer = (*auth)->Authenticate(Pem("tallinn/intermediate/leaf.pem"), std::nullopt);
  ASSERT_TRUE(peer.ok()) << peer.status();
  EXPECT_EQ(*peer, "tallinn");
}

TEST_F(PeerIdentityTest, OnlyTheIntermediateInTheBundleIsNotEnough) {
  // No partial-chain trust: the root must be in the bundle.
  NodeConfig config = HelsinkiConfig();
  config.peers[0].ca_file = (*pki_ / "tallinn/intermediate/ca.pem").string();
  auto auth = PeerAuthenticator::Create(config);
  ASSERT_TRUE(auth.ok()) << auth.status();
  auto peer = (*auth)->Authenticate(Pem("tallinn/intermediate/node.pem"), std::nullopt);
  ASSERT_FALSE(peer.ok());
  EXPECT_EQ(peer.status().code(), absl::StatusCode::kUnauthenticated);
}

// What gRPC reports on the owner (TLS server) for a client that sends leaf + intermediate: the
// leaf as x509_pem_cert, and a chain without the leaf (OpenSSL's server-side peer chain).
TEST_F(PeerIdentityTest, ServerSideHandshakeChainPutsTheLeafFirst) {
  auto auth = PeerAuthenticator::Create(HelsinkiConfig());
  ASSERT_TRUE(auth.ok());
  const std::string leaf = Pem("tallinn/intermediate/leaf.pem");
  const std::string intermediate = Pem("tallinn/intermediate/ca.pem");
  // The chain alone names the intermediate, which carries no SAN: that was the old refusal.
  auto chain_only = (*auth)->Authenticate(intermediate, std::nullopt);
  ASSERT_FALSE(chain_only.ok());
  EXPECT_EQ(chain_only.status().message(),
            "certificate names [] match no configured peer identity");
  auto peer = (*auth)->Authenticate(HandshakeChain(leaf, intermediate), std::nullopt);
  ASSERT_TRUE(peer.ok()) << peer.status();
  EXPECT_EQ(*peer, "tallinn");
  // Without its final newline the leaf still parses as a PEM block of its own.
  auto trimmed = (*auth)->Authenticate(
      HandshakeChain(leaf.substr(0, leaf.find_last_not_of('\n') + 1), intermediate), std::nullopt);
  ASSERT_TRUE(trimmed.ok()) << trimmed.status();
}

// What gRPC reports on the receiver (TLS client): the chain starts with the leaf.
TEST_F(PeerIdentityTest, ClientSideHandshakeChainListsTheLeafTwice) {
  auto auth = PeerAuthenticator::Create(HelsinkiConfig());
  ASSERT_TRUE(auth.ok());
  auto peer = (*auth)->Authenticate(
      HandshakeChain(Pem("tallinn/intermediate/leaf.pem"), Pem("tallinn/intermediate/node.pem")),
      "tallinn");
  ASSERT_TRUE(peer.ok()) << peer.status();
  EXPECT_EQ(HandshakeChain("", "x"), "x");
}

TEST(SocketAddressTextTest, SpellsAddressesAsGrpcPeerDoes) {
  sockaddr_in v4{};
  v4.sin_family = AF_INET;
  v4.sin_port = htons(5000);
  inet_pton(AF_INET, "127.0.0.1", &v4.sin_addr);
  EXPECT_EQ(SocketAddressText(reinterpret_cast<sockaddr*>(&v4)), "ipv4:127.0.0.1:5000");
  sockaddr_in6 v6{};
  v6.sin6_family = AF_INET6;
  v6.sin6_port = htons(7443);
  inet_pton(AF_INET6, "::1", &v6.sin6_addr);
  EXPECT_EQ(SocketAddressText(reinterpret_cast<sockaddr*>(&v6)), "ipv6:[::1]:7443");
  sockaddr unix_addr{};
  unix_addr.sa_family = AF_UNIX;
  EXPECT_EQ(SocketAddressText(&unix_addr), "unknown");
}

TEST_F(PeerIdentityTest, CertificateNamesListsDnsAndUri) {
  auto names = CertificateNames(Pem("tallinn/node.pem"));
  ASSERT_TRUE(names.ok());
  EXPECT_THAT(*names, ::testing::Contains("uopd.tallinn.example"));
  EXPECT_THAT(*names, ::testing::Contains("spiffe://tallinn.example/uopd"));
}

TEST_F(PeerIdentityTest, MissingCaFileIsAnError) {
  NodeConfig config = HelsinkiConfig();
  config.peers[0].ca_file = (*pki_ / "nope.pem").string();
  auto auth = PeerAuthenticator::Create(config);
  ASSERT_FALSE(auth.ok());
  EXPECT_THAT(auth.status().message(), HasSubstr("nope.pem: cannot read"));
}

}  // namespace
}  // namespace uop::broker
