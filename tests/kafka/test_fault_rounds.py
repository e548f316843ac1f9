"""Seeded fault rounds against real Apache Kafka: exactly-once mirroring must survive them all.

Setup: two single-node Kafka 4.3.1 clusters (deploy/kafka/), helsinki and tallinn. helsinki's
``noise.observations`` has 6 partitions and is shared with tallinn. One helsinki uopd (the
owner) sits behind a TcpProxy, so it can come back on a new port and so the link can be cut,
paused or slowed. Two tallinn uopd nodes with the same node name and the same config both dial
the proxy and split the 6 origin partitions through their Kafka consumer group.

Each round: start a batch of keyed, sequence-numbered SensorThings records (two ``uopctl
simulate`` feeds, 2000 records/s in all); once the mirror is moving, inject one fault; let the
batch complete; then ``uopctl compare`` checks every partition record by record and the round
must show 0 lost, 0 duplicated, 0 out of order, 0 mismatched. Every round re-checks the whole
topic, so a late duplicate from an earlier round is caught too. Faults, drawn with a seeded RNG
from shuffled bags so every kind comes up equally often:

* ``kill_sender``: kill -9 the helsinki uopd, restart it (new port), retarget the proxy.
* ``kill_receiver``: kill -9 one tallinn node; usually the other must take over all 6
  partitions (group session timeout 6 s) before the victim restarts, sometimes it restarts at
  once (it rejoins while the dead member is still in the group).
* ``cut_link``: proxy.cut() (every connection reset), or pause() longer than the dead-peer
  timeout, then resume().
* ``kafka_restart``: ``kafka-cluster.sh restart`` of the helsinki or the tallinn cluster.
* ``slow_peer``: proxy.set_delay(0.05-0.2 s per chunk) for a few seconds.

Modes (environment):
* default, CI: ``UOP_FAULT_ROUNDS`` rounds (default 20), about 6-7 minutes on 2 cores.
* ``UOP_SOAK_SECONDS=N``: rounds until N seconds have passed; additionally the RSS of each uopd
  process instance (/proc/PID/status VmRSS) must stay flat. One sample per round is taken in the
  same quiet state (caught up, receivers balanced); per instance, after a warm-up (its first
  quarter of samples, at least four), the largest sample of the last third must be at most
  1.25 x the largest of the first third. Instances killed by faults before they have 9 samples
  after warm-up are listed, not judged. A 1 s background sampler adds per-round peaks to the
  report. Run it with pytest directly (ctest's timeout is 1500 s).
* ``UOP_FAULT_SEED=S`` replays a run's fault sequence (printed first, and again on failure).
* ``UOP_FAULT_RATE`` (records/s, default 2000), ``UOP_FAULT_KEEP=1`` keeps the work directory
  after a passing run too, ``UOP_FAULT_KINDS=kafka_restart,...`` draws only those faults.

Run: ``cd tests/kafka && python3 -m pytest -q -s -p no:cacheprovider test_fault_rounds.py``
(needs build/bin/uopd and uopctl; fetches the Kafka jars on first use).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Optional

import pytest

from realkafka import (BIN_DIR, LINK, KafkaCluster, KafkaWatchdog, UopdNode,
                       fetch_kafka, rss_kib, scaled, wait_until)
from uoptest.cluster import Proc, make_pki
from uoptest.proxy import TcpProxy

TOPIC = "noise.observations"
MIRROR = "helsinki.noise.observations"
PARTITIONS = 6
LABELS = {"peer": "helsinki", "topic": TOPIC}

FAULTS = ("kill_sender", "kill_receiver", "cut_link", "kafka_restart", "slow_peer")

RATE = float(os.environ.get("UOP_FAULT_RATE") or 2000)
PRODUCE_SECONDS = 8.0      # length of one round's batch at RATE
# The six Helsinki site keys hash (librdkafka's CRC32 partitioner) to partitions 0,1,2,4,5 only;
# a second feed with the four Tallinn site keys (3,0,2,4) puts records into partition 3 too.
FEEDS = (("helsinki", 0.75), ("tallinn", 0.25))
# uopctl compare reads both whole topics on every pass: cap what a long soak accumulates.
MAX_RECORDS = int(os.environ.get("UOP_FAULT_MAX_RECORDS") or 1_500_000)
COMPARE_WAIT = 240.0       # catch-up allowance per round (seconds)
SETTLE = 120.0             # two tallinn nodes balanced (3+3 partitions) and all streams up
RSS_GROWTH_LIMIT = 1.25
RSS_WARMUP = 4             # quiet samples (rounds) skipped at least, per process instance
RSS_MIN_SAMPLES = 9        # after warm-up, to judge an instance (three per third)
# Debugging aid: only these fault kinds (comma-separated), e.g. UOP_FAULT_KINDS=kafka_restart.
KINDS = tuple(k for k in (os.environ.get("UOP_FAULT_KINDS") or ",".join(FAULTS)).split(",") if k)


def log(msg: str = "") -> None:
    print(msg, flush=True)


def hold(seconds: float, procs: list[Proc]) -> None:
    """Keep a fault in place for ``seconds`` (a fault's duration, not a synchronisation), failing
    at once if one of ``procs`` dies meanwhile."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for p in procs:
            assert p.alive, f"{p.name} exited ({p.returncode}) during a fault\n{p.tail()}"
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))


