// Accepts federation connections, refuses those that do not speak TLS, and hands the others to
// gRPC one handshake per slot, so that refusals are logged with the client's address.
#include "broker/tls_listener.h"

#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "core/log.h"

namespace uop::broker {
namespace {

// strerror is not thread-safe; this is (GNU strerror_r).
std::string ErrnoText(int err) {
  char buffer[256];
  return strerror_r(err, buffer, sizeof(buffer));
}

}  // namespace

std::string SocketAddressText(const sockaddr* addr) {
  char host[INET6_ADDRSTRLEN] = {0};
  if (addr->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(addr);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    return absl::StrCat("ipv4:", host, ":", ntohs(in->sin_port));
  }
  if (addr->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(addr);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
    return absl::StrCat("ipv6:[", host, "]:", ntohs(in6->sin6_port));
  }
  return "unknown";
}

// Which client each acceptor's handshake belongs to. Shared by the listener thread, which leases
// slots, and the verifiers on gRPC threads, which end the lease; it outlives the listener when
// gRPC still holds credentials.
class HandshakeSlots {
 public:
  explicit HandshakeSlots(int count) : slots_(static_cast<size_t>(count)) {
    wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  }
  ~HandshakeSlots() {
    if (wake_fd_ >= 0) close(wake_fd_);
  }
  HandshakeSlots(const HandshakeSlots&) = delete;
  HandshakeSlots& operator=(const HandshakeSlots&) = delete;

  // Readable when a slot was freed or Stop() was called.
  int wake_fd() const { return wake_fd_; }

  // A free slot for `client` (or one whose lease ended), or -1.
  int Acquire(const std::string& client, const sockaddr_storage& local,
              const sockaddr_storage& remote, absl::Time now, absl::Duration lease) {
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < slots_.size(); ++i) {
      Slot& s = slots_[i];
      if (s.busy && s.lease_end > now) continue;
      s = {true, client, now + lease, local, remote};
      return static_cast<int>(i);
    }
    return -1;
  }

  struct Lease {
    int slot;
    sockaddr_storage local, remote;
  };
  std::vector<Lease> Leases() {
    absl::MutexLock lock(&mu_);
    std::vector<Lease> out;
    for (size_t i = 0; i < slots_.size(); ++i) {
      if (slots_[i].busy) out.push_back({static_cast<int>(i), slots_[i].local, slots_[i].remote});
    }
    return out;
  }

  // gRPC gave up on the slot's connection without asking the verifier.
  void Failed(int slot, absl::string_view reason) {
    std::string client;
    {
      absl::MutexLock lock(&mu_);
      Slot& s = slots_[static_cast<size_t>(slot)];
      if (!s.busy) return;  // the verifier came first
      client = s.client;
      s.busy = false;
    }
    log::Warn("tls_peer_refused", {{"side", "server"},
                                   {"expected_peer", "any"},
                                   {"client", client},
                                   {"reason", std::string(reason)}});
  }

  // When the next lease ends (InfiniteFuture if no slot is busy).
  absl::Time NextLeaseEnd() {
    absl::MutexLock lock(&mu_);
    absl::Time next = absl::InfiniteFuture();
    for (const Slot& s : slots_) {
      if (s.busy) next = std::min(next, s.lease_end);
    }
    return next;
  }

  // The verifier of `slot` decided.
  void Checked(int slot, const absl::StatusOr<std::string>& peer) {
    std::string client = "unknown";
    {
      absl::MutexLock lock(&mu_);
      Slot& s = slots_[static_cast<size_t>(slot)];
      if (s.busy) client = s.client;  // not busy: a lease that ran out; gRPC's deadline is shorter
      s.busy = false;
    }
    if (peer.ok()) {
      log::Info("tls_peer_connected", {{"client", client}, {"peer", *peer}});
    } else {
      log::Warn("tls_peer_refused", {{"side", "server"},
                                     {"expected_peer", "any"},
                                     {"client", client},
                                     {"reason", std::string(peer.status().message())}});
    }
    Wake();
  }

  void Wake() {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof(one));
  }

  void Drain() {
    uint64_t value = 0;
    [[maybe_unused]] ssize_t n = read(wake_fd_, &value, sizeof(value));
  }

  void RequestStop() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    Wake();
  }
  bool stopping() {
    absl::MutexLock lock(&mu_);
    return stop_;
  }

 private:
  struct Slot {
    bool busy = false;
    std::string client;
    absl::Time lease_end;
    sockaddr_storage local{}, remote{};
  };
  absl::Mutex mu_;
  std::vector<Slot> slots_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  int wake_fd_ = -1;
};

