"""TCP proxy for fault-injection tests (pure Python 3.11 standard library).

The proxy forwards bytes in both directions and does not look at them, so it works for
mutual-TLS gRPC as well. Tests can break the link on purpose:

* ``cut()`` resets every live connection. The proxy sends an RST (``SO_LINGER`` 0) to both the
  client and the upstream side, so both peers see a connection reset, not a graceful EOF.
* ``pause()`` resets the live connections and, until ``resume()``, resets each new connection
  as soon as it is accepted. The listening port stays bound, so clients can reconnect on the
  same port after ``resume()``.
* ``set_delay(s)`` holds each forwarded chunk for ``s`` seconds before writing it, in both
  directions (a slow peer or link). A request/response round trip gets about ``2*s`` slower. The
  new delay also applies to live connections.
* ``set_target(host, port)`` sends later connections to a different upstream. Live connections
  are left alone; call ``cut()`` as well to move them.

Library use::

    with TcpProxy("127.0.0.1", upstream_port) as p:   # start() ... stop()
        connect_client_to(p.port)
        p.cut()

CLI use (runs until SIGTERM/SIGINT; SIGUSR1 = cut(), SIGUSR2 = toggle pause()/resume())::

    python3 -m uoptest.proxy --target 127.0.0.1:50051 [--listen 127.0.0.1:0] [--delay 0.1]
    # prints "listening 127.0.0.1:PORT" on stdout once it accepts connections

Design: one asyncio event loop runs in a background daemon thread and owns every socket. The
public methods are thread-safe: they hand work to that loop and wait for it to finish, so
``cut()`` has sent the resets by the time it returns. There are no busy loops. Half-close is
forwarded: when one side shuts down its write half, the proxy shuts down the matching write half
on the other side, and the connection closes only when both directions reach EOF. When one
side resets or fails, the proxy resets the other side too.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import logging
import signal
import socket
import struct
import sys
import threading
from typing import Callable, Optional, TypeVar

__all__ = ["TcpProxy", "main"]

_log = logging.getLogger("uoptest.proxy")
_T = TypeVar("_T")

# struct linger {int l_onoff; int l_linger;} with l_onoff=1, l_linger=0: close() sends RST.
_LINGER_RST = struct.pack("ii", 1, 0)


class _Count(int):
    """An int that can also be called, so ``p.bytes_forwarded`` and ``p.bytes_forwarded()`` both
    return the number."""

    def __call__(self) -> int:
        return int(self)


def _reset_transport(transport: Optional[asyncio.BaseTransport]) -> None:
    """Close a transport with an RST instead of a FIN. Call on the loop thread only."""
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    transport.abort()


class _Conn:
    """One proxied connection (client side plus, once connected, upstream side)."""

    __slots__ = ("client", "upstream", "task", "dead")

    def __init__(self, client: asyncio.StreamWriter, task: Optional[asyncio.Task]) -> None:
        self.client: asyncio.StreamWriter = client
        self.upstream: Optional[asyncio.StreamWriter] = None
        self.task = task
        self.dead = False

    def reset(self, cancel: bool) -> None:
        """Reset both sides. Idempotent. Call on the loop thread only."""
        if self.dead:
            return
        self.dead = True
        _reset_transport(self.client.transport)
        if self.upstream is not None:
            _reset_transport(self.upstream.transport)
        if cancel and self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()


class TcpProxy:
    """A TCP proxy controlled from tests. See the module docstring."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        *,
        connect_timeout: float = 10.0,
        chunk_size: int = 64 * 1024,
    ) -> None:
        self._lock = threading.Lock()
        self._target = (target_host, int(target_port))
        self._listen = (listen_host, int(listen_port))
        self.connect_timeout = connect_timeout
        self.chunk_size = chunk_size
        self._delay = 0.0
        self._paused = False
        # Counters are written only on the loop thread. Reading them from another thread is safe.
        self._connections_total = 0
        self._connections_rejected = 0
        self._upstream_failures = 0
        self._bytes = 0
        self._conns: set[_Conn] = set()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._server: Optional[asyncio.AbstractServer] = None
        self._sockname: Optional[tuple] = None
        self._stopped = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Bind the listening socket (port 0 lets the OS pick a port) and start accepting.
        Raises OSError if the bind fails."""
        if self._thread is not None or self._stopped:
            raise RuntimeError("TcpProxy.start() may be called only once")
        host, port = self._listen
        # Bind exactly one address. With port 0, "localhost" could otherwise get two sockets
        # (::1 and 127.0.0.1) on different ports.
        family, _, _, _, addr = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.create_server(addr[:2], family=family, backlog=1024)
        sock.setblocking(False)
        self._sockname = sock.getsockname()

        loop = asyncio.new_event_loop()
        ready: concurrent.futures.Future = concurrent.futures.Future()
        self._loop = loop
        self._thread = threading.Thread(
            target=self._run, args=(loop, sock, ready),
            name=f"TcpProxy:{self._sockname[1]}", daemon=True)
        self._thread.start()
        try:
            ready.result(timeout=30)
        except BaseException:
            self._thread.join(timeout=5)
            self._thread = None
            self._loop = None
            with contextlib.suppress(OSError):
                sock.close()
            raise

    def _run(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
             ready: concurrent.futures.Future) -> None:
        asyncio.set_event_loop(loop)
        try:
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._handle, sock=sock, limit=self.chunk_size))
            except BaseException as e:  # report to start(), which re-raises in the caller
                ready.set_exception(e)
                return
            ready.set_result(None)
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()

    def stop(self) -> None:
        """Stop listening, reset every live connection and end the background thread.
        Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if threading.current_thread() is thread:
            raise RuntimeError("TcpProxy.stop() must not be called from the proxy's own thread")

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            self._cut_now()
            me = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not me]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=30)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)

    def __enter__(self) -> "TcpProxy":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ properties

    @property
    def port(self) -> int:
        """The port the proxy listens on (known after start())."""
        if self._sockname is None:
            raise RuntimeError("TcpProxy not started")
        return self._sockname[1]

    @property
    def host(self) -> str:
        """The address the proxy listens on."""
        if self._sockname is None:
            raise RuntimeError("TcpProxy not started")
        return self._sockname[0]

    @property
    def address(self) -> str:
        """``host:port`` (``[v6]:port`` for IPv6), ready to put in a peer's config."""
        h = self.host
        return f"[{h}]:{self.port}" if ":" in h else f"{h}:{self.port}"

    @property
    def target(self) -> tuple[str, int]:
        with self._lock:
            return self._target

    @property
    def delay(self) -> float:
        return self._delay

    @property
    def paused(self) -> bool:
        with self._lock:
            return self._paused

    @property
    def connections_total(self) -> int:
        """Connections accepted and forwarded, counted from the moment the upstream connect
        starts. Connections rejected while paused are not counted."""
        return _Count(self._connections_total)

    @property
    def connections_active(self) -> int:
        """Connections open right now (including ones still connecting upstream)."""
        return _Count(len(self._conns))

    @property
    def connections_rejected(self) -> int:
        """Connections reset on accept because the proxy was paused."""
        return _Count(self._connections_rejected)

    @property
    def upstream_failures(self) -> int:
        """Connections reset because the upstream connect failed or timed out."""
        return _Count(self._upstream_failures)

    @property
    def bytes_forwarded(self) -> int:
        """Total payload bytes written, in both directions."""
        return _Count(self._bytes)

    # ------------------------------------------------------------------ fault controls

    def set_target(self, host: str, port: int) -> None:
        """Send later connections to host:port. Live connections keep their upstream."""
        with self._lock:
            self._target = (host, int(port))

    def set_delay(self, seconds: float) -> None:
        """Hold each forwarded chunk for ``seconds`` before writing it, in each direction.
        0 turns the delay off. Applies to live connections too."""
        seconds = float(seconds)
        if seconds < 0:
            raise ValueError("delay must be >= 0")
        self._delay = seconds

    def cut(self) -> int:
        """Reset every live connection: both client and upstream get an RST. Returns how many
        connections were cut. The resets have been sent when this returns. Thread-safe."""
        return self._on_loop(self._cut_now)

    def pause(self) -> None:
        """Reset live connections, and reset new ones as soon as they are accepted, until
        resume()."""
        with self._lock:
            self._paused = True
        self.cut()

    def resume(self) -> None:
        """Forward new connections again."""
        with self._lock:
            self._paused = False

    # ------------------------------------------------------------------ internals

    def _on_loop(self, fn: Callable[[], _T]) -> _T:
        """Run fn() on the loop thread, let the loop close the aborted sockets, and return fn's
        result. Before start() or after stop(), runs fn() directly (nothing is live then)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or self._stopped or not thread.is_alive():
            return fn()
        if threading.current_thread() is thread:
            return fn()  # already on the loop, e.g. called from a callback

        async def call() -> _T:
            result = fn()
            # abort() closes sockets in callbacks queued with call_soon; yielding once lets those
            # callbacks run, so the RSTs are sent before we return.
            await asyncio.sleep(0)
            return result

        return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout=30)

    def _cut_now(self) -> int:
        conns = list(self._conns)
        for c in conns:
            c.reset(cancel=True)
        self._conns.clear()
        return len(conns)

    async def _handle(self, client_r: asyncio.StreamReader,
                      client_w: asyncio.StreamWriter) -> None:
        with self._lock:
            paused = self._paused
            target = self._target
        if paused:
            self._connections_rejected += 1
            _reset_transport(client_w.transport)
            return
        conn = _Conn(client_w, asyncio.current_task())
        self._conns.add(conn)
        self._connections_total += 1
        try:
            try:
                up_r, up_w = await asyncio.wait_for(
                    asyncio.open_connection(target[0], target[1], limit=self.chunk_size),
                    self.connect_timeout)
            except (OSError, asyncio.TimeoutError) as e:
                _log.debug("upstream %s:%s unreachable: %r", target[0], target[1], e)
                self._upstream_failures += 1
                conn.reset(cancel=False)
                return
            conn.upstream = up_w
            if conn.dead:  # cut while the connect was finishing
                _reset_transport(up_w.transport)
                return
            await asyncio.gather(self._pump(conn, client_r, up_w),
                                 self._pump(conn, up_r, client_w))
            # Both directions reached EOF cleanly (or the connection was reset meanwhile).
            if not conn.dead:
                client_w.close()
                up_w.close()
        except asyncio.CancelledError:
            conn.reset(cancel=False)  # cut()/stop(): the transports are already reset
        except Exception:  # a bug here must not kill the proxy or leave a socket half-open
            _log.exception("proxy connection handler failed")
            conn.reset(cancel=False)
        finally:
            self._conns.discard(conn)

    async def _pump(self, conn: _Conn, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
        """Copy reader to writer until EOF, then forward the EOF (half-close). On an error, reset
        the whole connection."""
        try:
            while True:
                data = await reader.read(self.chunk_size)
                if not data:
                    break
                delay = self._delay
                if delay > 0:
                    await asyncio.sleep(delay)
                if conn.dead:
                    return
                writer.write(data)
                self._bytes += len(data)
                await writer.drain()  # backpressure: do not read faster than the peer takes
            if not conn.dead and not writer.transport.is_closing() and writer.can_write_eof():
                writer.write_eof()  # shutdown(SHUT_WR) once the buffer has been written
        except (ConnectionError, OSError):
            conn.reset(cancel=False)


# ---------------------------------------------------------------------- CLI


def _hostport(s: str) -> tuple[str, int]:
    """Parse ``host:port`` or ``[v6]:port``."""
    host, sep, port = s.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected host:port, got {s!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python3 -m uoptest.proxy",
        description="TCP fault-injection proxy. Runs until SIGTERM/SIGINT. "
                    "SIGUSR1 cuts all connections, SIGUSR2 toggles pause/resume.")
    ap.add_argument("--target", required=True, type=_hostport, metavar="HOST:PORT",
                    help="upstream to forward to")
    ap.add_argument("--listen", default=("127.0.0.1", 0), type=_hostport, metavar="HOST:PORT",
                    help="address to listen on (default 127.0.0.1:0, the OS picks the port)")
    ap.add_argument("--delay", type=float, default=0.0, metavar="SECONDS",
                    help="latency added to every forwarded chunk, in each direction")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="uoptest.proxy: %(message)s")

    # Block the signals before the proxy thread starts (threads inherit the mask), then wait for
    # them synchronously in this thread. No async signal handlers run while locks are held.
    sigs = {signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2}
    signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    proxy = TcpProxy(args.target[0], args.target[1], args.listen[0], args.listen[1])
    try:
        proxy.start()
    except OSError as e:
        print(f"uoptest.proxy: cannot listen on {args.listen[0]}:{args.listen[1]}: {e}",
              file=sys.stderr)
        return 1
    try:
        proxy.set_delay(args.delay)
        print(f"listening {proxy.address}", flush=True)
        while True:
            sig = signal.sigwait(sigs)
            if sig == signal.SIGUSR1:
                print(f"uoptest.proxy: cut {proxy.cut()} connection(s)", file=sys.stderr,
                      flush=True)
            elif sig == signal.SIGUSR2:
                if proxy.paused:
                    proxy.resume()
                else:
                    proxy.pause()
                print(f"uoptest.proxy: {'paused' if proxy.paused else 'resumed'}",
                      file=sys.stderr, flush=True)
            else:
                break
    finally:
        proxy.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
