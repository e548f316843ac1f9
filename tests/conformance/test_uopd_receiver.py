"""Conformance: a scripted Python owner (grpcio server "helsinki") against a real uopd
**receiver** (tallinn), from the contract alone. What the receiver sends (ListOffers, Subscribe,
Ack, Credit, heartbeats), what it writes into its Kafka, where it resumes, and how it refuses an
owner that breaks the rules (docs/protocol.md §5 to §7 and §11).

The owner's resume tokens here are its own opaque bytes (not uopd's format): a receiver must
return them unchanged. The offer has 2 partitions; uopd pulls both on one stream (one per
dataset), and each test scripts the stream(s) it needs.
"""

from __future__ import annotations

import subprocess
import time

import grpc
import pytest

from uoptest.cluster import LINK, Cluster, Peer, scaled, wait_until

import peer
from peer import OwnerStream, PeerTrust, ScriptedOwner, receiver_channel

TOPIC = "noise.observations"
MIRROR = f"helsinki.{TOPIC}"
PARTITIONS = 2
HB = LINK["heartbeat_interval_ms"] / 1000
DEAD = LINK["dead_peer_timeout_ms"] / 1000
WINDOW_BATCHES, WINDOW_BYTES = 64, 8 << 20  # the uopd defaults (link.window_*)


class Receiver:
    def __init__(self, cluster: Cluster, *, owner_node: str = "helsinki",
                 extra_peers: tuple[PeerTrust, ...] = (), hold_offers: bool = False) -> None:
        pki = cluster.pki
        self.cluster = cluster
        self.kafka = cluster.dev_kafka("tallinn-kafka",
                                       {MIRROR: PARTITIONS, f"{MIRROR}.deadletter": PARTITIONS})
        self.trust = [PeerTrust("tallinn", (pki / "tallinn" / "ca.pem").read_bytes(),
                                "uopd.tallinn.example"), *extra_peers]
        self.owner = ScriptedOwner(node=owner_node, cert=pki / "helsinki" / "node.pem",
                                   key=pki / "helsinki" / "node.key", peers=self.trust,
                                   offers=[(TOPIC, PARTITIONS)])
        if hold_offers:
            self.owner.hold_list_offers.set()
        self.node = cluster.uopd(
            "tallinn", kafka_bootstrap=self.kafka.bootstrap,
            peers=[Peer("helsinki", ca=pki / "helsinki" / "ca.pem",
                        identity="uopd.helsinki.example", address=self.owner.address)])

    def stream(self, timeout: float = 60) -> tuple[OwnerStream, object]:
        """The next stream the receiver opens, with its Subscribe. uopd opens one stream per
        dataset and lists every partition of it that it holds (here both)."""
        s = self.owner.next_stream(scaled(timeout))
        sub = s.recv_kind("subscribe", scaled(10), skip=())
        return s, sub

    def mirror(self, partition: int) -> list[dict]:
        """The records of the mirror partition: offset, key, value (None = null), headers."""
        r = subprocess.run(
            ["kcat", "-C", "-b", self.kafka.bootstrap, "-t", MIRROR, "-p", str(partition), "-e",
             "-q", "-Z", "-f", "%k\x1f%s\x1f%T\x1f%h\x1e"],
            capture_output=True, timeout=scaled(30))
        assert r.returncode == 0, r.stderr
        out = []
        for raw in r.stdout.split(b"\x1e"):
            if not raw.strip(b"\n"):
                continue
            k, v, ts, h = raw.split(b"\x1f")
            out.append({"key": None if k == b"NULL" else k, "value": None if v == b"NULL" else v,
                        "ts": int(ts), "headers": h.decode("utf-8", "replace")})
        return out

    def origin_offsets(self, partition: int) -> list[int]:
        offsets = []
        for rec in self.mirror(partition):
            for kv in rec["headers"].split(","):
                if kv.startswith("uop.origin.offset="):
                    offsets.append(int(kv.split("=", 1)[1]))
        return offsets

    def retries(self) -> list[dict]:
        return self.node.events("import_subscription_retry", topic=TOPIC)


@pytest.fixture
def receiver(cluster: Cluster):
    r = Receiver(cluster)
    yield r
    r.owner.stop()


