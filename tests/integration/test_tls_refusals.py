"""The federation port logs every refused TLS client itself, with the client's address, even when
gRPC's own logging is off (GRPC_VERBOSITY=NONE); and certificates issued through an intermediate
CA work in both directions.

Clients here are raw sockets (Python's ssl module), so each test knows the exact local port that
uopd must name in ``tls_peer_refused``.
"""

from __future__ import annotations

import socket
import ssl

import pytest

from uoptest.cluster import Cluster, Federation, scaled, wait_until

TOPIC = Federation.TOPIC
SHARE_NOISE = {"noise.yaml": f"dataset: {TOPIC}\nshare:\n  - peer: tallinn\n"}
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

REASONS = {
    None: "no client certificate presented",
    "bad/other-ca-tallinn": "certificate for 'uopd.tallinn.example' does not verify against the CA "
                            "of peer 'tallinn': unable to get local issuer certificate",
    "bad/wrong-san-tallinn": "certificate names [uopd.evil.example, spiffe://evil.example/uopd, "
                             "localhost] match no configured peer identity",
    "bad/expired-tallinn": "certificate for 'uopd.tallinn.example' does not verify against the CA "
                           "of peer 'tallinn': certificate has expired",
}


def _owner(cluster: Cluster):
    return cluster.uopd("helsinki", peers=[cluster.peer("tallinn")], embedded_topics={TOPIC: 3},
                        policies=SHARE_NOISE, env={"GRPC_VERBOSITY": "NONE"})


def _drain(sock) -> bytes:
    """What the server sends until it closes (EOF, reset or a TLS alert)."""
    sock.settimeout(scaled(10))
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
            return data
        except TimeoutError:
            raise AssertionError(f"server kept the connection open; received {data!r}") from None
        if not chunk:
            return data
        data += chunk


def _refusals(h, client: str) -> list[dict]:
    return h.events("tls_peer_refused", side="server", client=client)


@pytest.mark.parametrize("cert", list(REASONS))
def test_refused_tls_client_is_logged_with_its_address(cluster: Cluster, cert):
    h = _owner(cluster)
    pki = cluster.pki
    raw = socket.create_connection(("127.0.0.1", h.federation_port), timeout=scaled(10))
    client = "ipv4:127.0.0.1:%d" % raw.getsockname()[1]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki / "helsinki" / "ca.pem")
    ctx.set_alpn_protocols(["h2"])
    if cert is not None:
        ctx.load_cert_chain(pki / f"{cert}.pem", pki / f"{cert}.key")
    try:
        tls = ctx.wrap_socket(raw, server_hostname="uopd.helsinki.example")
    except (ssl.SSLError, ConnectionResetError):
        raw.close()  # refused within the handshake
    else:
        with tls:  # TLS 1.3: the client finishes first, the refusal follows
            try:
                tls.sendall(H2_PREFACE)
            except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
                pass
            assert _drain(tls) == b"", "a refused client received application data"
    refused = wait_until(lambda: _refusals(h, client), 10, f"tls_peer_refused for {client}",
                         procs=[h])
    assert len(refused) == 1, refused
    assert (refused[0]["reason"], refused[0]["expected_peer"]) == (REASONS[cert], "any")
    assert not h.events("tls_peer_connected")


def test_plaintext_client_is_refused_and_logged_with_its_address(cluster: Cluster):
    h = _owner(cluster)
    with socket.create_connection(("127.0.0.1", h.federation_port), timeout=scaled(10)) as raw:
        client = "ipv4:127.0.0.1:%d" % raw.getsockname()[1]
        raw.sendall(H2_PREFACE)
        assert _drain(raw) == b"", "a plaintext client received data"
    refused = wait_until(lambda: _refusals(h, client), 10, f"tls_peer_refused for {client}",
                         procs=[h])
    assert [r["reason"] for r in refused] == [
        "not a TLS handshake: the client sent plaintext (first byte 0x50); this port speaks only "
        "mutual TLS"]


