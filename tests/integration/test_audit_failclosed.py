"""Fail closed (issue 8): the audit log of one node becomes unwritable in the middle of an
audited exchange, and writable again.

helsinki owns ``noise.observations`` (3 partitions) and shares it with tallinn, both audited and
holding each other's audit keys, as in test_audit_exchange.py. While records flow, the audit
directory of one side (the receiver, then the owner) is made unwritable. Then: that node reports
it (``uop_audit_writable`` 0, ``/readyz`` 503 naming the directory, ``audit_log_unwritable`` in
its log), the exchange stops (the owner's acknowledged count stands still while the origin grows,
tallinn's attempts to subscribe are refused or fail), and once the directory is back the node
resumes by itself, without a restart, and every record arrives exactly once. Finally both logs
verify and name the same batches: nothing acknowledged is missing from either log.

How the directory is made unwritable: the tests run as root (in CI too, in a container without
extra privileges), and root ignores permission bits, so ``chmod a-w`` would stop nothing; a full
disk or a read-only mount needs privileges a container lacks. Instead the directory is renamed
away and a regular file put at its path. For the node this is what a lost disk looks like: the
segment it appends to is no longer at its path (the log checks this after every fsync, and at
its 500 ms tick when idle) and nothing can be created or reopened under the path
(``ENOTDIR``), so every probe fails until the directory is renamed back; then the next probe
cuts the segment back to its last durable byte, reopens it and writes a checkpoint, and the node
exchanges again. This works for any user, needs no privileges and has no timing of its own.

Run: ``cd tests/integration && python3 -m pytest -q test_audit_failclosed.py`` (after building).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from uoptest.audited import TOPIC, AuditedPair, assert_exactly_once, batch_key, query
from uoptest.cluster import Cluster, Uopd, wait_until

TOTAL = 6000
RATE = 1500


def break_dir(d: Path) -> Path:
    away = d.with_name(d.name + ".away")
    d.rename(away)
    d.write_text("not a directory: the audit log cannot write here\n")
    return away


def restore_dir(d: Path, away: Path) -> None:
    d.unlink()
    away.rename(d)


@pytest.mark.parametrize("side", ["receiver", "owner"])
def test_unwritable_audit_dir_stops_exchange_and_it_resumes_by_itself(cluster: Cluster,
                                                                       side: str):
    pair = AuditedPair(cluster)
    pair.wait_streaming()
    node = pair.tallinn if side == "receiver" else pair.helsinki
    audit_dir = pair.taudit if side == "receiver" else pair.haudit
    sim = cluster.simulate_in_background(pair.hk.bootstrap, TOPIC, TOTAL, RATE, seed=21)
    wait_until(lambda: pair.acked() >= 1000, 30, "helsinki to count 1000 records acknowledged",
               procs=pair.procs + [sim])
    mark, tmark = node.log_mark(), pair.tallinn.log_mark()
    away = break_dir(audit_dir)

    # The node says so, in metrics, on /readyz and in its log, with the reason.
    wait_until(lambda: node.metric("uop_audit_writable") == 0, 10,
               f"{node.name}: uop_audit_writable 0", procs=pair.procs)
    status, body = node.http_get("/readyz")
    assert status == 503, body
    assert body.startswith("not ready: audit log cannot write, exchange must stop: "), body
    assert str(audit_dir) in body, body
    assert node.metric("uop_audit_unwritable_total") == 1
    [event] = node.events("audit_log_unwritable", since=mark, level="error")
    assert str(audit_dir) in event["reason"], event

    # The exchange stops: nothing more is acknowledged while the origin keeps growing. Once the
    # acknowledged count is stable, wait for three more refused subscription attempts of tallinn
    # (time passing, measured by the system itself) and check that nothing moved meanwhile.
    Cluster.finish_simulate(sim, TOTAL)
    acked_at_break = pair.acked()
    retries = lambda: tallinn_retries(pair.tallinn, tmark)
    seen = retries()
    wait_until(lambda: retries() >= seen + 3, 30,
               "three more refused subscription attempts of tallinn", procs=pair.procs)
    assert pair.acked() == acked_at_break
    held = cluster.compare(pair.hk.bootstrap, TOPIC, pair.tk.bootstrap)
    assert held["duplicated"] == 0 and held["mismatched"] == 0, held
    assert held["target"] < TOTAL, f"records kept flowing with {side}'s log unwritable: {held}"
    if side == "receiver":
        # Its log refused the batches before their transaction committed: none was committed.
        assert held["target"] == acked_at_break, (
            f"tallinn's Kafka holds {held['target']} records, {acked_at_break} acknowledged")
    else:
        # tallinn committed (and logged) more than helsinki could log receipts for: those
        # receipts wait in helsinki's memory for its log, and are counted only once logged.
        assert held["target"] >= acked_at_break, held
    reasons = {e["reason"] for e in pair.tallinn.events("import_subscription_retry", since=tmark)}
    assert any("audit log cannot write" in r for r in reasons), reasons
    assert node.metric("uop_audit_writable") == 0

    # Writable again: the node resumes by itself and every record arrives exactly once.
    restore_dir(audit_dir, away)
    wait_until(lambda: node.metric("uop_audit_writable") == 1, 15,
               f"{node.name}: uop_audit_writable back to 1", procs=pair.procs)
    assert node.http_get("/readyz")[0] == 200
    assert node.events("audit_log_writable", since=mark)
    assert_exactly_once(cluster.compare(pair.hk.bootstrap, TOPIC, pair.tk.bootstrap, wait=30),
                        TOTAL)
    wait_until(lambda: pair.acked() == TOTAL, 20, f"helsinki's acked count to reach {TOTAL}",
               procs=pair.procs)
    pair.tallinn.terminate()
    pair.helsinki.terminate()

    # Both logs verify, and every record is in both logs once, with a receipt per batch.
    for audit_dir_, peer_key in ((pair.haudit, pair.tkey), (pair.taudit, pair.hkey)):
        r = cluster.uopctl("audit", "verify", audit_dir_, "--peer-key", peer_key / "audit.vkey")
        assert r.returncode == 0, r.stdout + r.stderr
    received = query(cluster, pair.taudit, "batch_received")
    receipts = query(cluster, pair.haudit, "receipt")
    assert sum(e["record_count"] for e in received) == TOTAL
    assert sum(e["record_count"] for e in receipts) == TOTAL
    assert sorted(map(batch_key, receipts)) == sorted(map(batch_key, received))
    sent = {batch_key(e) for e in query(cluster, pair.haudit, "batch_sent")}
    assert set(map(batch_key, receipts)) <= sent


def tallinn_retries(tallinn: Uopd, mark: int) -> int:
    return len(tallinn.events("import_subscription_retry", since=mark))
