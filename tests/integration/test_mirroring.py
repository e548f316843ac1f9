"""End-to-end mirroring between two uopd nodes, with real processes and real mutual TLS.

helsinki owns ``noise.observations`` (3 partitions) and shares it with tallinn; tallinn pulls it
into ``helsinki.noise.observations`` in its own Kafka. Each city's Kafka is a separate
``uopctl dev-kafka`` process, so it survives kill -9 of the node that uses it. ``uopctl compare``
is the judge: every origin record exactly once, in order, with its key, value, timestamp, headers
and provenance headers.

Run: ``cd tests/integration && python3 -m pytest -q test_mirroring.py`` (after building).
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from uoptest.cluster import BIN_DIR, LINK, Cluster, Federation, scaled, wait_until

TOPIC = Federation.TOPIC
MIRROR = Federation.MIRROR


def assert_exactly_once(c: dict, expected: int) -> None:
    """The verdict of ``uopctl compare --json``: all ``expected`` records, once, in order."""
    assert c["ok"], f"mirror differs from origin: {c}"
    assert (c["source"], c["expected"], c["target"]) == (expected, expected, expected), c
    assert (c["lost"], c["duplicated"], c["out_of_order"], c["mismatched"]) == (0, 0, 0, 0), c


# -------------------------------------------------------------------------- a. clean mirroring

def test_mirror_10000_records_exactly_once_and_metrics_agree(cluster: Cluster):
    f = Federation(cluster)
    f.wait_streaming()
    cluster.simulate(f.hk.bootstrap, TOPIC, 10_000, seed=7)
    assert_exactly_once(f.compare(), 10_000)

    h, t = f.helsinki, f.tallinn
    imp = {"peer": "helsinki", "topic": TOPIC}
    exp = {"peer": "tallinn", "topic": TOPIC}
    wait_until(lambda: h.metric("uop_export_acked_records_total", **exp) == 10_000, 20,
               "helsinki's acked export count to reach 10000")
    wait_until(lambda: t.metric("uop_import_lag_records", **imp) == 0, 20,
               "tallinn's import lag to drop to 0")
    tm, hm = t.metrics(), h.metrics()
    assert tm.value("uop_import_records_total", **imp) == 10_000
    assert tm.value("uop_import_duplicates_dropped_total", **imp) == 0
    assert tm.value("uop_import_deadletter_total", **imp) == 0
    assert tm.value("uop_import_reconnects_total", **imp) == 0
    assert tm.value("uop_import_partitions_assigned", **imp) == 3
    assert tm.value("uop_import_stream_up", **imp) == 3  # origin partitions streaming
    assert tm.value("uop_import_lag_seconds", **imp) == 0
    assert tm.value("uop_link_up", peer="helsinki") == 1
    assert hm.value("uop_export_records_total", **exp) == 10_000
    assert hm.value("uop_export_acked_records_total", **exp) == 10_000
    assert hm.value("uop_export_streams", peer="tallinn") == 1  # one stream per dataset
    assert hm.value("uop_export_kafka_consumers") == 1  # streams of a peer share one consumer
    # The admin endpoints answer, and both nodes stop cleanly.
    assert h.http_get("/healthz") == (200, "ok\n")
    assert t.http_get("/readyz") == (200, "ready\n")
    t.terminate()
    h.terminate()


# ---------------------------------------------------------------- b/c. kill -9 of either node

RATE_TOTAL = 6000   # records produced at RATE per second while a node is killed
RATE = 1500


def test_kill9_sender_mid_stream_loses_and_duplicates_nothing(cluster: Cluster):
    f = Federation(cluster)
    f.wait_streaming()
    sim = cluster.simulate_in_background(f.hk.bootstrap, TOPIC, RATE_TOTAL, RATE, seed=11)
    before = wait_until(lambda: (n := f.imported()) >= 1000 and n, 30,
                        "tallinn to import 1000 records before the kill",
                        procs=[f.helsinki, f.tallinn, sim])
    f.helsinki.kill9()
    assert before < RATE_TOTAL, "the stream was not in flight when helsinki was killed"
    assert sim.alive, "simulate finished before the kill: nothing was in flight"

    f.restart_owner()
    Cluster.finish_simulate(sim, RATE_TOTAL)
    assert_exactly_once(f.compare(), RATE_TOTAL)

    # The receiver wrote each record once; the restarted owner resumed from the receiver's
    # positions instead of starting over.
    wait_until(lambda: f.imported() == RATE_TOTAL, 20, "tallinn's import count to reach total")
    exported_after_restart = f.helsinki.metric("uop_export_records_total", peer="tallinn",
                                               topic=TOPIC)
    assert exported_after_restart <= RATE_TOTAL - before, (
        f"restarted owner sent {exported_after_restart} records although tallinn already held "
        f"{before} of {RATE_TOTAL}")
    assert f.tallinn.events("import_subscription_retry"), "tallinn never noticed the kill"


def test_kill9_receiver_mid_stream_recovers_from_its_kafka(cluster: Cluster):
    f = Federation(cluster)
    f.wait_streaming()
    sim = cluster.simulate_in_background(f.hk.bootstrap, TOPIC, RATE_TOTAL, RATE, seed=13)
    before = wait_until(lambda: (n := f.imported()) >= 1000 and n, 30,
                        "tallinn to import 1000 records before the kill",
                        procs=[f.helsinki, f.tallinn, sim])
    f.tallinn.kill9()
    assert before < RATE_TOTAL and sim.alive, "the stream was not in flight at the kill"
    # What tallinn's Kafka holds now is all the restarted node may rely on.
    held = cluster.compare(f.hk.bootstrap, TOPIC, f.tk.bootstrap)
    assert held["duplicated"] == 0 and held["mismatched"] == 0 and held["out_of_order"] == 0, held
    assert held["target"] >= before, held

    f.tallinn.restart()
    Cluster.finish_simulate(sim, RATE_TOTAL)
    assert_exactly_once(f.compare(), RATE_TOTAL)
    # The restarted node wrote exactly what was missing: it recovered its positions from its
    # own Kafka and rewrote nothing.
    wait_until(lambda: f.imported() == RATE_TOTAL - held["target"], 20,
               f"the restarted tallinn to have written {RATE_TOTAL - held['target']} records "
               f"(total {RATE_TOTAL} minus {held['target']} already held)")
    f.tallinn.terminate()
    f.helsinki.terminate()


# ------------------------------------------------------------------------------- d. cut link

def test_cut_and_paused_link_heals_without_loss_or_duplicates(cluster: Cluster):
    total, rate = 12_000, 1000  # 12 s of traffic: the cuts and the pause happen mid-stream
    f = Federation(cluster)
    f.wait_streaming()
    imp = {"peer": "helsinki", "topic": TOPIC}
    sim = cluster.simulate_in_background(f.hk.bootstrap, TOPIC, total, rate, seed=17)
    procs = [f.helsinki, f.tallinn]

    def streaming_again(since_count: float, since_log: int) -> float:
        """The imported count, once the stream of all 3 partitions has (re)started since the log
        mark (the gauges lag a cut by a moment, the log does not) and 500 more records arrived."""
        started = set()
        for e in f.tallinn.events("import_stream_started", since=since_log):
            started.update(int(p) for p in e["partitions"].split(","))
        n = f.imported()
        return n if len(started) == 3 and n >= since_count + 500 else 0

    progress, mark = 0.0, 0
    for i in range(3):
        progress = wait_until(lambda: streaming_again(progress, mark), 30,
                              f"all streams up and import progress before cut #{i + 1}",
                              procs=procs)
        assert sim.alive, f"simulate finished before cut #{i + 1}: nothing in flight"
        mark = f.tallinn.log_mark()
        assert f.proxy.cut() >= 1, "no live connection to cut"
    # A pause longer than the dead-peer timeout: every reconnect is refused meanwhile.
    progress = wait_until(lambda: streaming_again(progress, mark), 30,
                          "all streams up and import progress before the pause", procs=procs)
    assert sim.alive, "simulate finished before the pause: nothing in flight"
    mark = f.tallinn.log_mark()
    f.proxy.pause()
    paused_at = time.monotonic()
    dead_peer_s = LINK["dead_peer_timeout_ms"] / 1000
    wait_until(lambda: f.tallinn.metric("uop_import_stream_up", **imp) == 0, 10,
               "tallinn's import stream to go down while paused")
    wait_until(lambda: time.monotonic() - paused_at > 1.5 * dead_peer_s
               and f.proxy.connections_rejected >= 2, 30,
               "the pause to outlast the dead-peer timeout with reconnects refused", procs=procs)
    stalled = f.imported()
    f.proxy.resume()
    assert len(f.tallinn.events("import_subscription_retry", since=mark)) >= 2
    wait_until(lambda: f.imported() > stalled, 30, "import records to grow after resume()",
               procs=procs)

    Cluster.finish_simulate(sim, total)
    assert_exactly_once(f.compare(), total)
    wait_until(lambda: f.imported() == total, 20, "tallinn's import count to reach total")
    wait_until(lambda: f.streams() == (3, 3), 20, "all 3 partition streams to be up again")
    m = f.tallinn.metrics()
    assert m.value("uop_link_up", peer="helsinki") == 1
    assert m.value("uop_import_reconnects_total", **imp) >= 4  # 3 cuts + the pause


# ---------------------------------------------------------------- e. bad certificates refused

SHARE_NOISE = {"noise.yaml": f"dataset: {TOPIC}\nshares:\n  - peer: tallinn\n"}

# (bad certificate, the refusal reason the verifying side must log)
REASON_SERVER = {
    "other-ca": "does not verify against the CA of peer 'tallinn': unable to get local issuer "
                "certificate",
    "wrong-san": "match no configured peer identity",
    "expired": "does not verify against the CA of peer 'tallinn': certificate has expired",
}
REASON_CLIENT = {
    "other-ca": "does not verify against the CA of peer 'helsinki': unable to get local issuer "
                "certificate",
    "wrong-san": "match not the identity of peer 'helsinki'",
    "expired": "does not verify against the CA of peer 'helsinki': certificate has expired",
}


def _owner_and_receiver(cluster: Cluster, *, owner_cert: str = "", receiver_cert: str = ""):
    """helsinki (embedded Kafka with records in it) and tallinn dialing it directly; either may
    present a bad certificate of the demo PKI (``bad/<kind>-<city>``)."""
    pki = cluster.pki

    def tls(city: str, bad: str) -> dict:
        if not bad:
            return {}
        return {"cert": pki / "bad" / f"{bad}-{city}.pem", "key": pki / "bad" / f"{bad}-{city}.key"}

    h = cluster.uopd("helsinki", peers=[cluster.peer("tallinn")], embedded_topics={TOPIC: 3},
                     policies=SHARE_NOISE, **tls("helsinki", owner_cert))
    cluster.simulate(h.kafka, TOPIC, 300)
    t = cluster.uopd("tallinn", peers=[cluster.peer("helsinki", h.federation)],
                     embedded_topics={}, **tls("tallinn", receiver_cert))
    return h, t


def _assert_nothing_crossed(h, t) -> None:
    # The receiver tried more than once (backoff), so the refusal is not a passing state.
    wait_until(lambda: len(t.events("link_down", peer="helsinki")) >= 3, 20,
               "tallinn to retry the refused link", procs=[h, t])
    tm, hm = t.metrics(), h.metrics()
    assert tm.value("uop_link_up", peer="helsinki") == 0
    assert not tm.has("uop_import_records_total"), "tallinn started importing"
    assert not hm.has("uop_export_records_total"), "helsinki exported records"
    assert not hm.has("uop_export_streams"), "helsinki opened an export stream"
    assert not t.events("link_up") and not t.events("import_stream_started")
    assert not h.events("export_stream_started")


@pytest.mark.parametrize("bad", ["other-ca", "wrong-san", "expired"])
def test_owner_refuses_receiver_with_bad_certificate(cluster: Cluster, bad: str):
    h, t = _owner_and_receiver(cluster, receiver_cert=bad)
    refused = wait_until(lambda: h.events("tls_peer_refused", side="server"), 20,
                         f"helsinki to refuse tallinn's {bad} certificate", procs=[h, t])
    assert REASON_SERVER[bad] in refused[0]["reason"], refused[0]
    assert refused[0]["expected_peer"] == "any"
    _assert_nothing_crossed(h, t)


@pytest.mark.parametrize("bad", ["other-ca", "wrong-san", "expired"])
def test_receiver_refuses_owner_with_bad_certificate(cluster: Cluster, bad: str):
    h, t = _owner_and_receiver(cluster, owner_cert=bad)
    refused = wait_until(lambda: t.events("tls_peer_refused", side="client"), 20,
                         f"tallinn to refuse helsinki's {bad} certificate", procs=[h, t])
    assert REASON_CLIENT[bad] in refused[0]["reason"], refused[0]
    assert refused[0]["expected_peer"] == "helsinki"
    assert not h.events("tls_peer_refused"), "helsinki refused tallinn's good certificate"
    _assert_nothing_crossed(h, t)


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def _read_until_closed(sock, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (EOF, reset or TLS alert)."""
    sock.settimeout(scaled(timeout))
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError, ssl.SSLEOFError):
            return data
        except TimeoutError:
            raise AssertionError(f"server kept the connection open; received {data!r}") from None
        if not chunk:
            return data
        data += chunk


