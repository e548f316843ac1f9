#!/usr/bin/env python3
"""Benchmark: uopd against MirrorMaker 2 and a raw librdkafka pipe, on two real Kafka clusters.

One command, about 15-25 minutes on 2 cores:

    python3 bench/run.py            # or bench/run.sh, which builds the tools first

Same machine, same two clusters (helsinki = source, tallinn = target), same data: --records
SensorThings observations of --record-bytes bytes (key + value + header) in a --partitions
partition topic. Each contender mirrors it from a cold consumer group into a fresh target topic
on a fresh tallinn cluster (started, then warmed up, before the contender starts). Measured:

  * throughput: records/s and MB/s from the contender's launch to the last record readable in
    tallinn (read_committed), and from the first readable record to the last one (the fair
    figure: MirrorMaker 2 spends seconds starting);
  * end-to-end latency p50/p99 (producer CreateTime -> readable in tallinn, by
    bench/latency_probe) at a fixed rate, half of uopd's measured maximum, produced by
    `uopctl simulate --rate`, with each contender started and caught up first;
  * peak RSS of the contender's processes (VmHWM at the end; VmRSS sampled while running);
  * CPU seconds of the contender, of the two brokers, and of everything else on the machine
    ("foreign" CPU: other users of a shared machine). A measurement window with more than
    --foreign-cpu-limit cores of foreign CPU on average is repeated (--attempts).

Writes bench/results/latest.{json,md} and a timestamped copy of both; prints the table.
Every phase has a deadline, and every process and cluster started here is stopped at the end,
also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KAFKA_DIR = ROOT / "deploy" / "kafka"
RESULTS_DIR = ROOT / "bench" / "results"
MM2_TEMPLATE = ROOT / "bench" / "mm2-bench.properties"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SOURCE_TOPIC = "bench.observations"
WARM_TOPIC = "bench.warmup"
WARM_RECORDS = 300_000
# Issue 6 (uopd against the raw pipe and MirrorMaker 2) and issue 7 (uopd with a policy).
TARGETS = {"vs_mm2": 2.0, "vs_raw": 0.8, "cpu_vs_raw": 2.0, "target_broker_vs_raw": 1.5,
           "p99_vs_raw": 1.5, "p99_ms": 100.0, "rss_mib": 256.0, "policy_vs_raw": 0.7}
N_A_POLICY = "n/a: not in --contenders"
# The policy contender's share: drops a field and keeps a bbox that holds every load_gen site
# (so the count stays exact), as issue 7's end-to-end row asks.
BENCH_BBOX = [24.5, 59.9, 25.3, 60.4]


class BenchError(Exception):
    """A phase failed; the message says which and why."""


def log(msg: str) -> None:
    stamp = dt.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- /proc: CPU and memory ----

def read_proc_stat(pid: int) -> float | None:
    """CPU seconds (user + system, all threads) of a live or zombie process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def read_status_kib(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def machine_busy_seconds() -> float:
    """CPU seconds spent busy by all cores since boot (everything but idle and iowait)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


class Sampler:
    """Samples CPU time and RSS of the processes we own every `period` seconds, so that the
    numbers of a process that has already exited are still known (to within one period)."""

    def __init__(self, period: float = 0.2):
        self.period = period
        self.lock = threading.Lock()
        self.pids: dict[int, str] = {}  # pid -> role
        self.cpu: dict[int, float] = {}
        self.rss_max: dict[int, int] = {}
        self.hwm: dict[int, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def track(self, pid: int, role: str) -> None:
        with self.lock:
            self.pids[pid] = role
        self.sample(pid)

    def untrack(self, pid: int) -> None:
        self.sample(pid)
        with self.lock:
            self.pids.pop(pid, None)

    def sample(self, pid: int) -> None:
        cpu = read_proc_stat(pid)
        rss = read_status_kib(pid, "VmRSS")
        hwm = read_status_kib(pid, "VmHWM")
        with self.lock:
            if cpu is not None:
                self.cpu[pid] = max(cpu, self.cpu.get(pid, 0.0))
            if rss is not None:
                self.rss_max[pid] = max(rss, self.rss_max.get(pid, 0))
            if hwm is not None:
                self.hwm[pid] = max(hwm, self.hwm.get(pid, 0))

    def _run(self) -> None:
        while not self.stop.wait(self.period):
            with self.lock:
                pids = list(self.pids)
            for pid in pids:
                self.sample(pid)

    def cpu_of(self, pids) -> float:
        with self.lock:
            return sum(self.cpu.get(p, 0.0) for p in pids)

    def tracked(self) -> list[int]:
        with self.lock:
            return list(self.pids)

    def memory(self, pid: int) -> dict:
        self.sample(pid)
        with self.lock:
            return {"vm_hwm_mib": round(self.hwm.get(pid, 0) / 1024, 1),
                    "vm_rss_max_mib": round(self.rss_max.get(pid, 0) / 1024, 1)}


class CpuWindow:
    """CPU used during a measurement window: by given process groups, and by everything else
    on the machine (other users: the machine is shared)."""

    def __init__(self, sampler: Sampler):
        self.sampler = sampler
        self.t0 = time.monotonic()
        self.busy0 = machine_busy_seconds()
        for pid in sampler.tracked():
            sampler.sample(pid)
        self.self0 = read_proc_stat(os.getpid()) or 0.0
        with sampler.lock:
            self.mine0 = dict(sampler.cpu)  # processes started later count in full

    def close(self, groups: dict[str, list[int]]) -> dict:
        for pid in self.sampler.tracked():
            self.sampler.sample(pid)
        wall = time.monotonic() - self.t0
        busy = machine_busy_seconds() - self.busy0
        mine_total = (read_proc_stat(os.getpid()) or 0.0) - self.self0
        with self.sampler.lock:
            all_pids = list(self.sampler.cpu)
        for pid in all_pids:
            mine_total += self.sampler.cpu_of([pid]) - self.mine0.get(pid, 0.0)
        out = {"wall_s": round(wall, 2), "machine_busy_cores": round(busy / wall, 2) if wall else 0}
        for name, pids in groups.items():
            used = sum(self.sampler.cpu_of([p]) - self.mine0.get(p, 0.0) for p in pids)
            out[f"{name}_cpu_s"] = round(used, 2)
        foreign = max(0.0, busy - mine_total)
        out["foreign_cpu_s"] = round(foreign, 2)
        out["foreign_cores"] = round(foreign / wall, 2) if wall else 0
        return out


# ---------------------------------------------------------------- processes and clusters --

class Runner:
    """Owns every process and Kafka cluster started by the benchmark."""

    def __init__(self, work: Path, sampler: Sampler):
        self.work = work
        self.sampler = sampler
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.clusters: list[Path] = []

    def start(self, name: str, argv: list[str], stdout=None, env=None, role: str | None = None,
              cwd: Path | None = None) -> subprocess.Popen:
        logf = open(self.work / f"{name}.log", "ab")
        p = subprocess.Popen([str(a) for a in argv], stdout=stdout if stdout else logf,
                             stderr=logf, env=env, cwd=cwd, start_new_session=True)
        self.procs.append((name, p))
        if role:
            self.sampler.track(p.pid, role)
        return p

    def stop(self, p: subprocess.Popen, timeout: float = 30) -> int | None:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        self.sampler.untrack(p.pid)
        return p.returncode

    def exited(self, p: subprocess.Popen) -> bool:
        """True once `p` has exited; its CPU and memory are read before it is reaped."""
        if p.returncode is not None:
            return True
        try:
            info = os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            info = True
        if info is None:
            return False
        self.sampler.untrack(p.pid)
        p.wait()
        return True

    def run(self, name: str, argv: list[str], timeout: float, env=None) -> str:
        """Runs a short command to completion; returns its stdout."""
        try:
            r = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                               timeout=timeout, env=env)
        except subprocess.TimeoutExpired as e:
            raise BenchError(f"{name}: no result within {timeout:.0f} s") from e
        with open(self.work / f"{name}.log", "a") as f:
            f.write(r.stderr)
        if r.returncode != 0:
            raise BenchError(f"{name} failed (exit {r.returncode}): {r.stderr.strip()[-800:]}")
        return r.stdout

    def start_cluster(self, name: str, directory: Path,
                      extra: list[str] | None = None) -> tuple[str, int]:
        self.clusters.append(directory)
        out = self.run(f"kafka-start-{directory.name}",
                       [KAFKA_DIR / "kafka-cluster.sh", "start", name, directory] + (extra or []),
                       timeout=300)
        bootstrap = out.strip().splitlines()[-1]
        pid = int((directory / "pid").read_text().strip())
        self.sampler.track(pid, f"broker-{name}")
        return bootstrap, pid

    def stop_cluster(self, directory: Path, pid: int | None = None, wipe: bool = False) -> None:
        if pid is not None:
            self.sampler.untrack(pid)
        subprocess.run([str(KAFKA_DIR / "kafka-cluster.sh"), "stop", str(directory)],
                       capture_output=True, timeout=120)
        if directory in self.clusters:
            self.clusters.remove(directory)
        if wipe:
            shutil.rmtree(directory / "data", ignore_errors=True)

    def close(self) -> None:
        for name, p in reversed(self.procs):
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for name, p in reversed(self.procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                log(f"{name} (pid {p.pid}) ignored SIGTERM for 30 s: SIGKILL")
                p.kill()
                p.wait(timeout=10)
        for directory in list(self.clusters):
            self.stop_cluster(directory)


def create_topic(runner: Runner, bootstrap: str, topic: str, partitions: int) -> None:
    env = dict(os.environ, UOP_KAFKA_JAVA_OPTS="-XX:TieredStopAtLevel=1")
    runner.run(f"create-topic-{topic}",
               [KAFKA_DIR / "kafka-tool.sh", "org.apache.kafka.tools.TopicCommand",
                "--bootstrap-server", bootstrap, "--create", "--topic", topic,
                "--partitions", partitions, "--replication-factor", 1], timeout=120, env=env)


class Watcher:
    """bench/topic_watch in the background: the readable end of a topic every 50 ms."""

    def __init__(self, runner: Runner, bin_dir: Path, bootstrap: str, topic: str, name: str):
        self.p = runner.start(name, [bin_dir / "topic_watch", "--bootstrap", bootstrap, "--topic",
                                     topic, "--interval-ms", 50], stdout=subprocess.PIPE,
                              role="watcher")
        self.runner = runner
        self.lock = threading.Lock()
        self.last = (0.0, 0)  # (unix seconds, readable end offsets summed)
        self.first_nonzero: float | None = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.p.stdout:
            parts = line.split()
            if len(parts) != 3:
                continue
            t, total = int(parts[0]) / 1000.0, int(parts[1])
            with self.lock:
                self.last = (t, total)
                if total > 0 and self.first_nonzero is None:
                    self.first_nonzero = t

    def state(self) -> tuple[float, int, float | None]:
        with self.lock:
            return self.last[0], self.last[1], self.first_nonzero

    def close(self) -> None:
        self.runner.stop(self.p, timeout=10)


def http_metrics(admin: str) -> dict[str, float]:
    try:
        with urllib.request.urlopen(f"http://{admin}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                pass
    return out


def metric_sum(metrics: dict[str, float], name: str) -> float:
    return sum(v for k, v in metrics.items() if k == name or k.startswith(name + "{"))


def wait_for(predicate, timeout: float, what: str, period: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(period)
    raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")


def wait_for_quiet(sampler: Sampler, limit: float, max_wait: float) -> float:
    """Waits (up to max_wait) until other users of the machine leave us `limit` cores; returns
    the foreign load measured last."""
    deadline = time.monotonic() + max_wait
    quiet_samples = 0
    samples = 0
    while True:
        samples += 1
        w = CpuWindow(sampler)
        time.sleep(3)
        foreign = w.close({})["foreign_cores"]
        quiet_samples = quiet_samples + 1 if foreign <= limit else 0
        if quiet_samples >= 2 or time.monotonic() > deadline:  # quiet for 6 s in a row
            if foreign > limit:
                log(f"machine still busy with other work ({foreign:.2f} cores); measuring anyway")
            return foreign
        if samples % 10 == 1:
            log(f"waiting for the machine to quiet down: other processes use {foreign:.2f} cores")


# ---------------------------------------------------------------- contenders ---------------

class Contender:
    """Start/stop of one mirroring solution, plus how to tell how far it got."""

    name = ""
    label = ""

    def __init__(self, ctx: "Context"):
        self.ctx = ctx
        self.procs: list[subprocess.Popen] = []

    def target_topic(self, source_topic: str) -> str:
        return f"helsinki.{source_topic}"

    def launch(self, target_bootstrap: str, source_topic: str, tag: str) -> None:
        raise NotImplementedError

    def wait_ready(self, timeout: float) -> None:
        """Until the contender mirrors new records (used before latency runs)."""

    def readable_records(self, watcher_total: int) -> int:
        return watcher_total

    def check_alive(self) -> None:
        for p in self.procs:
            if p.poll() is not None:
                raise BenchError(f"{self.name}: process {p.args[0]} exited with {p.returncode}"
                                 f" (logs in {self.ctx.work})")

    def memory(self) -> dict:
        return {f"{self.name}-{i}" if len(self.procs) > 1 else self.name:
                self.ctx.sampler.memory(p.pid) for i, p in enumerate(self.procs)}

    def stop(self) -> None:
        for p in self.procs:
            self.ctx.runner.stop(p, timeout=60)
        self.procs = []

    def settings(self) -> dict:
        return {}


class RawPipe(Contender):
    name = "raw"
    label = "raw pipe (librdkafka consume→produce, 1 process)"

    def target_topic(self, source_topic: str) -> str:
        return f"raw.{source_topic}"

    def launch(self, target_bootstrap: str, source_topic: str, tag: str, count: int = 0,
               create_target: bool = True) -> None:
        """Mirrors from the beginning; stops after `count` records (0: when stopped)."""
        ctx = self.ctx
        if create_target:
            create_topic(ctx.runner, target_bootstrap, self.target_topic(source_topic),
                         ctx.args.partitions)
        self.log_name = f"raw-{tag}"
        self.result_file = ctx.work / f"raw-{tag}.json"
        self.out = open(self.result_file, "w")
        argv = [ctx.bin_dir / "raw_pipe", "--source-bootstrap", ctx.helsinki, "--source-topic",
                source_topic, "--target-bootstrap", target_bootstrap, "--target-topic",
                self.target_topic(source_topic), "--timeout", ctx.args.phase_timeout + 600]
        if count:
            argv += ["--count", count]
        self.procs = [ctx.runner.start(self.log_name, argv, stdout=self.out, role="contender")]

    def wait_ready(self, timeout: float) -> None:
        log_path = self.ctx.work / f"{self.log_name}.log"
        wait_for(lambda: "raw_pipe: ready" in log_path.read_text(errors="replace"), timeout,
                 "raw_pipe to assign its partitions")

    def self_report(self) -> dict:
        self.out.close()
        text = self.result_file.read_text().strip()
        return json.loads(text.splitlines()[-1]) if text else {}

    def settings(self) -> dict:
        src = (ROOT / "bench" / "raw_pipe.cc").read_text()
        return {"source": "bench/raw_pipe.cc",
                "kafka_properties": dict(re.findall(r'\{"([a-z.]+)", "([^"]+)"\}', src))}


class MirrorMaker2(Contender):
    name = "mm2"
    label = "MirrorMaker 2 (Kafka 4.3.1, dedicated mode)"

    def launch(self, target_bootstrap: str, source_topic: str, tag: str) -> None:
        ctx = self.ctx
        self.tag, self.proxy, self.proxy_stats = tag, None, None
        text = MM2_TEMPLATE.read_text()
        text = (text.replace("@HELSINKI_BOOTSTRAP@", self.source_bootstrap())
                .replace("@TALLINN_BOOTSTRAP@", target_bootstrap)
                .replace("@TOPIC@", source_topic.replace(".", "\\\\.")))
        props = ctx.work / f"mm2-{tag}.properties"
        props.write_text(text)
        env = dict(os.environ, UOP_KAFKA_HEAP_OPTS=ctx.args.mm2_heap,
                   UOP_KAFKA_LOG4J=str(KAFKA_DIR / "connect-log4j2.properties"))
        self.log_name = f"mm2-{tag}"
        self.procs = [ctx.runner.start(
            self.log_name, [KAFKA_DIR / "kafka-tool.sh", "org.apache.kafka.connect.mirror.MirrorMaker",
                            props, "--clusters", "tallinn"], env=env, role="contender")]

    def source_bootstrap(self) -> str:
        return self.ctx.helsinki

    def settings(self) -> dict:
        lines = [l.strip() for l in MM2_TEMPLATE.read_text().splitlines()
                 if l.strip() and not l.startswith("#") and "@" not in l]
        return {"template": "bench/mm2-bench.properties", "heap": self.ctx.args.mm2_heap,
                "properties": dict(tuple(x.strip() for x in l.split("=", 1)) for l in lines)}

    def log_errors(self) -> list[str]:
        path = self.ctx.work / f"{self.log_name}.log"
        return [l for l in path.read_text(errors="replace").splitlines() if "] ERROR " in l][:5]


class Uopd(Contender):
    name = "uopd"
    label = "uopd helsinki → tallinn (allow-only policy)"

    def policy(self, topic: str) -> str:
        return (f"# Shares the benchmark topic with tallinn, nothing else (allow only).\n"
                f"dataset: {topic}\nshares:\n  - peer: tallinn\n")

    def launch(self, target_bootstrap: str, source_topic: str, tag: str) -> None:
        ctx = self.ctx
        self.tag, self.proxy, self.proxy_stats = tag, None, None
        base = ctx.work / f"uopd-{tag}"
        base.mkdir(parents=True, exist_ok=True)
        pki = ctx.pki
        (base / "policies-helsinki").mkdir(exist_ok=True)
        (base / "policies-tallinn").mkdir(exist_ok=True)
        (base / "policies-helsinki" / "bench.yaml").write_text(self.policy(source_topic))
        self.procs = []
        self.admin: dict[str, str] = {}
        owner_address = None
        for city, peer, bootstrap in (("helsinki", "tallinn", ctx.helsinki),
                                      ("tallinn", "helsinki", target_bootstrap)):
            peer_entry = (f"  - name: {peer}\n    ca: {pki}/{peer}/ca.pem\n"
                          f"    identity: uopd.{peer}.example\n")
            if owner_address and city == "tallinn":
                peer_entry += f"    address: {owner_address}\n"
            config = (f"# Written by bench/run.py: {city} ({'owner' if city == 'helsinki' else 'receiver'}).\n"
                      f"node: {city}\nlisten: 127.0.0.1:0\nadmin: 127.0.0.1:0\n"
                      f"tls: {{cert: {pki}/{city}/node.pem, key: {pki}/{city}/node.key}}\n"
                      f"peers:\n{peer_entry}"
                      f"kafka:\n  bootstrap: \"{bootstrap}\"\n")
            if ctx.uopd_kafka:
                config += "  properties:\n" + "".join(
                    f"    {k}: \"{v}\"\n" for k, v in ctx.uopd_kafka.items())
            config += f"policies: policies-{city}\n"
            if ctx.uopd_link:
                config += "link:\n" + "".join(f"  {k}: {v}\n" for k, v in ctx.uopd_link.items())
            (base / f"{city}.yaml").write_text(config)
            ready = base / f"{city}.ready.json"
            ready.unlink(missing_ok=True)
            env = dict(os.environ, **ctx.uopd_env) if ctx.uopd_env else None
            p = ctx.runner.start(f"uopd-{tag}-{city}",
                                 [ctx.bin_dir / "uopd", "--config", base / f"{city}.yaml",
                                  "--ready-file", ready], role="contender", cwd=base, env=env)
            self.procs.append(p)

            def started(p=p, ready=ready):
                if p.poll() is not None:
                    raise BenchError(f"uopd {city} exited with {p.returncode}; "
                                     f"see {ctx.work}/uopd-{tag}-{city}.log")
                return ready.exists() and json.loads(ready.read_text())
            info = wait_for(started, 60, f"uopd {city} to start")
            self.admin[city] = info["admin"]
            if owner_address is None:
                owner_address = self.owner_address_for_receiver(info["federation"])

    def owner_address_for_receiver(self, owner_address: str) -> str:
        """Where tallinn dials helsinki (UopdDelayed puts the delay line in between)."""
        return owner_address

    def metrics(self) -> dict[str, float]:
        return http_metrics(self.admin["tallinn"])

    def committed_records(self) -> int:
        return int(metric_sum(self.metrics(), "uop_import_records_total"))

    def wait_ready(self, timeout: float) -> None:
        want = self.ctx.args.partitions
        wait_for(lambda: metric_sum(self.metrics(), "uop_import_stream_up") >= want, timeout,
                 f"{want} uopd partition streams")

    def memory(self) -> dict:
        return {f"uopd-{city}": self.ctx.sampler.memory(p.pid)
                for city, p in zip(("helsinki", "tallinn"), self.procs)}

    def stop(self) -> None:
        # The receiver first, so it does not spend its shutdown reconnecting to the owner.
        for p in reversed(self.procs):
            self.ctx.runner.stop(p, timeout=60)
        self.procs = []

    def settings(self) -> dict:
        return {"link": self.ctx.uopd_link or "defaults (see broker/config.h)",
                "kafka.properties": self.ctx.uopd_kafka or {}, "env": self.ctx.uopd_env or {}}


# ---------------------------------------------------------------- the long link -------------

def free_port() -> int:
    """A loopback port nobody holds right now (bind 0, close). The caller binds it soon after;
    another process could take it in between, which the proxy reports as a bind failure."""
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DelayProxy:
    """bench/delay_proxy in front of `upstream`: every byte forwarded --delay-ms after it
    arrived, both ways, no bandwidth cap. Its statistics (bytes, CPU, lateness) are read when
    it stops."""

    def __init__(self, ctx: "Context", name: str, upstream: str, listen: str = "127.0.0.1:0"):
        self.ctx = ctx
        self.name = name
        ready = ctx.work / f"{name}.ready.json"
        ready.unlink(missing_ok=True)
        self.out_path = ctx.work / f"{name}.json"
        self.out = open(self.out_path, "w")
        # nice -10: the proxy stands for the network, so other users of the shared machine
        # should delay it as little as possible (its CPU is tiny); without the privilege,
        # nice warns and runs it at normal priority.
        self.p = ctx.runner.start(name, ["nice", "-n", "-10", ctx.bin_dir / "delay_proxy",
                                         "--listen", listen,
                                         "--upstream", upstream, "--delay-ms", ctx.args.delay_ms,
                                         "--ready-file", ready], stdout=self.out, role="proxy")

        def up():
            if self.p.poll() is not None:
                raise BenchError(f"delay_proxy {name} exited with {self.p.returncode}; see "
                                 f"{ctx.work}/{name}.log")
            return ready.exists() and json.loads(ready.read_text())
        self.address = wait_for(up, 20, f"delay_proxy {name}")["listen"]
        self.stats: dict = {}

    def stop(self) -> dict:
        if self.p is not None:
            self.ctx.runner.stop(self.p, timeout=10)
            self.p = None
            self.out.close()
            text = self.out_path.read_text().strip()
            self.stats = json.loads(text.splitlines()[-1]) if text else {}
        return self.stats


class UopdPolicy(Uopd):
    """uopd with a share that parses every record: drop a field, keep a bbox."""
    name = "uopd-policy"
    label = "uopd with field-drop + bbox policy"

    def policy(self, topic: str) -> str:
        return (f"# Drops parameters, keeps what lies in Helsinki's bbox (every load_gen site).\n"
                f"dataset: {topic}\nformat: sensorthings-observation\n"
                f"location: FeatureOfInterest.feature\nshares:\n  - peer: tallinn\n"
                f"    fields: {{drop: [parameters]}}\n"
                f"    spatial: {{within: {{bbox: {BENCH_BBOX}}}}}\n")

    @staticmethod
    def expected_value(value: str):
        doc = json.loads(value)
        doc.pop("parameters", None)
        return doc

    @staticmethod
    def received_value(value: str):
        return json.loads(value)


class UopdDelayed(Uopd):
    """uopd with the gRPC link (tallinn pulling from helsinki) through the delay proxy; each
    node still talks to its own Kafka cluster directly, as across a border."""
    name = "uopd-delay"

    @property
    def label(self) -> str:
        return f"uopd helsinki → tallinn, link through the {self.ctx.args.delay_ms:g} ms delay line"

    def owner_address_for_receiver(self, owner_address: str) -> str:
        self.proxy = DelayProxy(self.ctx, f"proxy-{self.tag}", owner_address)
        return self.proxy.address

    def stop(self) -> None:
        super().stop()
        proxy = getattr(self, "proxy", None)
        if proxy:
            self.proxy_stats = proxy.stop()


class MirrorMaker2Delayed(MirrorMaker2):
    """MirrorMaker 2 as its users deploy it: at the target (tallinn), its consumers reading the
    source cluster across the delay line (helsinki's DELAYED listener advertises the proxy, so
    every broker connection goes through it); its producers write tallinn directly."""
    name = "mm2-delay"

    @property
    def label(self) -> str:
        return (f"MirrorMaker 2 at tallinn, consuming helsinki through the "
                f"{self.ctx.args.delay_ms:g} ms delay line")

    def source_bootstrap(self) -> str:
        ctx = self.ctx
        self.proxy = DelayProxy(ctx, f"proxy-{self.tag}",
                                f"127.0.0.1:{ctx.helsinki_delayed_upstream}",
                                listen=f"127.0.0.1:{ctx.helsinki_delayed_port}")
        return self.proxy.address

    def stop(self) -> None:
        super().stop()
        proxy = getattr(self, "proxy", None)
        if proxy:
            self.proxy_stats = proxy.stop()


def proxy_loopback_bench(ctx: "Context") -> dict:
    """The proxy's own ceiling on this machine: MB through it on loopback, and its CPU."""
    out = ctx.runner.run("delay-proxy-loopback-bench",
                         [ctx.bin_dir / "delay_proxy", "--loopback-bench",
                          ctx.args.proxy_bench_mb, "--delay-ms", ctx.args.delay_ms], timeout=300)
    return json.loads(out.strip().splitlines()[-1])


# ---------------------------------------------------------------- the benchmark ------------

class Context:
    def __init__(self, args, work: Path, runner: Runner, sampler: Sampler):
        self.args = args
        self.work = work
        self.runner = runner
        self.sampler = sampler
        self.bin_dir = Path(args.bin).resolve()
        self.helsinki = ""
        self.helsinki_pid = 0
        # The delayed listener of helsinki (--delay-ms): the proxy's port it advertises, and
        # the port it really listens on (the proxy's upstream).
        self.helsinki_delayed_port = 0
        self.helsinki_delayed_upstream = 0
        self.pki = work / "pki"
        self.uopd_link = dict(kv.split("=", 1) for kv in args.uopd_link)
        self.uopd_kafka = dict(kv.split("=", 1) for kv in args.uopd_kafka)
        self.uopd_env = dict(kv.split("=", 1) for kv in args.uopd_env)


def fresh_target_cluster(ctx: Context, name: str) -> tuple[Path, str, int]:
    """A new tallinn cluster whose JVM has been warmed up by mirroring WARM_RECORDS records
    into it, so no contender pays for the broker's JIT compilation."""
    directory = ctx.work / f"kafka-{name}"
    log(f"starting a fresh tallinn cluster ({directory.name})")
    bootstrap, pid = ctx.runner.start_cluster("tallinn", directory)
    create_topic(ctx.runner, bootstrap, WARM_TOPIC, ctx.args.partitions)
    ctx.runner.run(f"warmup-{name}", [ctx.bin_dir / "raw_pipe", "--source-bootstrap", ctx.helsinki,
                                      "--source-topic", WARM_TOPIC, "--target-bootstrap", bootstrap,
                                      "--target-topic", WARM_TOPIC, "--count", WARM_RECORDS,
                                      "--timeout", 300], timeout=330)
    return directory, bootstrap, pid


def sample_records(bootstrap: str, topic: str, partition: int, count: int) -> list[dict]:
    r = subprocess.run(["kcat", "-C", "-b", bootstrap, "-t", topic, "-p", str(partition), "-o", "0",
                        "-c", str(count), "-e", "-q", "-X", "isolation.level=read_committed",
                        "-f", "%k\t%T\t%h\t%s\n"], capture_output=True, text=True, timeout=60)
    out = []
    for line in r.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) == 4:
            out.append({"key": parts[0], "ts": parts[1], "headers": parts[2], "value": parts[3]})
    return out


