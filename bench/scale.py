#!/usr/bin/env python3
"""Scale benchmark: how uopd's threads, memory and Kafka clients grow with origin partitions.

    python3 bench/scale.py --bin build/bin          # 1, 10 and 100 datasets x 6 partitions

One owner (helsinki) and one receiver (tallinn) uopd on two real single-node Kafka 4.3.1
clusters (bench/run.py's machinery: Runner, Sampler, demo PKI, node configs). Per scale, on
fresh clusters: D datasets of --partitions-per-dataset partitions are created on helsinki, and
a helsinki policy file per dataset shares it with tallinn (which creates its mirror and
dead-letter topics itself). One bench/load_gen for all datasets produces --rate records/s in total
(300-byte records, evenly over the partitions); once it runs, both nodes are started and
sampled every --period seconds for --sample-seconds after tallinn's start (each scale capped
at --cap-seconds from the owner's start):

  * per uopd process: threads (/proc/PID/status), VmRSS and VmHWM, Kafka clients (threads
    named rdk:main: librdkafka starts one per client instance);
  * from tallinn's /metrics: uop_import_stream_up and uop_import_partitions_assigned (sums),
    uop_import_records_total (so the records/s actually mirrored is known);
  * time from tallinn's start until every origin partition streams;
  * CPU of both nodes, both brokers and the load, and of everything else on the machine.

Issue 6's targets: at 600 partitions all streaming within 60 s, <= 150 threads and
<= 512 MiB RSS per uopd process. Writes bench/results/scale-latest.{json,md} and a timestamped
copy (a failed or interrupted run writes only the timestamped copy, marked -partial).
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (bench/run.py: the shared harness)
from run import BenchError, log  # noqa: E402

ROOT = run.ROOT
TARGET_THREADS = 150
TARGET_RSS_MIB = 512.0
TARGET_STREAMING_S = 60.0

# One AdminClient call for all topics of a scale: a TopicCommand JVM per topic would cost
# ~100 JVM start-ups (minutes of CPU on 2 cores) at 100 datasets. Run by the JDK's
# source-file launcher through deploy/kafka/kafka-tool.sh (Kafka's own client jars).
CREATE_TOPICS_JAVA = """\
import java.util.*;
import org.apache.kafka.clients.admin.*;