@pytest.mark.parametrize("client", ["tls-without-certificate", "plaintext-http2"])
def test_federation_port_refuses_clients_without_certificate(cluster: Cluster, client: str):
    h = cluster.uopd("helsinki", peers=[cluster.peer("tallinn")], embedded_topics={TOPIC: 3},
                     policies=SHARE_NOISE)
    cluster.simulate(h.kafka, TOPIC, 100)
    raw = socket.create_connection(("127.0.0.1", h.federation_port), timeout=scaled(10))
    with raw:
        if client == "plaintext-http2":
            raw.sendall(H2_PREFACE)
            data = _read_until_closed(raw, 10)
            # At most a TLS alert record (content type 21); never an HTTP/2 frame.
            assert data == b"" or data[0] == 0x15, f"plaintext client got {data[:64]!r}"
        else:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.load_verify_locations(cluster.pki / "helsinki" / "ca.pem")
            ctx.set_alpn_protocols(["h2"])
            handshake_error = None
            try:
                tls = ctx.wrap_socket(raw, server_hostname="uopd.helsinki.example")
            except (ssl.SSLError, ConnectionResetError) as e:
                handshake_error = e  # refused during the handshake: fine
            if handshake_error is None:
                # TLS 1.3: the client finishes first; the server's refusal comes as an alert.
                with tls:
                    try:
                        tls.sendall(H2_PREFACE)
                    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
                        pass
                    data = _read_until_closed(tls, 10)
                assert data == b"", f"client without certificate got application data {data!r}"
    assert h.alive
    assert not h.metrics().has("uop_export_streams")
    assert not h.events("export_stream_started") and not h.events("offers_refused")