def verify_copy(ctx: Context, target_bootstrap: str, target_topic: str,
                contender: "Contender | None" = None) -> dict:
    """Key, value, timestamp and headers of the first records of two partitions, source vs
    target (a mirror may add headers after the original ones). A contender with a policy
    says what a value becomes (expected_value) and how to read what arrived (received_value)."""
    expect = getattr(contender, "expected_value", lambda v: v)
    got = getattr(contender, "received_value", lambda v: v)
    checked, problems = 0, []
    for partition in (0, ctx.args.partitions - 1):
        src = sample_records(ctx.helsinki, SOURCE_TOPIC, partition, 3)
        dst = sample_records(target_bootstrap, target_topic, partition, 3)
        for s, d in zip(src, dst):
            checked += 1
            if expect(s["value"]) != got(d["value"]):
                problems.append(f"p{partition}: value differs: {s['value'][:60]!r} vs "
                                f"{d['value'][:60]!r}")
            for field in ("key", "ts"):
                if s[field] != d[field]:
                    problems.append(f"p{partition}: {field} differs: {s[field][:60]!r} vs {d[field][:60]!r}")
            if not d["headers"].startswith(s["headers"]):
                problems.append(f"p{partition}: headers {s['headers']!r} not kept: {d['headers'][:120]!r}")
        if len(dst) < len(src):
            problems.append(f"p{partition}: only {len(dst)} of {len(src)} sampled records in the target")
    return {"sampled": checked, "ok": not problems and checked > 0, "problems": problems[:5]}