def record(offset: int, value: bytes | None = b"v", *, key: bytes | None = b"k",
           token: bytes | None = None, headers=()) -> object:
    r = peer.pb.Record(offset=offset, timestamp_ms=1_700_000_000_000 + offset,
                       timestamp_type=peer.pb.TIMESTAMP_TYPE_CREATE_TIME,
                       resume_token=token if token is not None else b"py-token/%d" % offset,
                       headers=[peer.pb.Header(key=hk, value=hv) if hv is not None
                                else peer.pb.Header(key=hk) for hk, hv in headers])
    if key is not None:
        r.key = key
    if value is not None:
        r.value = value
    return r


def batch(seq: int, partition: int, offsets, **kw) -> object:
    return peer.pb.RecordBatch(batch_seq=seq, partition=partition,
                               policy_version="sha256:0123456789abcdef",
                               records=[record(o, b"v%d" % o, **kw) for o in offsets],
                               high_watermark=max(offsets) + 1 if offsets else -1)


def wait_acked(s: OwnerStream, through: int, timeout: float = 30) -> tuple[int, int, int]:
    """Read Acks and Credits until an Ack covers batches 1..`through` and their credit came back;
    returns (last ack, credit batches, credit bytes) summed over what was read."""
    last_ack, credit_batches, credit_bytes = 0, 0, 0
    deadline = time.monotonic() + scaled(timeout)
    while last_ack < through or credit_batches < through:
        m = s.recv(max(0.0, deadline - time.monotonic()))
        assert m is not None, "the receiver closed the stream"
        kind = m.WhichOneof("body")
        if kind == "ack":
            assert m.ack.through_batch_seq >= last_ack, "acks are cumulative"
            last_ack = m.ack.through_batch_seq
        elif kind == "credit":
            credit_batches += m.credit.batches
            credit_bytes += m.credit.bytes
        else:
            assert kind == "heartbeat", m
    return last_ack, credit_batches, credit_bytes


# ----------------------------------------------------------------------- ListOffers and Subscribe

def test_receiver_lists_offers_then_subscribes_every_partition_from_its_start(receiver: Receiver):
    _, sub = receiver.stream()
    calls = receiver.owner.list_offers_calls
    assert calls and (calls[0].hello.node, calls[0].hello.protocol_version) == ("tallinn", 1)
    assert (sub.hello.node, sub.hello.protocol_version, sub.hello.software) == (
        "tallinn", 1, "uopd/0.1.0")
    assert sub.topic == TOPIC
    # One stream for the dataset, listing every partition; the window scales with them.
    assert [(s.partition, s.resume_token) for s in sub.partitions] == [(0, b""), (1, b"")]
    assert (sub.initial_credit.batches, sub.initial_credit.bytes) == (
        WINDOW_BATCHES * PARTITIONS, WINDOW_BYTES * PARTITIONS)


def test_sigterm_cancels_a_list_offers_the_owner_does_not_answer(cluster: Cluster):
    # An owner slow to answer must not hold up the receiver's shutdown for the call's deadline
    # (30 s): SIGTERM cancels the call in flight and the node exits at once.
    r = Receiver(cluster, hold_offers=True)
    try:
        assert r.owner.list_offers_held.wait(scaled(30)), "the receiver never called ListOffers"
        started = time.monotonic()
        r.node.terminate(timeout=10)
        took = time.monotonic() - started
        assert r.owner.list_offers_ended.wait(scaled(5)), "the held ListOffers did not end"
        assert not r.node.events("link_down"), "a shutdown is not a link down"
        stopped = r.node.events("node_stopped")
        assert stopped, r.node.tail()
        assert took < scaled(10), took
    finally:
        r.owner.stop()


def test_owner_hello_naming_another_node_is_refused_before_any_stream(cluster: Cluster):
    r = Receiver(cluster, owner_node="riga")
    try:
        down = wait_until(lambda: r.node.events("link_down", peer="helsinki"), 30,
                          "tallinn to refuse the owner's hello")
        assert down[0]["reason"] == "peer says it is 'riga'", down[0]
        assert r.owner.streams.empty(), "the receiver subscribed to an owner that is not helsinki"
    finally:
        r.owner.stop()


# ------------------------------------------------------------------- writing, Ack, Credit, resume

