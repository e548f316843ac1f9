"""A federation peer in Python (grpcio), written from proto/uop/federation/v1/federation.proto and
docs/protocol.md alone, to try a real uopd as another implementation would.

- :class:`ReceiverStream`: this peer as **receiver** (gRPC client) on one Replicate stream of a
  uopd owner.
- :class:`ScriptedOwner`: this peer as **owner** (gRPC server) that a uopd receiver dials; each
  test scripts what the owner sends on each stream.
- :func:`authenticate_client`: the identity check a grpcio server must run itself (docs/protocol.md
  §2, "Python"): grpcio takes one client-CA bundle for all peers and has no verification hook.

The generated stubs come from ``protoc --python_out --grpc_python_out`` at test time (see
conftest.py), imported here as ``pb`` and ``pbg`` once :func:`load_stubs` ran.
"""

from __future__ import annotations

import dataclasses
import importlib
import queue
import sys
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import grpc
from OpenSSL import crypto

pb: Any = None
pbg: Any = None

PROTOCOL_VERSION = 1
MAX_MESSAGE = 256 << 20  # docs/protocol.md §2: uopd sends and accepts up to 256 MiB
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", MAX_MESSAGE),
                   ("grpc.max_send_message_length", MAX_MESSAGE)]


def load_stubs(gen_dir: Path) -> None:
    global pb, pbg
    sys.path.insert(0, str(gen_dir))
    pb = importlib.import_module("uop.federation.v1.federation_pb2")
    pbg = importlib.import_module("uop.federation.v1.federation_pb2_grpc")


def hello(node: str, version: int = PROTOCOL_VERSION) -> Any:
    return pb.Hello(node=node, protocol_version=version, software="conformance-peer/1")


def token_next_offset(token: bytes) -> int:
    """uopd's own token format, documented "for information only" (§8): 0x01 + next offset."""
    assert len(token) == 9 and token[0] == 1, token
    return int.from_bytes(token[1:], "big", signed=True)


# ------------------------------------------------------------------------------------- receiver

@dataclasses.dataclass
class Ended:
    """How a stream ended, as the client saw it."""
    code: grpc.StatusCode
    details: str