def throughput_attempt(ctx: Context, contender: Contender, attempt: int) -> dict:
    args = ctx.args
    tag = f"tp-{contender.name}-{attempt}"
    directory, bootstrap, broker_pid = fresh_target_cluster(ctx, tag)
    watcher = None
    try:
        quiet = wait_for_quiet(ctx.sampler, args.foreign_cpu_limit, args.quiet_wait)
        target = contender.target_topic(SOURCE_TOPIC)
        if isinstance(contender, RawPipe):
            # Made before the clock starts (uopd and MM2 create their target topics themselves).
            create_topic(ctx.runner, bootstrap, target, args.partitions)
        watcher = Watcher(ctx.runner, ctx.bin_dir, bootstrap, target, f"watch-{tag}")
        log(f"{contender.name}: mirroring {args.records:,} records (attempt {attempt})")
        window = CpuWindow(ctx.sampler)
        t0 = time.time()
        if isinstance(contender, RawPipe):
            contender.launch(bootstrap, SOURCE_TOPIC, tag, count=args.records, create_target=False)
        else:
            contender.launch(bootstrap, SOURCE_TOPIC, tag)
        launched = time.time()
        perfs = []
        if args.perf and isinstance(contender, Uopd):
            # A CPU profile of both nodes (a separate, diagnostic run: perf costs some CPU).
            for city, p in zip(("helsinki", "tallinn"), contender.procs):
                perfs.append(ctx.runner.start(
                    f"perf-{tag}-{city}", ["perf", "record", "-e", "cpu-clock", "-F", 499,
                                           "--call-graph", "dwarf,16384", "-o",
                                           ctx.work / f"perf-{tag}-{city}.data", "-p", p.pid]))
        deadline = time.monotonic() + args.phase_timeout
        t_last = None
        raw_exit = None
        while time.monotonic() < deadline:
            time.sleep(0.05)
            sample_t, total, _ = watcher.state()
            if isinstance(contender, Uopd):
                committed = contender.committed_records()
                if committed >= args.records:
                    t_last = time.time()
                    break
                contender.check_alive()
            elif isinstance(contender, RawPipe):
                if total >= args.records:
                    t_last = sample_t
                    break
                if raw_exit is None and ctx.runner.exited(contender.procs[0]):
                    raw_exit = contender.procs[0].returncode
                    if raw_exit != 0:
                        raise BenchError(f"raw_pipe exited with {raw_exit}; see {ctx.work}/raw-{tag}.log")
            else:
                if total >= args.records:
                    t_last = sample_t
                    break
                contender.check_alive()
        if t_last is None:
            raise BenchError(f"{contender.name}: not all {args.records} records readable within "
                             f"{args.phase_timeout} s")
        for p in perfs:
            p.send_signal(signal.SIGINT)
            p.wait(timeout=120)
        _, total, t_first = watcher.state()
        memory = contender.memory()
        groups = {"contender": [p.pid for p in contender.procs],
                  "broker_source": [ctx.helsinki_pid], "broker_target": [broker_pid]}
        proxy = getattr(contender, "proxy", None)
        if proxy is not None and proxy.p is not None:
            groups["proxy"] = [proxy.p.pid]
        cpu = window.close(groups)
        result = {"attempt": attempt, "target_topic": target, "launched_unix": round(launched, 3),
                  "first_record_unix": t_first, "last_record_unix": t_last,
                  "from_start_s": round(t_last - t0, 3),
                  "first_to_last_s": round(t_last - t_first, 3) if t_first else None,
                  "startup_s": round(t_first - t0, 3) if t_first else None,
                  "readable_end_offsets": total, "memory": memory, "cpu": cpu,
                  "foreign_cores_before": quiet}
        n = args.records
        result["records_per_s_from_start"] = round(n / result["from_start_s"])
        if result["first_to_last_s"]:
            result["records_per_s"] = round((n - 1) / result["first_to_last_s"])
        if isinstance(contender, Uopd):
            m = contender.metrics()
            result["uopd_metrics"] = {k: metric_sum(m, k) for k in (
                "uop_import_records_total", "uop_import_transactions_total",
                "uop_import_batches_total", "uop_import_duplicates_dropped_total",
                "uop_import_reconnects_total", "uop_import_deadletter_total")}
            om = http_metrics(contender.admin["helsinki"])
            result["uopd_metrics"]["uop_export_batches_total"] = metric_sum(om, "uop_export_batches_total")
            result["uopd_metrics"]["uop_export_bytes_total"] = metric_sum(om, "uop_export_bytes_total")
        if isinstance(contender, MirrorMaker2):
            result["mm2_errors"] = contender.log_errors()
        # Everything is in: stop the contender before verifying (no more CPU use).
        contender.stop()
        if getattr(contender, "proxy_stats", None):
            result["delay_proxy"] = contender.proxy_stats
        if isinstance(contender, RawPipe):
            result["raw_pipe_self_report"] = contender.self_report()
            hwm = result["raw_pipe_self_report"].get("vm_hwm_kib", -1)
            if hwm > 0:  # its own reading at exit beats our last sample
                result["memory"]["raw"]["vm_hwm_mib"] = round(hwm / 1024, 1)
        result["exact_count"] = (result.get("uopd_metrics", {}).get("uop_import_records_total")
                                 == n if isinstance(contender, Uopd) else total == n)
        result["verify"] = verify_copy(ctx, bootstrap, target, contender)
        return result
    finally:
        if watcher:
            watcher.close()
        contender.stop()
        ctx.runner.stop_cluster(directory, broker_pid, wipe=not ctx.args.keep_data)