def test_receiver_writes_provenance_then_acks_and_returns_exactly_the_credit_charged(
        receiver: Receiver):
    s, _ = receiver.stream()
    s.send(subscribed=receiver.owner.subscribed(TOPIC, PARTITIONS))
    b1 = peer.pb.RecordBatch(batch_seq=1, partition=1, policy_version="sha256:00000000000000aa",
                             high_watermark=7, records=[
                                 record(0, b"v0", headers=[("h1", b"x"), ("h2", None)]),
                                 record(1, b"x", key=None),
                                 record(2, None, key=b"k2")])
    b2 = batch(2, 1, [5, 6])  # offsets may have gaps
    s.send(batch=b1)
    s.send(batch=b2)
    last_ack, credit_batches, credit_bytes = wait_acked(s, 2)
    assert (last_ack, credit_batches, credit_bytes) == (2, 2, b1.ByteSize() + b2.ByteSize())
    got = receiver.mirror(1)
    # Null keys and values stay null. (Null is not compared against empty here: kcat, the
    # reader used here, prints an empty key or value of the mock cluster as NULL too.)
    assert [(g["key"], g["value"], g["ts"]) for g in got] == [
        (b"k", b"v0", 1_700_000_000_000), (None, b"x", 1_700_000_000_001),
        (b"k2", None, 1_700_000_000_002), (b"k", b"v5", 1_700_000_000_005),
        (b"k", b"v6", 1_700_000_000_006)]
    assert got[0]["headers"] == (
        "h1=x,h2=NULL,uop.origin=helsinki,uop.origin.topic=noise.observations,uop.origin.partition=1,"
        "uop.origin.offset=0,uop.origin.timestamp=1700000000000,"
        "uop.policy.version=sha256:00000000000000aa,uop.resume=py-token/0")
    assert got[4]["headers"].endswith(",uop.origin.offset=6,uop.origin.timestamp=1700000000006,"
                                      "uop.policy.version=sha256:0123456789abcdef,"
                                      "uop.resume=py-token/6"), got[4]


def test_receiver_resumes_with_the_owners_opaque_token_and_drops_replays(receiver: Receiver):
    s, _ = receiver.stream()
    s.send(subscribed=receiver.owner.subscribed(TOPIC, PARTITIONS))
    opaque = b"\x00\xffopaque\x01"  # not UTF-8, not uopd's format: only the owner knows it
    s.send(batch=batch(1, 0, [0, 1, 2, 3], token=opaque))
    assert wait_acked(s, 1)[0] == 1
    s.abort(grpc.StatusCode.UNAVAILABLE, "conformance owner restarts")
    again, sub = receiver.stream()
    assert [(p.partition, p.resume_token) for p in sub.partitions] == [(0, opaque), (1, b"")]
    again.send(subscribed=receiver.owner.subscribed(TOPIC, PARTITIONS))
    # At least once: the owner replays 2 and 3 before the new 4 and 5.
    again.send(batch=batch(1, 0, [2, 3, 4, 5]))
    assert wait_acked(again, 1)[0] == 1
    assert receiver.origin_offsets(0) == [0, 1, 2, 3, 4, 5]
    wait_until(lambda: receiver.node.metric("uop_import_duplicates_dropped_total",
                                            peer="helsinki", topic=TOPIC) == 2, 10,
               "the two replayed records to be counted as dropped")


# ----------------------------------------------------------------- an owner that breaks the rules

def _refused(receiver: Receiver, s: OwnerStream, partition: int, reason: str, *,
             written: list[int], last_token: bytes) -> None:
    """The receiver ended the stream itself, acknowledged nothing more, wrote nothing of the bad
    batch, logged why, and subscribes again from what it durably holds."""
    assert s.closed.wait(scaled(20)), "the receiver did not end the stream"
    assert s.cancelled_by_client
    acks = [m.ack.through_batch_seq for _, m in s.received if m.WhichOneof("body") == "ack"]
    assert max(acks, default=0) <= 1, acks
    retry = wait_until(lambda: receiver.retries(), 20, "import_subscription_retry")
    assert retry[0]["reason"] == reason, retry[0]
    _, sub = receiver.stream()
    tokens = {p.partition: p.resume_token for p in sub.partitions}
    assert tokens == {p: last_token if p == partition else b"" for p in range(PARTITIONS)}
    assert receiver.origin_offsets(partition) == written


