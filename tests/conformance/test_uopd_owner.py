"""Conformance: a Python receiver against a real uopd **owner** (helsinki), from the contract alone
(proto/uop/federation/v1/federation.proto and docs/protocol.md). Every documented status code and
message of the owner, every credit rule and every resume rule.

Records are produced with kcat into exact partitions of helsinki's dev-kafka, so offsets are
known. Link timings are short (heartbeat 500 ms, dead-peer timeout 2.5 s) and batches small
(batch_max_records 10) so that credit runs out within a few batches.
"""

from __future__ import annotations

import re
import subprocess
import time

import grpc
import pytest

from uoptest.cluster import LINK, Cluster, scaled, wait_until

import peer
from peer import ReceiverStream, receiver_channel, token_next_offset

TOPIC = "noise.observations"
UNSHARED = "traffic.counts"
OWNER_LINK = dict(LINK, batch_max_records=10)
HB = LINK["heartbeat_interval_ms"] / 1000
DEAD = LINK["dead_peer_timeout_ms"] / 1000
BIG = 64 << 20


class Owner:
    """helsinki with its own dev-kafka; this test's peer is "tallinn"."""

    def __init__(self, cluster: Cluster, *, env: dict | None = None) -> None:
        self.cluster = cluster
        self.kafka = cluster.dev_kafka("helsinki-kafka", {TOPIC: 3, UNSHARED: 1})
        self.node = cluster.uopd(
            "helsinki", peers=[cluster.peer("tallinn")], kafka_bootstrap=self.kafka.bootstrap,
            policies={"noise.yaml": f"dataset: {TOPIC}\nshare:\n  - peer: tallinn\n"},
            link=OWNER_LINK, env=env)
        self._channels: list[grpc.Channel] = []

    def channel(self, cert: str = "tallinn/node.pem", key: str = "tallinn/node.key",
                identity: str = "uopd.helsinki.example") -> grpc.Channel:
        pki = self.cluster.pki
        ch = receiver_channel(self.node.federation, ca=pki / "helsinki" / "ca.pem",
                              cert=pki / cert, key=pki / key, identity=identity)
        self._channels.append(ch)
        return ch

    def stream(self, **kw) -> ReceiverStream:
        return ReceiverStream(self.channel(**kw))

    def produce(self, partition: int, values: list[str], topic: str = TOPIC,
                headers: dict[str, str] | None = None) -> None:
        args = ["kcat", "-P", "-b", self.kafka.bootstrap, "-t", topic, "-p", str(partition),
                "-K", "\t"]
        for k, v in (headers or {}).items():
            args += ["-H", f"{k}={v}"]
        r = subprocess.run(args, input="".join(f"k{i}\t{v}\n" for i, v in enumerate(values)),
                           text=True, capture_output=True, timeout=scaled(30))
        assert r.returncode == 0, r.stderr

    def acked(self) -> float:
        return self.node.metric("uop_export_acked_records_total", peer="tallinn", topic=TOPIC)


@pytest.fixture
def owner(cluster: Cluster) -> Owner:
    return Owner(cluster)


def offers_of(owner: Owner) -> peer.pb.ListOffersResponse:
    return peer.pbg.FederationStub(owner.channel()).ListOffers(
        peer.pb.ListOffersRequest(hello=peer.hello("tallinn")), timeout=scaled(10))


def assert_ends(stream: ReceiverStream, code: grpc.StatusCode, details: str,
                timeout: float = 10, keep_alive: bool = True) -> None:
    ended = stream.end(scaled(timeout), keep_alive=keep_alive)
    assert (ended.code, ended.details) == (code, details)


def read_records(stream: ReceiverStream, count: int, timeout: float = 20) -> list:
    """(batch, record) pairs until `count` records arrived; returns the batches too."""
    batches, records = [], []
    deadline = time.monotonic() + scaled(timeout)
    while len(records) < count:
        b = stream.recv_kind("batch", max(0.0, deadline - time.monotonic()), skip=("heartbeat",))
        batches.append(b)
        records.extend((b.partition, r) for r in b.records)
    assert len(records) == count, f"got {len(records)} records, expected {count}"
    return batches


