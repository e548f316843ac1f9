"""The audit log wired into the exchange (issue 8), end to end with real processes.

helsinki owns ``noise.observations`` and shares it with tallinn, as in test_mirroring.py, but
both nodes keep an audit log (``audit:`` section, keys from ``uopctl audit keygen``) and each
has the other's verifier key configured (``peers[].audit_key``). After the records mirrored:
each node's audit directory passes ``uopctl audit verify``; tallinn's log holds a
batch_received entry for every batch; helsinki's log a batch_sent entry and a verified
receipt for every batch.

Run: ``cd tests/integration && python3 -m pytest -q test_audit_exchange.py`` (after building).
"""

from __future__ import annotations

import json
from pathlib import Path

from uoptest.cluster import Cluster, Federation, Peer, wait_until

TOPIC = Federation.TOPIC
MIRROR = Federation.MIRROR
RECORDS = 3000


def keygen(cluster: Cluster, name: str) -> Path:
    out = cluster.dir / f"{name}-audit-key"
    r = cluster.uopctl("audit", "keygen", "--name", name, "--out", out)
    assert r.returncode == 0, r.stderr
    return out


def query(cluster: Cluster, audit_dir: Path, entry_type: str) -> list[dict]:
    r = cluster.uopctl("audit", "query", audit_dir, "--type", entry_type, "--json")
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def test_both_logs_verify_with_received_batches_and_verified_receipts(cluster: Cluster):
    hkey, tkey = keygen(cluster, "helsinki"), keygen(cluster, "tallinn")
    haudit, taudit = cluster.dir / "helsinki-audit", cluster.dir / "tallinn-audit"
    hk = cluster.dev_kafka("helsinki-kafka", {TOPIC: 3})
    tk = cluster.dev_kafka("tallinn-kafka", {MIRROR: 3, f"{MIRROR}.deadletter": 3})

    tallinn_peer = cluster.peer("tallinn")
    tallinn_peer.audit_key = tkey / "audit.vkey"
    helsinki = cluster.uopd(
        "helsinki", peers=[tallinn_peer], kafka_bootstrap=hk.bootstrap,
        policies={"noise.yaml": f"dataset: {TOPIC}\nshares:\n  - peer: tallinn\n"},
        audit={"dir": str(haudit), "key": str(hkey / "audit.key")})
    helsinki_peer: Peer = cluster.peer("helsinki", helsinki.federation)
    helsinki_peer.audit_key = hkey / "audit.vkey"
    tallinn = cluster.uopd("tallinn", peers=[helsinki_peer], kafka_bootstrap=tk.bootstrap,
                           audit={"dir": str(taudit), "key": str(tkey / "audit.key")})

    labels = {"peer": "helsinki", "topic": TOPIC}
    wait_until(lambda: tallinn.metric("uop_import_stream_up", **labels) == 3, 60,
               "tallinn's 3 import streams of helsinki", procs=[helsinki, tallinn])
    cluster.simulate(hk.bootstrap, TOPIC, RECORDS, seed=5)
    c = cluster.compare(hk.bootstrap, TOPIC, tk.bootstrap, wait=60)
    assert c["ok"] and c["target"] == RECORDS, c
    # The owner counts a batch as acknowledged only once its receipt verified and is logged.
    wait_until(lambda: helsinki.metric("uop_export_acked_records_total", peer="tallinn",
                                       topic=TOPIC) == RECORDS, 20,
               f"helsinki's acked export count to reach {RECORDS}", procs=[helsinki, tallinn])
    assert helsinki.metric("uop_audit_writable") == 1
    assert tallinn.metric("uop_audit_writable") == 1
    tallinn.terminate()
    helsinki.terminate()  # both sign a final checkpoint

    for audit_dir, peer_key in ((haudit, tkey), (taudit, hkey)):
        r = cluster.uopctl("audit", "verify", audit_dir, "--peer-key", peer_key / "audit.vkey")
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.splitlines()[-1].startswith(f"OK {audit_dir}: "), r.stdout

    received = query(cluster, taudit, "batch_received")
    sent = query(cluster, haudit, "batch_sent")
    receipts = query(cluster, haudit, "receipt")
    assert received and {e["peer"] for e in received} == {"helsinki"}
    assert sum(e["record_count"] for e in received) == RECORDS
    assert {e["peer"] for e in sent} == {e["peer"] for e in receipts} == {"tallinn"}
    assert sum(e["record_count"] for e in sent) == RECORDS
    # One verified receipt per batch, naming exactly the batch that was sent and received.
    key = lambda e: (e["topic"], e["partition"], e["first_offset"], e["last_offset"],
                     e["record_count"], e["batch_sha256"])
    assert sorted(map(key, receipts)) == sorted(map(key, sent)) == sorted(map(key, received))
    last = cluster.uopctl("audit", "verify", haudit, "--peer-key", tkey / "audit.vkey")
    assert f"{len(receipts)} receipts" in last.stdout, last.stdout
