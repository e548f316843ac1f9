"""Where a receiver resumes when its own Kafka cannot tell it, on real Apache Kafka.

The receiver finds its position in the last records of each mirror partition (their
``uop.origin.offset`` and ``uop.resume`` headers). A mirror partition emptied by retention or
``kafka-delete-records`` holds no record; so every import transaction also commits the
position as the import group's committed offset and metadata, and ``ImportSubscription::
Recover`` reads it back (logging ``import_position_from_group``) when the tails are empty. An
origin topic written by a transactional producer holds commit markers, which take offsets but
are never delivered: the lag must still reach 0.

Setup (shared by both tests, once): two single-node Kafka 4.3.1 clusters (deploy/kafka/),
helsinki and tallinn, and the demo PKI, as in test_fault_rounds.py (its ``FaultRounds`` config,
``compare`` and ``check`` are reused). helsinki shares two 3-partition topics with tallinn:
``noise.observations`` (fed by ``uopctl simulate``) and ``noise.transactional`` (fed by Kafka's
``ProducerPerformance`` with transactions). One tallinn uopd dials helsinki directly.

Run: ``ctest --test-dir build -R kafka.resume_position --output-on-failure``, or
``cd tests/kafka && python3 -m pytest -q -s -p no:cacheprovider test_resume_position.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

import realkafka
from realkafka import (BIN_DIR, LINK, KafkaWatchdog, UopdNode, fetch_kafka, scaled,
                       wait_until)
from test_fault_rounds import COMPARE_WAIT, LABELS, MIRROR, TOPIC, FaultRounds, log
from uoptest.cluster import Cluster, make_pki

PARTITIONS = 3
DEADLETTER = f"{MIRROR}.deadletter"
TX_TOPIC = "noise.transactional"
TX_LABELS = {"peer": "helsinki", "topic": TX_TOPIC}
FIRST_BATCH = 3000   # records before the mirror partition is emptied
SECOND_BATCH = 1500  # records after
TX_RECORDS = 3000
STREAMS_WAIT = 180.0  # tallinn's group joined and all partition streams up (2 JVMs, 2 cores)
JVM_TOOL_ENV = {"UOP_KAFKA_JAVA_OPTS": "-XX:TieredStopAtLevel=1"}  # short-lived tools start faster

_ORIGIN_OFFSET = re.compile(rb"uop\.origin\.offset=(\d+)")


class ResumeFederation(FaultRounds):
    """helsinki (owner of TOPIC and TX_TOPIC) and one tallinn node (``receivers[0]``) that dials
    helsinki's federation port directly: helsinki never restarts here, so no proxy."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir, seed=0)  # the seed draws faults, and there are none here
        self.tools: Cluster | None = None  # uopctl one-shots (simulate, compare of TX_TOPIC)
        self.failed = False

    @property
    def tallinn(self) -> UopdNode:
        return self.receivers[0]

    def start(self) -> None:
        t0 = time.monotonic()
        log(f"kafka jars: {fetch_kafka()}")
        pki = make_pki(self.dir / "pki")
        self.tools = Cluster(self.dir, pki)
        self.hk.start_async()
        self.tk.start_async()
        self.watchdog = KafkaWatchdog([self.hk, self.tk], self.dir)
        self.hk.wait_started()
        self.tk.wait_started()
        for topic in (TOPIC, TX_TOPIC):
            self.hk.create_topic(topic, PARTITIONS)

        h_dir = self.dir / "helsinki"
        (h_dir / "policies").mkdir(parents=True)
        for name, topic in (("noise.yaml", TOPIC), ("transactional.yaml", TX_TOPIC)):
            # noise.observations keeps 30 days at the peer; tallinn lowers it to 7 (see
            # test_mirror_topics_carry_the_lower_retention).
            retention = "    retention: 30d\n" if topic == TOPIC else ""
            (h_dir / "policies" / name).write_text(
                f"dataset: {topic}\nshares:\n  - peer: tallinn\n{retention}")
        (h_dir / "node.yaml").write_text(self._config(
            "helsinki", pki, peer="tallinn", peer_address=None, bootstrap=self.hk.bootstrap))
        self.helsinki = UopdNode("helsinki", h_dir / "node.yaml", self.dir)
        self.helsinki.start()

        t_dir = self.dir / "tallinn"
        (t_dir / "policies").mkdir(parents=True)
        (t_dir / "policies" / "accept.yaml").write_text(
            "accept:\n" + "".join(f"  - peer: helsinki\n    dataset: {t}\n    max_retention: 7d\n"
                                  for t in (TOPIC, TX_TOPIC)))
        (t_dir / "node.yaml").write_text(self._config(
            "tallinn", pki, peer="helsinki", peer_address=self.helsinki.ready["federation"],
            bootstrap=self.tk.bootstrap))
        self.receivers = [UopdNode("tallinn", t_dir / "node.yaml", self.dir)]
        self.tallinn.start()
        self.wait_streaming("initial assignment")
        log(f"federation up in {time.monotonic() - t0:.1f}s: helsinki Kafka {self.hk.bootstrap}, "
            f"tallinn Kafka {self.tk.bootstrap}")

    # ------------------------------------------------------------------------------ state

    def wait_streaming(self, what: str) -> None:
        """Until tallinn holds all partitions of both datasets, every stream up."""
        def up() -> bool:
            m = self.tallinn.try_metrics()
            return m is not None and all(
                m.value("uop_import_partitions_assigned", **ls) == PARTITIONS
                and m.value("uop_import_stream_up", **ls) == PARTITIONS
                for ls in (LABELS, TX_LABELS))
        wait_until(up, STREAMS_WAIT, f"{what}: tallinn streaming all {PARTITIONS} partitions of "
                   f"{TOPIC} and {TX_TOPIC}", interval=0.25, procs=self.nodes())

    def wait_caught_up(self, labels: dict, records: int, what: str) -> None:
        """Until this tallinn process has written at least ``records`` records of the dataset
        and reports no lag."""
        def done() -> bool:
            m = self.tallinn.try_metrics()
            return m is not None and m.value("uop_import_records_total", **labels) >= records \
                and m.value("uop_import_lag_records", **labels) == 0
        try:
            wait_until(done, COMPARE_WAIT, what, interval=0.25, procs=self.nodes())
        except AssertionError as e:
            m = self.tallinn.try_metrics()
            seen = None if m is None else {
                k: m.value(k, **labels) for k in ("uop_import_records_total",
                                                  "uop_import_lag_records",
                                                  "uop_import_stream_up")}
            raise AssertionError(f"{e}\ntallinn at the deadline: {seen}") from None

    def offsets(self, bootstrap: str, topic: str, which: int) -> list[int]:
        """Per partition: the high watermark (``which`` -1, read_uncommitted: markers count) or
        the log start offset (-2)."""
        out = []
        for p in range(PARTITIONS):
            r = subprocess.run(["kcat", "-b", bootstrap, "-X", "isolation.level=read_uncommitted",
                                "-Q", "-t", f"{topic}:{p}:{which}"], capture_output=True,
                               text=True, timeout=scaled(60), stdin=subprocess.DEVNULL)
            m = re.search(r"offset (-?\d+)", r.stdout)
            assert r.returncode == 0 and m, f"kcat -Q {topic}:{p}:{which}: rc {r.returncode} " \
                                            f"{r.stdout!r} {r.stderr!r}"
            out.append(int(m.group(1)))
        return out

    def origin_offsets(self, topic: str, partition: int) -> list[int]:
        """The ``uop.origin.offset`` of every committed record of a tallinn topic partition, in
        partition order."""
        r = subprocess.run(["kcat", "-C", "-b", self.tk.bootstrap, "-t", topic, "-p",
                            str(partition), "-o", "beginning", "-e", "-q",
                            "-X", "isolation.level=read_committed", "-f", "%h\n"],
                           capture_output=True, timeout=scaled(120), stdin=subprocess.DEVNULL)
        assert r.returncode == 0, f"kcat -C {topic}:{partition}: rc {r.returncode} {r.stderr!r}"
        return [int(x) for x in _ORIGIN_OFFSET.findall(r.stdout)]

    # ------------------------------------------------------------------------------ Kafka tools

    def delete_records(self, topic: str, partition: int) -> str:
        """kafka-delete-records.sh: everything below the high watermark of one tallinn partition.
        Returns the tool's output."""
        spec = self.dir / f"delete-{topic}-{partition}.json"
        spec.write_text(json.dumps({"version": 1, "partitions": [
            {"topic": topic, "partition": partition, "offset": -1}]}))
        return self.kafka_tool("org.apache.kafka.tools.DeleteRecordsCommand",
                               "--bootstrap-server", self.tk.bootstrap,
                               "--offset-json-file", spec, timeout=180)

    @staticmethod
    def kafka_tool(cls: str, *args, timeout: float) -> str:
        r = subprocess.run(["bash", str(realkafka.KAFKA_DIR / "kafka-tool.sh"), cls,
                            *map(str, args)], capture_output=True, text=True,
                           timeout=scaled(timeout), stdin=subprocess.DEVNULL,
                           env=dict(os.environ, **JVM_TOOL_ENV))
        assert r.returncode == 0, f"{cls} failed ({r.returncode})\n--- stdout ---\n" \
                                  f"{r.stdout[-4000:]}\n--- stderr ---\n{r.stderr[-4000:]}"
        return r.stdout