def test_silent_client_is_refused_after_the_first_byte_timeout(cluster: Cluster):
    h = _owner(cluster)
    with socket.create_connection(("127.0.0.1", h.federation_port), timeout=scaled(10)) as raw:
        client = "ipv4:127.0.0.1:%d" % raw.getsockname()[1]
        raw.settimeout(scaled(20))
        assert raw.recv(1) == b"", "the server sent something to a silent client"
    refused = wait_until(lambda: _refusals(h, client), 5, f"tls_peer_refused for {client}")
    assert [r["reason"] for r in refused] == ["no TLS handshake within 10s of connecting"]


BEFORE_CHECK = ("the TLS handshake failed before the certificate check (no ALPN \"h2\", the "
                "client refused this node's certificate, no TLS version or cipher in common, or "
                "not finished within 10s)")


@pytest.mark.parametrize("alpn", [False, True])
def test_many_refused_handshakes_do_not_block_a_good_peer(cluster: Cluster, alpn: bool):
    """More refused clients than handshake slots (16), one after the other, each refused within
    the handshake: by the verifier (wrong SAN, with ALPN h2), or by gRPC before the verifier runs
    (a good certificate but no ALPN), which uopd sees on the socket. Every slot is free again at
    once, every refusal is logged with its address, and the real receiver connects right after."""
    h = _owner(cluster)
    pki = cluster.pki
    cert = "bad/wrong-san-tallinn" if alpn else "tallinn/node"
    clients = []
    for _ in range(24):
        raw = socket.create_connection(("127.0.0.1", h.federation_port), timeout=scaled(10))
        clients.append("ipv4:127.0.0.1:%d" % raw.getsockname()[1])
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(pki / "helsinki" / "ca.pem")
        ctx.load_cert_chain(pki / f"{cert}.pem", pki / f"{cert}.key")
        if alpn:
            ctx.set_alpn_protocols(["h2"])
        try:
            with ctx.wrap_socket(raw, server_hostname="uopd.helsinki.example") as tls:
                assert _drain(tls) == b""
        except (ssl.SSLError, ConnectionResetError):
            raw.close()
    refused = wait_until(lambda: [r for c in clients for r in _refusals(h, c)] if all(
        _refusals(h, c) for c in clients) else None, 20, "a refusal for every client")
    assert len(refused) == 24
    assert {r["reason"] for r in refused} == {REASONS["bad/wrong-san-tallinn"] if alpn
                                              else BEFORE_CHECK}
    t = cluster.uopd("tallinn", peers=[cluster.peer("helsinki", h.federation)], embedded_topics={})
    connected = wait_until(lambda: h.events("tls_peer_connected", peer="tallinn"), 20,
                           "tallinn to connect", procs=[h, t])
    assert connected[0]["client"].startswith("ipv4:127.0.0.1:"), connected[0]
    wait_until(lambda: t.events("link_up", peer="helsinki"), 20, "tallinn's link up")


def test_nodes_presenting_leaf_and_intermediate_mirror_in_both_directions(cluster: Cluster):
    """Both nodes present node.pem = leaf + intermediate; each peer trusts only the other's root."""
    pki = cluster.pki
    hk = cluster.dev_kafka("helsinki-kafka", {TOPIC: 3})
    tk = cluster.dev_kafka("tallinn-kafka", {Federation.MIRROR: 3,
                                             f"{Federation.MIRROR}.deadletter": 3})
    h = cluster.uopd("helsinki", peers=[cluster.peer("tallinn")], kafka_bootstrap=hk.bootstrap,
                     policies=SHARE_NOISE, cert=pki / "helsinki" / "intermediate" / "node.pem",
                     key=pki / "helsinki" / "intermediate" / "node.key")
    t = cluster.uopd("tallinn", peers=[cluster.peer("helsinki", h.federation)],
                     kafka_bootstrap=tk.bootstrap,
                     cert=pki / "tallinn" / "intermediate" / "node.pem",
                     key=pki / "tallinn" / "intermediate" / "node.key")
    cluster.simulate(hk.bootstrap, TOPIC, 300, seed=5)
    c = cluster.compare(hk.bootstrap, TOPIC, tk.bootstrap, wait=60)
    assert c["ok"] and (c["source"], c["target"], c["lost"], c["duplicated"]) == (300, 300, 0, 0), c
    assert h.events("tls_peer_connected", peer="tallinn")
    assert not h.events("tls_peer_refused") and not t.events("tls_peer_refused")