# ------------------------------------------------------------------ f. policy: share nothing else

TRAFFIC = "traffic.counts"


def test_unshared_dataset_is_not_offered_nor_mirrored(cluster: Cluster):
    f = Federation(cluster, owner_topics={TOPIC: 3, TRAFFIC: 2}, policies={
        "noise.yaml": f"dataset: {TOPIC}\nshares:\n  - peer: tallinn\n",
        "traffic.yaml": f"dataset: {TRAFFIC}\n",  # defined, shared with nobody
    })
    cluster.simulate(f.hk.bootstrap, TRAFFIC, 300, seed=3)
    f.wait_streaming()
    cluster.simulate(f.hk.bootstrap, TOPIC, 500, seed=5)
    assert_exactly_once(f.compare(), 500)

    m = f.tallinn.metrics()
    assert m.value("uop_link_offers", peer="helsinki") == 1
    assert not m.has("uop_import_stream_up", topic=TRAFFIC)
    assert not f.helsinki.events("export_stream_started", topic=TRAFFIC)
    traffic = cluster.compare(f.hk.bootstrap, TRAFFIC, f.tk.bootstrap)
    assert (traffic["source"], traffic["target"], traffic["lost"]) == (300, 0, 300), traffic


def test_revoked_share_is_refused_on_resubscribe(cluster: Cluster):
    both = {
        "noise.yaml": f"dataset: {TOPIC}\nshares:\n  - peer: tallinn\n",
        "traffic.yaml": f"dataset: {TRAFFIC}\nshares:\n  - peer: tallinn\n",
    }
    f = Federation(cluster, owner_topics={TOPIC: 3, TRAFFIC: 2}, policies=both)
    f.wait_streaming(TOPIC)
    f.wait_streaming(TRAFFIC)
    cluster.simulate(f.hk.bootstrap, TRAFFIC, 200, seed=3)
    assert_exactly_once(f.compare(TRAFFIC), 200)

    # Revoke traffic.counts while helsinki is down: tallinn's next subscription to it is refused,
    # and tallinn stops asking (the dataset is no longer in the offers).
    f.helsinki.terminate()
    f.helsinki.write_policies({"noise.yaml": both["noise.yaml"],
                               "traffic.yaml": f"dataset: {TRAFFIC}\n"})
    f.restart_owner()
    cluster.simulate(f.hk.bootstrap, TRAFFIC, 200, seed=4)
    cluster.simulate(f.hk.bootstrap, TOPIC, 300, seed=5)
    denied = wait_until(lambda: f.helsinki.events("subscribe_denied", peer="tallinn",
                                                  topic=TRAFFIC), 20,
                        "helsinki to deny tallinn's subscription to the revoked dataset",
                        procs=[f.helsinki, f.tallinn])
    assert denied
    wait_until(lambda: f.helsinki.metric("uop_export_refused_total", peer="tallinn",
                                         topic=TRAFFIC) >= 1, 10, "uop_export_refused_total")
    wait_until(lambda: any(f"dataset '{TRAFFIC}' is not shared with peer 'tallinn'"
                           in e["reason"] for e in
                           f.tallinn.events("import_share_withdrawn", topic=TRAFFIC)), 20,
               "tallinn to log the refusal and stop asking")
    assert_exactly_once(f.compare(TOPIC), 300)
    traffic = cluster.compare(f.hk.bootstrap, TRAFFIC, f.tk.bootstrap)
    assert (traffic["source"], traffic["target"], traffic["lost"], traffic["duplicated"]) == \
        (400, 200, 200, 0), traffic