# ------------------------------------------------------------------------------- ListOffers, Hello

def test_list_offers_names_the_owner_and_the_shared_dataset_only(owner: Owner):
    r = offers_of(owner)
    assert (r.hello.node, r.hello.protocol_version, r.hello.software) == ("helsinki", 1, "uopd/0.1.0")
    assert [(o.topic, o.partitions) for o in r.offers] == [(TOPIC, 3)]
    assert re.fullmatch(r"sha256:[0-9a-f]{16}", r.offers[0].policy_version), r.offers[0]


def test_hello_naming_another_node_is_permission_denied(owner: Owner):
    with pytest.raises(grpc.RpcError) as e:
        peer.pbg.FederationStub(owner.channel()).ListOffers(
            peer.pb.ListOffersRequest(hello=peer.hello("riga")), timeout=scaled(10))
    assert (e.value.code(), e.value.details()) == (
        grpc.StatusCode.PERMISSION_DENIED, "hello names node 'riga' but the certificate is peer 'tallinn'")
    s = owner.stream()
    s.subscribe("riga", TOPIC)
    assert_ends(s, grpc.StatusCode.PERMISSION_DENIED,
                "hello names node 'riga' but the certificate is peer 'tallinn'")


def test_other_protocol_version_is_failed_precondition(owner: Owner):
    with pytest.raises(grpc.RpcError) as e:
        peer.pbg.FederationStub(owner.channel()).ListOffers(
            peer.pb.ListOffersRequest(hello=peer.hello("tallinn", version=2)), timeout=scaled(10))
    assert (e.value.code(), e.value.details()) == (
        grpc.StatusCode.FAILED_PRECONDITION, "protocol version 2 not supported; this node speaks 1")
    s = owner.stream()
    s.subscribe("tallinn", TOPIC, version=0)
    assert_ends(s, grpc.StatusCode.FAILED_PRECONDITION,
                "protocol version 0 not supported; this node speaks 1")


# ------------------------------------------------------------------- TLS, as a grpcio client sees it

@pytest.mark.parametrize("cert", ["bad/wrong-san-tallinn", "bad/other-ca-tallinn", "bad/expired-tallinn"])
def test_refused_certificate_is_unavailable_at_the_client(owner: Owner, cert: str):
    with pytest.raises(grpc.RpcError) as e:
        peer.pbg.FederationStub(owner.channel(cert=f"{cert}.pem", key=f"{cert}.key")).ListOffers(
            peer.pb.ListOffersRequest(hello=peer.hello("tallinn")), timeout=scaled(10))
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE, e.value
    refused = wait_until(lambda: owner.node.events("tls_peer_refused", side="server"), 10,
                         "helsinki's tls_peer_refused line")
    assert refused[0]["client"].startswith("ipv4:127.0.0.1:"), refused[0]


def test_client_sending_leaf_and_intermediate_is_accepted(owner: Owner):
    ch = owner.channel(cert="tallinn/intermediate/node.pem", key="tallinn/intermediate/node.key")
    r = peer.pbg.FederationStub(ch).ListOffers(
        peer.pb.ListOffersRequest(hello=peer.hello("tallinn")), timeout=scaled(10))
    assert r.hello.node == "helsinki" and [o.topic for o in r.offers] == [TOPIC]
    s = ReceiverStream(ch)
    s.subscribe("tallinn", TOPIC)
    assert s.recv_kind("subscribed", scaled(10)).topic == TOPIC
    s.cancel()


def test_grpcio_client_identity_check_refuses_an_owner_with_another_identity(owner: Owner):
    # The recipe of docs/protocol.md §2 (Python): the configured identity is put where gRPC's
    # host-name check looks. helsinki's certificate does not name uopd.riga.example.
    with pytest.raises(grpc.RpcError) as e:
        peer.pbg.FederationStub(owner.channel(identity="uopd.riga.example")).ListOffers(
            peer.pb.ListOffersRequest(hello=peer.hello("tallinn")), timeout=scaled(10))
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE, e.value
    assert not owner.node.events("offers_refused")


# ---------------------------------------------------------------------------- Subscribe: refusals

