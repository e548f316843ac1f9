"""Self-test for uoptest.proxy.TcpProxy.

Run from tests/integration:  python3 -m pytest -q uoptest/test_proxy.py
Every wait is a condition polled against a deadline. No test relies on a bare sleep for
synchronisation.
"""

from __future__ import annotations

import hashlib
import os
import selectors
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from uoptest.proxy import TcpProxy

DEADLINE = 10.0  # seconds; generous for a loaded 2-core CI box


def wait_until(pred, timeout: float = DEADLINE, what: str = "condition"):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)


class EchoServer(socketserver.ThreadingTCPServer):
    """Echoes every byte; on EOF from the client, finishes sending and half-closes. Records how
    many connections it saw and how many of them ended with a reset."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self) -> None:
        self.connections = 0
        self.resets = 0
        self._mu = threading.Lock()
        super().__init__(("127.0.0.1", 0), _EchoHandler)
        self.port = self.server_address[1]
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def bump(self, attr: str) -> None:
        with self._mu:
            setattr(self, attr, getattr(self, attr) + 1)

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(DEADLINE)


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        srv: EchoServer = self.server  # type: ignore[assignment]
        srv.bump("connections")
        s: socket.socket = self.request
        try:
            while data := s.recv(65536):
                s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except ConnectionResetError:
            srv.bump("resets")
        except OSError:
            pass


@pytest.fixture
def echo():
    srv = EchoServer()
    yield srv
    srv.stop()


@pytest.fixture
def proxy(echo):
    p = TcpProxy("127.0.0.1", echo.port)
    p.start()
    yield p
    p.stop()


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exact(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"EOF after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def recv_to_eof(s: socket.socket) -> bytes:
    buf = bytearray()
    while chunk := s.recv(65536):
        buf += chunk
    return bytes(buf)


def echo_ok(s: socket.socket, payload: bytes = b"ping") -> bool:
    s.sendall(payload)
    return recv_exact(s, len(payload)) == payload


def broken(s: socket.socket) -> str:
    """Block (bounded by the socket timeout) until the connection is dead. Returns 'reset' or
    'eof'. Fails if data arrives or the timeout expires."""
    try:
        data = s.recv(1)
    except ConnectionResetError:
        return "reset"
    assert data == b"", f"expected a broken connection, got {data!r}"
    return "eof"


def connect_expect_broken(port: int) -> str:
    """Connect to a proxy that is expected to drop the connection at once. The reset can arrive
    before a non-blocking connect() has completed, so connect() itself may raise it."""
    try:
        s = connect(port)
    except ConnectionResetError:
        return "reset"
    with s:
        return broken(s)


# ---------------------------------------------------------------------------------------------


def test_echo_and_counters(proxy, echo):
    with connect(proxy.port) as c:
        assert echo_ok(c, b"hello uop")
        assert echo_ok(c, b"x" * 100_000)
    assert proxy.connections_total == 1
    assert proxy.connections_total() == 1  # also callable
    wait_until(lambda: proxy.bytes_forwarded == 2 * (9 + 100_000), what="byte counter")
    wait_until(lambda: proxy.connections_active == 0, what="connection cleanup")


def test_half_close_client_first(proxy):
    with connect(proxy.port) as c:
        c.sendall(b"last words")
        c.shutdown(socket.SHUT_WR)
        # The echo server replies after EOF and then half-closes. We must get all of it and an EOF.
        assert recv_to_eof(c) == b"last words"


def test_half_close_server_first():
    """Upstream says goodbye and shuts down its write half, then still reads. The client must
    see the EOF and still be able to send."""
    got = bytearray()
    done = threading.Event()
    lsock = socket.create_server(("127.0.0.1", 0))

    def serve():
        s, _ = lsock.accept()
        with s:
            s.sendall(b"bye")
            s.shutdown(socket.SHUT_WR)
            while data := s.recv(65536):
                got.extend(data)
        done.set()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    with lsock, TcpProxy("127.0.0.1", lsock.getsockname()[1]) as p, connect(p.port) as c:
        assert recv_to_eof(c) == b"bye"
        c.sendall(b"still talking")
        c.shutdown(socket.SHUT_WR)
        assert done.wait(DEADLINE)
        assert bytes(got) == b"still talking"
        t.join(DEADLINE)


def test_full_duplex_bulk(proxy):
    """Write 8 MiB while reading the echo at the same time. Checks backpressure and that no
    bytes are lost or reordered."""
    payload = os.urandom(8 * 1024 * 1024)
    with connect(proxy.port) as c:
        def send():
            c.sendall(payload)
            c.shutdown(socket.SHUT_WR)

        t = threading.Thread(target=send, daemon=True)
        t.start()
        received = recv_to_eof(c)
        t.join(DEADLINE)
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()


def test_cut_resets_both_sides_and_new_connection_works(proxy, echo):
    c1, c2 = connect(proxy.port), connect(proxy.port)
    with c1, c2:
        assert echo_ok(c1) and echo_ok(c2)
        wait_until(lambda: proxy.connections_active == 2, what="2 live connections")
        assert proxy.cut() == 2
        assert broken(c1) == "reset"
        assert broken(c2) == "reset"
        # The upstream side was reset too, not closed gracefully.
        wait_until(lambda: echo.resets == 2, what="upstream resets")
    assert proxy.connections_active == 0
    assert proxy.cut() == 0
    with connect(proxy.port) as c3:
        assert echo_ok(c3, b"after the cut")
    assert proxy.connections_total == 3


def test_cut_from_many_threads(proxy):
    conns = [connect(proxy.port) for _ in range(20)]
    try:
        for c in conns:
            assert echo_ok(c)
        results: list[int] = []
        threads = [threading.Thread(target=lambda: results.append(proxy.cut())) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(DEADLINE)
        assert sum(results) == 20  # every connection cut exactly once
        for c in conns:
            assert broken(c) in ("reset", "eof")
    finally:
        for c in conns:
            c.close()


def test_set_target(proxy, echo):
    other = EchoServer()
    try:
        with connect(proxy.port) as old:
            assert echo_ok(old)
            proxy.set_target("127.0.0.1", other.port)
            assert proxy.target == ("127.0.0.1", other.port)
            with connect(proxy.port) as new:
                assert echo_ok(new)
                wait_until(lambda: other.connections == 1, what="connection on new target")
            assert echo.connections == 1
            assert echo_ok(old)  # existing connection keeps its upstream
    finally:
        other.stop()


def test_pause_resume(proxy):
    with connect(proxy.port) as live:
        assert echo_ok(live)
        proxy.pause()
        assert proxy.paused
        assert broken(live) == "reset"
    # The TCP handshake completes in the kernel, then the proxy resets the accepted connection.
    assert connect_expect_broken(proxy.port) in ("reset", "eof")
    wait_until(lambda: proxy.connections_rejected == 1, what="rejected counter")
    proxy.resume()
    with connect(proxy.port) as c:
        assert echo_ok(c)
    assert proxy.connections_total == 2


def test_delay(proxy):
    with connect(proxy.port) as c:
        proxy.set_delay(0.2)
        t0 = time.monotonic()
        assert echo_ok(c)
        assert time.monotonic() - t0 >= 0.35  # held 0.2 s each way
        proxy.set_delay(0)
        assert echo_ok(c)
    with pytest.raises(ValueError):
        proxy.set_delay(-1)


def test_many_connections(proxy):
    n = 100
    conns = [connect(proxy.port) for _ in range(n)]
    try:
        for i, c in enumerate(conns):
            c.sendall(f"conn-{i:03d}".encode())
        for i, c in enumerate(conns):
            assert recv_exact(c, 8) == f"conn-{i:03d}".encode()
        wait_until(lambda: proxy.connections_active == n, what=f"{n} live connections")
    finally:
        for c in conns:
            c.close()
    wait_until(lambda: proxy.connections_active == 0, what="all connections cleaned up")
    assert proxy.connections_total == n


def test_upstream_down_resets_client(proxy):
    dead = socket.create_server(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()  # nothing listens there any more
    proxy.set_target("127.0.0.1", dead_port)
    assert connect_expect_broken(proxy.port) in ("reset", "eof")
    wait_until(lambda: proxy.upstream_failures == 1, what="upstream failure counter")


def test_stop_is_idempotent_and_frees_port(echo):
    p = TcpProxy("127.0.0.1", echo.port)
    p.start()
    c = connect(p.port)
    assert echo_ok(c)
    port = p.port
    p.stop()
    p.stop()
    assert broken(c) == "reset"
    c.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
    assert p.cut() == 0


def test_cli(echo):
    pkg_parent = Path(__file__).resolve().parent.parent  # tests/integration
    proc = subprocess.Popen(
        [sys.executable, "-m", "uoptest.proxy", "--target", f"127.0.0.1:{echo.port}"],
        cwd=pkg_parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            assert sel.select(DEADLINE), "proxy CLI printed nothing"
        line = proc.stdout.readline().strip()
        host, _, port = line.removeprefix("listening ").rpartition(":")
        assert line.startswith("listening ") and host == "127.0.0.1" and port.isdigit(), line
        with connect(int(port)) as c:
            assert echo_ok(c, b"via cli")
            proc.send_signal(signal.SIGUSR1)  # cut
            assert broken(c) == "reset"
        with connect(int(port)) as c:
            assert echo_ok(c)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(DEADLINE) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