VIOLATIONS = {
    # name: (bad batch after a good batch 1 of offsets 0..1 on partition 0, documented reason)
    "unsubscribed-partition": (lambda: batch(2, 2, [0, 1]),
                               "owner sent a batch for partition 2, which this stream did not "
                               "subscribe"),
    "batch-seq-jump": (lambda: batch(3, 0, [2, 3]), "owner sent batch_seq 3 after 1"),
    "offsets-backwards": (lambda: batch(2, 0, [1, 2]),
                          "owner sent offset 1 of partition 0 after offset 1 with a resume "
                          "token that does not order after the previous one"),
}


@pytest.mark.parametrize("violation", [
    "unsubscribed-partition",
    "batch-seq-jump",
    "offsets-backwards",
])
def test_receiver_refuses_a_batch_that_breaks_the_stream_rules(receiver: Receiver, violation: str):
    make_bad, reason = VIOLATIONS[violation]
    s, _ = receiver.stream()
    s.send(subscribed=receiver.owner.subscribed(TOPIC, PARTITIONS))
    s.send(batch=batch(1, 0, [0, 1]))
    assert wait_acked(s, 1)[0] == 1
    s.send(batch=make_bad())
    _refused(receiver, s, 0, reason, written=[0, 1], last_token=b"py-token/1")


@pytest.mark.parametrize("first", ["batch", "wrong-partition-count"])
def test_receiver_refuses_an_owner_that_does_not_answer_subscribed_first(receiver: Receiver,
                                                                          first: str):
    s, _ = receiver.stream()
    if first == "batch":
        s.send(batch=batch(1, 0, [0]))
    else:
        s.send(subscribed=receiver.owner.subscribed(TOPIC, PARTITIONS + 1))
        s.send(batch=batch(1, 0, [0]))
    assert s.closed.wait(scaled(20)) and s.cancelled_by_client
    retry = wait_until(lambda: receiver.retries(), 20, "import_subscription_retry")
    assert retry[0]["reason"] == \
        "owner answered subscribe with an unexpected message or partition count", retry[0]
    assert not any(m.WhichOneof("body") in ("ack", "credit") for _, m in s.received)
    receiver.stream()  # and it subscribes again
    assert receiver.origin_offsets(0) == []


def test_receiver_refuses_an_owner_that_exceeds_the_batch_credit(receiver: Receiver):
    s, sub = receiver.stream()
    s.send(subscribed=receiver.owner.subscribed(TOPIC, PARTITIONS))
    granted = sub.initial_credit.batches
    for seq in range(1, 3 * granted + 1):  # far beyond the window, without waiting for credit
        s.send(batch=batch(seq, 0, [seq]))
    assert s.closed.wait(scaled(20)) and s.cancelled_by_client
    retry = wait_until(lambda: receiver.retries(), 20, "import_subscription_retry")
    assert retry[0]["reason"] == "owner exceeded the granted credit", retry[0]


# ----------------------------------------------------------------------------- liveness

def test_receiver_heartbeats_when_idle_and_any_owner_message_keeps_it_alive(receiver: Receiver):
    s, _ = receiver.stream()
    s.send(subscribed=receiver.owner.subscribed(TOPIC, PARTITIONS))
    start = time.monotonic()
    heartbeats = []
    # Twice the dead-peer timeout with nothing but messages with no body from the owner.
    while time.monotonic() - start < 2 * DEAD:
        s.send_raw(peer.pb.OwnerMessage())
        m = s.recv(scaled(2))
        assert m is not None and m.WhichOneof("body") == "heartbeat", m
        heartbeats.append(m.heartbeat)
    assert not s.closed.is_set(), "the receiver ended a stream whose owner kept talking"
    assert len(heartbeats) >= int(2 * DEAD / HB) - 2, len(heartbeats)
    now_ms = time.time() * 1000
    for hb in heartbeats:
        assert abs(hb.sent_unix_ms - now_ms) < scaled(30_000) and not hb.progress
    s.send(batch=batch(1, 0, [0]))
    assert wait_acked(s, 1)[0] == 1