namespace {

// The kernel's state of our end of the TCP connection local<->remote (TCP_ESTABLISHED, ...), or
// -1 when there is no such socket any more. An exact lookup through sock_diag: the socket itself
// belongs to gRPC by then, and watching it through a dup would keep it open and confuse gRPC's
// epoll registration.
int TcpState(int diag_fd, const sockaddr_storage& local, const sockaddr_storage& remote) {
  struct {
    nlmsghdr header;
    inet_diag_req_v2 request;
  } message{};
  message.header.nlmsg_len = sizeof(message);
  message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  message.header.nlmsg_flags = NLM_F_REQUEST;
  message.request.sdiag_family = static_cast<uint8_t>(local.ss_family);
  message.request.sdiag_protocol = IPPROTO_TCP;
  message.request.idiag_states = ~0U;
  inet_diag_sockid& id = message.request.id;
  id.idiag_cookie[0] = id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
  if (local.ss_family == AF_INET) {
    const auto& l = reinterpret_cast<const sockaddr_in&>(local);
    const auto& r = reinterpret_cast<const sockaddr_in&>(remote);
    id.idiag_sport = l.sin_port;
    id.idiag_dport = r.sin_port;
    std::memcpy(id.idiag_src, &l.sin_addr, sizeof(l.sin_addr));
    std::memcpy(id.idiag_dst, &r.sin_addr, sizeof(r.sin_addr));
  } else {
    const auto& l = reinterpret_cast<const sockaddr_in6&>(local);
    const auto& r = reinterpret_cast<const sockaddr_in6&>(remote);
    id.idiag_sport = l.sin6_port;
    id.idiag_dport = r.sin6_port;
    std::memcpy(id.idiag_src, &l.sin6_addr, sizeof(l.sin6_addr));
    std::memcpy(id.idiag_dst, &r.sin6_addr, sizeof(r.sin6_addr));
  }
  if (send(diag_fd, &message, sizeof(message), 0) != static_cast<ssize_t>(sizeof(message))) {
    return TCP_ESTABLISHED;  // cannot tell: assume it is still in gRPC's hands
  }
  alignas(nlmsghdr) char buffer[8192];
  const ssize_t n = recv(diag_fd, buffer, sizeof(buffer), 0);
  if (n < static_cast<ssize_t>(sizeof(nlmsghdr))) return TCP_ESTABLISHED;
  const auto* reply = reinterpret_cast<const nlmsghdr*>(buffer);
  if (reply->nlmsg_type == NLMSG_ERROR) {
    const auto* error = static_cast<const nlmsgerr*>(NLMSG_DATA(reply));
    return error->error == -ENOENT ? -1 : TCP_ESTABLISHED;
  }
  if (reply->nlmsg_type != SOCK_DIAG_BY_FAMILY) return TCP_ESTABLISHED;
  return static_cast<const inet_diag_msg*>(NLMSG_DATA(reply))->idiag_state;
}

void RefuseClient(const std::string& client, absl::string_view reason) {
  log::Warn("tls_peer_refused", {{"side", "server"},
                                 {"expected_peer", "any"},
                                 {"client", client},
                                 {"reason", std::string(reason)}});
}

}  // namespace