@dataclasses.dataclass
class RoundResult:
    number: int
    fault: str
    detail: str
    produced: int
    total: int
    compare: dict
    catch_up: float
    seconds: float


class RssSampler:
    """VmRSS of every uopd process instance, keyed by instance (``name#n``: a restarted process is
    a new instance with its own memory). Two series: a background thread samples once a second
    (the per-round maximum shows bursts, e.g. a backlog after a fault), and ``at_round_end()``
    takes one sample per round in the same quiet state every time (caught up, both receivers
    balanced, nothing in flight). The flatness verdict uses the quiet samples: bursts depend on
    which fault a round drew, a leak shows in the quiet state."""

    def __init__(self, nodes: list[UopdNode]) -> None:
        self.nodes = nodes
        self.round = 0
        self.samples: dict[str, list[tuple[int, int]]] = collections.defaultdict(list)
        self.quiet: dict[str, list[tuple[int, int]]] = collections.defaultdict(list)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.sample(self.samples)

    def sample(self, into: dict[str, list[tuple[int, int]]]) -> None:
        for n in self.nodes:
            pid, key = (n.instances[-1], n.instance) if n.instances else (None, None)
            if pid is None or not n.alive or n.pid != pid:
                continue
            kib = rss_kib(pid)
            if kib is None:
                continue
            with self._lock:
                into[key].append((self.round, kib))

    def at_round_end(self) -> None:
        self.sample(self.quiet)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def per_round_max(self, key: str) -> dict[int, int]:
        with self._lock:
            out: dict[int, int] = {}
            for rnd, kib in self.samples.get(key, []):
                out[rnd] = max(out.get(rnd, 0), kib)
            return out

    def current(self, node: UopdNode) -> str:
        kib = rss_kib(node.pid) if node.alive else None
        return "down" if kib is None else f"{kib / 1024:.0f}"

    def verdicts(self) -> list[tuple[str, str, bool]]:
        """(instance, explanation, ok) for every instance. Instances with too few rounds after
        warm-up to judge are reported as ok, with that reason."""
        out = []
        by_instance = lambda k: (k.split("#")[0], int(k.split("#")[1]))  # noqa: E731
        with self._lock:
            quiet = {k: list(v) for k, v in self.quiet.items()}
        for key in sorted(set(quiet) | set(self.samples), key=by_instance):
            series_all = [kib for _, kib in quiet.get(key, [])]
            peaks = self.per_round_max(key)
            peak = " ".join(f"{peaks[r] / 1024:.0f}" for r in sorted(peaks))
            # Warm-up: the first quarter of the instance's quiet samples, at least RSS_WARMUP.
            # Memory climbs to its plateau there (measured: 4-6 rounds): the first backlogs, the
            # first takeover of the other node's partitions (twice the Kafka clients), allocator
            # arenas of new threads. A leak keeps climbing after it.
            warm = max(RSS_WARMUP, len(series_all) // 4)
            series = series_all[warm:]
            trace = " ".join(f"{kib / 1024:.0f}" for kib in series_all)
            if len(series) < RSS_MIN_SAMPLES:
                out.append((key, f"{len(series)} quiet samples after warm-up: too few to judge "
                                 f"(quiet MiB: {trace or '-'}; per-round peak MiB: {peak})",
                            True))
                continue
            third = len(series) // 3
            first, last = max(series[:third]), max(series[-third:])
            ok = last <= RSS_GROWTH_LIMIT * first
            out.append((key, f"{len(series)} quiet samples after {warm} warm-up: max first third "
                             f"{first / 1024:.1f} MiB, last third {last / 1024:.1f} MiB "
                             f"(x{last / first:.2f}, limit x{RSS_GROWTH_LIMIT}); quiet MiB: "
                             f"{trace}; per-round peak MiB: {peak}", ok))
        return out


class FaultRounds:
    """The federation under test and the rounds played against it."""

    def __init__(self, workdir: Path, seed: int) -> None:
        self.dir = workdir
        self.seed = seed
        self.rng = random.Random(seed)
        self.bag: list[str] = []
        self.hk = KafkaCluster("helsinki", workdir / "kafka-helsinki")
        self.tk = KafkaCluster("tallinn", workdir / "kafka-tallinn")
        self.watchdog: Optional[KafkaWatchdog] = None
        self.proxy: Optional[TcpProxy] = None
        self.helsinki: Optional[UopdNode] = None
        self.receivers: list[UopdNode] = []
        self.feeds: list[Proc] = []
        self.rss: Optional[RssSampler] = None
        self.results: list[RoundResult] = []
        self.expected_total = 0
        self.current = "setup"
        self.soak_rounds_estimate = 0  # soak mode: caps the records per round (MAX_RECORDS)

    # ------------------------------------------------------------------------------ setup

    def start(self) -> None:
        t0 = time.monotonic()
        libs = fetch_kafka()
        log(f"kafka jars: {libs}")
        pki = make_pki(self.dir / "pki")
        self.hk.start_async()
        self.tk.start_async()
        self.watchdog = KafkaWatchdog([self.hk, self.tk], self.dir)
        self.hk.wait_started()
        self.tk.wait_started()
        log(f"kafka: helsinki {self.hk.bootstrap}, tallinn {self.tk.bootstrap} "
            f"({time.monotonic() - t0:.1f}s)")
        self.hk.create_topic(TOPIC, PARTITIONS)

        h_dir = self.dir / "helsinki"
        (h_dir / "policies").mkdir(parents=True)
        (h_dir / "policies" / "noise.yaml").write_text(
            f"dataset: {TOPIC}\nshares:\n  - peer: tallinn\n")
        (h_dir / "node.yaml").write_text(self._config(
            "helsinki", pki, peer="tallinn", peer_address=None, bootstrap=self.hk.bootstrap))
        self.helsinki = UopdNode("helsinki", h_dir / "node.yaml", self.dir)
        self.helsinki.start()
        self.proxy = TcpProxy("127.0.0.1", self.helsinki.federation_port)
        self.proxy.start()

        t_dir = self.dir / "tallinn"
        (t_dir / "policies").mkdir(parents=True)
        (t_dir / "node.yaml").write_text(self._config(
            "tallinn", pki, peer="helsinki", peer_address=self.proxy.address,
            bootstrap=self.tk.bootstrap))
        # Same node name, same config file: one city, two nodes sharing the work.
        self.receivers = [UopdNode(f"tallinn-{x}", t_dir / "node.yaml", self.dir) for x in "ab"]
        for r in self.receivers:
            r.start()
        for city, _ in FEEDS:
            self.feeds.append(Proc(f"feed-{city}", [], self.dir))
        self.rss = RssSampler([self.helsinki, *self.receivers])
        self.settle("initial assignment")
        self.rss.at_round_end()
        log(f"federation up in {time.monotonic() - t0:.1f}s: helsinki "
            f"{self.helsinki.ready['federation']} via proxy {self.proxy.address}; "
            f"{self.assignment_text()}")

    @staticmethod
    def _config(node: str, pki: Path, *, peer: str, peer_address: Optional[str],
                bootstrap: str) -> str:
        lines = [f"node: {node}", "listen: 127.0.0.1:0", "admin: 127.0.0.1:0",
                 f"tls: {{cert: {json.dumps(str(pki / node / 'node.pem'))}, "
                 f"key: {json.dumps(str(pki / node / 'node.key'))}}}",
                 "peers:", f"  - name: {peer}"]
        if peer_address:
            lines.append(f"    address: {peer_address}")
        lines += [f"    ca: {json.dumps(str(pki / peer / 'ca.pem'))}",
                  f"    identity: uopd.{peer}.example",
                  f"kafka: {{bootstrap: \"{bootstrap}\"}}",
                  "policies: policies",
                  "link: {" + ", ".join(f"{k}: {v}" for k, v in LINK.items()) + "}"]
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------------------ state

    def nodes(self) -> list[UopdNode]:
        return [self.helsinki, *self.receivers]

    def assignment(self) -> list[Optional[tuple[int, int]]]:
        """Per tallinn node: (partitions assigned, partition streams up), None if down."""
        out = []
        for r in self.receivers:
            m = r.try_metrics()
            out.append(None if m is None else
                       (int(m.value("uop_import_partitions_assigned", **LABELS)),
                        int(m.value("uop_import_stream_up", **LABELS))))
        return out

    def assignment_text(self) -> str:
        parts = []
        for r, a in zip(self.receivers, self.assignment()):
            parts.append(f"{r.name} " + ("down" if a is None else f"{a[0]} assigned/{a[1]} up"))
        return ", ".join(parts)

    def imported(self) -> float:
        total = 0.0
        for r in self.receivers:
            m = r.try_metrics()
            if m is not None:
                total += m.value("uop_import_records_total", **LABELS)
        return total

    def settle(self, what: str, timeout: float = SETTLE) -> float:
        """Until both tallinn nodes serve: 6 partitions assigned in all, each node holding some,
        every assigned partition streaming. Returns the seconds it took."""
        t0 = time.monotonic()

        def balanced() -> bool:
            a = self.assignment()
            return (all(x is not None for x in a) and sum(x[0] for x in a) == PARTITIONS
                    and all(x[0] >= 1 for x in a) and sum(x[1] for x in a) == PARTITIONS)

        try:
            wait_until(balanced, timeout, f"{what}: tallinn nodes balanced over {PARTITIONS} "
                       f"partitions with every stream up", interval=0.25, procs=self.nodes())
        except AssertionError as e:
            raise AssertionError(f"{e}\nat the deadline: {self.assignment_text()}") from None
        return time.monotonic() - t0

    # ------------------------------------------------------------------------------ producer

    def start_feeds(self, number: int) -> int:
        per_round = RATE * PRODUCE_SECONDS
        if self.soak_rounds_estimate:
            per_round = min(per_round, MAX_RECORDS / self.soak_rounds_estimate)
        rate_scale = per_round / (RATE * PRODUCE_SECONDS)
        produced = 0
        for (city, share), feed in zip(FEEDS, self.feeds):
            count = max(1, int(per_round * share))
            feed.argv = [str(BIN_DIR / "uopctl"), "simulate", "--bootstrap", self.hk.bootstrap,
                         "--topic", TOPIC, "--city", city, "--count", str(count),
                         "--rate", f"{RATE * share * rate_scale:.1f}",
                         "--seed", str(self.seed * 1000 + number)]
            feed.expected = count
            feed.start()
            produced += count
        return produced

    def finish_feeds(self, timeout: float) -> None:
        for feed in self.feeds:
            rc = feed.wait(timeout)
            assert rc == 0, f"{feed.name} exited with {rc}:\n{feed.tail()}"
            out = json.loads(feed.stdout_path.read_text().splitlines()[-1])
            assert out["produced"] == feed.expected and out["unflushed"] == 0, (feed.name, out)

    # ------------------------------------------------------------------------------ faults

    def draw(self) -> tuple[str, dict]:
        """The next fault and its parameters, all from the seeded RNG (so a seed replays the
        same sequence)."""
        if not self.bag:
            self.bag = list(KINDS)
            self.rng.shuffle(self.bag)
        fault = self.bag.pop()
        rng = self.rng
        if fault == "kill_sender":
            params = {"downtime": round(rng.uniform(0.0, 3.0), 2)}
        elif fault == "kill_receiver":
            params = {"victim": rng.randrange(len(self.receivers)),
                      "takeover": rng.random() < 0.7}
        elif fault == "cut_link":
            params = {"pause": round(rng.uniform(3.5, 6.0), 2) if rng.random() < 0.5 else 0.0}
        elif fault == "kafka_restart":
            params = {"cluster": rng.choice(("helsinki", "tallinn"))}
        else:
            params = {"delay": round(rng.uniform(0.05, 0.2), 3),
                      "seconds": round(rng.uniform(3.0, 6.0), 1)}
        return fault, params

    def inject(self, fault: str, p: dict) -> str:
        """Applies the fault and heals it; returns a description of what happened."""
        if fault == "kill_sender":
            self.helsinki.kill9()
            hold(p["downtime"], self.receivers)
            t0 = time.monotonic()
            self.helsinki.start()
            self.proxy.set_target("127.0.0.1", self.helsinki.federation_port)
            return (f"helsinki killed, down {p['downtime']}s, back on "
                    f":{self.helsinki.federation_port} in {time.monotonic() - t0:.1f}s")
        if fault == "kill_receiver":
            victim = self.receivers[p["victim"]]
            survivor = self.receivers[1 - p["victim"]]
            before = self.assignment_text()
            victim.kill9()
            detail = f"{victim.name} killed ({before})"
            if p["takeover"]:
                t0 = time.monotonic()
                wait_until(lambda: (m := survivor.try_metrics()) is not None
                           and m.value("uop_import_partitions_assigned", **LABELS) == PARTITIONS
                           and m.value("uop_import_stream_up", **LABELS) == PARTITIONS,
                           90, f"{survivor.name} to take over all {PARTITIONS} partitions of "
                           f"the killed {victim.name}", interval=0.2,
                           procs=[self.helsinki, survivor])
                detail += f"; {survivor.name} took over all {PARTITIONS} in " \
                          f"{time.monotonic() - t0:.1f}s"
            else:
                detail += "; restarted at once"
            victim.start()
            return detail
        if fault == "cut_link":
            if p["pause"]:
                self.proxy.pause()
                hold(p["pause"], self.nodes())
                self.proxy.resume()
                return f"link paused {p['pause']}s (dead-peer timeout " \
                       f"{LINK['dead_peer_timeout_ms'] / 1000}s)"
            n = self.proxy.cut()
            return f"link cut ({n} connections reset)"
        if fault == "kafka_restart":
            cluster = self.hk if p["cluster"] == "helsinki" else self.tk
            took = cluster.restart()
            for n in self.nodes():
                assert n.alive, f"{n.name} exited ({n.returncode}) during the Kafka restart\n" \
                                f"{n.tail()}"
            return f"{cluster.name} Kafka restarted in {took:.1f}s"
        if fault == "slow_peer":
            self.proxy.set_delay(p["delay"])
            try:
                hold(p["seconds"], self.nodes())
            finally:
                self.proxy.set_delay(0)
            return f"link delayed {p['delay'] * 1000:.0f} ms per chunk for {p['seconds']}s"
        raise AssertionError(f"unknown fault {fault}")

    # ------------------------------------------------------------------------------ a round

    def play(self, number: int, of: str) -> RoundResult:
        fault, params = self.draw()
        self.current = f"round {number} ({fault} {params})"
        self.rss.round = number
        t0 = time.monotonic()
        imported0 = self.imported()
        produced = self.start_feeds(number)
        self.expected_total += produced
        # Inject the fault mid-stream: once this round's records are crossing.
        wait_until(lambda: self.imported() - imported0 >= min(1000, produced // 4), 90,
                   f"round {number}: records of this round reaching tallinn before the fault",
                   interval=0.1, procs=self.nodes())
        detail = self.inject(fault, params)
        self.finish_feeds(PRODUCE_SECONDS + 240)
        t_done = time.monotonic()
        c = self.compare(COMPARE_WAIT)
        catch_up = time.monotonic() - t_done
        self.check(c, f"round {number} ({fault}: {detail})")
        settle = self.settle(f"after round {number} ({fault})")
        self.rss.at_round_end()
        result = RoundResult(number, fault, detail, produced, c["source"], c, catch_up,
                             time.monotonic() - t0)
        rss = " ".join(f"{n.name} {self.rss.current(n)}" for n in self.nodes())
        log(f"round {number:>3}{of} {fault:<13} +{produced} records, total {c['source']} | "
            f"lost {c['lost']} dup {c['duplicated']} ooo {c['out_of_order']} "
            f"mismatched {c['mismatched']} dead-lettered {c.get('deadlettered', 0)} | "
            f"catch-up {catch_up:.1f}s (compare waited {c['waited_seconds']:.1f}s), "
            f"settle {settle:.1f}s, round {result.seconds:.1f}s | RSS MiB {rss}")
        log(f"          {detail}")
        return result

    def compare(self, wait: float) -> dict:
        argv = [str(BIN_DIR / "uopctl"), "compare", "--source-bootstrap", self.hk.bootstrap,
                "--source-topic", TOPIC, "--target-bootstrap", self.tk.bootstrap,
                "--origin", "helsinki", "--wait", str(scaled(wait)), "--json"]
        r = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                           timeout=scaled(wait) + 600)
        try:
            out = json.loads(r.stdout)
        except ValueError:
            raise AssertionError(f"uopctl compare printed no JSON (rc {r.returncode}): "
                                 f"stdout={r.stdout!r} stderr={r.stderr[-2000:]!r}") from None
        out["rc"] = r.returncode
        return out

    def check(self, c: dict, when: str) -> None:
        assert (c["lost"], c["duplicated"], c["out_of_order"], c["mismatched"]) == (0, 0, 0, 0), \
            (f"{when}: mirror differs from origin: lost {c['lost']}, duplicated "
             f"{c['duplicated']}, out of order {c['out_of_order']}, mismatched "
             f"{c['mismatched']}; first problem: {c['first_problem']}\n{json.dumps(c)}")
        # Records this small are never refused by Kafka: one in the dead-letter topic is a bug.
        assert c.get("deadlettered", 0) == 0, f"{when}: records were dead-lettered: {c}"
        assert c["ok"] and c["rc"] == 0, f"{when}: compare not ok: {c}"
        assert c["source"] == c["expected"] == c["target"] == self.expected_total, \
            (f"{when}: expected {self.expected_total} records everywhere (all produced by the "
             f"feeds), compare saw {c}")

    # ------------------------------------------------------------------------------ teardown

    def partition_ends(self, bootstrap: str, topic: str) -> list[int]:
        ends = []
        for p in range(PARTITIONS):
            r = subprocess.run(["kcat", "-b", bootstrap, "-Q", "-t", f"{topic}:{p}:-1"],
                               capture_output=True, text=True, timeout=scaled(60),
                               stdin=subprocess.DEVNULL)
            try:
                ends.append(int(r.stdout.split("offset")[-1].strip().split()[0]))
            except (ValueError, IndexError):
                ends.append(-1)
        return ends

    def stop(self, clean: bool) -> None:
        """Clean: SIGTERM every node (each must exit 0). Otherwise kill what is left."""
        errors = []
        if self.rss is not None:
            self.rss.stop()
        for feed in self.feeds:
            feed.cleanup()
        for n in reversed(self.nodes()):
            if n is None:
                continue
            if clean and n.alive:
                try:
                    n.terminate(timeout=90)
                except AssertionError as e:
                    errors.append(str(e))
            n.cleanup()
        if self.proxy is not None:
            self.proxy.stop()
        self.hk.stop()
        self.tk.stop()
        if self.watchdog is not None:
            self.watchdog.close()
        assert not errors, "\n".join(errors)

    def diagnostics(self) -> str:
        parts = [f"=== diagnostics ({self.current}); work directory kept: {self.dir}"]
        for n in self.nodes():
            if n is None:
                continue
            m = n.try_metrics()
            state = "running" if n.alive else f"exited {n.returncode}"
            parts.append(f"--- {n.name} ({state}, started {n.starts}x, pids {n.instances})")
            if m is not None:
                keep = [f"{name}{dict(ls)} {v:g}" for (name, ls), v in sorted(
                    m.items(), key=lambda kv: kv[0][0]) if name.startswith(("uop_import",
                                                                           "uop_export",
                                                                           "uop_link"))]
                parts.append("    " + "\n    ".join(keep))
            parts.append(f"--- {n.name} log tail: {n.stderr_path}\n{n.tail(80)}")
        for feed in self.feeds:
            parts.append(f"--- {feed.name} log tail\n{feed.tail(10)}")
        for k in (self.hk, self.tk):
            parts.append(f"=== Kafka {k.name} ({k.dir})\n{k.log_tail(40)}")
        if self.proxy is not None:
            px = self.proxy
            parts.append(f"--- proxy {px.address} -> {px.target}: connections "
                         f"{int(px.connections_total)}, rejected {int(px.connections_rejected)}, "
                         f"upstream failures {int(px.upstream_failures)}")
        return "\n".join(parts)


# ------------------------------------------------------------------------------------ the test

def test_fault_rounds():
    for binary in ("uopd", "uopctl"):
        if not (BIN_DIR / binary).is_file():
            pytest.fail(f"{BIN_DIR / binary} not found: build first or set UOP_BIN_DIR")
    assert KINDS and set(KINDS) <= set(FAULTS), f"UOP_FAULT_KINDS: choose from {FAULTS}"
    seed_env = os.environ.get("UOP_FAULT_SEED")
    seed = int(seed_env) if seed_env else random.SystemRandom().randrange(1, 2**31)
    soak = float(os.environ.get("UOP_SOAK_SECONDS") or 0)
    rounds = int(os.environ.get("UOP_FAULT_ROUNDS") or 20)
    log("")
    log(f"UOP_FAULT_SEED={seed}")
    log(f"mode: {'soak ' + str(int(soak)) + 's' if soak else 'CI, ' + str(rounds) + ' rounds'}; "
        f"rate {RATE:g} records/s for {PRODUCE_SECONDS:g}s per round; bin {BIN_DIR}")

    workdir = Path(tempfile.mkdtemp(prefix="uop-fault-rounds-"))
    fr = FaultRounds(workdir, seed)
    if soak:
        # Expected ~20 s per round; keeps the records compare has to read bounded.
        fr.soak_rounds_estimate = max(1, int(soak / 20))
    t_start = time.monotonic()
    passed = False
    try:
        fr.start()
        t_rounds = time.monotonic()
        number = 0
        while True:
            if soak:
                if time.monotonic() - t_rounds >= soak and number > 0:
                    break
            elif number >= rounds:
                break
            number += 1
            fr.results.append(fr.play(number, "" if soak else f"/{rounds}"))

        # Let everything settle, then the final verdict over the whole topic.
        fr.current = "final check"
        fr.rss.round = number + 1
        c = fr.compare(COMPARE_WAIT)
        fr.check(c, "final check")
        ends = fr.partition_ends(fr.hk.bootstrap, TOPIC)
        assert all(e > 0 for e in ends), f"every origin partition should hold records: {ends}"
        fr.rss.at_round_end()

        kinds = collections.Counter(r.fault for r in fr.results)
        log("")
        log("=== fault rounds summary")
        log(f"seed UOP_FAULT_SEED={seed}; rounds {len(fr.results)}; "
            f"{time.monotonic() - t_start:.0f}s in all ({time.monotonic() - t_rounds:.0f}s of "
            f"rounds)")
        log("faults: " + ", ".join(f"{k} {kinds.get(k, 0)}" for k in FAULTS))
        log(f"records {c['source']} (per origin partition {ends}); mirror {c['target']}: "
            f"lost={c['lost']} dup={c['duplicated']} out_of_order={c['out_of_order']} "
            f"mismatched={c['mismatched']}")
        catch = [r.catch_up for r in fr.results]
        log(f"catch-up after a round: median {sorted(catch)[len(catch) // 2]:.1f}s, "
            f"max {max(catch):.1f}s; uopd restarts: " + ", ".join(
                f"{n.name} {n.starts - 1}" for n in fr.nodes()) +
            f"; Kafka restarts: helsinki {fr.hk.restarts}, tallinn {fr.tk.restarts}")
        verdicts = fr.rss.verdicts()
        log("RSS per uopd instance:" if soak else "RSS per uopd instance (not asserted outside "
            "soak mode):")
        for key, text, ok in verdicts:
            log(f"  {key}: {text}{'' if ok else '  <-- GROWING'}")
        if soak:
            bad = [f"{k}: {t}" for k, t, ok in verdicts if not ok]
            assert not bad, "uopd memory is not flat over the soak:\n" + "\n".join(bad)
            judged = [k for k, t, ok in verdicts if "too few" not in t]
            if not judged:
                log("  (no instance lived long enough to judge its memory; soak longer)")
            assert judged or soak < 600, "soak mode judged no uopd instance's memory"
        fr.stop(clean=True)
        passed = True
    except BaseException:
        log("")
        log("=" * 100)
        log(f"FAILED in {fr.current}")
        log(f"replay with UOP_FAULT_SEED={seed}"
            + (f" UOP_SOAK_SECONDS={int(soak)}" if soak else f" UOP_FAULT_ROUNDS={rounds}")
            + (f" UOP_FAULT_KINDS={','.join(KINDS)}" if KINDS != FAULTS else ""))
        log(traceback.format_exc()[-6000:])
        try:
            log(fr.diagnostics())
        except Exception:  # diagnostics must not hide the failure
            log(f"(diagnostics failed: {traceback.format_exc()})")
        try:
            fr.stop(clean=False)
        except Exception:
            log(f"(teardown failed: {traceback.format_exc()})")
        log(f"replay with UOP_FAULT_SEED={seed}; logs and Kafka data kept in {workdir}")
        raise
    finally:
        if passed and not os.environ.get("UOP_FAULT_KEEP"):
            shutil.rmtree(workdir, ignore_errors=True)
        elif passed:
            log(f"work directory kept: {workdir}")