def measure_throughput(ctx: Context, contender: Contender) -> dict:
    attempts = []
    for attempt in range(1, ctx.args.attempts + 1):
        r = throughput_attempt(ctx, contender, attempt)
        attempts.append(r)
        log(f"{contender.name}: {r.get('records_per_s', 0):,} records/s first→last, "
            f"{r['records_per_s_from_start']:,} from start; foreign CPU "
            f"{r['cpu']['foreign_cores']:.2f} cores")
        if r["cpu"]["foreign_cores"] <= ctx.args.foreign_cpu_limit:
            break
        log(f"{contender.name}: disturbed by other work on the machine; measuring again")
    best = min(attempts, key=lambda a: a["cpu"]["foreign_cores"])
    return {"chosen_attempt": best["attempt"], **best,
            "attempts": [{k: a.get(k) for k in ("attempt", "records_per_s",
                                                "records_per_s_from_start", "cpu")}
                         for a in attempts]}


def latency_run(ctx: Context, contender: Contender, target_bootstrap: str, rate: int,
                source_topic: str, broker_pid: int) -> dict:
    args = ctx.args
    uopctl = ctx.bin_dir / "uopctl"
    probe_bin = ctx.bin_dir / "latency_probe"
    target = contender.target_topic(source_topic)
    tag = f"lat-{contender.name}"
    # Warm-up: the contender must be started and mirroring new records (MM2's JIT warm too).
    warm = max(1000, int(rate * args.latency_warmup))
    log(f"{contender.name}: latency warm-up, {warm} records at {rate}/s")
    probe = ctx.runner.start(f"{tag}-warm-probe", [probe_bin, "--bootstrap", target_bootstrap,
                                                   "--topic", target, "--count", warm,
                                                   "--idle-stop", 5, "--timeout", 240],
                             stdout=subprocess.PIPE, role="probe")
    wait_for(lambda: "ready" in (ctx.work / f"{tag}-warm-probe.log").read_text(errors="replace")
             or probe.poll() is not None, 240, "the warm-up probe (and the target topic)")
    ctx.runner.run(f"{tag}-warm-simulate", [uopctl, "simulate", "--bootstrap", ctx.helsinki,
                                            "--topic", source_topic, "--count", warm, "--rate",
                                            rate, "--seed", 7], timeout=args.latency_warmup + 120)
    try:
        out, _ = probe.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        ctx.runner.stop(probe)
        raise BenchError(f"{contender.name}: warm-up records did not arrive")
    warm_result = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    # Records still in flight now are older than the measured run and ignored by its probe.
    if warm_result.get("count", 0) == 0:
        raise BenchError(f"{contender.name}: no warm-up record arrived")
    best = measured_latency(ctx, contender, target_bootstrap, source_topic, rate, broker_pid, tag)
    best["warmup"] = warm_result
    extra = {}
    for extra_rate in ctx.args.latency_extra_rate:
        extra[str(extra_rate)] = measured_latency(ctx, contender, target_bootstrap, source_topic,
                                                  extra_rate, broker_pid, f"{tag}-{extra_rate}")
    if extra:
        best["extra_rates"] = extra
    best["memory"] = contender.memory()
    return best


