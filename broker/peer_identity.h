// Maps a remote certificate to a configured peer: the chain must verify against that peer's own
// CA (not any other peer's) and the leaf must carry the peer's configured identity as a SAN.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>
#include "absl/strings/string_view.h"

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include "absl/status/statusor.h"
#include "broker/config.h"

namespace uop::broker {

// Immutable after Create; thread-safe.
class PeerAuthenticator {
 public:
  static absl::StatusOr<std::shared_ptr<const PeerAuthenticator>> Create(const NodeConfig& config);
  ~PeerAuthenticator();

  // `chain_pem` is the leaf followed by any intermediates (the leaf alone is fine). With
  // `expected_peer`, only that peer is acceptable. Returns the peer name, or why it is refused.
  absl::StatusOr<std::string> Authenticate(absl::string_view chain_pem,
                                           std::optional<absl::string_view> expected_peer) const;

  // PEM of every peer CA, concatenated (what the server offers as acceptable issuers).
  const std::string& all_peer_cas() const { return all_peer_cas_; }
  const std::string& own_cert_pem() const { return own_cert_pem_; }
  const std::string& own_key_pem() const { return own_key_pem_; }

 private:
  struct Peer;
  PeerAuthenticator() = default;
  std::vector<std::unique_ptr<Peer>> peers_;
  std::string all_peer_cas_;
  std::string own_cert_pem_;
  std::string own_key_pem_;
};

// The chain to authenticate for a TLS connection, from what gRPC reports: `leaf`
// (x509_pem_cert), then `sent_chain` (x509_pem_cert_chain). On the server side OpenSSL's peer
// chain lacks the client's leaf (SSL_get_peer_cert_chain), so a client that sends leaf +
// intermediates is only authenticated with the leaf put first; on the client side the chain
// already starts with the leaf, which is then listed twice, harmlessly.
std::string HandshakeChain(absl::string_view leaf, absl::string_view sent_chain);

// The subject alternative names (DNS names and URIs) of the first certificate in `pem`.
absl::StatusOr<std::vector<std::string>> CertificateNames(absl::string_view pem);

// Told the outcome of each server-side handshake check: the peer name, or why the client is
// refused. Called on a gRPC thread, once per TLS handshake that reached certificate checking.
using HandshakeObserver = std::function<void(const absl::StatusOr<std::string>& peer)>;

// Server credentials: mTLS; a client certificate is requested and checked by `auth` (any peer).
// A client without a certificate completes the TLS exchange and is then refused by our check, so
// every refusal passes through it. gRPC's verifier does not know the client's address: without
// `observer` a refusal is logged here without it (tls_peer_refused); TlsListener passes one per
// connection slot and logs with the address instead.
std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(
    const std::shared_ptr<const PeerAuthenticator>& auth, HandshakeObserver observer = nullptr);
// Channel credentials to dial `peer`: its certificate must verify as that peer.
std::shared_ptr<grpc::ChannelCredentials> MakeChannelCredentials(
    const std::shared_ptr<const PeerAuthenticator>& auth, const PeerConfig& peer);

// Reads a whole file; errors name the file.
absl::StatusOr<std::string> ReadFile(const std::string& path);

}  // namespace uop::broker