class ReceiverStream:
    """One Replicate call: messages to the owner go through a queue (so the call can be
    half-closed), messages from it are read on a thread into another queue. Every wait has a
    deadline; nothing sleeps."""

    _HALF_CLOSE = object()

    def __init__(self, channel: grpc.Channel) -> None:
        self._out: "queue.Queue[Any]" = queue.Queue()
        self._in: "queue.Queue[Any]" = queue.Queue()
        self.call = pbg.FederationStub(channel).Replicate(self._requests())
        self.ended: Optional[Ended] = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _requests(self):
        while True:
            m = self._out.get()
            if m is self._HALF_CLOSE:
                return
            yield m

    def _read(self) -> None:
        try:
            for m in self.call:
                self._in.put(m)
            self._in.put(Ended(self.call.code(), self.call.details() or ""))
        except grpc.RpcError as e:
            self._in.put(Ended(e.code(), e.details() or ""))

    # --- sending

    def send(self, **body: Any) -> None:
        self._out.put(pb.ReceiverMessage(**body))

    def send_raw(self, message: Any) -> None:
        self._out.put(message)

    def subscribe(self, node: str, topic: str, partitions: Sequence[tuple[int, bytes]] = (),
                  batches: int = 8, bytes_: int = 8 << 20, version: int = PROTOCOL_VERSION) -> None:
        self.send(subscribe=pb.Subscribe(
            hello=hello(node, version), topic=topic,
            partitions=[pb.PartitionStart(partition=p, resume_token=t) for p, t in partitions],
            initial_credit=pb.Credit(batches=batches, bytes=bytes_)))

    def credit(self, batches: int, bytes_: int) -> None:
        self.send(credit=pb.Credit(batches=batches, bytes=bytes_))

    def ack(self, through: int) -> None:
        self.send(ack=pb.Ack(through_batch_seq=through))

    def heartbeat(self) -> None:
        self.send(heartbeat=pb.Heartbeat(sent_unix_ms=int(time.time() * 1000)))

    def half_close(self) -> None:
        self._out.put(self._HALF_CLOSE)

    def cancel(self) -> None:
        self.call.cancel()

    # --- receiving

    def recv(self, timeout: float) -> Any:
        """The next OwnerMessage; AssertionError if the stream ended or nothing came in time."""
        try:
            m = self._in.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no message from the owner within {timeout:.1f}s") from None
        if isinstance(m, Ended):
            self.ended = m
            raise AssertionError(f"stream ended instead: {m.code} {m.details!r}")
        return m

    def recv_kind(self, kind: str, timeout: float, *, skip: Sequence[str] = ()) -> Any:
        """The next message of `kind` ("batch", "heartbeat", "subscribed"), skipping only kinds in
        `skip`; anything else fails."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.recv(max(0.0, deadline - time.monotonic()))
            got = m.WhichOneof("body")
            if got == kind:
                return getattr(m, kind)
            assert got in skip, f"expected {kind}, got {got}: {m}"

    def end(self, timeout: float, *, keep_alive: bool = False) -> Ended:
        """Read until the stream ends; returns how. With keep_alive, answer with heartbeats so
        that only the behaviour under test can end it."""
        deadline = time.monotonic() + timeout
        next_heartbeat = time.monotonic()
        while True:
            now = time.monotonic()
            if now > deadline:
                raise AssertionError(f"stream did not end within {timeout:.1f}s")
            if keep_alive and now >= next_heartbeat:
                self.heartbeat()
                next_heartbeat = now + 0.25
            try:
                m = self._in.get(timeout=min(0.25, max(0.0, deadline - now)))
            except queue.Empty:
                continue
            if isinstance(m, Ended):
                self.ended = m
                return m


def receiver_channel(address: str, *, ca: Path, cert: Path, key: Path, identity: str) -> grpc.Channel:
    """How a grpcio receiver checks the owner (docs/protocol.md §2, "Python"): trust only that
    owner's CA, and make gRPC's host-name check test the configured identity (a DNS SAN) instead
    of the dialled address."""
    creds = grpc.ssl_channel_credentials(ca.read_bytes(), key.read_bytes(), cert.read_bytes())
    return grpc.secure_channel(address, creds,
                               options=CHANNEL_OPTIONS + [("grpc.ssl_target_name_override", identity)])


# ---------------------------------------------------------------------------- identity (server)

@dataclasses.dataclass
class PeerTrust:
    name: str
    ca_pem: bytes
    identity: str


def _san_names(cert: crypto.X509) -> list[str]:
    names = []
    for i in range(cert.get_extension_count()):
        ext = cert.get_extension(i)
        if ext.get_short_name() == b"subjectAltName":
            for part in str(ext).split(", "):
                kind, _, value = part.partition(":")
                if kind in ("DNS", "URI"):
                    names.append(value)
    return names


def _pem_blocks(pem: bytes) -> list[bytes]:
    end = b"-----END CERTIFICATE-----"
    return [b + end + b"\n" for b in pem.split(end) if b"-----BEGIN CERTIFICATE-----" in b]


def authenticate_client(context: grpc.ServicerContext, peers: Sequence[PeerTrust]) -> str:
    """The per-call identity check of a grpcio owner. grpcio's server verified the chain against
    the one bundle of all peer CAs it was given, which does not say *which* peer's CA issued it.
    So: take the leaf from the auth context, pick the peer whose identity is one of its DNS/URI
    SANs, and verify the chain again against that peer's CA only. Aborts the call otherwise."""
    auth = context.auth_context()
    leaf_pem = b"".join(auth.get("x509_pem_cert", []))
    if not leaf_pem:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "no client certificate presented")
    leaf = crypto.load_certificate(crypto.FILETYPE_PEM, leaf_pem)
    names = _san_names(leaf)
    peer = next((p for p in peers if p.identity in names), None)
    if peer is None:
        context.abort(grpc.StatusCode.PERMISSION_DENIED,
                      f"certificate names [{', '.join(names)}] match no configured peer identity")
    store = crypto.X509Store()
    for block in _pem_blocks(peer.ca_pem):
        store.add_cert(crypto.load_certificate(crypto.FILETYPE_PEM, block))
    sent = [crypto.load_certificate(crypto.FILETYPE_PEM, b)
            for b in _pem_blocks(b"".join(auth.get("x509_pem_cert_chain", [])))]
    try:
        crypto.X509StoreContext(store, leaf, chain=sent).verify_certificate()
    except crypto.X509StoreContextError as e:
        context.abort(grpc.StatusCode.UNAUTHENTICATED,
                      f"certificate for '{peer.identity}' does not verify against the CA of peer "
                      f"'{peer.name}': {e}")
    return peer.name


# ---------------------------------------------------------------------------------------- owner

