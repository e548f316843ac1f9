// delay_proxy: a TCP proxy that forwards every byte `--delay-ms` after it arrived, in both
// directions, with no bandwidth cap: the long link between two cities for bench/run.py (the
// kernel here has no netem). One thread, epoll, a timerfd for the next due chunk.
//
//   delay_proxy --listen 127.0.0.1:0 --upstream 127.0.0.1:9092 --delay-ms 15
//               [--ready-file F] [--max-buffer-mib 64]
//       Proxies until SIGTERM/SIGINT, then prints one JSON line of statistics (bytes each way,
//       connections, CPU seconds, peak MB/s over 1 s, lateness of the forwarded chunks).
//   delay_proxy --loopback-bench MB [--delay-ms 15]
//       Measures the proxy itself: a sender pushes MB megabytes through it to a sink on
//       loopback, both directions at once; prints MB/s and the proxy thread's CPU per GB.
//
// The TCP handshake with the proxy itself is not delayed: a new connection is one round trip
// cheaper than on a real long link (Kafka and gRPC clients keep their connections, so this only
// touches start-up). The delay is applied per read chunk at its arrival time; the chunk is
// written out as soon as it is due (timerfd with absolute CLOCK_MONOTONIC deadlines).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/delay_line.h"

namespace uop::bench {
namespace {

using SteadyClock = std::chrono::steady_clock;
using TimePoint = DelayLine::TimePoint;

constexpr size_t kReadChunk = 256 << 10;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "delay_proxy: %s: %s\n", what.c_str(), std::strerror(errno));
  std::exit(1);
}

bool ParseHostPort(const std::string& text, sockaddr_in* out) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos) return false;
  int port = 0;
  if (!absl::SimpleAtoi(text.substr(colon + 1), &port) || port < 0 || port > 65535) return false;
  std::memset(out, 0, sizeof(*out));
  out->sin_family = AF_INET;
  out->sin_port = htons(static_cast<uint16_t>(port));
  return inet_pton(AF_INET, text.substr(0, colon).c_str(), &out->sin_addr) == 1;
}

void SetNonBlocking(int fd) {
  const int flags = fcntl(fd, F_GETFL, 0);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) Die("fcntl O_NONBLOCK");
}