public class CreateTopics {
  // Args: BOOTSTRAP PARTITIONS TOPIC...
  public static void main(String[] args) throws Exception {
    Properties props = new Properties();
    props.put("bootstrap.servers", args[0]);
    List<NewTopic> topics = new ArrayList<>();
    for (int i = 2; i < args.length; i++) {
      topics.add(new NewTopic(args[i], Integer.parseInt(args[1]), (short) 1));
    }
    try (Admin admin = Admin.create(props)) {
      admin.createTopics(topics).all().get();
    }
  }
}
"""


class TimedRunner(run.Runner):
    """run.Runner that remembers when each process was started (monotonic seconds)."""

    def __init__(self, work: Path, sampler: run.Sampler):
        super().__init__(work, sampler)
        self.started_at: dict[int, float] = {}

    def start(self, name, argv, stdout=None, env=None, role=None, cwd=None):
        t = time.monotonic()
        p = super().start(name, argv, stdout=stdout, env=env, role=role, cwd=cwd)
        self.started_at[p.pid] = t
        return p


# ---------------------------------------------------------------- per-process samples ------

def read_status(pid: int) -> dict[str, int]:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("Threads", "VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def thread_names(pid: int) -> collections.Counter:
    """Threads of `pid` by name, digits folded (rdk:broker1 and rdk:broker2 are one kind)."""
    names: collections.Counter = collections.Counter()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return names
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                names[re.sub(r"\d+", "#", f.read().strip())] += 1
        except OSError:
            pass  # the thread ended meanwhile
    return names


class NodeSampler:
    """Samples both uopd nodes every `period` seconds in the background, from before they are
    started until close(). The thread-name scan (one file per thread) is stretched so that it
    costs at most ~5% of a core: at thousands of threads it would otherwise disturb the run."""

    def __init__(self, contender: run.Uopd, period: float, t0: float):
        self.contender = contender
        self.period = period
        self.t0 = t0
        self.samples: list[dict] = []
        self.peak_names: dict[str, tuple[int, dict]] = {}  # city -> (threads, names) at peak
        self.clients: dict[str, int] = {}
        self.name_scans = 0
        self.exits: dict[str, int] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.next_scan = 0.0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        tick = time.monotonic()
        while not self.stop.is_set():
            self._sample()
            tick += self.period
            self.stop.wait(max(0.0, tick - time.monotonic()))

    def _sample(self) -> None:
        now = time.monotonic()
        sample: dict = {"t": round(now - self.t0, 2), "nodes": {}}
        scan = now >= self.next_scan
        scan_cost = 0.0
        for city, p in zip(("helsinki", "tallinn"), list(self.contender.procs)):
            if p.poll() is not None:
                self.exits.setdefault(city, p.returncode)
                continue
            st = read_status(p.pid)
            node = {"threads": st.get("Threads"), "rss_mib": round(st.get("VmRSS", 0) / 1024, 1),
                    "hwm_mib": round(st.get("VmHWM", 0) / 1024, 1)}
            if scan:
                c0 = time.monotonic()
                names = thread_names(p.pid)
                scan_cost += time.monotonic() - c0
                self.clients[city] = names.get("rdk:main", 0)
                best = self.peak_names.get(city)
                if best is None or sum(names.values()) > best[0]:
                    self.peak_names[city] = (sum(names.values()), dict(names.most_common()))
            node["clients"] = self.clients.get(city)
            sample["nodes"][city] = node
        if scan:
            self.name_scans += 1
            self.next_scan = now + max(self.period, 20 * scan_cost)
        admin = getattr(self.contender, "admin", {}).get("tallinn")
        if admin:
            m = run.http_metrics(admin)
            if m:
                sample["stream_up"] = int(run.metric_sum(m, "uop_import_stream_up"))
                sample["assigned"] = int(run.metric_sum(m, "uop_import_partitions_assigned"))
                sample["records"] = int(run.metric_sum(m, "uop_import_records_total"))
                sample["lag_records"] = int(run.metric_sum(m, "uop_import_lag_records"))
                sample["reconnects"] = int(run.metric_sum(m, "uop_import_reconnects_total"))
        with self.lock:
            self.samples.append(sample)

    def latest(self) -> dict:
        with self.lock:
            return self.samples[-1] if self.samples else {}

    def close(self) -> list[dict]:
        self.stop.set()
        self.thread.join(timeout=10)
        with self.lock:
            return list(self.samples)


def log_events(path: Path) -> list[dict]:
    """Warnings and errors of a uopd JSON log: per event, how often and the first reason."""
    events: dict[str, dict] = {}
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if not isinstance(e, dict) or e.get("level") not in ("warn", "error"):
            continue
        entry = events.setdefault(e.get("event", "?"), {
            "event": e.get("event", "?"), "level": e["level"], "count": 0, "first_ts": e.get("ts"),
            "first_reason": str(e.get("reason") or e.get("error") or e.get("message") or "")})
        entry["count"] += 1
    return sorted(events.values(), key=lambda x: -x["count"])


# ---------------------------------------------------------------- one scale ----------------

def create_topics(ctx: run.Context, topics: list[str], partitions: int) -> None:
    source = ctx.work / "CreateTopics.java"
    source.write_text(CREATE_TOPICS_JAVA)
    env = dict(os.environ, UOP_KAFKA_JAVA_OPTS="-XX:TieredStopAtLevel=1")
    ctx.runner.run(f"create-topics-{len(topics)}",
                   [run.KAFKA_DIR / "kafka-tool.sh", source, ctx.helsinki, partitions, *topics],
                   timeout=300, env=env)

    def all_led():
        out = subprocess.run(["kcat", "-L", "-J", "-b", ctx.helsinki], capture_output=True,
                             text=True, timeout=30).stdout
        try:
            meta = {t["topic"]: t["partitions"] for t in json.loads(out)["topics"]}
        except (ValueError, KeyError):
            return False
        return all(len(meta.get(t, [])) == partitions and
                   all(p.get("leader", -1) >= 0 for p in meta[t]) for t in topics)
    run.wait_for(all_led, 120, f"leaders for all {len(topics) * partitions} partitions", period=1)


def policy_share_key(ctx: run.Context) -> str:
    """The policy key listing a dataset's peers: `shares` (the policy language) or `share`
    (before it). Asked of the uopd under test (`--check`), so this script fits either build."""
    probe = ctx.work / "policy-probe"
    pki = ctx.pki
    errors = []
    for key in ("shares", "share"):
        shutil.rmtree(probe, ignore_errors=True)
        (probe / "policies").mkdir(parents=True)
        (probe / "policies" / "probe.yaml").write_text(
            f"dataset: scale.probe\n{key}:\n  - peer: tallinn\n")
        (probe / "helsinki.yaml").write_text(
            f"node: helsinki\nlisten: 127.0.0.1:0\nadmin: 127.0.0.1:0\n"
            f"tls: {{cert: {pki}/helsinki/node.pem, key: {pki}/helsinki/node.key}}\n"
            f"peers:\n  - name: tallinn\n    ca: {pki}/tallinn/ca.pem\n"
            f"    identity: uopd.tallinn.example\n"
            f"kafka:\n  bootstrap: \"127.0.0.1:9\"\npolicies: policies\n")
        r = subprocess.run([str(ctx.bin_dir / "uopd"), "--config", str(probe / "helsinki.yaml"),
                            "--check"], capture_output=True, text=True, timeout=60)
        if r.returncode == 0:
            return key
        errors.append(f"{key}: {r.stderr.strip()}")
    raise BenchError("uopd --check accepts no policy this script can write: " + "; ".join(errors))


def source_records(bootstrap: str, topics: list[str], partitions: int) -> int | None:
    """Records in the origin topics: the sum of their end offsets (load_gen's producer is not
    transactional, so offsets are records). One kcat call for all partitions."""
    argv = ["kcat", "-Q", "-b", bootstrap]
    for t in topics:
        for p in range(partitions):
            argv += ["-t", f"{t}:{p}:-1"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout
    except subprocess.TimeoutExpired:
        return None
    offsets = re.findall(r"\] offset (-?\d+)", out)
    if len(offsets) != len(topics) * partitions:
        return None
    return sum(int(o) for o in offsets)


def write_policies(base: Path, topics: list[str], key: str) -> None:
    """A policy file per dataset sharing it with tallinn, except the first: run.Uopd.launch
    writes that one (bench.yaml) itself."""
    directory = base / "policies-helsinki"
    directory.mkdir(parents=True, exist_ok=True)
    for topic in topics[1:]:
        (directory / f"{topic}.yaml").write_text(
            f"# Written by bench/scale.py: shares {topic} with tallinn.\n"
            f"dataset: {topic}\n{key}:\n  - peer: tallinn\n")


def node_summary(samples: list[dict], city: str) -> dict:
    nodes = [s["nodes"][city] for s in samples if city in s["nodes"]]
    if not nodes:
        return {}
    return {"threads_max": max(n["threads"] or 0 for n in nodes),
            "threads_last": nodes[-1]["threads"],
            "rss_max_mib": max(n["rss_mib"] for n in nodes),
            "hwm_mib": max(n["hwm_mib"] for n in nodes),
            "clients_max": max(n["clients"] or 0 for n in nodes),
            "clients_last": nodes[-1]["clients"]}


def mirrored_rate(samples: list[dict], seconds: float) -> float | None:
    """Records/s committed in tallinn over the last `seconds` of the samples."""
    with_records = [s for s in samples if "records" in s]
    if len(with_records) < 2:
        return None
    last = with_records[-1]
    first = next((s for s in with_records if s["t"] >= last["t"] - seconds), with_records[0])
    if last["t"] <= first["t"]:
        return None
    return round((last["records"] - first["records"]) / (last["t"] - first["t"]))


def scale_run(ctx: run.Context, datasets: int, run_no: int) -> dict:
    args = ctx.args
    per = args.partitions_per_dataset
    partitions = datasets * per
    tag = f"p{partitions}-r{run_no}"
    runner: TimedRunner = ctx.runner
    result: dict = {"datasets": datasets, "partitions": partitions, "run": run_no}
    contender = run.Uopd(ctx)
    loads: list = []
    clusters: list[tuple[Path, int]] = []
    sampler_thread = None
    window = None
    try:
        log(f"{partitions} partitions ({datasets} datasets): fresh clusters")
        hel_dir, tll_dir = ctx.work / f"kafka-helsinki-{tag}", ctx.work / f"kafka-tallinn-{tag}"
        ctx.helsinki, ctx.helsinki_pid = runner.start_cluster("helsinki", hel_dir)
        clusters.append((hel_dir, ctx.helsinki_pid))
        tallinn, tallinn_pid = runner.start_cluster("tallinn", tll_dir)
        clusters.append((tll_dir, tallinn_pid))
        topics = [f"scale.d{i:03d}" for i in range(datasets)]
        create_topics(ctx, topics, per)
        write_policies(ctx.work / f"uopd-{tag}", topics, ctx.share_key)

        # The load runs before the nodes start (a city's topics are already flowing when a
        # receiver comes up), so their start-up is measured under load, without the load's own
        # start-up burst. One load_gen for all datasets (round-robin over the topics): one
        # process per dataset cost more than a core of this 2-core machine at 100 datasets,
        # which starved the brokers. uopctl simulate's five keys would leave partitions empty.
        count = int(args.rate * (args.settle + args.cap_seconds + 120))
        topic_args = [arg for topic in topics for arg in ("--topic", topic)]
        loads.append(runner.start(
            f"load-{tag}",
            [ctx.bin_dir / "load_gen", "--bootstrap", ctx.helsinki, *topic_args,
             "--count", count, "--partitions", per, "--rate", f"{args.rate:.3f}", "--seed", 1],
            role="load"))
        time.sleep(args.settle)
        dead = [p for p in loads if p.poll() is not None]
        if dead:
            raise BenchError(f"{len(dead)} load_gen processes exited early (first: exit "
                             f"{dead[0].returncode}; logs in {ctx.work})")
        result["foreign_cores_before"] = run.wait_for_quiet(ctx.sampler, args.foreign_cpu_limit,
                                                            args.quiet_wait)
        result["loadavg_before"] = Path("/proc/loadavg").read_text().split()[:3]

        log(f"{partitions} partitions: load at {args.rate:,} records/s running; starting uopd")
        window = run.CpuWindow(ctx.sampler)
        t0 = time.monotonic()
        sampler_thread = NodeSampler(contender, args.period, t0)
        cap_end = t0 + args.cap_seconds
        try:
            contender.launch(tallinn, topics[0], tag)
        except BenchError as e:
            result["error"] = f"start: {e}"
        t_tll = (runner.started_at.get(contender.procs[1].pid)
                 if len(contender.procs) > 1 else None)
        # What the load really offered over the window (not just what load_gen was asked for).
        offered0 = (time.monotonic(), source_records(ctx.helsinki, topics, per))
        result["tallinn_started_s"] = round(t_tll - t0, 2) if t_tll else None
        end = min(cap_end, (t_tll or t0) + args.sample_seconds)
        # A node that did not report ready in time is still sampled (how far did it get?);
        # one that exited ends the scale.
        next_log = time.monotonic() + 10
        while time.monotonic() < end:
            time.sleep(0.5)
            if sampler_thread.exits:
                city, rc = next(iter(sampler_thread.exits.items()))
                log_path = ctx.work / f"uopd-{tag}-{city}.log"
                lines = log_path.read_text(errors="replace").strip().splitlines()
                result["error"] = (f"uopd {city} exited with {rc}: "
                                   f"{lines[-1][:300] if lines else '(empty log)'}")
                break
            if time.monotonic() >= next_log:
                next_log += 10
                last = sampler_thread.latest()
                log(f"  t={last.get('t')} s: streams up {last.get('stream_up')}, assigned "
                    f"{last.get('assigned')} of {partitions}; threads "
                    + ", ".join(f"{c} {n['threads']}" for c, n in last.get("nodes", {}).items()))
        offered1 = (time.monotonic(), source_records(ctx.helsinki, topics, per))
        samples = sampler_thread.close()
        if offered0[1] is not None and offered1[1] is not None and offered1[0] > offered0[0]:
            result["offered_per_s"] = round((offered1[1] - offered0[1]) /
                                            (offered1[0] - offered0[0]))
        result["source_records_end"] = offered1[1]
        result["cpu"] = window.close({
            "uopd_helsinki": [p.pid for p in contender.procs[:1]],
            "uopd_tallinn": [p.pid for p in contender.procs[1:2]],
            "broker_helsinki": [ctx.helsinki_pid], "broker_tallinn": [tallinn_pid],
            "load": [p.pid for p in loads]})
        result["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
        result["samples"] = samples
        result["thread_names_at_peak"] = {c: n for c, (_, n) in sampler_thread.peak_names.items()}
        result["thread_name_scans"] = sampler_thread.name_scans
        for city in ("helsinki", "tallinn"):
            result[city] = node_summary(samples, city)
        # Times from tallinn's start (the receiver decides when streams come up).
        base_t = result["tallinn_started_s"] or 0.0
        def first(pred):
            s = next((s for s in samples if pred(s)), None)
            return round(s["t"] - base_t, 2) if s else None
        result["first_stream_s"] = first(lambda s: s.get("stream_up", 0) > 0)
        result["all_assigned_s"] = first(lambda s: s.get("assigned", 0) >= partitions)
        result["all_streaming_s"] = first(lambda s: s.get("stream_up", 0) >= partitions)
        ups = [s.get("stream_up", 0) for s in samples]
        result["stream_up_max"] = max(ups) if ups else 0
        result["stream_up_last"] = ups[-1] if ups else 0
        reached = next((i for i, s in enumerate(samples)
                        if s.get("stream_up", 0) >= partitions), None)
        result["stream_up_min_after_all"] = (min(ups[reached:]) if reached is not None else None)
        result["mirrored_per_s_last_30s"] = mirrored_rate(samples, 30)
        last = next((s for s in reversed(samples) if "records" in s), {})
        result["records_mirrored"] = last.get("records")
        result["lag_records_last"] = last.get("lag_records")
        result["reconnects"] = last.get("reconnects")
        result["sampled_s"] = samples[-1]["t"] - base_t if samples else 0
        log(f"{partitions} partitions: all streaming after {result['all_streaming_s']} s "
            f"(max {result['stream_up_max']}/{partitions}); threads helsinki "
            f"{result['helsinki'].get('threads_max')}, tallinn {result['tallinn'].get('threads_max')}"
            f"; foreign CPU {result['cpu']['foreign_cores']} cores")
        # Stop the nodes while they are still under load (the receiver first: run.Uopd.stop).
        t_stop = time.monotonic()
        codes = []
        for p in reversed(contender.procs):
            codes.append(runner.stop(p, timeout=60))
        contender.procs = []
        result["stop_s"] = round(time.monotonic() - t_stop, 1)
        result["stop_exit_codes"] = {"tallinn": codes[0] if codes else None,
                                     "helsinki": codes[1] if len(codes) > 1 else None}
        result["log_events"] = {city: log_events(ctx.work / f"uopd-{tag}-{city}.log")
                                for city in ("helsinki", "tallinn")}
        return result
    finally:
        if sampler_thread:
            sampler_thread.close()
        contender.stop()
        for p in loads:
            runner.stop(p, timeout=10)
        for directory, pid in reversed(clusters):
            runner.stop_cluster(directory, pid, wipe=not args.keep_data)


# ---------------------------------------------------------------- report -------------------

def chosen(runs: list[dict]) -> dict:
    """The median run by time to all streaming (a run that never got there counts as last)."""
    ok = [r for r in runs if "samples" in r]
    if not ok:
        return runs[-1]
    ok.sort(key=lambda r: r.get("all_streaming_s") if r.get("all_streaming_s") is not None
            else float("inf"))
    return ok[(len(ok) - 1) // 2]


def fmt(x, suffix="") -> str:
    return "–" if x is None else f"{x:,}{suffix}" if isinstance(x, int) else f"{x}{suffix}"


def build_report(meta: dict, config: dict, scales: dict[int, list[dict]]) -> tuple[dict, str]:
    rows = []
    base = None
    for partitions, runs in sorted(scales.items()):
        r = chosen(runs)
        row = {k: v for k, v in r.items() if k not in ("samples",)}
        row["runs"] = [{k: x.get(k) for k in ("run", "all_streaming_s", "error")} for x in runs]
        if base is None and "helsinki" in r:
            base = r
        rows.append(row)

    md = [f"# uopd scale: threads, memory and Kafka clients per node — {meta['finished_utc']}", ""]
    md.append(f"One owner (helsinki) and one receiver (tallinn) uopd on two single-node Kafka "
              f"4.3.1 clusters, {config['rate']:,} records/s in total (300 B, `bench/load_gen`, "
              f"one process, round-robin over the datasets) spread over all origin partitions, {config['runs']} run(s) per "
              f"scale, sampled every {config['period']} s for {config['sample_seconds']} s after "
              f"tallinn's start. One {meta['cpus']}-core machine; **the machine was shared** with "
              f"other engineers' builds and tests: see *foreign cores* (CPU used by processes not "
              f"started here) and the load averages.")
    md.append("")
    md.append("| origin partitions (datasets × 6) | all streaming after s (from tallinn start) "
              "| threads max (at end) helsinki / tallinn | RSS max MiB helsinki / tallinn "
              "| Kafka clients max (at end) helsinki / tallinn | offered records/s (window) "
              "| mirrored records/s, last 30 s (lag at end) "
              "| CPU cores helsinki / tallinn / brokers / load | foreign cores (machine busy) | load avg before → after |")
    md.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        h, t = r.get("helsinki") or {}, r.get("tallinn") or {}
        cpu = r.get("cpu") or {}
        w = cpu.get("wall_s") or 0
        cores = (lambda k: round(cpu.get(k, 0) / w, 2) if w else None)
        streaming = (fmt(r.get("all_streaming_s")) if r.get("all_streaming_s") is not None else
                     f"not within {r.get('sampled_s', 0):.0f} s: max {r.get('stream_up_max')} of "
                     f"{r['partitions']}")
        if r.get("stream_up_min_after_all") is not None:
            # Streams that came up and then fell (restarts) are not "streaming".
            streaming += (f" (then ≥ {r['stream_up_min_after_all']} up; "
                          f"{fmt(r.get('reconnects'))} stream restarts)")
        label = f"{r['partitions']} ({r['datasets']} × 6)"
        if "helsinki" not in r:
            md.append(f"| {label} | failed: {r.get('error')} |||||||||")
            continue
        brokers = (round((cpu.get("broker_helsinki_cpu_s", 0) + cpu.get("broker_tallinn_cpu_s", 0))
                         / w, 2) if w else None)
        md.append(f"| {label} | {streaming} "
                  f"| {fmt(h.get('threads_max'))} ({fmt(h.get('threads_last'))}) / "
                  f"{fmt(t.get('threads_max'))} ({fmt(t.get('threads_last'))}) "
                  f"| {h.get('rss_max_mib')} / {t.get('rss_max_mib')} "
                  f"| {fmt(h.get('clients_max'))} ({fmt(h.get('clients_last'))}) / "
                  f"{fmt(t.get('clients_max'))} ({fmt(t.get('clients_last'))}) "
                  f"| {fmt(r.get('offered_per_s'))} "
                  f"| {fmt(r.get('mirrored_per_s_last_30s'))} (lag {fmt(r.get('lag_records_last'))}) "
                  f"| {cores('uopd_helsinki_cpu_s')} / {cores('uopd_tallinn_cpu_s')} / {brokers} "
                  f"/ {cores('load_cpu_s')} "
                  f"| {cpu.get('foreign_cores')} ({cpu.get('machine_busy_cores')}) "
                  f"| {' '.join(r.get('loadavg_before') or [])} → {' '.join(r.get('loadavg_after') or [])} |")
    md.append("")
    if base and len(rows) > 1:
        md.append(f"Growth against the {base['partitions']}-partition row (×):")
        md.append("")
        md.append("| origin partitions | partitions × | threads × helsinki / tallinn "
                  "| RSS × helsinki / tallinn | clients × helsinki / tallinn |")
        md.append("|---|---:|---:|---:|---:|")
        for r in rows:
            if "helsinki" not in r or r is base or r.get("all_streaming_s") is None:
                continue  # a scale that never streamed everywhere has not paid its costs yet
            def ratio(city, key):
                a, b = (r.get(city) or {}).get(key), (base.get(city) or {}).get(key)
                return f"{a / b:.1f}" if a and b else "–"
            md.append(f"| {r['partitions']} | {r['partitions'] / base['partitions']:.0f} "
                      f"| {ratio('helsinki', 'threads_max')} / {ratio('tallinn', 'threads_max')} "
                      f"| {ratio('helsinki', 'rss_max_mib')} / {ratio('tallinn', 'rss_max_mib')} "
                      f"| {ratio('helsinki', 'clients_max')} / {ratio('tallinn', 'clients_max')} |")
        md.append("")
    targets = []
    top = rows[-1] if rows else {}
    if top.get("helsinki"):
        s = top.get("all_streaming_s")
        stayed = top.get("stream_up_min_after_all")
        targets.append((f"all {top['partitions']} partitions streaming ≤ {TARGET_STREAMING_S:.0f} s "
                        f"after start, and staying up", s is not None and s <= TARGET_STREAMING_S
                        and stayed == top["partitions"],
                        f"{s} s, then at least {stayed} of {top['partitions']} up to the end"
                        if s is not None else
                        f"not within {top.get('sampled_s', 0):.0f} s (max {top.get('stream_up_max')})"))
        # Threads and memory at a scale count only once every partition streamed: a node that
        # never got that far has not paid for them yet.
        reached = s is not None
        for city in ("helsinki", "tallinn"):
            n = top[city]
            if not n:
                continue
            rss = max(n["rss_max_mib"], n["hwm_mib"])
            caveat = "" if reached else (f"; not measured at {top['partitions']} partitions: only "
                                         f"{top.get('stream_up_max')} streamed")
            targets.append((f"{city} threads ≤ {TARGET_THREADS}",
                            reached and n["threads_max"] <= TARGET_THREADS,
                            f"{n['threads_max']} ({n['threads_max'] / TARGET_THREADS:.1f}× the "
                            f"target){caveat}"))
            targets.append((f"{city} RSS ≤ {TARGET_RSS_MIB:.0f} MiB",
                            reached and rss <= TARGET_RSS_MIB,
                            f"{rss:.0f} MiB ({rss / TARGET_RSS_MIB:.2f}× the target){caveat}"))
        # The largest scale that did stream everywhere, against the same targets.
        done = [r for r in rows if r.get("all_streaming_s") is not None and r.get("helsinki")]
        if done and done[-1] is not top:
            d = done[-1]
            for city in ("helsinki", "tallinn"):
                n = d[city]
                rss = max(n["rss_max_mib"], n["hwm_mib"])
                targets.append((f"{city} threads ≤ {TARGET_THREADS} (already at {d['partitions']} "
                                f"partitions)", n["threads_max"] <= TARGET_THREADS,
                                f"{n['threads_max']} ({n['threads_max'] / TARGET_THREADS:.1f}×)"))
                targets.append((f"{city} RSS ≤ {TARGET_RSS_MIB:.0f} MiB (already at "
                                f"{d['partitions']} partitions)", rss <= TARGET_RSS_MIB,
                                f"{rss:.0f} MiB ({rss / TARGET_RSS_MIB:.2f}×)"))
    md.append(f"## Targets (issue 6, at {top.get('partitions', 600)} partitions)")
    md.append("")
    for what, ok, value in targets:
        md.append(f"- {'PASS' if ok else 'MISS'}: {what}: {value}")
    for r in rows:
        if r.get("error"):
            md.append(f"- {r['partitions']} partitions: {r['error']}")
    md.append("")
    for r in rows:
        if r.get("stop_exit_codes"):
            md.append(f"- {r['partitions']} partitions: stopping both nodes (SIGTERM, 60 s each, "
                      f"then SIGKILL) took {r.get('stop_s')} s, exit codes "
                      + ", ".join(f"{c} {x}" for c, x in r["stop_exit_codes"].items())
                      + " (-9: killed after 60 s)")
    md.append("")
    md.append("## Warnings and errors the nodes logged (event × count: first reason)")
    md.append("")
    for r in rows:
        for city, events in (r.get("log_events") or {}).items():
            if events:
                md.append(f"- {r['partitions']} partitions, {city}: " + "; ".join(
                    f"`{e['event']}` × {e['count']}: {e['first_reason'][:160]}" for e in events[:5]))
    md.append("")
    md.append("## Where the threads are (thread names, digits folded, at each node's peak)")
    md.append("")
    for r in rows:
        for city, names in (r.get("thread_names_at_peak") or {}).items():
            top_names = ", ".join(f"{k} {v}" for k, v in list(names.items())[:8])
            md.append(f"- {r['partitions']} partitions, {city}: {top_names}")
    md.append("")
    md.append("## How")
    md.append("")
    md.append("- `python3 bench/scale.py` (`--help` for the options). Per scale: fresh helsinki and "
              "tallinn clusters; D topics of 6 partitions on helsinki, one helsinki policy file "
              "per dataset (`dataset:` + `share: [{peer: tallinn}]`); tallinn creates its mirror "
              "and dead-letter topics itself (part of its start-up).")
    md.append(f"- Load: one `bench/load_gen --rate {config['rate']}` with a `--topic` per "
              f"dataset (round-robin), started {config['settle']} s before the nodes (a city's "
              f"topics already flow when a receiver starts). `load_gen` spreads records evenly "
              f"over all partitions (`uopctl simulate`'s five keys leave partitions empty) at the "
              f"fixed 300 B of the throughput benchmark. Its CPU is the *load* figure.")
    md.append("- Threads: `Threads` of /proc/PID/status; RSS: the largest VmRSS sampled (and VmHWM); "
              "Kafka clients: threads named `rdk:main` (one per librdkafka client instance), read "
              "from /proc/PID/task/*/comm (that scan is stretched to cost ≤ ~5% of a core at "
              "thousands of threads). Streaming: sums of `uop_import_stream_up` and "
              "`uop_import_partitions_assigned` on tallinn's /metrics; the time is from tallinn's "
              "launch to the first sample with every origin partition streaming.")
    md.append("- Offered records/s: the origin topics' end offsets (`kcat -Q`) at tallinn's "
              "start and at the end of the window (– : not measured; runs before 2026-12-02 "
              "16:35 UTC did not). Mirrored: `uop_import_records_total` on tallinn over the "
              "last 30 s; lag: `uop_import_lag_records`.")
    md.append(f"- Each scale capped at {config['cap_seconds']} s from the owner's start; "
              f"CPU per process from /proc/PID/stat over the sampling window; foreign = machine "
              f"busy time minus everything this harness started.")
    md.append(f"- Machine: {meta['cpu_model']}, {meta['cpus']} cores, {meta['mem_gib']} GiB. "
              f"Commit {meta['git_commit']}. Binaries from `{config['bin_source']}`.")
    if config["runs"] < 3:
        md.append(f"- {config['runs']} run per scale: the times are single measurements, not "
                  f"medians (repeat with `--runs 3` on a quiet machine).")
    report = {"meta": meta, "config": config, "rows": rows,
              "targets": [{"target": w, "pass": ok, "value": v} for w, ok, v in targets],
              "scales": {str(k): v for k, v in scales.items()}}
    return report, "\n".join(md) + "\n"


def print_table(report: dict) -> None:
    print()
    print(f"{'partitions':>10} {'streaming s':>12} {'threads hel/tll':>16} {'RSS MiB hel/tll':>16} "
          f"{'clients hel/tll':>16} {'mirrored/s':>11} {'foreign':>8}")
    for r in report["rows"]:
        if "helsinki" not in r:
            print(f"{r['partitions']:>10} failed: {r.get('error')}")
            continue
        h, t = r["helsinki"], r["tallinn"]
        s = r.get("all_streaming_s")
        s_txt = f"{s}" if s is not None else f">{r.get('sampled_s', 0):.0f} ({r.get('stream_up_max')})"
        print(f"{r['partitions']:>10} {s_txt:>12} "
              f"{str(h.get('threads_max')) + ' / ' + str(t.get('threads_max')):>16} "
              f"{str(h.get('rss_max_mib')) + ' / ' + str(t.get('rss_max_mib')):>16} "
              f"{str(h.get('clients_max')) + ' / ' + str(t.get('clients_max')):>16} "
              f"{fmt(r.get('mirrored_per_s_last_30s')):>11} {r['cpu']['foreign_cores']:>8}")
    print()
    for t in report["targets"]:
        print(f"{'PASS' if t['pass'] else 'MISS'}  {t['target']}: {t['value']}")
    print()


def to_json(report: dict) -> str:
    """Indented JSON, but one line per sample (a run holds hundreds of them)."""
    compact: dict[str, str] = {}
    scales = {}
    for key, runs in report["scales"].items():
        scales[key] = []
        for r in runs:
            if "samples" in r:
                mark = f"@samples-{key}-{r['run']}@"
                compact[mark] = "[\n" + ",\n".join(
                    "        " + json.dumps(x, separators=(",", ":")) for x in r["samples"]) + "\n      ]"
                r = dict(r, samples=mark)
            scales[key].append(r)
    text = json.dumps(dict(report, scales=scales), indent=2) + "\n"
    for mark, value in compact.items():
        text = text.replace(json.dumps(mark), value)
    return text


def write_results(report: dict, md: str, out_dir: Path, complete: bool) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    if not complete:
        stamp += "-partial"
    text = to_json(report)
    files = [(f"scale-{stamp}.json", text), (f"scale-{stamp}.md", md)]
    if complete:
        files += [("scale-latest.json", text), ("scale-latest.md", md)]
    written = []
    for name, content in files:
        tmp = out_dir / (name + ".tmp")
        tmp.write_text(content)
        tmp.replace(out_dir / name)
        written.append(out_dir / name)
    return written


def rerender(path: Path) -> int:
    """Rebuilds the report of a saved run (after a change to the report code), in place."""
    saved = json.loads(path.read_text())
    work = Path(saved["meta"].get("workdir", ""))
    scales = {int(k): v for k, v in saved["scales"].items()}
    for runs in scales.values():
        for r in runs:
            if "log_events" not in r and work.is_dir():
                tag = f"p{r['partitions']}-r{r['run']}"
                r["log_events"] = {c: log_events(work / f"uopd-{tag}-{c}.log")
                                   for c in ("helsinki", "tallinn")}
    report, md = build_report(saved["meta"], saved["config"], scales)
    path.write_text(to_json(report))
    path.with_suffix(".md").write_text(md)
    print_table(report)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="1,10,100",
                    help="comma-separated dataset counts, one scale each")
    ap.add_argument("--partitions-per-dataset", type=int, default=6)
    ap.add_argument("--rate", type=int, default=20_000, help="records/s in total, all datasets")
    ap.add_argument("--period", type=float, default=0.5, help="sampling period, seconds")
    ap.add_argument("--sample-seconds", type=float, default=120,
                    help="how long to sample after tallinn's start")
    ap.add_argument("--cap-seconds", type=float, default=180,
                    help="upper bound per scale from the owner's start")
    ap.add_argument("--settle", type=float, default=10,
                    help="seconds the load runs before the nodes start")
    ap.add_argument("--runs", type=int, default=3,
                    help="runs per scale; the median by time to all streaming is reported")
    ap.add_argument("--foreign-cpu-limit", type=float, default=0.25)
    ap.add_argument("--quiet-wait", type=float, default=60,
                    help="seconds to wait for other work to calm down before each scale")
    ap.add_argument("--uopd-link", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--uopd-kafka", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--uopd-env", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--bin", default=str(ROOT / "build" / "bin"))
    ap.add_argument("--workdir", help="default: a new directory under /tmp")
    ap.add_argument("--keep-data", action="store_true")
    ap.add_argument("--results", default=str(run.RESULTS_DIR))
    ap.add_argument("--rerender", metavar="JSON",
                    help="only rebuild the table and the .md beside JSON from a saved result")
    args = ap.parse_args()
    if args.rerender:
        return rerender(Path(args.rerender))
    datasets = [int(x) for x in args.datasets.split(",") if x.strip()]

    bin_dir = Path(args.bin).resolve()
    for tool in ("uopd", "load_gen"):
        if not (bin_dir / tool).is_file():
            print(f"scale: {bin_dir / tool} missing; build it first", file=sys.stderr)
            return 2
    if not shutil.which("kcat"):
        print("scale: kcat is needed (apt-get install kafkacat)", file=sys.stderr)
        return 2
    work = Path(args.workdir or tempfile.mkdtemp(prefix="uop-scale-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    log(f"work directory {work} (logs of every process)")
    # Copies: a rebuild in the tree during the run must not change what is measured.
    (work / "bin").mkdir(exist_ok=True)
    built = {}
    for tool in ("uopd", "load_gen"):
        shutil.copy2(bin_dir / tool, work / "bin" / tool)
        built[tool] = dt.datetime.fromtimestamp((bin_dir / tool).stat().st_mtime).isoformat(
            timespec="seconds")
    bin_source = str(bin_dir.relative_to(ROOT)) if bin_dir.is_relative_to(ROOT) else str(bin_dir)
    args.bin = str(work / "bin")

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)

    sampler = run.Sampler(period=0.5)
    runner = TimedRunner(work, sampler)
    ctx = run.Context(args, work, runner, sampler)
    meta = run.machine_meta()
    meta["binaries_built"] = built
    # What the binaries may have been built from besides the commit (tests left out).
    meta["uncommitted"] = [l for l in subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True, text=True).stdout.splitlines() if " tests/" not in l][:60]
    config = {k: v for k, v in vars(args).items()} | {"bin_source": bin_source}
    scales: dict[int, list[dict]] = {}
    started = time.time()
    failed = False
    try:
        subprocess.run([str(ROOT / "deploy/pki/make-pki.sh"), str(ctx.pki)], check=True,
                       stdout=subprocess.DEVNULL, timeout=120)
        ctx.share_key = policy_share_key(ctx)
        for d in datasets:
            partitions = d * args.partitions_per_dataset
            for run_no in range(1, args.runs + 1):
                try:
                    r = scale_run(ctx, d, run_no)
                except (BenchError, OSError, ValueError, KeyError) as e:
                    log(f"{partitions} partitions, run {run_no}: failed: {e!r}")
                    r = {"datasets": d, "partitions": partitions, "run": run_no, "error": str(e)}
                    failed = True
                scales.setdefault(partitions, []).append(r)
    except KeyboardInterrupt:
        log("interrupted: stopping everything")
        failed = True
        meta["interrupted"] = True
    finally:
        runner.close()
        sampler.stop.set()
    meta["finished_utc"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta["duration_s"] = round(time.time() - started)
    meta["workdir"] = str(work)
    if not scales:
        return 1
    report, md = build_report(meta, config, scales)
    written = write_results(report, md, Path(args.results), complete=not failed)
    print_table(report)
    log("wrote " + ", ".join(str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)
                             for p in written))
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