class OwnerStream:
    """One Replicate call that a receiver opened on the :class:`ScriptedOwner`. The test reads
    what the receiver sent (:meth:`recv`) and decides what to send (:meth:`send`, :meth:`finish`,
    :meth:`abort`)."""

    _FINISH = object()

    def __init__(self, request_iterator, context: grpc.ServicerContext, peer: str) -> None:
        self.context = context
        self.peer = peer
        self.out: "queue.Queue[Any]" = queue.Queue()
        self._in: "queue.Queue[Any]" = queue.Queue()
        self.closed = threading.Event()  # the RPC is over: finished, aborted or cancelled
        self.cancelled_by_client = False
        self._owner_ended = False
        self.received: list[Any] = []
        self.opened_at = time.monotonic()
        self.closed_at: Optional[float] = None
        context.add_callback(self._on_done)
        self._reader = threading.Thread(target=self._read, args=(request_iterator,), daemon=True)
        self._reader.start()

    def _on_done(self) -> None:
        self.closed_at = time.monotonic()
        self.cancelled_by_client = not self._owner_ended
        self.closed.set()
        self.out.put(self._FINISH)  # unblocks the handler

    def _read(self, request_iterator) -> None:
        try:
            for m in request_iterator:
                self.received.append((time.monotonic(), m))
                self._in.put(m)
        except Exception:  # the call ended; closed tells the test how
            pass
        self._in.put(None)

    def recv(self, timeout: float) -> Any:
        """The next ReceiverMessage, or None once the receiver's side is closed."""
        try:
            return self._in.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no message from the receiver within {timeout:.1f}s") from None

    def recv_kind(self, kind: str, timeout: float, *, skip: Sequence[str] = ("heartbeat",)) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            m = self.recv(max(0.0, deadline - time.monotonic()))
            assert m is not None, f"the receiver closed the stream while {kind} was expected"
            got = m.WhichOneof("body")
            if got == kind:
                return getattr(m, kind)
            assert got in skip, f"expected {kind}, got {got}: {m}"

    def send(self, **body: Any) -> None:
        self.out.put(pb.OwnerMessage(**body))

    def send_raw(self, message: Any) -> None:
        self.out.put(message)

    def finish(self) -> None:
        """End the call with OK."""
        self._owner_ended = True
        self.out.put(self._FINISH)

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self._owner_ended = True
        self.out.put((code, details))


class ScriptedOwner:
    """A grpcio Federation server that plays the owner "helsinki" for a uopd receiver. Offers are
    set by the test; each Replicate call is handed to the test as an :class:`OwnerStream`."""

    def __init__(self, *, node: str, cert: Path, key: Path, peers: Sequence[PeerTrust],
                 offers: Sequence[tuple[str, int]], policy_version: str = "sha256:0123456789abcdef") -> None:
        self.node = node
        self.peers = list(peers)
        self.offers = list(offers)
        self.policy_version = policy_version
        self.streams: "queue.Queue[OwnerStream]" = queue.Queue()
        self.list_offers_calls: list[Any] = []
        # While set, ListOffers answers nothing until the caller gives up (its deadline, or a
        # cancel); each call so held sets `list_offers_held`, and `list_offers_ended` once it ends.
        self.hold_list_offers = threading.Event()
        self.list_offers_held = threading.Event()
        self.list_offers_ended = threading.Event()
        self.refusals: list[tuple[grpc.StatusCode, str]] = []
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=32),
                                   options=CHANNEL_OPTIONS)
        pbg.add_FederationServicer_to_server(_Servicer(self), self._server)
        bundle = b"".join(p.ca_pem for p in self.peers)
        creds = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())],
                                            root_certificates=bundle, require_client_auth=True)
        self.port = self._server.add_secure_port("127.0.0.1:0", creds)
        assert self.port > 0
        self._server.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def next_stream(self, timeout: float) -> OwnerStream:
        try:
            return self.streams.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the receiver opened no Replicate stream within {timeout:.1f}s") \
                from None

    def subscribed(self, topic: str, partitions: int) -> Any:
        return pb.Subscribed(hello=hello(self.node), topic=topic, partitions=partitions,
                             policy_version=self.policy_version)

    def stop(self) -> None:
        self._server.stop(grace=None)


class _Servicer:
    def __init__(self, owner: ScriptedOwner) -> None:
        self.owner = owner

    def _check(self, context, h) -> str:
        peer = authenticate_client(context, self.owner.peers)
        if h.node != peer:
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          f"hello names node '{h.node}' but the certificate is peer '{peer}'")
        if h.protocol_version != PROTOCOL_VERSION:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                          f"protocol version {h.protocol_version} not supported; this node speaks 1")
        return peer

    def ListOffers(self, request, context):
        self.owner.list_offers_calls.append(request)
        self._check(context, request.hello)
        if self.owner.hold_list_offers.is_set():
            ended = threading.Event()
            context.add_callback(ended.set)  # the call is over: cancelled or past its deadline
            self.owner.list_offers_held.set()
            ended.wait()
            self.owner.list_offers_ended.set()
            return pb.ListOffersResponse()
        return pb.ListOffersResponse(
            hello=hello(self.owner.node),
            offers=[pb.DatasetOffer(topic=t, partitions=n, policy_version=self.owner.policy_version)
                    for t, n in self.owner.offers])

    def Witness(self, request, context):
        # docs/protocol.md section 13: an owner that keeps no audit log witnesses nothing.
        self._check(context, request.hello)
        context.abort(grpc.StatusCode.UNIMPLEMENTED,
                      f"node '{self.owner.node}' keeps no audit log: it witnesses nothing")

    def Replicate(self, request_iterator, context):
        # The identity is checked before the first message, from the connection itself.
        peer = authenticate_client(context, self.owner.peers)
        stream = OwnerStream(request_iterator, context, peer)
        self.owner.streams.put(stream)
        while True:
            item = stream.out.get()
            if item is OwnerStream._FINISH:
                return
            if isinstance(item, tuple):
                context.abort(*item)
            yield item
