"""Two audited nodes for the audit integration tests: helsinki owns ``noise.observations``
(3 partitions) and shares it with tallinn; both keep an audit log and hold each other's audit key;
each city has its own dev-kafka process; tallinn dials helsinki through a TcpProxy, so that
helsinki may restart on a new port. Checkpoints (and so witnessing rounds) every
``CHECKPOINT_MS``."""

from __future__ import annotations

import json
from pathlib import Path

from uoptest.cluster import Cluster, Federation, Peer, Uopd, wait_until

TOPIC = Federation.TOPIC
MIRROR = Federation.MIRROR
CHECKPOINT_MS = 300


def keygen(cluster: Cluster, name: str) -> Path:
    out = cluster.dir / f"{name}-audit-key"
    r = cluster.uopctl("audit", "keygen", "--name", name, "--out", out)
    assert r.returncode == 0, r.stderr
    return out


def query(cluster: Cluster, audit_dir: Path, entry_type: str) -> list[dict]:
    r = cluster.uopctl("audit", "query", audit_dir, "--type", entry_type, "--json")
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def batch_key(e: dict) -> tuple:
    return (e["topic"], e["partition"], e["first_offset"], e["last_offset"], e["record_count"],
            e["batch_sha256"])


def assert_exactly_once(c: dict, expected: int) -> None:
    assert c["ok"], f"mirror differs from origin: {c}"
    assert (c["source"], c["expected"], c["target"]) == (expected, expected, expected), c
    assert (c["lost"], c["duplicated"], c["out_of_order"], c["mismatched"]) == (0, 0, 0, 0), c


class AuditedPair:
    """helsinki -> tallinn, both audited, each with its own dev-kafka."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.hkey, self.tkey = keygen(cluster, "helsinki"), keygen(cluster, "tallinn")
        self.haudit, self.taudit = cluster.dir / "helsinki-audit", cluster.dir / "tallinn-audit"
        self.hk = cluster.dev_kafka("helsinki-kafka", {TOPIC: 3})
        self.tk = cluster.dev_kafka("tallinn-kafka", {MIRROR: 3, f"{MIRROR}.deadletter": 3})
        tallinn_peer = cluster.peer("tallinn")
        tallinn_peer.audit_key = self.tkey / "audit.vkey"
        self.helsinki: Uopd = cluster.uopd(
            "helsinki", peers=[tallinn_peer], kafka_bootstrap=self.hk.bootstrap,
            policies={"noise.yaml": f"dataset: {TOPIC}\nshares:\n  - peer: tallinn\n"},
            audit={"dir": str(self.haudit), "key": str(self.hkey / "audit.key"),
                   "checkpoint_interval_ms": CHECKPOINT_MS})
        self.proxy = cluster.proxy(self.helsinki.federation_port)
        helsinki_peer: Peer = cluster.peer("helsinki", self.proxy.address)
        helsinki_peer.audit_key = self.hkey / "audit.vkey"
        self.tallinn: Uopd = cluster.uopd(
            "tallinn", peers=[helsinki_peer], kafka_bootstrap=self.tk.bootstrap,
            audit={"dir": str(self.taudit), "key": str(self.tkey / "audit.key"),
                   "checkpoint_interval_ms": CHECKPOINT_MS})
        self.procs = [self.helsinki, self.tallinn]

    def restart_owner(self) -> None:
        self.helsinki.restart()
        self.proxy.set_target("127.0.0.1", self.helsinki.federation_port)

    def acked(self) -> float:
        return self.helsinki.metric("uop_export_acked_records_total", peer="tallinn", topic=TOPIC)

    def imported(self) -> float:
        return self.tallinn.metric("uop_import_records_total", peer="helsinki", topic=TOPIC)

    def wait_streaming(self) -> None:
        wait_until(lambda: self.tallinn.metric("uop_import_stream_up", peer="helsinki",
                                               topic=TOPIC) == 3, 60,
                   "tallinn's 3 import streams of helsinki", procs=self.procs)

    def wait_witnessed(self) -> None:
        """Until every entry each node has logged (other than the exchange of checkpoints
        itself) is covered by a checkpoint the other cosigned."""
        for node, peer in ((self.helsinki, "tallinn"), (self.tallinn, "helsinki")):
            wait_until(lambda: node.metric("uop_audit_cosigned_entries", peer=peer) > 0
                       and node.metric("uop_audit_unwitnessed_entries", peer=peer) == 0, 20,
                       f"{peer} to cosign all of {node.name}'s log", procs=self.procs)

    def export(self, name: str) -> Path:
        """Bundle of a stopped node's log, checked with both keys."""
        audit_dir, key, peer_key = ((self.haudit, self.hkey, self.tkey) if name == "helsinki"
                                    else (self.taudit, self.tkey, self.hkey))
        out = self.cluster.dir / f"{name}.bundle"
        r = self.cluster.uopctl("audit", "export", audit_dir, "--key", key / "audit.vkey",
                                "--peer-key", peer_key / "audit.vkey", "--out", out)
        assert r.returncode == 0, r.stdout + r.stderr
        return out

    def reconcile_bundles(self) -> tuple[int, list[str]]:
        """``uopctl audit reconcile`` of the two exported bundles: exit status and output."""
        r = self.cluster.uopctl("audit", "reconcile", self.export("helsinki"),
                                self.export("tallinn"), "--key", self.hkey / "audit.vkey",
                                "--peer-key", self.tkey / "audit.vkey")
        assert r.returncode in (0, 1), r.stdout + r.stderr
        return r.returncode, r.stdout.splitlines()