def wait_drained(ctx: Context, bootstrap: str, topic: str, timeout: float = 180) -> None:
    """Until the target topic stops growing (the contender has caught up on whatever an
    earlier, overloaded run left behind)."""
    watcher = Watcher(ctx.runner, ctx.bin_dir, bootstrap, topic, f"drain-{topic}")
    try:
        deadline = time.monotonic() + timeout
        last, since = None, time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.5)
            _, total, _ = watcher.state()
            if total != last:
                last, since = total, time.monotonic()
            elif time.monotonic() - since >= 3:
                return
        log(f"{topic} still growing after {timeout:.0f} s; measuring anyway")
    finally:
        watcher.close()


def measured_latency(ctx: Context, contender: Contender, target_bootstrap: str, source_topic: str,
                     rate: int, broker_pid: int, tag: str) -> dict:
    """One latency measurement at `rate`, repeated when other work disturbed it."""
    args = ctx.args
    target = contender.target_topic(source_topic)
    runs = []
    for attempt in range(1, args.attempts + 1):
        count = int(rate * args.latency_seconds)
        ready_file = ctx.work / f"{tag}-{attempt}.ready"
        wait_drained(ctx, target_bootstrap, target)
        wait_for_quiet(ctx.sampler, args.foreign_cpu_limit, args.quiet_wait)
        since_ms = int(time.time() * 1000)
        probe = ctx.runner.start(f"{tag}-{attempt}-probe",
                                 [ctx.bin_dir / "latency_probe", "--bootstrap", target_bootstrap,
                                  "--topic", target, "--count", count, "--since-ms", since_ms,
                                  "--idle-stop", 10, "--timeout", args.latency_seconds + 180,
                                  "--ready-file", ready_file], stdout=subprocess.PIPE, role="probe")
        wait_for(lambda: ready_file.exists() or probe.poll() is not None, 120, "the latency probe")
        window = CpuWindow(ctx.sampler)
        log(f"{contender.name}: latency run, {count} records at {rate}/s (attempt {attempt})")
        sim = ctx.runner.start(f"{tag}-{attempt}-simulate",
                               [ctx.bin_dir / "uopctl", "simulate", "--bootstrap", ctx.helsinki,
                                "--topic", source_topic, "--count", count, "--rate", rate,
                                "--seed", 100 + attempt], stdout=subprocess.PIPE, role="producer")
        try:
            sim_out, _ = sim.communicate(timeout=args.latency_seconds * 3 + 60)
        except subprocess.TimeoutExpired:
            ctx.runner.stop(sim)
            raise BenchError("uopctl simulate did not finish")
        try:
            out, _ = probe.communicate(timeout=args.latency_seconds + 200)
        except subprocess.TimeoutExpired:
            ctx.runner.stop(probe)
            raise BenchError(f"{contender.name}: latency probe did not finish")
        cpu = window.close({"contender": [p.pid for p in contender.procs],
                            "broker_source": [ctx.helsinki_pid], "broker_target": [broker_pid],
                            "probe": [probe.pid], "producer": [sim.pid]})
        result = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"count": 0}
        result["expected"] = count
        result["producer"] = json.loads(sim_out.strip().splitlines()[-1]) if sim_out.strip() else {}
        result["cpu"] = cpu
        result["attempt"] = attempt
        runs.append(result)
        log(f"{contender.name}: p50 {result.get('p50_ms')} ms, p99 {result.get('p99_ms')} ms over "
            f"{result.get('count')} records at {rate}/s; foreign CPU {cpu['foreign_cores']:.2f} cores")
        if cpu["foreign_cores"] <= args.foreign_cpu_limit:
            break
        log(f"{contender.name}: disturbed by other work on the machine; measuring again")
    best = dict(min(runs, key=lambda r: r["cpu"]["foreign_cores"]))
    best["rate"] = rate
    best["attempts"] = [{k: r.get(k) for k in ("attempt", "p50_ms", "p99_ms", "count", "cpu")}
                        for r in runs]
    return best


def measure_latency(ctx: Context, contenders: list[Contender], rate: int) -> dict:
    directory, bootstrap, broker_pid = fresh_target_cluster(ctx, "latency")
    out = {}
    try:
        for c in contenders:
            source = f"bench.latency.{c.name}"
            create_topic(ctx.runner, ctx.helsinki, source, ctx.args.partitions)
            try:
                c.launch(bootstrap, source, "lat")
                c.wait_ready(120)
                out[c.name] = latency_run(ctx, c, bootstrap, rate, source, broker_pid)
            except (BenchError, OSError, ValueError, KeyError) as e:
                log(f"{c.name}: latency failed: {e!r}")
                out[c.name] = {"error": str(e)}
            finally:
                c.stop()
    finally:
        ctx.runner.stop_cluster(directory, broker_pid, wipe=not ctx.args.keep_data)
    return out


# ---------------------------------------------------------------- report -------------------

def fmt_ratio(x):
    return f"{x:.2f}×" if x is not None else "–"


LONG_LINK_PAIRS = (("uopd", "uopd-delay"), ("mm2", "mm2-delay"))