absl::StatusOr<std::unique_ptr<TlsListener>> TlsListener::Create(
    const std::string& listen, const std::shared_ptr<const PeerAuthenticator>& auth,
    grpc::ServerBuilder* builder) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("cannot listen on ", listen, " (listen)"));
  }
  std::string host = listen.substr(0, colon);
  const std::string port = listen.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", listen, " (listen): ", gai_strerror(rc)));
  }
  auto listener = std::unique_ptr<TlsListener>(new TlsListener());
  std::string error = "no address";
  // Every address the host resolves to, on one port (the one chosen for the first, if port 0),
  // as gRPC's own listener does.
  for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    if (listener->port_ != 0) {
      if (ai->ai_family == AF_INET6) {
        reinterpret_cast<sockaddr_in6*>(ai->ai_addr)->sin6_port = htons(listener->port_);
      } else {
        reinterpret_cast<sockaddr_in*>(ai->ai_addr)->sin_port = htons(listener->port_);
      }
    }
    const int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      error = ErrnoText(errno);
      continue;
    }
    const int on = 1, off = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    // "[::]" serves IPv4 clients too, as gRPC's own listener does.
    if (ai->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd, 128) != 0) {
      error = ErrnoText(errno);
      close(fd);
      continue;
    }
    if (listener->port_ == 0) {
      sockaddr_storage bound{};
      socklen_t len = sizeof(bound);
      getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
      listener->port_ = bound.ss_family == AF_INET6
                            ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                            : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    }
    listener->listen_fds_.push_back(fd);
  }
  freeaddrinfo(found);
  if (listener->listen_fds_.empty()) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", listen, " (listen): ", error));
  }

  listener->diag_fd_ = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (listener->diag_fd_ < 0) {
    // A sandbox without NETLINK_SOCK_DIAG: handshakes that end before the certificate check are
    // then only gRPC's to report, and hold their slot until the lease ends.
    log::Warn("federation_listener_degraded",
              {{"reason", absl::StrCat("sock_diag unavailable: ", ErrnoText(errno))}});
  } else {
    const timeval answer_within{0, 100000};
    setsockopt(listener->diag_fd_, SOL_SOCKET, SO_RCVTIMEO, &answer_within, sizeof(answer_within));
  }
  listener->slots_ = std::make_shared<HandshakeSlots>(kSlots);
  builder->AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
                              static_cast<int>(kHandshakeTimeout.count()));
  for (int i = 0; i < kSlots; ++i) {
    std::shared_ptr<HandshakeSlots> slots = listener->slots_;
    listener->acceptors_.push_back(builder->experimental().AddExternalConnectionAcceptor(
        grpc::ServerBuilder::experimental_type::ExternalConnectionType::FROM_FD,
        MakeServerCredentials(auth, [slots, i](const absl::StatusOr<std::string>& peer) {
          slots->Checked(i, peer);
        })));
  }
  return listener;
}

TlsListener::~TlsListener() {
  Stop();
  for (int fd : listen_fds_) close(fd);
  if (diag_fd_ >= 0) close(diag_fd_);
}

void TlsListener::Start() {
  if (!thread_.joinable()) thread_ = std::thread([this] { Run(); });
}

void TlsListener::Stop() {
  if (slots_ == nullptr) return;
  slots_->RequestStop();
  if (thread_.joinable()) thread_.join();
}