def test_first_message_other_than_subscribe_is_invalid_argument(owner: Owner):
    s = owner.stream()
    s.credit(1, 1000)
    assert_ends(s, grpc.StatusCode.INVALID_ARGUMENT, "first message must be subscribe")


def test_half_close_before_subscribe_is_cancelled_no_subscribe(owner: Owner):
    s = owner.stream()
    s.half_close()
    assert_ends(s, grpc.StatusCode.CANCELLED, "no subscribe", keep_alive=False)


@pytest.mark.parametrize("topic", [UNSHARED, "no.such.topic"])
def test_unshared_dataset_is_permission_denied_whether_or_not_it_exists(owner: Owner, topic: str):
    s = owner.stream()
    s.subscribe("tallinn", topic)
    assert_ends(s, grpc.StatusCode.PERMISSION_DENIED,
                f"dataset '{topic}' is not shared with peer 'tallinn'")
    wait_until(lambda: owner.node.metric("uop_export_refused_total", peer="tallinn", topic=topic) == 1,
               10, "the refusal to be counted")


@pytest.mark.parametrize("partition", [3, -1])
def test_partition_out_of_range_is_invalid_argument(owner: Owner, partition: int):
    s = owner.stream()
    s.subscribe("tallinn", TOPIC, [(partition, b"")])
    assert_ends(s, grpc.StatusCode.INVALID_ARGUMENT, f"partition {partition} out of range 0..2")


@pytest.mark.parametrize("token", [b"\x02" + bytes(8), b"\x01" + bytes(7), b"\x01" + b"\xff" * 8,
                                   b"garbage"])
def test_undecodable_resume_token_is_invalid_argument(owner: Owner, token: bytes):
    s = owner.stream()
    s.subscribe("tallinn", TOPIC, [(1, token)])
    assert_ends(s, grpc.StatusCode.INVALID_ARGUMENT, "partition 1: unknown resume token")


# ------------------------------------------------------------------------------ Subscribed, batches

def test_subscribed_then_batches_in_order_with_tokens_that_resume_after_each_record(owner: Owner):
    owner.produce(1, [f"v{i}" for i in range(30)])
    offer = offers_of(owner).offers[0]
    s = owner.stream()
    s.subscribe("tallinn", TOPIC, [(1, b"")], batches=100, bytes_=BIG)
    sub = s.recv_kind("subscribed", scaled(10))
    assert (sub.hello.node, sub.hello.protocol_version, sub.topic, sub.partitions,
            sub.policy_version) == ("helsinki", 1, TOPIC, 3, offer.policy_version)
    batches = read_records(s, 30)
    assert [b.batch_seq for b in batches] == list(range(1, len(batches) + 1))
    offsets = []
    for b in batches:
        assert b.partition == 1 and b.policy_version == offer.policy_version
        assert 1 <= len(b.records) <= OWNER_LINK["batch_max_records"]
        assert b.high_watermark >= b.records[-1].offset + 1
        for r in b.records:
            offsets.append(r.offset)
            # For information only (§8): 0x01 + the next offset, big-endian.
            assert token_next_offset(r.resume_token) == r.offset + 1
            assert r.timestamp_type == peer.pb.TIMESTAMP_TYPE_CREATE_TIME and r.timestamp_ms > 0
    assert offsets == list(range(30))
    first = batches[0].records[0]
    assert (first.key, first.value) == (b"k0", b"v0")
    assert first.HasField("key") and first.HasField("value")
    s.cancel()


def test_resume_token_continues_after_its_record_on_a_new_stream(owner: Owner):
    owner.produce(1, [f"v{i}" for i in range(30)])
    s = owner.stream()
    s.subscribe("tallinn", TOPIC, [(1, b"")], batches=100, bytes_=BIG)
    s.recv_kind("subscribed", scaled(10))
    records = [r for b in read_records(s, 30) for r in b.records]
    s.cancel()
    token = records[14].resume_token  # held: offsets 0..14
    again = owner.stream()
    again.subscribe("tallinn", TOPIC, [(1, token)], batches=100, bytes_=BIG)
    again.recv_kind("subscribed", scaled(10))
    batches = read_records(again, 15)
    assert batches[0].batch_seq == 1, "batch_seq starts at 1 on every stream"
    assert [r.offset for b in batches for r in b.records] == list(range(15, 30))
    assert [r.value for b in batches for r in b.records] == [f"v{i}".encode() for i in range(15, 30)]
    again.cancel()


