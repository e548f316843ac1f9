// Certificate chain and SAN checks with OpenSSL; gRPC TLS credentials that use them.
#include "broker/peer_identity.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <fstream>
#include <sstream>

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/log.h"

namespace uop::broker {
namespace {

struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
struct StoreDeleter {
  void operator()(X509_STORE* s) const { X509_STORE_free(s); }
};
struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
using X509Ptr = std::unique_ptr<X509, X509Deleter>;

std::vector<X509Ptr> ParseChain(absl::string_view pem) {
  std::vector<X509Ptr> certs;
  std::unique_ptr<BIO, BioDeleter> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    certs.emplace_back(cert);
  }
  ERR_clear_error();  // the loop ends on "no start line", which is not an error here
  return certs;
}

std::vector<std::string> Names(X509* cert) {
  std::vector<std::string> names;
  auto* sans =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (sans == nullptr) return names;
  for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(sans, i);
    if (name->type == GEN_DNS || name->type == GEN_URI) {
      const ASN1_IA5STRING* s =
          name->type == GEN_DNS ? name->d.dNSName : name->d.uniformResourceIdentifier;
      names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                         ASN1_STRING_length(s));
    }
  }
  GENERAL_NAMES_free(sans);
  return names;
}

}  // namespace

struct PeerAuthenticator::Peer {
  std::string name;
  std::string identity;
  std::unique_ptr<X509_STORE, StoreDeleter> store;
};

PeerAuthenticator::~PeerAuthenticator() = default;

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot read"));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::string HandshakeChain(absl::string_view leaf, absl::string_view sent_chain) {
  std::string chain(leaf);
  if (!chain.empty() && chain.back() != '\n') chain.push_back('\n');  // PEM blocks need a line
  absl::StrAppend(&chain, sent_chain);
  return chain;
}

absl::StatusOr<std::vector<std::string>> CertificateNames(absl::string_view pem) {
  std::vector<X509Ptr> chain = ParseChain(pem);
  if (chain.empty()) return absl::InvalidArgumentError("no PEM certificate found");
  return Names(chain.front().get());
}

absl::StatusOr<std::shared_ptr<const PeerAuthenticator>> PeerAuthenticator::Create(
    const NodeConfig& config) {
  auto auth = std::shared_ptr<PeerAuthenticator>(new PeerAuthenticator());
  auto cert = ReadFile(config.tls.cert_file);
  if (!cert.ok()) return cert.status();
  auto key = ReadFile(config.tls.key_file);
  if (!key.ok()) return key.status();
  std::vector<X509Ptr> own_chain = ParseChain(*cert);
  if (own_chain.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(config.tls.cert_file, ": no PEM certificate found (tls.cert)"));
  }
  {
    // A key that is not the certificate's would only show as failed handshakes later.
    std::unique_ptr<BIO, BioDeleter> bio(
        BIO_new_mem_buf(key->data(), static_cast<int>(key->size())));
    EVP_PKEY* pkey = PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr);
    ERR_clear_error();
    const bool matches =
        pkey != nullptr && X509_check_private_key(own_chain.front().get(), pkey) == 1;
    EVP_PKEY_free(pkey);
    ERR_clear_error();
    if (!matches) {
      return absl::InvalidArgumentError(absl::StrCat(config.tls.key_file,
                                                     ": not a readable PEM private key for ",
                                                     config.tls.cert_file, " (tls.key)"));
    }
  }
  auth->own_cert_pem_ = *std::move(cert);
  auth->own_key_pem_ = *std::move(key);
  for (const PeerConfig& pc : config.peers) {
    auto ca_pem = ReadFile(pc.ca_file);
    if (!ca_pem.ok()) return ca_pem.status();
    std::vector<X509Ptr> cas = ParseChain(*ca_pem);
    if (cas.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(pc.ca_file, ": no PEM certificate found (ca of peer '", pc.name, "')"));
    }
    auto peer = std::make_unique<Peer>();
    peer->name = pc.name;
    peer->identity = pc.identity;
    peer->store.reset(X509_STORE_new());
    for (const X509Ptr& ca : cas) X509_STORE_add_cert(peer->store.get(), ca.get());
    absl::StrAppend(&auth->all_peer_cas_, *ca_pem, ca_pem->back() == '\n' ? "" : "\n");
    auth->peers_.push_back(std::move(peer));
  }
  return std::shared_ptr<const PeerAuthenticator>(std::move(auth));
}