void SetNoDelay(int fd) {
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

struct Stats {
  int64_t connections = 0;
  int64_t bytes[2] = {0, 0};  // [0] client -> upstream, [1] upstream -> client
  int64_t chunks = 0;
  std::chrono::nanoseconds max_lateness{0};
  std::chrono::nanoseconds total_lateness{0};
  // Peak throughput (both directions) over a 1 s window.
  TimePoint window_start{};
  int64_t window_bytes = 0;
  double peak_mb_per_s = 0;
};

// The proxy's event loop. Not thread-safe except Stop(), which any thread may call.
class DelayProxy {
 public:
  DelayProxy(int listen_fd, sockaddr_in upstream, std::chrono::nanoseconds delay, size_t max_buffer)
      : listen_fd_(listen_fd), upstream_(upstream), delay_(delay), max_buffer_(max_buffer) {
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    timer_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    stop_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (epoll_fd_ < 0 || timer_fd_ < 0 || stop_fd_ < 0) Die("epoll/timerfd/eventfd");
    SetNonBlocking(listen_fd_);
    Watch(listen_fd_, EPOLLIN, &listen_tag_);
    Watch(timer_fd_, EPOLLIN, &timer_tag_);
    Watch(stop_fd_, EPOLLIN, &stop_tag_);
  }

  ~DelayProxy() {
    for (auto& pipe : pipes_) ClosePipe(pipe.get());
    close(epoll_fd_);
    close(timer_fd_);
    close(stop_fd_);
  }

  void Stop() {
    const uint64_t one = 1;
    (void)!write(stop_fd_, &one, sizeof(one));
  }

  // Extra fd watched for EPOLLIN that stops the loop when readable (the signalfd in main).
  void AlsoStopOn(int fd) { Watch(fd, EPOLLIN, &stop_tag_); }

  void Run() {
    const double cpu0 = ThreadCpuSeconds();
    epoll_event events[64];
    while (!stopping_) {
      const int n = epoll_wait(epoll_fd_, events, 64, -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        Die("epoll_wait");
      }
      for (int i = 0; i < n; ++i) {
        auto* tag = static_cast<Tag*>(events[i].data.ptr);
        if (tag == &stop_tag_) {
          stopping_ = true;
        } else if (tag == &listen_tag_) {
          AcceptAll();
        } else if (tag == &timer_tag_) {
          uint64_t expirations;
          (void)!read(timer_fd_, &expirations, sizeof(expirations));
        } else {
          Endpoint* ep = tag->endpoint;
          Pipe* p = ep->pipe;
          if (p->closed) continue;
          const uint32_t ev = events[i].events;
          // An error (reset), or a hang-up while we still have bytes for this side: the peer
          // is gone, so the connection ends here (no delayed RST). A side that is done both
          // ways is no longer watched (UpdateMask), so its hang-up does not get here.
          if ((ev & EPOLLERR) || ((ev & EPOLLHUP) && p->read_closed[ep->side])) {
            ClosePipe(p);
            continue;
          }
          if (ev & (EPOLLIN | EPOLLHUP)) ReadFrom(p, ep->side);
          if (!ep->pipe->closed && (events[i].events & EPOLLOUT)) {
            ep->pipe->blocked[1 - ep->side] = false;  // the line that writes to this side
          }
        }
      }
      FlushAllAndArm();
      Reap();
    }
    for (auto& pipe : pipes_) ClosePipe(pipe.get());  // their statistics count too
    cpu_seconds_ = ThreadCpuSeconds() - cpu0;
  }

  const Stats& stats() const { return stats_; }
  double cpu_seconds() const { return cpu_seconds_; }

 private:
  struct Pipe;
  struct Endpoint;
  struct Tag {
    Endpoint* endpoint = nullptr;
  };
  struct Endpoint {
    Pipe* pipe = nullptr;
    int side = 0;  // 0: the client, 1: the upstream
    int fd = -1;
    uint32_t mask = 0;     // what epoll watches now
    bool removed = false;  // no longer in the epoll set
    Tag tag;
  };
  // One proxied connection. line[s] carries what side s sent, to side 1 - s.
  struct Pipe {
    Pipe(std::chrono::nanoseconds delay, size_t max_buffer)
        : line{DelayLine(delay, max_buffer), DelayLine(delay, max_buffer)} {}
    Endpoint ep[2];
    DelayLine line[2];
    bool read_closed[2] = {false, false};  // side s sent EOF
    bool write_shut[2] = {false, false};   // line s delivered its end (other side shut down)
    bool blocked[2] = {false, false};      // line s waits for EPOLLOUT on side 1 - s
    bool closed = false;
  };

  void Watch(int fd, uint32_t mask, Tag* tag) {
    epoll_event ev{};
    ev.events = mask;
    ev.data.ptr = tag;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) < 0) Die("epoll_ctl ADD");
  }

  void UpdateMask(Endpoint* ep) {
    Pipe* p = ep->pipe;
    const int s = ep->side;
    if (ep->removed) return;
    if (p->read_closed[s] && p->write_shut[1 - s]) {
      // Nothing more to read from this side nor to write to it: stop watching it (a level-
      // triggered EPOLLHUP would otherwise fire on every loop) until the other side is done.
      epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, ep->fd, nullptr);
      ep->removed = true;
      return;
    }
    uint32_t mask = 0;
    if (!p->read_closed[s] && p->line[s].room() > 0) mask |= EPOLLIN;
    if (p->blocked[1 - s]) mask |= EPOLLOUT;
    if (mask == ep->mask) return;
    epoll_event ev{};
    ev.events = mask;
    ev.data.ptr = &ep->tag;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, ep->fd, &ev) < 0) Die("epoll_ctl MOD");
    ep->mask = mask;
  }

  void AcceptAll() {
    while (true) {
      const int client = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (client < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        if (errno == ECONNABORTED) continue;
        Die("accept");
      }
      // Upstream is on this machine: a blocking connect returns at once (or fails at once).
      const int up = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (up < 0 ||
          connect(up, reinterpret_cast<const sockaddr*>(&upstream_), sizeof(upstream_)) < 0) {
        std::fprintf(stderr, "delay_proxy: connect upstream: %s\n", std::strerror(errno));
        if (up >= 0) close(up);
        close(client);
        continue;
      }
      SetNonBlocking(up);
      SetNoDelay(client);
      SetNoDelay(up);
      auto pipe = std::make_unique<Pipe>(delay_, max_buffer_);
      const int fds[2] = {client, up};
      for (int s = 0; s < 2; ++s) {
        Endpoint& ep = pipe->ep[s];
        ep.pipe = pipe.get();
        ep.side = s;
        ep.fd = fds[s];
        ep.tag.endpoint = &ep;
        ep.mask = EPOLLIN;
        Watch(ep.fd, EPOLLIN, &ep.tag);
      }
      ++stats_.connections;
      pipes_.push_back(std::move(pipe));
    }
  }

  void ReadFrom(Pipe* p, int s) {
    std::string& buf = scratch_;
    buf.resize(kReadChunk);
    while (!p->read_closed[s]) {
      const size_t want = std::min(kReadChunk, p->line[s].room());
      if (want == 0) break;
      const ssize_t n = read(p->ep[s].fd, buf.data(), want);
      if (n > 0) {
        p->line[s].Push(SteadyClock::now(), std::string_view(buf.data(), n));
        if (static_cast<size_t>(n) < want) break;  // drained the socket for now
      } else if (n == 0) {
        p->read_closed[s] = true;
        p->line[s].PushEnd(SteadyClock::now());
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        break;
      } else if (errno == EINTR) {
        continue;
      } else {
        ClosePipe(p);  // a reset on one side resets the other: no delayed RST, close now
        return;
      }
    }
    UpdateMask(&p->ep[s]);
  }

  // Writes what is due on every line; arms the timer for the earliest chunk still waiting.
  void FlushAllAndArm() {
    std::optional<TimePoint> next;
    const TimePoint now = SteadyClock::now();
    for (auto& pipe : pipes_) {
      Pipe* p = pipe.get();
      for (int s = 0; s < 2 && !p->closed; ++s) {
        if (!p->blocked[s]) Flush(p, s, now);
        if (p->closed || p->blocked[s]) continue;
        if (auto due = p->line[s].NextDue(); due && (!next || *due < *next)) next = due;
      }
    }
    itimerspec spec{};
    if (next) {
      const auto ns =
          std::chrono::duration_cast<std::chrono::nanoseconds>(next->time_since_epoch()).count();
      // steady_clock is CLOCK_MONOTONIC on Linux; 0 would disarm, so at least 1 ns.
      spec.it_value.tv_sec = ns / 1000000000;
      spec.it_value.tv_nsec = std::max<int64_t>(ns % 1000000000, spec.it_value.tv_sec ? 0 : 1);
    }
    if (timerfd_settime(timer_fd_, TFD_TIMER_ABSTIME, &spec, nullptr) < 0) Die("timerfd_settime");
  }

  void Flush(Pipe* p, int s, TimePoint now) {
    DelayLine& line = p->line[s];
    Endpoint& dst = p->ep[1 - s];
    const size_t room_before = line.room();
    while (true) {
      const std::string_view ready = line.Ready(now);
      if (ready.empty()) break;
      const ssize_t n = send(dst.fd, ready.data(), ready.size(), MSG_NOSIGNAL);
      if (n > 0) {
        line.Consume(now, static_cast<size_t>(n));
        Count(s, n, now);
        if (static_cast<size_t>(n) < ready.size()) {
          p->blocked[s] = true;
          break;
        }
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        p->blocked[s] = true;
        break;
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else {
        ClosePipe(p);
        return;
      }
    }
    if (!p->blocked[s] && line.EndDue(now) && !p->write_shut[s]) {
      shutdown(dst.fd, SHUT_WR);
      p->write_shut[s] = true;
    }
    UpdateMask(&dst);
    if (line.room() != room_before) UpdateMask(&p->ep[s]);  // room again: read side s
  }

  void Count(int s, ssize_t n, TimePoint now) {
    stats_.bytes[s] += n;
    if (now - stats_.window_start >= std::chrono::seconds(1)) {
      const double secs = std::chrono::duration<double>(now - stats_.window_start).count();
      if (stats_.window_start != TimePoint{} && secs < 2) {
        stats_.peak_mb_per_s = std::max(stats_.peak_mb_per_s, stats_.window_bytes / secs / 1e6);
      }
      stats_.window_start = now;
      stats_.window_bytes = 0;
    }
    stats_.window_bytes += n;
  }

  void ClosePipe(Pipe* p) {
    if (p->closed) return;
    p->closed = true;
    for (int s = 0; s < 2; ++s) {
      stats_.chunks += p->line[s].chunks_forwarded();
      stats_.max_lateness = std::max(stats_.max_lateness, p->line[s].max_lateness());
      stats_.total_lateness += p->line[s].total_lateness();
      if (!p->ep[s].removed) epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, p->ep[s].fd, nullptr);
      close(p->ep[s].fd);
    }
  }

  // Closes pipes whose both directions delivered their end; frees closed ones.
  void Reap() {
    for (auto& pipe : pipes_) {
      if (!pipe->closed && pipe->write_shut[0] && pipe->write_shut[1]) ClosePipe(pipe.get());
    }
    std::erase_if(pipes_, [](const std::unique_ptr<Pipe>& p) { return p->closed; });
  }

  const int listen_fd_;
  const sockaddr_in upstream_;
  const std::chrono::nanoseconds delay_;
  const size_t max_buffer_;
  int epoll_fd_ = -1;
  int timer_fd_ = -1;
  int stop_fd_ = -1;
  Tag listen_tag_, timer_tag_, stop_tag_;
  std::vector<std::unique_ptr<Pipe>> pipes_;
  std::string scratch_;
  bool stopping_ = false;
  Stats stats_;
  double cpu_seconds_ = 0;
};