def test_only_listed_partitions_stream_and_empty_list_means_all_from_the_beginning(owner: Owner):
    owner.produce(0, ["a0", "a1", "a2"])
    owner.produce(1, ["b0", "b1"])
    owner.produce(2, ["c0"])
    only = owner.stream()
    only.subscribe("tallinn", TOPIC, [(2, b"")], batches=100, bytes_=BIG)
    only.recv_kind("subscribed", scaled(10))
    batches = read_records(only, 1)
    assert [(b.partition, [r.value for r in b.records]) for b in batches] == [(2, [b"c0"])]
    # Nothing else comes: the next message is a heartbeat whose progress lists partition 2 only.
    hb = only.recv_kind("heartbeat", scaled(10))
    assert [(p.partition, p.high_watermark) for p in hb.progress] == [(2, 1)]
    only.cancel()

    every = owner.stream()
    every.subscribe("tallinn", TOPIC, [], batches=100, bytes_=BIG)
    every.recv_kind("subscribed", scaled(10))
    per_partition: dict[int, list[bytes]] = {}
    for b in read_records(every, 6):
        per_partition.setdefault(b.partition, []).extend(r.value for r in b.records)
    assert per_partition == {0: [b"a0", b"a1", b"a2"], 1: [b"b0", b"b1"], 2: [b"c0"]}
    hb = every.recv_kind("heartbeat", scaled(10))
    assert sorted((p.partition, p.high_watermark) for p in hb.progress) == [(0, 3), (1, 2), (2, 1)]
    every.cancel()


def test_records_from_a_peer_are_never_exported(owner: Owner):
    owner.produce(0, ["first"])
    owner.produce(0, ["mirrored"], headers={"uop.origin": "riga"})
    owner.produce(0, ["last"])
    s = owner.stream()
    s.subscribe("tallinn", TOPIC, [(0, b"")], batches=100, bytes_=BIG)
    s.recv_kind("subscribed", scaled(10))
    got = [(r.offset, r.value) for b in read_records(s, 2) for r in b.records]
    assert got == [(0, b"first"), (2, b"last")]
    s.cancel()
    assert owner.node.metric("uop_export_loop_skipped_total", peer="tallinn", topic=TOPIC) == 1


# ------------------------------------------------------------------------------------------ credit

def test_zero_initial_credit_sends_subscribed_and_heartbeats_only(owner: Owner):
    owner.produce(0, ["x"])
    s = owner.stream()
    s.subscribe("tallinn", TOPIC, [(0, b"")], batches=0, bytes_=0)
    s.recv_kind("subscribed", scaled(10))
    hb = s.recv_kind("heartbeat", scaled(5))
    assert [(p.partition, p.high_watermark) for p in hb.progress] == [(0, 1)]
    s.heartbeat()
    s.recv_kind("heartbeat", scaled(5))  # still no batch
    s.credit(1, BIG)
    assert [r.value for r in s.recv_kind("batch", scaled(10), skip=("heartbeat",)).records] == [b"x"]
    s.cancel()


def test_batch_credit_runs_out_and_each_credit_adds_to_it(owner: Owner):
    owner.produce(0, [f"v{i}" for i in range(100)])
    s = owner.stream()
    s.subscribe("tallinn", TOPIC, [(0, b"")], batches=2, bytes_=BIG)
    s.recv_kind("subscribed", scaled(10))
    assert [s.recv_kind("batch", scaled(10), skip=("heartbeat",)).batch_seq for _ in range(2)] == [1, 2]
    # Out of batch credit while the partition holds more: heartbeats, no batch.
    hb = s.recv_kind("heartbeat", scaled(5))
    assert [(p.partition, p.high_watermark) for p in hb.progress] == [(0, 100)]
    s.credit(1, 0)
    assert s.recv_kind("batch", scaled(10), skip=("heartbeat",)).batch_seq == 3
    s.recv_kind("heartbeat", scaled(5))
    s.credit(2, 0)
    assert [s.recv_kind("batch", scaled(10), skip=("heartbeat",)).batch_seq
            for _ in range(2)] == [4, 5]
    s.recv_kind("heartbeat", scaled(5))
    s.cancel()