# ----------------------------------------------------------------------------- g. bad config

def _uopd_check(config: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN_DIR / "uopd"), "--config", str(config), *extra],
                          capture_output=True, text=True, timeout=scaled(30),
                          stdin=subprocess.DEVNULL)


def _position(text: str, needle: str) -> tuple[int, int]:
    """1-based line and column of the first ``needle`` in ``text``."""
    for n, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return n, line.index(needle) + 1
    raise AssertionError(f"{needle!r} not in {text!r}")


@pytest.mark.parametrize("edit,needle,key,message", [
    (("admin:", "admn:"), "admn:", "admn", "unknown key; expected one of: admin, audit, instance, kafka, link"),
    (("heartbeat_interval_ms", "heartbeat_intervall_ms"), "heartbeat_intervall_ms",
     "link.heartbeat_intervall_ms", "unknown key; expected one of:"),
    (("dead_peer_timeout_ms: 2500", "dead_peer_timeout_ms: soon"), "soon",
     "link.dead_peer_timeout_ms", "expected an integer"),
    (("listen: 127.0.0.1:0", "listen: 127.0.0.1:99999"), "127.0.0.1:99999", "listen",
     "expected host:port, got '127.0.0.1:99999'"),
], ids=["misspelled-top-level-key", "misspelled-link-key", "not-an-integer", "bad-port"])
def test_bad_config_exits_2_with_file_line_column(cluster: Cluster, edit, needle, key, message):
    u = cluster.uopd("helsinki", start=False, peers=[cluster.peer("tallinn")],
                     embedded_topics={TOPIC: 3}, policies=SHARE_NOISE)
    good = u.config_path.read_text()
    assert edit[0] in good
    bad = good.replace(edit[0], edit[1], 1)
    u.config_path.write_text(bad)
    line, col = _position(bad, needle)
    for extra in ((), ("--check",)):
        r = _uopd_check(u.config_path, *extra)
        assert r.returncode == 2, (extra, r.returncode, r.stderr)
        expected = f"uopd: {u.config_path}:{line}:{col}: key '{key}': {message}"
        assert r.stderr.startswith(expected), f"\nexpected: {expected}\ngot:      {r.stderr}"
        assert r.stdout == ""