int Listen(const sockaddr_in& addr) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (fd < 0 || bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) < 0 ||
      listen(fd, 128) < 0) {
    Die("bind/listen");
  }
  return fd;
}

int BoundPort(int fd) {
  sockaddr_in addr{};
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.sin_port);
}

std::string StatsJson(const Stats& s, double cpu_s, double wall_s) {
  const double lateness_mean_ms =
      s.chunks ? std::chrono::duration<double, std::milli>(s.total_lateness).count() / s.chunks
               : 0.0;
  return absl::StrFormat(
      "{\"connections\": %d, \"bytes_client_to_upstream\": %d, \"bytes_upstream_to_client\": %d, "
      "\"wall_s\": %.2f, \"cpu_s\": %.3f, \"cpu_cores\": %.4f, \"peak_mb_per_s_1s\": %.1f, "
      "\"chunks\": %d, \"lateness_mean_ms\": %.3f, \"lateness_max_ms\": %.3f}",
      s.connections, s.bytes[0], s.bytes[1], wall_s, cpu_s, wall_s > 0 ? cpu_s / wall_s : 0.0,
      s.peak_mb_per_s, s.chunks, lateness_mean_ms,
      std::chrono::duration<double, std::milli>(s.max_lateness).count());
}

// Pushes `bytes` through fd and reads as many back (the sink echoes nothing: the other thread
// sends its own stream), so both directions carry `bytes`.
void SendAll(int fd, int64_t bytes) {
  std::string block(1 << 20, 'x');
  int64_t left = bytes;
  while (left > 0) {
    const ssize_t n = send(fd, block.data(), std::min<int64_t>(left, block.size()), MSG_NOSIGNAL);
    if (n < 0) Die("bench send");
    left -= n;
  }
  shutdown(fd, SHUT_WR);
}