def long_link_section(ctx: Context, results: dict, targets: list[dict]) -> list[str]:
    """The --delay-ms rows: each contender on loopback and across the delay line, side by side
    with its own loopback figure, the raw pipe and the other contender (same run). Appends the
    long-link targets to `targets` and the rows to results["long_link"]."""
    args = ctx.args
    tp = results["throughput"]
    if not any(d in tp for _, d in LONG_LINK_PAIRS):
        return []
    d = args.delay_ms
    mb = args.record_bytes / 1e6
    raw = tp.get("raw", {}).get("records_per_s")
    rows = []
    labels = {"raw": RawPipe.label, "uopd": Uopd.label, "mm2": MirrorMaker2.label,
              "uopd-delay": f"uopd, gRPC link through the {d:g} ms delay line",
              "mm2-delay": f"MirrorMaker 2 at tallinn, consuming helsinki through the {d:g} ms "
                           f"delay line"}
    for key in ("raw", "uopd", "uopd-delay", "mm2", "mm2-delay"):
        t = tp.get(key)
        if t is None:
            continue
        row = {"contender": key, "label": labels[key]}
        if "error" in t:
            row["error"] = t["error"]
            rows.append(row)
            continue
        r = t.get("records_per_s")
        loop_key = key.removesuffix("-delay")
        loop = tp.get(loop_key, {}).get("records_per_s") if key != loop_key else None
        proxy = t.get("delay_proxy") or {}
        wall = t.get("cpu", {}).get("wall_s") or 0
        row.update({
            "records_per_s": r, "mb_per_s": round(r * mb, 1) if r else None,
            "vs_own_loopback": round(r / loop, 3) if r and loop else None,
            "vs_raw": round(r / raw, 3) if r and raw else None,
            "records_per_s_from_start": t.get("records_per_s_from_start"),
            "startup_s": t.get("startup_s"),
            "cpu_us_per_record": {k: round(t["cpu"].get(f"{k}_cpu_s", 0) * 1e6 / args.records, 1)
                                  for k in ("contender", "broker_source", "broker_target")},
            "proxy_cpu_cores": round(t["cpu"].get("proxy_cpu_s", 0) / wall, 3) if proxy and wall else None,
            "proxy": proxy, "foreign_cores": t["cpu"].get("foreign_cores"),
            "rounds": [x.get("records_per_s") for x in t.get("rounds", [])],
            "uopd_metrics": t.get("uopd_metrics")})
        rows.append(row)
    results["long_link"] = {"delay_ms_each_way": d, "rows": rows,
                            "proxy_loopback_bench": results.get("proxy_loopback_bench")}
    by = {r["contender"]: r for r in rows}
    ud, md2 = by.get("uopd-delay", {}), by.get("mm2-delay", {})
    if ud.get("vs_own_loopback") is not None:
        targets.append({"target": f"uopd across {d:g} ms each way ≥ 0.8× its loopback records/s",
                        "value": f"{ud['vs_own_loopback']:.2f}×",
                        "pass": ud["vs_own_loopback"] >= 0.8})
    if ud.get("records_per_s") and md2.get("records_per_s"):
        x = ud["records_per_s"] / md2["records_per_s"]
        targets.append({"target": f"uopd across {d:g} ms ≥ 2× MirrorMaker 2 across {d:g} ms",
                        "value": f"{x:.2f}×", "pass": x >= 2.0})
    out = [f"## Long link: {d:g} ms each way ({2 * d:g} ms round trip)", ""]
    out.append(f"`bench/delay_proxy` forwards every byte {d:g} ms after it arrived, both ways, no "
               f"bandwidth cap. uopd: tallinn dials helsinki's federation port through it (each "
               f"node reaches its own Kafka directly). MirrorMaker 2: runs at tallinn as its "
               f"users deploy it; its consumers (and its offset-sync producer) reach helsinki "
               f"through it: helsinki's `DELAYED` listener advertises the proxy's address, so "
               f"every broker connection goes through the line. Same data, same fresh "
               f"target cluster per run as the table above.")
    out.append("")
    out.append("| contender | records/s (first→last) | MB/s | × own loopback | × raw pipe "
               "| records/s (from start) | start-up s | CPU µs/record: mirror / source broker / "
               "target broker | proxy: MB/s peak (1 s), CPU cores, late mean / max ms "
               "| foreign cores |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for r in rows:
        if "error" in r:
            out.append(f"| {r['label']} | failed: {r['error']} |||||||||")
            continue
        p = r["proxy"]
        ptxt = (f"{p.get('peak_mb_per_s_1s')}, {r['proxy_cpu_cores']}, "
                f"{p.get('lateness_mean_ms')} / {p.get('lateness_max_ms')}" if p else "–")
        cpu = " / ".join(str(v) for v in r["cpu_us_per_record"].values())
        out.append(f"| {r['label']} | {r['records_per_s']:,} | {r['mb_per_s']} "
                   f"| {fmt_ratio(r['vs_own_loopback'])} | {fmt_ratio(r['vs_raw'])} "
                   f"| {r['records_per_s_from_start']:,} | {r['startup_s']} | {cpu} | {ptxt} "
                   f"| {r['foreign_cores']} |")
    out.append("")
    for r in rows:
        rounds = [x for x in r.get("rounds") or [] if x]
        if len(rounds) > 1:
            out.append(f"- {r['contender']}: rounds, records/s first→last: "
                       f"{', '.join(f'{x:,}' for x in rounds)} (median in the table)")
    b = results.get("proxy_loopback_bench")
    if b:
        out.append(f"- The proxy alone on loopback (`delay_proxy --loopback-bench "
                   f"{args.proxy_bench_mb} --delay-ms {d:g}`, both directions at once, as fast as the "
                   f"sender and the sink go): {b['mb_per_s_each_way']} MB/s each way "
                   f"({b['mb_per_s_both_ways']} MB/s both), {b['proxy_cpu_s_per_gb']} CPU s per "
                   f"GB forwarded; bytes intact: {b['intact']}. (Its lateness there, mean "
                   f"{b['proxy']['lateness_mean_ms']} ms, is queueing behind a saturated sink; "
                   f"the lateness in the table is the one under the mirrors' load.)")
    out.append(f"- uopd link settings: {ctx.uopd_link or 'defaults (broker/config.h)'}; sizing "
               f"rule in docs/configuration.md (`link.window_bytes`).")
    out.append("")
    return out


def build_report(ctx: Context, results: dict) -> tuple[dict, str]:
    args = ctx.args
    mb = args.record_bytes / 1e6
    tp, lat = results["throughput"], results.get("latency", {})
    raw = tp.get("raw", {})
    raw_rate = raw.get("records_per_s")
    raw_start = raw.get("records_per_s_from_start")
    rows = []
    for key, label in (("raw", RawPipe.label), ("mm2", MirrorMaker2.label), ("uopd", Uopd.label),
                       ("uopd-policy", UopdPolicy.label)):
        t = tp.get(key)
        if t is None:
            continue
        row = {"contender": key, "label": label}
        if "error" in t:
            row["error"] = t["error"]
        else:
            r, rs = t.get("records_per_s"), t.get("records_per_s_from_start")
            row.update({"records_per_s": r, "mb_per_s": round(r * mb, 1) if r else None,
                        "vs_raw": round(r / raw_rate, 3) if r and raw_rate else None,
                        "records_per_s_from_start": rs,
                        "mb_per_s_from_start": round(rs * mb, 1) if rs else None,
                        "vs_raw_from_start": round(rs / raw_start, 3) if rs and raw_start else None,
                        "startup_s": t.get("startup_s"), "memory_throughput": t.get("memory"),
                        "contender_cpu_s": t["cpu"].get("contender_cpu_s"),
                        # CPU per mirrored record: on 2 cores the brokers' share decides as much
                        # as the mirror's own.
                        "cpu_us_per_record": {
                            k: round(t["cpu"][f"{k}_cpu_s"] * 1e6 / args.records, 1)
                            for k in ("contender", "broker_source", "broker_target")},
                        "foreign_cores": t["cpu"].get("foreign_cores")})
        l = lat.get(key, {})
        row.update({"p50_ms": l.get("p50_ms"), "p99_ms": l.get("p99_ms"),
                    "latency_error": l.get("error"), "memory_latency": l.get("memory")})
        peaks = {}
        mems = [t.get("memory") or {}, l.get("memory") or {}]
        mems += [r.get("memory") or {} for r in t.get("rounds", [])]
        for mem in mems:
            for proc, m in mem.items():
                peaks[proc] = max(peaks.get(proc, 0), m.get("vm_hwm_mib", 0), m.get("vm_rss_max_mib", 0))
        row["peak_rss_mib"] = peaks
        rows.append(row)
    if "uopd-policy" not in tp:
        rows.append({"contender": "uopd-policy", "label": UopdPolicy.label, "na": N_A_POLICY})

    by = {r["contender"]: r for r in rows}
    targets = []
    u, m, w = by.get("uopd", {}), by.get("mm2", {}), by.get("raw", {})

    def ratio_target(name: str, x, limit: float, at_least: bool = True) -> None:
        if x is None:
            return
        targets.append({"target": name, "value": f"{x:.2f}×",
                        "pass": x >= limit if at_least else x <= limit})

    if u.get("records_per_s") and m.get("records_per_s"):
        ratio_target(f"uopd ≥ {TARGETS['vs_mm2']:g}× MirrorMaker 2 records/s",
                     u["records_per_s"] / m["records_per_s"], TARGETS["vs_mm2"])
    ratio_target(f"uopd ≥ {TARGETS['vs_raw']:g}× raw pipe records/s", u.get("vs_raw"),
                 TARGETS["vs_raw"])
    uc, wc = u.get("cpu_us_per_record") or {}, w.get("cpu_us_per_record") or {}
    if uc.get("contender") and wc.get("contender"):
        ratio_target(f"uopd CPU per record (owner + receiver) ≤ {TARGETS['cpu_vs_raw']:g}× the "
                     f"raw pipe's", uc["contender"] / wc["contender"], TARGETS["cpu_vs_raw"],
                     at_least=False)
    if uc.get("broker_target") and wc.get("broker_target"):
        ratio_target(f"target broker CPU per record under uopd ≤ "
                     f"{TARGETS['target_broker_vs_raw']:g}× under the raw pipe",
                     uc["broker_target"] / wc["broker_target"], TARGETS["target_broker_vs_raw"],
                     at_least=False)
    for rate in args.latency_extra_rate:
        ul = (lat.get("uopd", {}).get("extra_rates") or {}).get(str(rate), {})
        wl = (lat.get("raw", {}).get("extra_rates") or {}).get(str(rate), {})
        if ul.get("p99_ms") is not None and wl.get("p99_ms"):
            targets.append({"target": f"uopd p99 at {rate:,}/s ≤ {TARGETS['p99_vs_raw']:g}× the "
                                      f"raw pipe's p99 at that rate",
                            "value": f"{ul['p99_ms']:.0f} vs {wl['p99_ms']:.0f} ms "
                                     f"({ul['p99_ms'] / wl['p99_ms']:.2f}×)",
                            "pass": ul["p99_ms"] <= TARGETS["p99_vs_raw"] * wl["p99_ms"]})
    if u.get("p99_ms") is not None:
        targets.append({"target": f"uopd p99 < {TARGETS['p99_ms']:g} ms at the latency rate",
                        "value": f"{u['p99_ms']:.0f} ms", "pass": u["p99_ms"] < TARGETS["p99_ms"]})
    for proc, mib in (u.get("peak_rss_mib") or {}).items():
        targets.append({"target": f"{proc} RSS < {TARGETS['rss_mib']:g} MiB", "value": f"{mib:.0f} MiB",
                        "pass": mib < TARGETS["rss_mib"]})
    ratio_target(f"uopd with field-drop + bbox policy ≥ {TARGETS['policy_vs_raw']:g}× raw pipe "
                 f"records/s", by.get("uopd-policy", {}).get("vs_raw"), TARGETS["policy_vs_raw"])

    md = []
    md.append(f"# uopd vs MirrorMaker 2 vs raw pipe — {results['meta']['finished_utc']}")
    md.append("")
    md.append(f"{args.records:,} records × {args.record_bytes} B (key + value + header) in "
              f"{args.partitions} partitions, helsinki → tallinn, two single-node Kafka 4.3.1 "
              f"clusters on one {results['meta']['cpus']}-core machine. "
              f"**The machine was shared** with other engineers' builds and tests; see "
              f"`foreign` (cores used by other processes during each measurement).")
    md.append("")
    md.append("| contender | records/s (first→last) | MB/s | × raw | records/s (from start) | MB/s | × raw "
              "| start-up s | latency p50 / p99 ms | peak RSS MiB | CPU µs/record: mirror / source broker / target broker | foreign cores |")
    md.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|")
    for r in rows:
        if "na" in r:
            md.append(f"| {r['label']} | {r['na']} |||||||||||")
            continue
        if "error" in r:
            md.append(f"| {r['label']} | failed: {r['error']} |||||||||||")
            continue
        lat_txt = (f"{r['p50_ms']:.0f} / {r['p99_ms']:.0f}" if r.get("p99_ms") is not None
                   else f"failed: {r['latency_error']}" if r.get("latency_error") else "–")
        rss = ", ".join(f"{k} {v:.0f}" for k, v in r["peak_rss_mib"].items())
        cpu = " / ".join(str(v) for v in r["cpu_us_per_record"].values())
        md.append(f"| {r['label']} | {r['records_per_s']:,} | {r['mb_per_s']} | {fmt_ratio(r['vs_raw'])} "
                  f"| {r['records_per_s_from_start']:,} | {r['mb_per_s_from_start']} "
                  f"| {fmt_ratio(r['vs_raw_from_start'])} | {r['startup_s']} | {lat_txt} | {rss} "
                  f"| {cpu} | {r['foreign_cores']} |")
    md.append("")
    extra_rows = []
    for key in ("raw", "mm2", "uopd"):
        for r, l in (lat.get(key, {}).get("extra_rates") or {}).items():
            extra_rows.append(f"| {key} | {int(r):,}/s | {l.get('p50_ms')} | {l.get('p99_ms')} "
                              f"| {l.get('max_ms')} | {l.get('count')}/{l.get('expected')} "
                              f"| {l.get('cpu', {}).get('foreign_cores')} |")
    if extra_rows:
        md.append("Latency at other rates:")
        md.append("")
        md.append("| contender | rate | p50 ms | p99 ms | max ms | records | foreign cores |")
        md.append("|---|---:|---:|---:|---:|---:|---:|")
        md.extend(extra_rows)
        md.append("")
    md.extend(long_link_section(ctx, results, targets))
    md.append("## Targets")
    md.append("")
    for t in targets:
        md.append(f"- {'PASS' if t['pass'] else 'MISS'}: {t['target']}: {t['value']}")
    md.append("")
    md.append("## How")
    md.append("")
    rate = results.get("latency_rate")
    md.append(f"- Throughput: first→last = first record readable in tallinn (read_committed) to "
              f"the last one; from start = contender launch to the last one. Readable counts from "
              f"`bench/topic_watch` (sum of last stable offsets, every 50 ms); for uopd from "
              f"`uop_import_records_total` (counted at commit), since its transaction markers "
              f"also take offsets. MB/s = records/s × {args.record_bytes} B / 10⁶.")
    md.append(f"- Latency: {rate}/s (half of uopd's first→last rate) for {args.latency_seconds} s "
              f"with `uopctl simulate` (≈450 B records, CreateTime = now) after a "
              f"{args.latency_warmup} s warm-up, measured by `bench/latency_probe` (now − record "
              f"timestamp, read_committed, from the end of the target topic).")
    md.append(f"- Each throughput run: fresh tallinn cluster warmed with {WARM_RECORDS:,} records, "
              f"cold consumer group, fresh target topic. Latency runs: one more fresh tallinn "
              f"cluster, a fresh source topic per contender.")
    md.append(f"- uopd link: {ctx.uopd_link or 'defaults'}; uopd kafka.properties: "
              f"{ctx.uopd_kafka or 'none'}; uopd environment: {ctx.uopd_env or 'none'}. MM2: `bench/mm2-bench.properties`, heap "
              f"`{args.mm2_heap}`. Raw pipe: `bench/raw_pipe.cc`.")
    md.append(f"- Machine: {results['meta']['cpu_model']}, {results['meta']['cpus']} cores, "
              f"{results['meta']['mem_gib']} GiB; load average before {results['meta']['loadavg_before']}, "
              f"after {results['meta'].get('loadavg_after')}. Commit {results['meta']['git_commit']}.")
    for key in ("raw", "mm2", "uopd"):
        t = tp.get(key, {})
        rounds = [r["records_per_s"] for r in t.get("rounds", []) if r.get("records_per_s")]
        if len(rounds) > 1:
            md.append(f"- {key}: {len(rounds)} throughput rounds, records/s first→last: "
                      f"{', '.join(f'{x:,}' for x in rounds)} (median in the table)")
        v = t.get("verify")
        if v:
            md.append(f"- {key}: copy check (key, value, timestamp, headers of sampled records): "
                      f"{'ok' if v['ok'] else 'PROBLEMS ' + '; '.join(v['problems'])}; exact count: "
                      f"{t.get('exact_count')}")
        l = lat.get(key, {})
        if l.get("count"):
            md.append(f"- {key}: latency records {l['count']}/{l['expected']}, CreateTime kept: "
                      f"{l.get('create_time')} CreateTime, {l.get('log_append_time')} LogAppendTime; "
                      f"max |timestamp − producer clock in value| {l.get('payload_time_skew_max_ms')} ms "
                      f"over {l.get('payload_checked')} checked")
    report = {"meta": results["meta"], "config": results["config"], "rows": rows,
              "targets": targets, "throughput": tp, "latency": lat, "latency_rate": rate}
    if results.get("long_link"):
        report["long_link"] = results["long_link"]
    return report, "\n".join(md) + "\n"


def print_table(report: dict) -> None:
    print()
    print(f"{'contender':<12} {'rec/s f→l':>11} {'MB/s':>6} {'×raw':>6} {'rec/s start':>11} "
          f"{'×raw':>6} {'p50ms':>6} {'p99ms':>6}  peak RSS MiB")
    for r in report["rows"]:
        if "na" in r:
            print(f"{r['contender']:<12} {r['na']}")
            continue
        if "error" in r:
            print(f"{r['contender']:<12} failed: {r['error']}")
            continue
        rss = ", ".join(f"{k} {v:.0f}" for k, v in r["peak_rss_mib"].items())
        p50 = f"{r['p50_ms']:.0f}" if r.get("p50_ms") is not None else "–"
        p99 = f"{r['p99_ms']:.0f}" if r.get("p99_ms") is not None else "–"
        print(f"{r['contender']:<12} {r['records_per_s']:>11,} {r['mb_per_s']:>6} "
              f"{fmt_ratio(r['vs_raw']):>6} {r['records_per_s_from_start']:>11,} "
              f"{fmt_ratio(r['vs_raw_from_start']):>6} {p50:>6} {p99:>6}  {rss}")
    ll = report.get("long_link")
    if ll:
        print(f"\nlong link, {ll['delay_ms_each_way']:g} ms each way:")
        for r in ll["rows"]:
            if "error" in r:
                print(f"{r['contender']:<12} failed: {r['error']}")
                continue
            print(f"{r['contender']:<12} {r['records_per_s']:>11,} {r['mb_per_s']:>6} "
                  f"×loopback {fmt_ratio(r['vs_own_loopback']):>6} ×raw {fmt_ratio(r['vs_raw']):>6}")
    print()
    for t in report["targets"]:
        print(f"{'PASS' if t['pass'] else 'MISS'}  {t['target']}: {t['value']}")
    print()


def write_results(report: dict, md: str, out_dir: Path, complete: bool) -> list[Path]:
    """A timestamped copy always; latest.* only for a complete run (an interrupted or failed
    run must not replace the last good table)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    if not complete:
        stamp += "-partial"
    files = [(f"{stamp}.json", json.dumps(report, indent=2) + "\n"), (f"{stamp}.md", md)]
    if complete:
        files += [("latest.json", json.dumps(report, indent=2) + "\n"), ("latest.md", md)]
    written = []
    for name, text in files:
        tmp = out_dir / (name + ".tmp")
        tmp.write_text(text)
        tmp.replace(out_dir / name)
        written.append(out_dir / name)
    return written


def machine_meta() -> dict:
    cpu_model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "broker", "policy", "proto"],
                           capture_output=True, text=True).stdout.strip()
    return {"host": platform.node(), "kernel": platform.release(), "cpu_model": cpu_model,
            "cpus": os.cpu_count(), "mem_gib": round(mem_kib / 2**20, 1),
            "git_commit": commit + ("+uncommitted changes in broker/policy/proto" if dirty else ""),
            "loadavg_before": Path("/proc/loadavg").read_text().split()[:3],
            "shared_machine": True}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=2_000_000)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--record-bytes", type=int, default=300)
    ap.add_argument("--contenders", default="",
                    help="comma-separated, run in this order (uopd's rate sets the latency rate); "
                         "default raw,uopd,uopd-policy,mm2, with --delay-ms raw,uopd,uopd-delay,mm2,mm2-delay")
    ap.add_argument("--latency-seconds", type=int, default=30)
    ap.add_argument("--latency-warmup", type=int, default=10, help="seconds of warm-up traffic")
    ap.add_argument("--latency-rate", type=int, default=0,
                    help="records/s for the latency runs (default: half of uopd's rate)")
    ap.add_argument("--latency-extra-rate", type=int, action="append", default=[],
                    metavar="RATE", help="also measure latency at this rate (repeatable)")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--repeat", type=int, default=1,
                    help="throughput rounds per contender (interleaved); the median is reported")
    ap.add_argument("--attempts", type=int, default=3, help="tries per measurement when disturbed")
    ap.add_argument("--foreign-cpu-limit", type=float, default=0.25,
                    help="cores other processes may use during a measurement before it is redone")
    ap.add_argument("--quiet-wait", type=float, default=600,
                    help="seconds to wait for other work to calm down before each measurement")
    ap.add_argument("--phase-timeout", type=int, default=900)
    ap.add_argument("--uopd-link", action="append", default=[], metavar="KEY=VALUE",
                    help="uopd link: setting (repeatable)")
    ap.add_argument("--uopd-kafka", action="append", default=[], metavar="KEY=VALUE",
                    help="uopd kafka.properties entry (repeatable)")
    ap.add_argument("--uopd-env", action="append", default=[], metavar="KEY=VALUE",
                    help="environment variable for both uopd processes (repeatable)")
    ap.add_argument("--mm2-heap", default="-Xmx1g")
    ap.add_argument("--delay-ms", type=float, default=0,
                    help="also measure uopd and MirrorMaker 2 across a delay-line proxy that "
                         "forwards every byte this many ms after it arrived (each way): adds "
                         "the uopd-delay and mm2-delay contenders")
    ap.add_argument("--proxy-bench-mb", type=int, default=2000,
                    help="MB each way for the proxy's own loopback measurement (--delay-ms)")
    ap.add_argument("--perf", action="store_true",
                    help="profile the uopd nodes with perf during their throughput run "
                         "(diagnostics; perf data in the work directory)")
    ap.add_argument("--bin", default=str(ROOT / "build" / "bin"))
    ap.add_argument("--workdir", help="default: a new directory under /tmp")
    ap.add_argument("--keep-data", action="store_true", help="keep the clusters' data")
    ap.add_argument("--results", default=str(RESULTS_DIR))
    args = ap.parse_args()
    if not args.contenders:
        args.contenders = ("raw,uopd,uopd-delay,mm2,mm2-delay" if args.delay_ms > 0
                           else "raw,uopd,uopd-policy,mm2")
    if any(c.strip().endswith("-delay") for c in args.contenders.split(",")) and args.delay_ms <= 0:
        ap.error("the -delay contenders need --delay-ms")

    bin_dir = Path(args.bin)
    tools = ["raw_pipe", "latency_probe", "load_gen", "topic_watch", "uopd", "uopctl"]
    if args.delay_ms > 0:
        tools.append("delay_proxy")
    for tool in tools:
        if not (bin_dir / tool).is_file():
            print(f"bench: {bin_dir / tool} missing; build first (bench/run.sh does)", file=sys.stderr)
            return 2
    if not shutil.which("kcat"):
        print("bench: kcat is needed (apt-get install kafkacat)", file=sys.stderr)
        return 2
    work = Path(args.workdir or tempfile.mkdtemp(prefix="uop-bench-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    log(f"work directory {work} (logs of every process)")
    # Our own copy of the binaries: a rebuild in the tree during the run must not change (or
    # break) what is measured.
    (work / "bin").mkdir(exist_ok=True)
    binaries = {}
    for tool in tools:
        shutil.copy2(bin_dir / tool, work / "bin" / tool)
        binaries[tool] = dt.datetime.fromtimestamp((bin_dir / tool).stat().st_mtime).isoformat(
            timespec="seconds")
    args.bin = str(work / "bin")

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)

    sampler = Sampler()
    runner = Runner(work, sampler)
    ctx = Context(args, work, runner, sampler)
    started = time.time()
    results: dict = {"meta": machine_meta(), "throughput": {}, "latency": {}}
    results["config"] = {k: v for k, v in vars(args).items()}
    results["config"]["source_topic"] = SOURCE_TOPIC
    results["meta"]["binaries_built"] = binaries
    contenders = {"raw": RawPipe(ctx), "uopd": Uopd(ctx), "uopd-policy": UopdPolicy(ctx),
                  "mm2": MirrorMaker2(ctx),
                  "uopd-delay": UopdDelayed(ctx), "mm2-delay": MirrorMaker2Delayed(ctx)}
    order = [c.strip() for c in args.contenders.split(",") if c.strip()]
    results["config"]["settings"] = {n: contenders[n].settings() for n in order}
    try:
        subprocess.run([str(ROOT / "deploy/pki/make-pki.sh"), str(ctx.pki)], check=True,
                       stdout=subprocess.DEVNULL, timeout=120)
        log("starting the helsinki (source) cluster")
        extra = []
        if args.delay_ms > 0:
            # A second listener whose advertised address is the delay proxy's (started per
            # MirrorMaker 2 run on that port, forwarding to the listener's real port).
            ctx.helsinki_delayed_port = free_port()
            extra = ["--extra-listener", f"DELAYED=127.0.0.1:{ctx.helsinki_delayed_port}"]
        ctx.helsinki, ctx.helsinki_pid = runner.start_cluster("helsinki", work / "kafka-helsinki",
                                                              extra)
        if args.delay_ms > 0:
            ctx.helsinki_delayed_upstream = int(
                (work / "kafka-helsinki" / "listener.DELAYED").read_text().strip())
            log(f"delay line: the proxy alone, {args.proxy_bench_mb} MB each way on loopback")
            results["proxy_loopback_bench"] = proxy_loopback_bench(ctx)
            log(f"delay line: {results['proxy_loopback_bench']['mb_per_s_each_way']} MB/s each "
                f"way, {results['proxy_loopback_bench']['proxy_cpu_s_per_gb']} CPU s/GB")
        create_topic(runner, ctx.helsinki, SOURCE_TOPIC, args.partitions)
        create_topic(runner, ctx.helsinki, WARM_TOPIC, args.partitions)
        log(f"loading {args.records:,} records of {args.record_bytes} B into {SOURCE_TOPIC}")
        load = json.loads(runner.run("load", [ctx.bin_dir / "load_gen", "--bootstrap", ctx.helsinki,
                                              "--topic", SOURCE_TOPIC, "--count", args.records,
                                              "--partitions", args.partitions, "--record-bytes",
                                              args.record_bytes], timeout=1800).strip())
        runner.run("load-warmup", [ctx.bin_dir / "load_gen", "--bootstrap", ctx.helsinki, "--topic",
                                   WARM_TOPIC, "--count", WARM_RECORDS, "--partitions",
                                   args.partitions, "--record-bytes", args.record_bytes, "--seed", 2],
                   timeout=900)
        results["load"] = load
        log(f"loaded in {load['seconds']} s")
        # Rounds interleave the contenders, so a slow drift of the machine hits all of them;
        # the table shows each contender's median round (all rounds are in the JSON).
        runs: dict[str, list[dict]] = {name: [] for name in order}
        for round_no in range(1, args.repeat + 1):
            for name in order:
                if args.repeat > 1:
                    log(f"throughput round {round_no} of {args.repeat}: {name}")
                try:
                    runs[name].append(measure_throughput(ctx, contenders[name]))
                except (BenchError, OSError, ValueError, KeyError) as e:
                    log(f"{name}: throughput failed: {e!r}")
                    runs[name].append({"error": str(e)})
        for name, rs in runs.items():
            ok = sorted((r for r in rs if "error" not in r), key=lambda r: r.get("records_per_s", 0))
            if not ok:
                results["throughput"][name] = rs[-1]
                continue
            chosen = dict(ok[(len(ok) - 1) // 2])  # the median (the lower one of an even count)
            chosen["rounds"] = [{k: r.get(k) for k in ("records_per_s", "records_per_s_from_start",
                                                       "startup_s", "memory", "error")}
                                | {"foreign_cores": r.get("cpu", {}).get("foreign_cores")}
                                for r in rs]
            results["throughput"][name] = chosen
        if not args.skip_latency:
            rate = args.latency_rate
            if not rate:
                u = results["throughput"].get("uopd", {})
                if u.get("records_per_s"):
                    rate = int(u["records_per_s"] / 2)
            if rate:
                results["latency_rate"] = rate
                results["latency"] = measure_latency(
                    ctx, [contenders[n] for n in order if not n.endswith("-delay")], rate)
            else:
                log("no uopd rate measured and no --latency-rate: latency runs skipped")
    except KeyboardInterrupt:
        log("interrupted: stopping everything")
        results["interrupted"] = True
    except BenchError as e:
        log(f"failed: {e}")
        results["error"] = str(e)
    finally:
        runner.close()
        sampler.stop.set()
    results["meta"]["finished_utc"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    results["meta"]["duration_s"] = round(time.time() - started)
    results["meta"]["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
    results["meta"]["workdir"] = str(work)
    if not results["throughput"]:
        print(json.dumps(results, indent=2))
        return 1
    report, md = build_report(ctx, results)
    if results.get("error"):
        report["error"] = results["error"]
    complete = (not results.get("error") and not results.get("interrupted")
                and all("error" not in results["throughput"].get(n, {"error": 1}) for n in order))
    written = write_results(report, md, Path(args.results), complete)
    print_table(report)
    log("wrote " + ", ".join(str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)
                             for p in written))
    return 0 if not results.get("error") and not results.get("interrupted") else 1


if __name__ == "__main__":
    sys.exit(main())