absl::StatusOr<std::string> PeerAuthenticator::Authenticate(
    absl::string_view chain_pem, std::optional<absl::string_view> expected_peer) const {
  std::vector<X509Ptr> chain = ParseChain(chain_pem);
  if (chain.empty()) return absl::UnauthenticatedError("no client certificate presented");
  const std::vector<std::string> names = Names(chain.front().get());
  const Peer* match = nullptr;
  for (const auto& peer : peers_) {
    if (expected_peer.has_value() && peer->name != *expected_peer) continue;
    for (const std::string& n : names) {
      if (n == peer->identity) match = peer.get();
    }
    if (match != nullptr) break;
  }
  if (match == nullptr) {
    return absl::PermissionDeniedError(absl::StrCat(
        "certificate names [", absl::StrJoin(names, ", "), "] match ",
        expected_peer.has_value() ? absl::StrCat("not the identity of peer '", *expected_peer, "'")
                                  : std::string("no configured peer identity")));
  }
  STACK_OF(X509)* untrusted = sk_X509_new_null();
  for (size_t i = 1; i < chain.size(); ++i) sk_X509_push(untrusted, chain[i].get());
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  X509_STORE_CTX_init(ctx, match->store.get(), chain.front().get(), untrusted);
  const int ok = X509_verify_cert(ctx);
  const int err = X509_STORE_CTX_get_error(ctx);
  X509_STORE_CTX_free(ctx);
  sk_X509_free(untrusted);
  if (ok != 1) {
    return absl::UnauthenticatedError(absl::StrCat(
        "certificate for '", match->identity, "' does not verify against the CA of peer '",
        match->name, "': ", X509_verify_cert_error_string(err)));
  }
  return match->name;
}

namespace {

// Runs our checks inside the TLS handshake, so a refused peer never reaches a handler and
// the refusal is logged with its reason.
class PeerVerifier final : public grpc::experimental::ExternalCertificateVerifier {
 public:
  PeerVerifier(std::shared_ptr<const PeerAuthenticator> auth, std::optional<std::string> peer,
               std::string side, HandshakeObserver observer)
      : auth_(std::move(auth)),
        peer_(std::move(peer)),
        side_(std::move(side)),
        observer_(std::move(observer)) {}

  bool Verify(grpc::experimental::TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)> /*callback*/, grpc::Status* sync_status) override {
    const std::string chain =
        HandshakeChain(absl::string_view(request->peer_cert().data(), request->peer_cert().size()),
                       absl::string_view(request->peer_cert_full_chain().data(),
                                         request->peer_cert_full_chain().size()));
    absl::StatusOr<std::string> peer = auth_->Authenticate(
        chain, peer_.has_value() ? std::optional<absl::string_view>(*peer_) : std::nullopt);
    if (observer_) {
      observer_(peer);
    } else if (!peer.ok()) {
      log::Warn("tls_peer_refused", {{"side", side_},
                                     {"expected_peer", peer_.value_or("any")},
                                     {"reason", std::string(peer.status().message())}});
    }
    *sync_status = peer.ok() ? grpc::Status::OK
                             : grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                            std::string(peer.status().message()));
    return true;  // synchronous
  }

  void Cancel(grpc::experimental::TlsCustomVerificationCheckRequest*) override {}

 private:
  std::shared_ptr<const PeerAuthenticator> auth_;
  std::optional<std::string> peer_;
  std::string side_;
  HandshakeObserver observer_;
};

}  // namespace

std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(
    const std::shared_ptr<const PeerAuthenticator>& auth, HandshakeObserver observer) {
  using namespace grpc::experimental;  // NOLINT: the TLS API lives there in gRPC 1.51
  auto provider = std::make_shared<StaticDataCertificateProvider>(
      auth->all_peer_cas(),
      std::vector<IdentityKeyCertPair>{{auth->own_key_pem(), auth->own_cert_pem()}});
  TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  if (!auth->all_peer_cas().empty()) options.watch_root_certs();  // a node may have no peers yet
  // gRPC asks for a certificate and our verifier does all checking, per peer CA. "Request", not
  // "require": with "require" OpenSSL itself ends a handshake without a client certificate,
  // before our verifier runs, so that refusal would reach only gRPC's own log.
  options.set_cert_request_type(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_BUT_DONT_VERIFY);
  options.set_certificate_verifier(ExternalCertificateVerifier::Create<PeerVerifier>(
      auth, std::nullopt, "server", std::move(observer)));
  return TlsServerCredentials(options);
}

std::shared_ptr<grpc::ChannelCredentials> MakeChannelCredentials(
    const std::shared_ptr<const PeerAuthenticator>& auth, const PeerConfig& peer) {
  using namespace grpc::experimental;  // NOLINT
  auto ca = ReadFile(peer.ca_file);
  auto provider = std::make_shared<StaticDataCertificateProvider>(
      ca.ok() ? *ca : std::string(),
      std::vector<IdentityKeyCertPair>{{auth->own_key_pem(), auth->own_cert_pem()}});
  TlsChannelCredentialsOptions options;
  options.set_certificate_provider(provider);
  options.watch_identity_key_cert_pairs();
  options.watch_root_certs();
  options.set_verify_server_certs(false);  // our verifier checks chain and name, per peer CA
  options.set_check_call_host(false);      // the identity, not the dialled address, is checked
  options.set_certificate_verifier(
      ExternalCertificateVerifier::Create<PeerVerifier>(auth, peer.name, "client", nullptr));
  return TlsCredentials(options);
}

}  // namespace uop::broker
