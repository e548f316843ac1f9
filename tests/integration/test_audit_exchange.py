"""The audit log wired into the exchange (issue 8), end to end with real processes.

helsinki owns ``noise.observations`` and shares it with tallinn, as in test_mirroring.py, but
both nodes keep an audit log (``audit:`` section, keys from ``uopctl audit keygen``) and each
has the other's verifier key configured (``peers[].audit_key``); uoptest/audited.py sets them up.
After the records mirrored: each node's audit directory passes ``uopctl audit verify``; tallinn's
log holds a batch_received entry for every batch; helsinki's log a batch_sent entry and a
verified receipt for every batch; the two nodes cosigned each other's checkpoints over the
``Witness`` call, so ``uopctl audit reconcile`` of the two exported bundles finds every batch
agreeing and witnessed. A log that is started again from nothing (a rewrite signed with the real
key) is refused by the peer's witness, loudly, and reconcile shows it against the peer's copy.

Run: ``cd tests/integration && python3 -m pytest -q test_audit_exchange.py`` (after building).
"""

from __future__ import annotations

import shutil

from uoptest.audited import TOPIC, AuditedPair, batch_key, query
from uoptest.cluster import Cluster, wait_until

RECORDS = 3000


def exchange(cluster: Cluster, pair: AuditedPair) -> None:
    pair.wait_streaming()
    cluster.simulate(pair.hk.bootstrap, TOPIC, RECORDS, seed=5)
    c = cluster.compare(pair.hk.bootstrap, TOPIC, pair.tk.bootstrap, wait=60)
    assert c["ok"] and c["target"] == RECORDS, c
    # The owner counts a batch as acknowledged only once its receipt verified and is logged.
    wait_until(lambda: pair.acked() == RECORDS, 20,
               f"helsinki's acked export count to reach {RECORDS}", procs=pair.procs)


def test_both_logs_verify_with_received_batches_verified_receipts_and_cosignatures(
        cluster: Cluster):
    pair = AuditedPair(cluster)
    exchange(cluster, pair)
    pair.wait_witnessed()
    for node, peer in ((pair.helsinki, "tallinn"), (pair.tallinn, "helsinki")):
        assert node.metric("uop_audit_writable") == 1
        assert node.metric("uop_audit_witness_ok", peer=peer) == 1
        assert node.metric("uop_audit_witness_refusals_total", peer=peer) == 0
    pair.tallinn.terminate()
    pair.helsinki.terminate()  # both sign a final checkpoint

    for audit_dir, peer_key in ((pair.haudit, pair.tkey), (pair.taudit, pair.hkey)):
        r = cluster.uopctl("audit", "verify", audit_dir, "--peer-key", peer_key / "audit.vkey")
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.splitlines()[-1].startswith(f"OK {audit_dir}: "), r.stdout

    received = query(cluster, pair.taudit, "batch_received")
    sent = query(cluster, pair.haudit, "batch_sent")
    receipts = query(cluster, pair.haudit, "receipt")
    assert received and {e["peer"] for e in received} == {"helsinki"}
    assert sum(e["record_count"] for e in received) == RECORDS
    assert {e["peer"] for e in sent} == {e["peer"] for e in receipts} == {"tallinn"}
    assert sum(e["record_count"] for e in sent) == RECORDS
    # One verified receipt per batch, naming exactly the batch that was sent and received.
    assert (sorted(map(batch_key, receipts)) == sorted(map(batch_key, sent))
            == sorted(map(batch_key, received)))
    last = cluster.uopctl("audit", "verify", pair.haudit, "--peer-key", pair.tkey / "audit.vkey")
    assert f"{len(receipts)} receipts" in last.stdout, last.stdout
    # Each holds the other's cosignature of its log and its own cosigned copy of the other's.
    for audit_dir, peer in ((pair.haudit, "tallinn"), (pair.taudit, "helsinki")):
        assert {e["peer"] for e in query(cluster, audit_dir, "cosignature")} == {peer}
        assert {e["peer"] for e in query(cluster, audit_dir, "peer_checkpoint")} == {peer}
        assert query(cluster, audit_dir, "witness_refused") == []

    rc, lines = pair.reconcile_bundles()
    assert rc == 0, "\n".join(lines)
    assert lines[-1] == f"{len(sent)} batches: {len(sent)} agree, 0 disagree; 0 log problems", lines
    assert not any("unwitnessed" in line for line in lines), "\n".join(lines)


def test_log_started_again_from_nothing_is_refused_by_the_peers_witness(cluster: Cluster):
    pair = AuditedPair(cluster)
    exchange(cluster, pair)
    pair.wait_witnessed()
    witnessed = pair.tallinn.metric("uop_audit_witnessed_entries", peer="helsinki")
    assert witnessed > 0
    # Helsinki's operator replaces its log with a new one, signed with helsinki's real key.
    pair.helsinki.terminate()
    shutil.move(pair.haudit, pair.cluster.dir / "helsinki-audit.before")
    pair.restart_owner()
    wait_until(lambda: pair.tallinn.metric("uop_audit_witness_refusals_total", peer="helsinki",
                                           by="us") >= 1, 30,
               "tallinn to refuse helsinki's new log", procs=pair.procs)
    wait_until(lambda: pair.helsinki.metric("uop_audit_witness_refusals_total", peer="tallinn",
                                            by="peer") >= 1, 30,
               "helsinki to hear that tallinn refused its checkpoint", procs=pair.procs)
    assert pair.tallinn.metric("uop_audit_witness_ok", peer="helsinki") == 0
    # Tallinn's copy is unchanged and the link still exchanges data.
    assert pair.tallinn.metric("uop_audit_witnessed_entries", peer="helsinki") == witnessed
    pair.wait_streaming()
    assert "audit_witness_refused" in pair.tallinn.tail()
    pair.tallinn.terminate()
    pair.helsinki.terminate()

    refused = query(cluster, pair.taudit, "witness_refused")
    assert refused and {e["peer"] for e in refused} == {"helsinki"}
    assert any(f"helsinki's log shrank from {int(witnessed)} to " in e["reason"]
               or "does not extend the one of" in e["reason"] for e in refused), refused
    assert query(cluster, pair.haudit, "witness_refused"), "helsinki logged no refusal"
    rc, lines = pair.reconcile_bundles()
    assert rc == 1
    assert any(line.startswith("LOG: ") and ("log truncated: tallinn cosigned" in line
                                             or "log rewritten: " in line) for line in lines), \
        "\n".join(lines)