def test_bad_policy_exits_2_with_file_line_column_and_good_config_checks_ok(cluster: Cluster):
    u = cluster.uopd("helsinki", start=False, peers=[cluster.peer("tallinn")],
                     embedded_topics={TOPIC: 3}, policies=SHARE_NOISE)
    r = _uopd_check(u.config_path, "--check")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"{u.config_path}: ok (policies sha256:"), r.stdout

    policy = u.dir / "policies" / "noise.yaml"
    policy.write_text(f"dataset: {TOPIC}\nshares:\n  - peer: riga\n")
    for extra in ((), ("--check",)):
        r = _uopd_check(u.config_path, *extra)
        assert r.returncode == 2, (extra, r.returncode, r.stderr)
        expected = (f"uopd: {policy}:3:11: key 'shares[0].peer': unknown peer 'riga'; "
                    f"configured peers: tallinn")
        last = r.stderr.splitlines()[-1] if r.stderr else ""
        assert last == expected, f"\nexpected: {expected}\ngot:      {r.stderr}"


# ------------------------------------------------------------------------ h. gRPC health check

_HEALTH_CLIENT = r"""
import sys, grpc
addr, ca, cert, key = sys.argv[1:5]
creds = grpc.ssl_channel_credentials(open(ca, 'rb').read(), open(key, 'rb').read(),
                                     open(cert, 'rb').read())
channel = grpc.secure_channel(addr, creds,
                              options=[('grpc.ssl_target_name_override', 'uopd.helsinki.example')])
check = channel.unary_unary('/grpc.health.v1.Health/Check')  # raw bytes in and out
sys.stdout.write(check(b'', timeout=20).hex())
"""