def test_byte_credit_may_go_negative_by_one_batch_and_is_charged_the_record_batch_size(owner: Owner):
    owner.produce(0, [f"value-{i:04d}" for i in range(100)])
    s = owner.stream()
    s.subscribe("tallinn", TOPIC, [(0, b"")], batches=100, bytes_=1)
    s.recv_kind("subscribed", scaled(10))
    first = s.recv_kind("batch", scaled(10), skip=("heartbeat",))
    size1 = first.ByteSize()  # re-serializing the parsed RecordBatch gives the charged size
    assert size1 > 1
    s.recv_kind("heartbeat", scaled(5))  # byte credit 1 - size1 < 0: nothing more
    s.credit(0, size1 - 1)               # back to 0: still not > 0
    s.recv_kind("heartbeat", scaled(5))
    s.credit(0, 1)                       # 1 > 0: exactly one more batch
    second = s.recv_kind("batch", scaled(10), skip=("heartbeat",))
    assert second.batch_seq == 2
    s.recv_kind("heartbeat", scaled(5))
    s.cancel()


# ---------------------------------------------------------------------------------------- acks

def test_cumulative_ack_counts_acknowledged_records_and_never_goes_back(owner: Owner):
    owner.produce(0, [f"v{i}" for i in range(40)])
    s = owner.stream()
    s.subscribe("tallinn", TOPIC, [(0, b"")], batches=4, bytes_=BIG)
    s.recv_kind("subscribed", scaled(10))
    batches = [s.recv_kind("batch", scaled(10), skip=("heartbeat",)) for _ in range(4)]
    s.ack(2)
    through2 = sum(len(b.records) for b in batches[:2])
    wait_until(lambda: owner.acked() == through2, 10, f"{through2} records acknowledged")
    s.ack(1)  # behind the maximum: changes nothing
    s.ack(4)
    through4 = sum(len(b.records) for b in batches)
    wait_until(lambda: owner.acked() == through4, 10, f"{through4} records acknowledged")
    # An Ack changes nothing about what is sent next: no credit was returned.
    s.recv_kind("heartbeat", scaled(5))
    s.cancel()


def test_ack_beyond_the_last_batch_sent_is_invalid_argument(owner: Owner):
    owner.produce(0, [f"v{i}" for i in range(40)])
    s = owner.stream()
    s.subscribe("tallinn", TOPIC, [(0, b"")], batches=2, bytes_=BIG)
    s.recv_kind("subscribed", scaled(10))
    batches = [s.recv_kind("batch", scaled(10), skip=("heartbeat",)) for _ in range(2)]
    s.recv_kind("heartbeat", scaled(5))  # out of credit: nothing more was sent
    s.ack(5)
    assert_ends(s, grpc.StatusCode.INVALID_ARGUMENT,
                "ack through batch 5 but only 2 batches were sent on this stream")
    assert owner.acked() == 0, "an Ack beyond what was sent acknowledged records"
    assert batches  # the two batches were sent and never acknowledged


# --------------------------------------------------------------------------- how streams end

def test_half_close_after_subscribe_ends_the_stream_ok(owner: Owner):
    s = owner.stream()
    s.subscribe("tallinn", TOPIC, [(0, b"")])
    s.recv_kind("subscribed", scaled(10))
    s.half_close()
    assert_ends(s, grpc.StatusCode.OK, "", keep_alive=False)


def test_second_subscribe_is_invalid_argument(owner: Owner):
    s = owner.stream()
    s.subscribe("tallinn", TOPIC, [(0, b"")])
    s.recv_kind("subscribed", scaled(10))
    s.subscribe("tallinn", TOPIC, [(1, b"")])
    assert_ends(s, grpc.StatusCode.INVALID_ARGUMENT, "unexpected message after subscribe")