def test_receiver_drops_a_silent_owner_after_the_dead_peer_timeout_from_subscribed(
        receiver: Receiver):
    s, _ = receiver.stream()
    s.send(subscribed=receiver.owner.subscribed(TOPIC, PARTITIONS))
    sent_at = time.monotonic()
    assert s.closed.wait(scaled(DEAD + 5)) and s.cancelled_by_client
    # Counted from Subscribed (docs/protocol.md §7). uopd 0.1.0 starts its timer earlier, when the
    # subscription attempt starts (before fencing and recovery): that only shows when those take
    # a noticeable time, which they do not on dev-kafka.
    elapsed = s.closed_at - sent_at
    assert DEAD - 0.1 <= elapsed <= scaled(DEAD + 2), elapsed
    retry = wait_until(lambda: receiver.retries(), 20, "import_subscription_retry")
    assert retry[0]["reason"] == "no message from helsinki within the dead-peer timeout", retry[0]


# ----------------------------------------------------------- the grpcio owner's identity check

@pytest.mark.parametrize("cert,code,details", [
    ("bad/wrong-san-tallinn", grpc.StatusCode.PERMISSION_DENIED,
     "certificate names [uopd.evil.example, spiffe://evil.example/uopd, localhost] match no "
     "configured peer identity"),
    ("bad/other-ca-tallinn", grpc.StatusCode.UNAUTHENTICATED,
     "certificate for 'uopd.tallinn.example' does not verify against the CA of peer 'tallinn': "
     "unable to get local issuer certificate"),
])
def test_grpcio_owner_checks_identity_per_peer_after_the_handshake(cluster: Cluster, cert: str,
                                                                    code, details):
    """grpcio's server takes one client-CA bundle: here tallinn's CA and the CA of another peer
    "riga" (the rogue CA of the demo PKI). Both bad certificates pass its handshake; the per-call
    check of docs/protocol.md §2 (Python) refuses them, while uopd tallinn is accepted."""
    pki = cluster.pki
    riga = PeerTrust("riga", (pki / "bad" / "other-ca.pem").read_bytes(), "uopd.riga.example")
    r = Receiver(cluster, extra_peers=(riga,))
    try:
        r.stream()  # the real tallinn passes the check
        ch = receiver_channel(r.owner.address, ca=pki / "helsinki" / "ca.pem",
                              cert=pki / f"{cert}.pem", key=pki / f"{cert}.key",
                              identity="uopd.helsinki.example")
        with pytest.raises(grpc.RpcError) as e:
            peer.pbg.FederationStub(ch).ListOffers(
                peer.pb.ListOffersRequest(hello=peer.hello("tallinn")), timeout=scaled(10))
        assert (e.value.code(), e.value.details()) == (code, details)
    finally:
        r.owner.stop()


def test_grpcio_owner_identity_check_accepts_leaf_plus_intermediate(pki):
    """The check uses the chain the client sent (x509_pem_cert_chain) as untrusted
    intermediates, so a receiver presenting leaf + intermediate passes with only the root."""
    owner = ScriptedOwner(node="helsinki", cert=pki / "helsinki" / "node.pem",
                          key=pki / "helsinki" / "node.key",
                          peers=[PeerTrust("tallinn", (pki / "tallinn" / "ca.pem").read_bytes(),
                                           "uopd.tallinn.example")],
                          offers=[(TOPIC, PARTITIONS)])
    try:
        for cert, ok in [("tallinn/intermediate/node", True), ("tallinn/intermediate/leaf", False)]:
            ch = receiver_channel(owner.address, ca=pki / "helsinki" / "ca.pem",
                                  cert=pki / f"{cert}.pem", key=pki / "tallinn" / "intermediate" /
                                  "node.key", identity="uopd.helsinki.example")
            call = peer.pbg.FederationStub(ch).ListOffers
            request = peer.pb.ListOffersRequest(hello=peer.hello("tallinn"))
            if ok:
                assert [o.topic for o in call(request, timeout=scaled(10)).offers] == [TOPIC]
            else:  # the leaf alone does not chain to the root: grpcio's own handshake refuses it
                with pytest.raises(grpc.RpcError) as e:
                    call(request, timeout=scaled(10))
                assert e.value.code() == grpc.StatusCode.UNAVAILABLE, e.value
            ch.close()
    finally:
        owner.stop()