def _python_with_grpc() -> str | None:
    """An interpreter that can import grpc: this one, else Debian's (python3-grpcio)."""
    for exe in dict.fromkeys([sys.executable, "/usr/bin/python3"]):
        try:
            if subprocess.run([exe, "-c", "import grpc"], capture_output=True,
                              timeout=60).returncode == 0:
                return exe
        except (OSError, subprocess.TimeoutExpired):
            pass
    return None


def test_grpc_health_check_serving_over_mtls(cluster: Cluster):
    python = _python_with_grpc()
    if python is None:
        pytest.skip("gRPC health check needs the grpc Python module: install the Debian "
                    "package python3-grpcio (apt-get install python3-grpcio)")
    h = cluster.uopd("helsinki", peers=[cluster.peer("tallinn")], embedded_topics={TOPIC: 3},
                     policies=SHARE_NOISE)
    pki = cluster.pki
    r = subprocess.run([python, "-c", _HEALTH_CLIENT, h.federation, pki / "helsinki" / "ca.pem",
                        pki / "tallinn" / "node.pem", pki / "tallinn" / "node.key"],
                       capture_output=True, text=True, timeout=scaled(60))
    assert r.returncode == 0, r.stderr
    assert bytes.fromhex(r.stdout) == b"\x08\x01", f"HealthCheckResponse {r.stdout!r}: not SERVING"


# ------------------------------------------------- i. a record Kafka refuses goes to dead-letter