def test_silent_receiver_is_unavailable_after_the_dead_peer_timeout(owner: Owner):
    s = owner.stream()
    s.subscribe("tallinn", TOPIC, [(0, b"")])
    s.recv_kind("subscribed", scaled(10))
    subscribed_at = time.monotonic()
    ended = s.end(scaled(DEAD + 5))
    elapsed = time.monotonic() - subscribed_at
    assert (ended.code, ended.details) == (
        grpc.StatusCode.UNAVAILABLE, "no message from peer within the dead-peer timeout")
    # The timer starts when the owner sent Subscribed (§7).
    assert DEAD - 0.2 <= elapsed <= scaled(DEAD + 2), elapsed


def test_dead_peer_timer_counts_from_subscribed_and_any_message_is_a_sign_of_life(owner: Owner):
    """Observable today through the owner's own end of the stream (export_stream_ended): the
    owner ends a silent stream no earlier than the dead-peer timeout after Subscribed, and a
    receiver that sends only messages with no body (kinds of a later revision) stays alive."""
    s = owner.stream()
    s.subscribe("tallinn", TOPIC, [(0, b"")])
    s.recv_kind("subscribed", scaled(10))
    subscribed_at = time.monotonic()
    # Twice the dead-peer timeout with nothing but empty messages: the stream stays up.
    last_sent = subscribed_at
    while time.monotonic() - subscribed_at < 2 * DEAD:
        s.send_raw(peer.pb.ReceiverMessage())
        last_sent = time.monotonic()
        s.recv_kind("heartbeat", scaled(2))  # the owner's own heartbeats keep coming
    assert not owner.node.events("export_stream_ended")
    s.end(scaled(DEAD + 5))  # now silent
    elapsed = time.monotonic() - last_sent
    ended = wait_until(lambda: owner.node.events("export_stream_ended"), 10,
                       "helsinki to end the stream")
    assert ended[0]["status"] == "no message from peer within the dead-peer timeout", ended[0]
    assert DEAD - 0.1 <= elapsed <= scaled(DEAD + 2), elapsed


def test_sigterm_ends_streams_unavailable_owner_is_shutting_down(owner: Owner):
    s = owner.stream()
    s.subscribe("tallinn", TOPIC, [(0, b"")])
    s.recv_kind("subscribed", scaled(10))
    owner.node.popen.send_signal(15)
    assert_ends(s, grpc.StatusCode.UNAVAILABLE, "owner node is shutting down", timeout=10)
    assert owner.node.wait(20) == 0


def test_owner_kafka_unreachable_is_unavailable_and_left_out_of_the_offers(owner: Owner):
    bootstrap = owner.kafka.bootstrap
    owner.kafka.kill9()
    s = owner.stream()
    s.subscribe("tallinn", TOPIC, [(0, b"")])
    ended = s.end(scaled(30), keep_alive=True)
    assert ended.code == grpc.StatusCode.UNAVAILABLE, ended
    assert ended.details.startswith(f"kafka metadata for {TOPIC} at {bootstrap}: "), ended
    # ListOffers answers, without the dataset whose partition count it cannot read.
    r = peer.pbg.FederationStub(owner.channel()).ListOffers(
        peer.pb.ListOffersRequest(hello=peer.hello("tallinn")), timeout=scaled(30))
    assert r.hello.node == "helsinki" and list(r.offers) == []
    assert owner.node.events("offer_topic_unavailable", peer="tallinn", topic=TOPIC)


def _health_request(service: str) -> bytes:
    """grpc.health.v1.HealthCheckRequest{service} by hand (field 1, a string): the health proto is
    gRPC's own (docs/protocol.md §2), not part of this repository."""
    name = service.encode()
    return (b"\x0a" + bytes([len(name)]) + name) if name else b""


def test_health_service_serves_both_names_over_mtls_and_not_found_otherwise(owner: Owner):
    check = owner.channel().unary_unary("/grpc.health.v1.Health/Check")
    for service in ("", "uop.federation.v1.Federation"):
        assert check(_health_request(service), timeout=scaled(10)) == b"\x08\x01", service  # SERVING
    with pytest.raises(grpc.RpcError) as e:
        check(_health_request("no.such.Service"), timeout=scaled(10))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND, e.value