@pytest.fixture(scope="module")
def fed() -> Iterator[ResumeFederation]:
    for binary in ("uopd", "uopctl"):
        if not (BIN_DIR / binary).is_file():
            pytest.fail(f"{BIN_DIR / binary} not found: build first or set UOP_BIN_DIR")
    workdir = Path(tempfile.mkdtemp(prefix="uop-resume-position-"))
    f = ResumeFederation(workdir)
    try:
        with diagnosed(f, "setup"):
            f.start()
        yield f
    finally:
        try:
            f.stop(clean=not f.failed)
        except BaseException:
            f.failed = True
            raise
        finally:
            if f.failed or os.environ.get("UOP_FAULT_KEEP"):
                log(f"logs and Kafka data kept in {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def diagnosed(f: ResumeFederation, what: str) -> Iterator[None]:
    f.current = what
    try:
        yield
    except BaseException:
        f.failed = True
        try:
            log(f.diagnostics())
        except Exception as e:  # diagnostics must not hide the failure
            log(f"(diagnostics failed: {e!r})")
        raise


# ------------------------------------------------------------------------------------ the tests

def test_mirror_partition_emptied_by_delete_records_does_not_restart_from_the_beginning(fed):
    with diagnosed(fed, "delete-records"):
        fed.tools.simulate(fed.hk.bootstrap, TOPIC, FIRST_BATCH, seed=1, city="helsinki")
        fed.expected_total = FIRST_BATCH
        fed.check(fed.compare(COMPARE_WAIT), f"after the first {FIRST_BATCH} records")
        fed.wait_caught_up(LABELS, FIRST_BATCH, f"tallinn caught up with {FIRST_BATCH} records")
        old_ends = fed.offsets(fed.hk.bootstrap, TOPIC, -1)
        assert sum(old_ends) == FIRST_BATCH and all(e > 0 for e in old_ends), \
            f"{FIRST_BATCH} non-transactional records over every origin partition: {old_ends}"

        fed.tallinn.terminate(timeout=90)
        mirror_end = fed.offsets(fed.tk.bootstrap, MIRROR, -1)[0]
        deadletter_end = fed.offsets(fed.tk.bootstrap, DEADLETTER, -1)[0]
        out = fed.delete_records(MIRROR, 0)
        assert f"partition: {MIRROR}-0\tlow_watermark: {mirror_end}" in out, out
        out = fed.delete_records(DEADLETTER, 0)
        assert f"partition: {DEADLETTER}-0\tlow_watermark: {deadletter_end}" in out, out
        assert fed.offsets(fed.tk.bootstrap, MIRROR, -2)[0] == mirror_end
        assert fed.origin_offsets(MIRROR, 0) == [] and fed.origin_offsets(DEADLETTER, 0) == []
        log(f"{MIRROR}[0] emptied below {mirror_end} (origin end {old_ends[0]}); "
            f"{DEADLETTER}[0] below {deadletter_end}")

        mark = fed.tallinn.log_mark()
        fed.tallinn.start()
        fed.wait_streaming("tallinn restarted")
        fed.tools.simulate(fed.hk.bootstrap, TOPIC, SECOND_BATCH, seed=2, city="helsinki")
        fed.wait_caught_up(LABELS, SECOND_BATCH,
                           f"restarted tallinn caught up with the {SECOND_BATCH} new records")
        new_ends = fed.offsets(fed.hk.bootstrap, TOPIC, -1)
        assert sum(new_ends) == FIRST_BATCH + SECOND_BATCH, new_ends

        # Partition 0 holds exactly the records produced after the deletion, once each, in
        # order; partitions 1 and 2 hold both batches, once each, in order.
        for p, start in enumerate([old_ends[0]] + [0] * (PARTITIONS - 1)):
            got, want = fed.origin_offsets(MIRROR, p), list(range(start, new_ends[p]))
            assert got == want, (
                f"{MIRROR}[{p}] should hold origin offsets {start}..{new_ends[p] - 1} once each, "
                f"in order; it holds {len(got)} records, {sum(o < old_ends[p] for o in got)} of "
                f"them below the old origin end {old_ends[p]}: {got[:3]}...{got[-3:]}")
        assert all(fed.origin_offsets(DEADLETTER, p) == [] for p in range(PARTITIONS))
        m = fed.tallinn.metrics()
        assert m.value("uop_import_records_total", **LABELS) == SECOND_BATCH
        assert m.value("uop_import_duplicates_dropped_total", **LABELS) == 0

        # compare: the deleted records are the only ones missing, nothing else differs.
        c = fed.compare(0)
        assert (c["source"], c["expected"], c["target"], c["lost"], c["duplicated"],
                c["out_of_order"], c["mismatched"], c["deadlettered"], c["first_problem"]) == (
            FIRST_BATCH + SECOND_BATCH, FIRST_BATCH + SECOND_BATCH,
            FIRST_BATCH + SECOND_BATCH - old_ends[0], old_ends[0], 0, 0, 0, 0,
            "origin offset 0/0 missing in the target"), c

        # Only partition 0 had an empty tail: only it took its position from the group.
        events = [{k: e.get(k) for k in ("topic", "partition", "tail_offset", "group_offset")}
                  for e in fed.tallinn.events("import_position_from_group", since=mark)]
        assert events == [{"topic": MIRROR, "partition": "0", "tail_offset": "-1",
                           "group_offset": str(old_ends[0] - 1)}], events


def test_lag_reaches_zero_when_the_origin_topic_is_transactional(fed):
    with diagnosed(fed, "transactional origin"):
        if not fed.tallinn.alive:  # the test above failed while tallinn was down
            fed.tallinn.start()
            fed.wait_streaming("tallinn restarted")
        # Kafka's kafka-producer-perf-test: a commit about every 200 ms, so at ~1000 records/s
        # some 15 transactions, each leaving a commit marker in every partition it wrote.
        out = fed.kafka_tool("org.apache.kafka.tools.ProducerPerformance",
                             "--bootstrap-server", fed.hk.bootstrap, "--topic", TX_TOPIC,
                             "--num-records", TX_RECORDS, "--record-size", 100,
                             "--throughput", 1000, "--transactional-id", "uop-test-perf",
                             "--transaction-duration-ms", 200,
                             "--command-property", "acks=all", "linger.ms=20", timeout=300)
        assert re.search(rf"^{TX_RECORDS} records sent", out, re.M), out
        ends = fed.offsets(fed.hk.bootstrap, TX_TOPIC, -1)
        assert sum(ends) > TX_RECORDS, \
            f"{TX_RECORDS} records in transactions: the high watermarks {ends} must also count " \
            f"commit markers"

        c = fed.tools.compare(fed.hk.bootstrap, TX_TOPIC, fed.tk.bootstrap, wait=COMPARE_WAIT)
        assert (c["source"], c["expected"], c["target"], c["lost"], c["duplicated"],
                c["out_of_order"], c["mismatched"], c["deadlettered"], c["ok"]) == (
            TX_RECORDS, TX_RECORDS, TX_RECORDS, 0, 0, 0, 0, 0, True), c
        t0 = time.monotonic()
        fed.wait_caught_up(TX_LABELS, TX_RECORDS,
                           f"uop_import_lag_records of {TX_TOPIC} at 0 (high watermarks {ends})")
        lag_zero_after = time.monotonic() - t0
        # And it stays 0 while the owner's heartbeats keep reporting the high watermarks (past
        # the last markers): a lag that only read 0 before the final high watermark arrived
        # would come back here.
        steady = time.monotonic() + scaled(4 * LINK["heartbeat_interval_ms"] / 1000)
        while True:
            m = fed.tallinn.metrics()
            assert (m.value("uop_import_records_total", **TX_LABELS),
                    m.value("uop_import_lag_records", **TX_LABELS),
                    m.value("uop_import_lag_seconds", **TX_LABELS)) == (TX_RECORDS, 0, 0)
            if time.monotonic() > steady:
                break
            time.sleep(0.1)  # sampling interval of a steady state, not a synchronisation
        log(f"{TX_TOPIC}: {TX_RECORDS} records, high watermarks {ends} (sum {sum(ends)}); lag 0 "
            f"{lag_zero_after:.1f}s after compare, and still 0 "
            f"{4 * LINK['heartbeat_interval_ms']} ms later")


def test_mirror_topics_carry_the_lower_retention(fed):
    """Terms travel with the data: helsinki's share keeps 30 days, tallinn's accept rule 7; the
    mirror and dead-letter topics get retention.ms of 7 days (AlterConfigs), as Kafka's own
    ConfigCommand reads back. For the share without a retention, tallinn's 7 days alone apply."""
    week = str(7 * 86400 * 1000)
    with diagnosed(fed, "retention"):
        wait_until(lambda: len(fed.tallinn.events("import_retention_set", topic=TOPIC)) >= 1, 60,
                   "tallinn to set retention.ms", procs=[fed.tallinn])
        # One per incarnation of tallinn (the first test restarts it): all say the same.
        assert {e["retention_ms"] for e in fed.tallinn.events("import_retention_set",
                                                               topic=TOPIC)} == {week}
        for topic in (MIRROR, DEADLETTER):
            out = fed.kafka_tool("kafka.admin.ConfigCommand", "--bootstrap-server",
                                 fed.tk.bootstrap, "--entity-type", "topics", "--entity-name",
                                 topic, "--describe", timeout=120)
            assert f"retention.ms={week}" in out, out
        (imp,) = [d for d in json.loads(fed.tallinn.http_get("/datasets")[1])["imports"]
                  if d["dataset"] == TOPIC]
        assert imp["owner_retention_ms"] == 30 * 86400 * 1000 and imp["retention_ms_applied"] \
            == int(week), imp
        (tx,) = [d for d in json.loads(fed.tallinn.http_get("/datasets")[1])["imports"]
                 if d["dataset"] == TX_TOPIC]
        assert tx["owner_retention_ms"] is None, tx  # 7d from tallinn's own rule alone
        assert tx["retention_ms_applied"] == int(week), tx