int64_t ReceiveAll(int fd) {
  std::string block(1 << 20, '\0');
  int64_t total = 0;
  while (true) {
    const ssize_t n = read(fd, block.data(), block.size());
    if (n < 0) Die("bench read");
    if (n == 0) return total;
    total += n;
  }
}

int LoopbackBench(int64_t megabytes, std::chrono::nanoseconds delay, size_t max_buffer) {
  sockaddr_in any{};
  any.sin_family = AF_INET;
  any.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const int sink_listen = Listen(any);
  sockaddr_in upstream = any;
  upstream.sin_port = htons(static_cast<uint16_t>(BoundPort(sink_listen)));
  const int proxy_listen = Listen(any);
  const int proxy_port = BoundPort(proxy_listen);
  DelayProxy proxy(proxy_listen, upstream, delay, max_buffer);
  std::thread loop([&] { proxy.Run(); });

  const int64_t bytes = megabytes * 1000000;
  int64_t got_at_sink = 0, got_at_client = 0;
  const auto t0 = SteadyClock::now();
  std::thread sink([&] {
    const int fd = accept(sink_listen, nullptr, nullptr);
    if (fd < 0) Die("bench accept");
    std::thread back([&] { SendAll(fd, bytes); });
    got_at_sink = ReceiveAll(fd);
    back.join();
    close(fd);
  });
  const int client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in to = any;
  to.sin_port = htons(static_cast<uint16_t>(proxy_port));
  if (connect(client, reinterpret_cast<const sockaddr*>(&to), sizeof(to)) < 0) Die("connect");
  std::thread forth([&] { SendAll(client, bytes); });
  got_at_client = ReceiveAll(client);
  forth.join();
  sink.join();
  const double wall = std::chrono::duration<double>(SteadyClock::now() - t0).count();
  close(client);
  proxy.Stop();
  loop.join();
  const double streaming = wall - std::chrono::duration<double>(delay).count();
  const double mb_each_way = static_cast<double>(bytes) / 1e6;
  std::printf(
      "{\"mode\": \"loopback-bench\", \"delay_ms\": %.3f, \"mb_each_way\": %.0f, "
      "\"intact\": %s, \"wall_s\": %.3f, \"mb_per_s_each_way\": %.1f, "
      "\"mb_per_s_both_ways\": %.1f, \"proxy_cpu_s\": %.3f, \"proxy_cpu_s_per_gb\": %.3f, "
      "\"proxy\": %s}\n",
      std::chrono::duration<double, std::milli>(delay).count(), mb_each_way,
      got_at_sink == bytes && got_at_client == bytes ? "true" : "false", wall,
      mb_each_way / streaming, 2 * mb_each_way / streaming, proxy.cpu_seconds(),
      proxy.cpu_seconds() / (2 * mb_each_way / 1000),
      StatsJson(proxy.stats(), proxy.cpu_seconds(), wall).c_str());
  close(sink_listen);
  return got_at_sink == bytes && got_at_client == bytes ? 0 : 1;
}

