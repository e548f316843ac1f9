"""kill -9 of either audited node during a heavy exchange (issue 8).

helsinki shares ``noise.observations`` with tallinn, both audited (uoptest/audited.py). While
records flow at full speed, one node is killed with SIGKILL and started again. Then every record
is in tallinn's Kafka exactly once, both logs pass ``uopctl audit verify`` (a torn tail at the
kill is cut back when the log reopens), and ``uopctl audit reconcile`` of the two logs finds
nothing but what a kill explains:

- every batch helsinki counted as acknowledged (it has a ``receipt`` entry: the count moves only
  once that entry is durable) is in both logs with the same range, count and digest, and the
  receipt names tallinn's ``batch_received`` entry of it;
- every record tallinn's Kafka holds is in a ``batch_received`` entry of tallinn's log: the
  receiver makes that entry durable before its Kafka transaction commits, so a kill between the
  two cannot leave a committed batch unlogged;
- every batch tallinn committed has its receipt in helsinki's log, also those whose receipt the
  kill kept from it: tallinn sends the receipts of what it holds again when it subscribes
  (``Subscribe.committed_receipts``) and helsinki logs those it lacks;
- the two nodes cosigned each other's checkpoints after the restart, so no batch is
  ``unwitnessed``, and the bundles both export reconcile with nothing but, possibly, batches sent
  before the kill and sent again after it, cut differently (a ``batch_sent`` the receiver never
  logged, whose records later batches delivered), and batches the receiver logged before a
  commit that the kill prevented (no receipt at the owner; their records are in other, later
  ``batch_received`` entries). Seen once in 3 runs on 2026-12-04.

Run: ``cd tests/integration && python3 -m pytest -q test_audit_kill9.py`` (after building).
"""

from __future__ import annotations

import pytest

from uoptest.audited import TOPIC, AuditedPair, assert_exactly_once, batch_key, query
from uoptest.cluster import Cluster, wait_until

TOTAL = 10000  # the mock cluster keeps about 5 MiB per partition: no more
RATE = 4000


def reconcile(cluster: Cluster, pair: AuditedPair) -> list[str]:
    r = cluster.uopctl("audit", "reconcile", pair.haudit, pair.taudit,
                       "--key", pair.hkey / "audit.vkey", "--peer-key", pair.tkey / "audit.vkey")
    lines = r.stdout.splitlines()
    assert lines and lines[-1].endswith(" 0 log problems"), r.stdout + r.stderr
    assert not any(line.startswith("LOG: ") for line in lines), r.stdout
    return [line for line in lines[2:-1]]  # the rows with problems


@pytest.mark.parametrize("victim", ["receiver", "owner"])
def test_kill9_during_audited_exchange_logs_agree(cluster: Cluster, victim: str):
    pair = AuditedPair(cluster)
    pair.wait_streaming()
    sim = cluster.simulate_in_background(pair.hk.bootstrap, TOPIC, TOTAL, RATE, seed=31)
    wait_until(lambda: pair.acked() >= 3000, 30, "helsinki to count 3000 records acknowledged",
               procs=pair.procs + [sim])
    node = pair.tallinn if victim == "receiver" else pair.helsinki
    node.kill9()
    assert sim.alive, "simulate finished before the kill: nothing was in flight"
    if victim == "receiver":
        pair.tallinn.restart()
    else:
        pair.restart_owner()
    Cluster.finish_simulate(sim, TOTAL)
    assert_exactly_once(cluster.compare(pair.hk.bootstrap, TOPIC, pair.tk.bootstrap, wait=60),
                        TOTAL)
    # Everything after the restart is acknowledged and logged before the nodes stop.
    wait_until(lambda: pair.tallinn.metric("uop_import_lag_records", peer="helsinki",
                                           topic=TOPIC) == 0, 20, "tallinn's lag to reach 0",
               procs=pair.procs)
    pair.wait_witnessed()
    pair.tallinn.terminate()
    pair.helsinki.terminate()

    for audit_dir, peer_key in ((pair.haudit, pair.tkey), (pair.taudit, pair.hkey)):
        r = cluster.uopctl("audit", "verify", audit_dir, "--peer-key", peer_key / "audit.vkey")
        assert r.returncode == 0, r.stdout + r.stderr

    received = query(cluster, pair.taudit, "batch_received")
    receipts = query(cluster, pair.haudit, "receipt")
    sent = query(cluster, pair.haudit, "batch_sent")
    # Everything helsinki counted as acknowledged is in both logs, the same batch on both sides.
    sent_keys = set(map(batch_key, sent))
    received_keys = set(map(batch_key, received))
    for rc in receipts:
        assert batch_key(rc) in sent_keys, rc
        assert batch_key(rc) in received_keys, rc
    # Every record in tallinn's Kafka is covered by a batch_received entry (a batch logged before
    # a commit that the kill prevented is logged again when it is received again).
    covered = {(e["partition"], o) for e in received
               for o in range(e["first_offset"], e["last_offset"] + 1)}
    assert len(covered) >= TOTAL, f"{TOTAL - len(covered)} records in Kafka are not logged"

    covered_by: dict[tuple[int, int], set[int]] = {}  # (partition, offset) -> entry indexes
    for e in received:
        for o in range(e["first_offset"], e["last_offset"] + 1):
            covered_by.setdefault((e["partition"], o), set()).add(e["index"])

    rows = reconcile(cluster, pair)
    unexplained, resent = [], []
    for row in rows:
        cols = row.split(maxsplit=7)
        partition = int(cols[2].rsplit("/", 1)[1])
        first, last = map(int, cols[3].split(".."))
        receipt_entry = cols[5]
        problems = [p.strip() for p in cols[7].split(";")]
        if (problems == ["tallinn has no batch_received entry"] and receipt_entry == "-"
                and all((partition, o) in covered for o in range(first, last + 1))):
            resent.append(row)  # sent before the kill, its records delivered by later batches
        elif (problems == ["helsinki logged no receipt from tallinn"] and receipt_entry == "-"
              and cols[6] != "-"
              and all(covered_by[(partition, o)] - {int(cols[6])}
                      for o in range(first, last + 1))):
            # Logged by tallinn before a commit that the kill prevented: its records were sent
            # again and are in another, later batch_received entry. A batch that did commit is
            # never sent again, so a lost receipt of one still fails here.
            resent.append(row)
        else:
            unexplained.append(row)  # among them: unwitnessed, or logged no receipt
    assert not unexplained, "\n".join(unexplained)
    rc, lines = pair.reconcile_bundles()
    assert [line for line in lines[2:-1] if line not in resent] == [], "\n".join(lines)
    assert rc == (1 if resent else 0), "\n".join(lines)