void TlsListener::Run() {
  struct Waiting {
    int fd;
    std::string client;
    sockaddr_storage local, remote;
    absl::Time deadline;
    bool tls = false;  // the first byte says TLS: waits for a slot
  };
  std::vector<Waiting> waiting;
  const absl::Duration first_byte_timeout = absl::FromChrono(kFirstByteTimeout);
  // A lease outlasts gRPC's handshake deadline, so a slot never carries two handshakes at once.
  const absl::Duration lease = absl::FromChrono(kHandshakeTimeout) + absl::Seconds(2);
  std::vector<pollfd> fds;
  while (!slots_->stopping()) {
    const absl::Time now = absl::Now();
    // 1. TLS connections to free slots, in arrival order.
    for (auto it = waiting.begin(); it != waiting.end();) {
      if (!it->tls) {
        ++it;
        continue;
      }
      const int slot = slots_->Acquire(it->client, it->local, it->remote, now, lease);
      if (slot < 0) break;
      grpc::experimental::ExternalConnectionAcceptor::NewConnectionParameters params;
      params.listener_fd = listen_fds_.front();
      params.fd = it->fd;  // gRPC owns it from here
      acceptors_[static_cast<size_t>(slot)]->HandleNewConnection(&params);
      it = waiting.erase(it);
    }
    // 2. Handshakes that gRPC ended without asking the verifier: its side of the socket is
    // closed (FIN_WAIT*, ...) or gone. CLOSE_WAIT (only the client closed) is still gRPC's.
    for (const HandshakeSlots::Lease& l :
         diag_fd_ >= 0 ? slots_->Leases() : std::vector<HandshakeSlots::Lease>()) {
      const int state = TcpState(diag_fd_, l.local, l.remote);
      if (state == TCP_ESTABLISHED || state == TCP_CLOSE_WAIT || state == TCP_SYN_RECV) continue;
      slots_->Failed(l.slot,
                     absl::StrCat("the TLS handshake failed before the certificate check (no "
                                  "ALPN \"h2\", the client refused this node's certificate, no "
                                  "TLS version or cipher in common, or not finished within ",
                                  absl::FormatDuration(absl::FromChrono(kHandshakeTimeout)), ")"));
    }
    // 3. Give up on clients that said nothing in time.
    for (auto it = waiting.begin(); it != waiting.end();) {
      if (!it->tls && it->deadline <= now) {
        RefuseClient(it->client,
                     absl::StrCat("no TLS handshake within ",
                                  absl::FormatDuration(first_byte_timeout), " of connecting"));
        close(it->fd);
        it = waiting.erase(it);
      } else {
        ++it;
      }
    }
    // 4. Wait for a new connection, a first byte, a freed slot or the end.
    fds.clear();
    fds.push_back({slots_->wake_fd(), POLLIN, 0});
    const bool room = waiting.size() < static_cast<size_t>(kMaxWaitingForFirstByte);
    if (room) {
      for (int fd : listen_fds_) fds.push_back({fd, POLLIN, 0});
    }
    absl::Time wake_at = absl::InfiniteFuture();
    bool tls_waiting = false;
    for (const Waiting& w : waiting) {
      if (w.tls) {
        tls_waiting = true;
        continue;
      }
      fds.push_back({w.fd, POLLIN, 0});
      wake_at = std::min(wake_at, w.deadline);
    }
    if (tls_waiting) wake_at = std::min(wake_at, slots_->NextLeaseEnd());
    // While handshakes run, look at their sockets every 100 ms (step 2).
    if (slots_->NextLeaseEnd() != absl::InfiniteFuture()) {
      wake_at = std::min(wake_at, now + absl::Milliseconds(100));
    }
    int timeout_ms = 1000;
    if (wake_at != absl::InfiniteFuture()) {
      timeout_ms = static_cast<int>(
          std::clamp<int64_t>(absl::ToInt64Milliseconds(wake_at - now) + 1, 0, 1000));
    }
    if (poll(fds.data(), fds.size(), timeout_ms) < 0 && errno != EINTR) {
      log::Error("federation_listener_error", {{"error", ErrnoText(errno)}});
      break;
    }
    if (fds[0].revents != 0) slots_->Drain();
    // 5. Read the first bytes of waiting clients without consuming them: gRPC reads them again.
    for (const pollfd& p : fds) {
      const bool listening =
          std::find(listen_fds_.begin(), listen_fds_.end(), p.fd) != listen_fds_.end();
      if (p.fd == slots_->wake_fd() || listening || p.revents == 0) continue;
      auto it = std::find_if(waiting.begin(), waiting.end(),
                             [&](const Waiting& w) { return w.fd == p.fd; });
      unsigned char first[3] = {0, 0, 0};
      const ssize_t n = recv(it->fd, first, sizeof(first), MSG_PEEK);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n > 0 && first[0] == 0x16) {  // a TLS handshake record (ClientHello)
        it->tls = true;
        continue;
      }
      if (n > 0) {
        RefuseClient(it->client,
                     absl::StrFormat("not a TLS handshake: the client sent plaintext (first "
                                     "byte 0x%02x); this port speaks only mutual TLS",
                                     first[0]));
      } else {
        log::Debug("federation_client_closed",
                   {{"client", it->client},
                    {"error", n == 0 ? "closed before sending" : ErrnoText(errno)}});
      }
      close(it->fd);
      waiting.erase(it);
    }
    // 6. New connections.
    for (size_t l = 0; room && l < listen_fds_.size(); ++l) {
      while (waiting.size() < static_cast<size_t>(kMaxWaitingForFirstByte)) {
        sockaddr_storage addr{};
        socklen_t len = sizeof(addr);
        const int fd = accept4(listen_fds_[l], reinterpret_cast<sockaddr*>(&addr), &len,
                               SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
          if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED) {
            log::Warn("federation_accept_error", {{"error", ErrnoText(errno)}});
          }
          break;
        }
        const int on = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));  // as gRPC's own listener
        sockaddr_storage local{};
        socklen_t local_len = sizeof(local);
        getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len);
        waiting.push_back({fd, SocketAddressText(reinterpret_cast<sockaddr*>(&addr)), local, addr,
                           absl::Now() + first_byte_timeout});
      }
    }
  }
  for (const Waiting& w : waiting) close(w.fd);
}

}  // namespace uop::broker
