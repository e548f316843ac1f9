// The federation port: uopd accepts TCP connections itself and hands each one to gRPC, so that
// every refused TLS client is logged by uopd with its address, whatever gRPC's own log verbosity.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <sys/socket.h>

#include <grpcpp/server_builder.h>

#include "absl/status/statusor.h"
#include "broker/peer_identity.h"

namespace uop::broker {

class HandshakeSlots;

// Owns the listening sockets and one accepting thread. A connection that does not start with a
// TLS record (plaintext, or silence for kFirstByteTimeout) is refused here. A TLS connection is
// handed to gRPC through one of kSlots external connection acceptors, each with credentials of
// its own; a slot carries one handshake at a time, so its verifier knows whose certificate it
// checks and logs a refusal with the client's address. A slot is free again once its verifier
// ran, or once gRPC closed the connection without asking it (the handshake failed before the
// certificate check: no ALPN "h2", the client refused our certificate, no common TLS version, or
// gRPC's handshake deadline kHandshakeTimeout passed, which is set on the builder here): the
// listener sees that through sock_diag and logs it as a refusal too. At the latest a slot is
// reused 2 s after that deadline, so that two handshakes never share a slot.
//
// Create() before grpc::ServerBuilder::BuildAndStart(), Start() after it, Stop() before
// grpc::Server::Shutdown(): gRPC neither serves nor closes a connection handed to a server that
// is not running. Start and Stop come from one thread; the destructor stops.
class TlsListener {
 public:
  static constexpr int kSlots = 16;
  static constexpr int kMaxWaitingForFirstByte = 64;
  static constexpr std::chrono::milliseconds kFirstByteTimeout{10000};
  static constexpr std::chrono::milliseconds kHandshakeTimeout{10000};

  // Binds `listen` (host:port; port 0 picks a free port) and registers the acceptors with
  // `builder`. Errors name the address and the config key.
  static absl::StatusOr<std::unique_ptr<TlsListener>> Create(
      const std::string& listen, const std::shared_ptr<const PeerAuthenticator>& auth,
      grpc::ServerBuilder* builder);
  ~TlsListener();
  TlsListener(const TlsListener&) = delete;
  TlsListener& operator=(const TlsListener&) = delete;

  void Start();
  void Stop();
  // The bound port (the one chosen when `listen` said 0).
  int port() const { return port_; }

 private:
  TlsListener() = default;
  void Run();

  std::vector<int> listen_fds_;  // one per address `listen` resolves to
  int diag_fd_ = -1;             // NETLINK_SOCK_DIAG: how the sockets handed to gRPC fare
  int port_ = 0;
  std::shared_ptr<HandshakeSlots> slots_;  // shared with the verifiers, which gRPC owns
  std::vector<std::unique_ptr<grpc::experimental::ExternalConnectionAcceptor>> acceptors_;
  std::thread thread_;
};

// "ipv4:127.0.0.1:5000" / "ipv6:[::1]:5000", as grpc::ServerContext::peer() spells addresses.
std::string SocketAddressText(const sockaddr* addr);

}  // namespace uop::broker