int Usage() {
  std::fprintf(stderr,
               "usage: delay_proxy --listen HOST:PORT --upstream HOST:PORT --delay-ms D "
               "[--ready-file F] [--max-buffer-mib N]\n"
               "       delay_proxy --loopback-bench MB [--delay-ms D] [--max-buffer-mib N]\n");
  return 2;
}

int Main(int argc, char** argv) {
  std::string listen = "127.0.0.1:0", upstream, ready_file;
  double delay_ms = 15;
  int64_t bench_mb = 0, max_buffer_mib = 64;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) return Usage();
    const std::string value = argv[++i];
    bool ok = true;
    if (flag == "--listen") {
      listen = value;
    } else if (flag == "--upstream") {
      upstream = value;
    } else if (flag == "--ready-file") {
      ready_file = value;
    } else if (flag == "--delay-ms") {
      ok = absl::SimpleAtod(value, &delay_ms) && delay_ms >= 0;
    } else if (flag == "--loopback-bench") {
      ok = absl::SimpleAtoi(value, &bench_mb) && bench_mb > 0;
    } else if (flag == "--max-buffer-mib") {
      ok = absl::SimpleAtoi(value, &max_buffer_mib) && max_buffer_mib > 0;
    } else {
      return Usage();
    }
    if (!ok) {
      std::fprintf(stderr, "delay_proxy: bad value for %s: %s\n", flag.c_str(), value.c_str());
      return 2;
    }
  }
  const auto delay = std::chrono::nanoseconds(static_cast<int64_t>(delay_ms * 1e6));
  const size_t max_buffer = static_cast<size_t>(max_buffer_mib) << 20;
  if (bench_mb > 0) return LoopbackBench(bench_mb, delay, max_buffer);

  sockaddr_in listen_addr{}, upstream_addr{};
  if (!ParseHostPort(listen, &listen_addr) || !ParseHostPort(upstream, &upstream_addr)) {
    return Usage();
  }
  // SIGTERM/SIGINT end the loop through a signalfd, so the statistics are printed.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  const int sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sig_fd < 0) Die("signalfd");
  const int listen_fd = Listen(listen_addr);
  const int port = BoundPort(listen_fd);
  DelayProxy proxy(listen_fd, upstream_addr, delay, max_buffer);
  proxy.AlsoStopOn(sig_fd);
  char host[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &listen_addr.sin_addr, host, sizeof(host));
  const std::string address = absl::StrCat(host, ":", port);
  if (!ready_file.empty()) {
    const std::string tmp = ready_file + ".tmp";
    std::ofstream(tmp) << "{\"listen\": \"" << address << "\", \"port\": " << port << "}\n";
    if (std::rename(tmp.c_str(), ready_file.c_str()) != 0) Die("rename ready file");
  }
  std::fprintf(stderr, "delay_proxy: %s -> %s, %.3f ms each way\n", address.c_str(),
               upstream.c_str(), delay_ms);
  const auto t0 = SteadyClock::now();
  proxy.Run();
  const double wall = std::chrono::duration<double>(SteadyClock::now() - t0).count();
  std::printf("%s\n", StatsJson(proxy.stats(), proxy.cpu_seconds(), wall).c_str());
  std::fflush(stdout);
  close(listen_fd);
  return 0;
}

}  // namespace
}  // namespace uop::bench

int main(int argc, char** argv) { return uop::bench::Main(argc, argv); }