def test_record_too_large_for_receiver_goes_to_deadletter_once(cluster: Cluster):
    f = Federation(cluster)
    # tallinn's Kafka clients refuse records above 100 kB: the mirror cannot hold one of them.
    f.tallinn.terminate()
    f.tallinn.kafka_properties = {"message.max.bytes": "100000"}
    f.tallinn.write_config()
    f.tallinn.restart()
    f.wait_streaming()
    cluster.simulate(f.hk.bootstrap, TOPIC, 100, seed=21)
    big = subprocess.run(
        ["kcat", "-P", "-b", f.hk.bootstrap, "-t", TOPIC, "-p", "1", "-K", ":",
         "-X", "message.max.bytes=2000000"],
        input="big-record:" + "x" * 150_000 + "\n", text=True, capture_output=True, timeout=30)
    assert big.returncode == 0, big.stderr
    cluster.simulate(f.hk.bootstrap, TOPIC, 100, seed=22)

    c = f.compare()
    assert c["ok"] and (c["lost"], c["duplicated"], c["deadlettered"]) == (0, 0, 1), c
    assert (c["expected"], c["target"]) == (201, 200), c
    imp = {"peer": "helsinki", "topic": TOPIC}
    wait_until(lambda: f.tallinn.metric("uop_import_deadletter_total", **imp) == 1, 20,
               "the dead-letter counter to show the refused record")
    dead = subprocess.run(
        ["kcat", "-C", "-b", f.tk.bootstrap, "-t", f"{MIRROR}.deadletter", "-e", "-q",
         "-f", "%p %k %h\n"], capture_output=True, text=True, timeout=30)
    lines = [l for l in dead.stdout.splitlines() if l.strip()]
    assert len(lines) == 1, dead.stdout
    assert lines[0].startswith("1 big-record "), lines[0]
    assert "uop.origin=helsinki" in lines[0] and "uop.origin.partition=1" in lines[0]
    assert "uop.deadletter.reason=kafka refused the record: Broker: Message size too large" \
        in lines[0], lines[0]
    assert f.tallinn.events("import_deadletter", partition="1")

    # A restart recovers from the mirror AND the dead-letter topic: nothing is written twice.
    f.tallinn.kill9()
    f.tallinn.restart()
    f.wait_streaming()
    cluster.simulate(f.hk.bootstrap, TOPIC, 50, seed=23)
    c = f.compare()
    assert c["ok"] and (c["lost"], c["duplicated"], c["deadlettered"]) == (0, 0, 1), c
    assert (c["expected"], c["target"]) == (251, 250), c


# ------------------------------------------------------------- j. no loops: A -> B -> A is cut

def test_records_from_a_peer_are_never_exported_again(cluster: Cluster):
    back = f"tallinn.{MIRROR}"
    hk = cluster.dev_kafka("helsinki-kafka", {TOPIC: 3, back: 3, f"{back}.deadletter": 3})
    tk = cluster.dev_kafka("tallinn-kafka", {MIRROR: 3, f"{MIRROR}.deadletter": 3})
    to_helsinki = cluster.proxy(9)  # retargeted once helsinki listens
    # tallinn (mis)configures a share of its mirror of helsinki's data back to helsinki.
    tallinn = cluster.uopd("tallinn", peers=[cluster.peer("helsinki", to_helsinki.address)],
                           kafka_bootstrap=tk.bootstrap,
                           policies={"back.yaml": f"dataset: {MIRROR}\nshares:\n  - peer: helsinki\n"})
    helsinki = cluster.uopd("helsinki", peers=[cluster.peer("tallinn", tallinn.federation)],
                            kafka_bootstrap=hk.bootstrap,
                            policies={"noise.yaml": f"dataset: {TOPIC}\nshares:\n  - peer: tallinn\n"})
    to_helsinki.set_target("127.0.0.1", helsinki.federation_port)

    cluster.simulate(hk.bootstrap, TOPIC, 500, seed=31)
    assert_exactly_once(cluster.compare(hk.bootstrap, TOPIC, tk.bootstrap, wait=60), 500)
    # helsinki subscribes to what tallinn offers, but every record carries uop.origin: skipped.
    labels = {"peer": "tallinn", "topic": MIRROR}
    wait_until(lambda: helsinki.metric("uop_import_stream_up", **labels) == 3, 60,
               "helsinki's streams of tallinn's share", procs=[helsinki, tallinn])
    wait_until(lambda: tallinn.metric("uop_export_loop_skipped_total", peer="helsinki",
                                      topic=MIRROR) == 500, 30,
               "tallinn to skip all 500 records that came from helsinki")
    assert tallinn.metric("uop_export_records_total", peer="helsinki", topic=MIRROR) == 0
    assert helsinki.metric("uop_import_records_total", **labels) == 0
    returned = cluster.compare(tk.bootstrap, MIRROR, hk.bootstrap, origin="tallinn")
    assert (returned["source"], returned["loop_skipped"], returned["target"]) == (500, 500, 0), \
        returned
