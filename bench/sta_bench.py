#!/usr/bin/env python3
"""SensorThings ingestion rate of uop-sta-bridge on one core, beside a plain librdkafka produce of
the same records in the same run.

    python3 bench/sta_bench.py [--bin build/bin] [--runs 3] [--mqtt 130000] [--http 60000]
                               [--bulk 400000]

Layout on this 2-core machine: the measured process (uop-sta-bridge, or sta_load --mode raw for
the ceiling) is pinned to CPU 0 with taskset; the Kafka it writes to (`uopctl dev-kafka`, a
librdkafka mock cluster in its own process), mosquitto and the load generator (sta_load --mode
mqtt / http / bulk) share CPU 1. Every round runs each contender once, in turn, and the table
reports the median of the rounds. The machine is shared with other work: figures move by 10-30%
between runs; compare rows of one run, not runs.

Rates: raw = records/s produced and acknowledged by Kafka; mqtt = observations acknowledged into
Kafka by the bridge per second (its uop_sta_accepted_total) while sta_load --mode mqtt publishes
QoS 1 as fast as mosquitto takes them (at most 1000 unacknowledged by mosquitto: libmosquitto spends CPU per publish in proportion
to what is in flight; 5000 cost the load core 40 us per publish, 1000 16 us); http = 201
answers/s to single POSTs on 32 keep-alive connections (32 threads in the bridge); bulk =
observations/s through CreateObservations (1000 rows per request, 4 connections).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))

from uoptest.cluster import DevKafka, Proc, parse_metrics, wait_until  # noqa: E402
from uoptest import cluster  # noqa: E402
from uoptest.sta import Bridge, Mosquitto  # noqa: E402


def pinned(cpu: int, argv: list) -> list:
    return ["taskset", "-c", str(cpu), *[str(a) for a in argv]]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Profile:
    """`perf record -g` of one process while a phase runs (when enabled)."""

    def __init__(self, enabled: bool, pid: int, out: Path) -> None:
        self.proc = None
        if enabled:
            self.proc = subprocess.Popen(["perf", "record", "-g", "-q", "-p", str(pid), "-o",
                                          str(out)], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
            time.sleep(0.3)  # perf attaches

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(2)
            self.proc.wait(60)


def machine_busy() -> float:
    """Busy core-seconds of the whole machine so far, from /proc/stat."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")


class Phase:
    """CPU in one phase: the bridge's share of its core, the load side's (Kafka, mosquitto, the
    load generator, on the other core), and foreign = everything else on the machine (other
    people's work disturbing the run)."""

    def __init__(self, bridge: int, side: list) -> None:
        self.pids = [bridge, *side]
        self.cpu0 = [cpu_seconds(p) for p in self.pids]
        self.kids0 = self.children()
        self.busy0 = machine_busy()
        self.wall0 = time.monotonic()

    @staticmethod
    def children() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    def end(self) -> dict:
        wall = time.monotonic() - self.wall0
        used = [cpu_seconds(p) - c for p, c in zip(self.pids, self.cpu0)]
        load = self.children() - self.kids0  # the load generators the phase ran (reaped)
        ours = sum(used) + load
        return {"bridge": used[0] / wall, "load_side": (sum(used[1:]) + load) / wall,
                "foreign": max(0.0, (machine_busy() - self.busy0 - ours) / wall)}


def accepted(bridge: Bridge) -> float:
    return bridge.metrics().value("uop_sta_accepted_total")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--bin", default=str(HERE.parent / "build" / "bin"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mqtt", type=int, default=130000, help="observations per MQTT round")
    ap.add_argument("--http", type=int, default=60000, help="observations per HTTP round")
    ap.add_argument("--bulk", type=int, default=400000, help="observations per bulk round")
    ap.add_argument("--raw", type=int, default=400000, help="records per raw round")
    ap.add_argument("--bridge-mqtt", default="",
                    help="extra mqtt: lines of the bridge config, ';'-separated, e.g. "
                         "'max_batch: 10000;batch_linger_ms: 5'")
    ap.add_argument("--perf", action="store_true",
                    help="record a perf CPU profile of the bridge in each phase of each round "
                         "(perf-<phase>-<round>.data in the work directory)")
    ap.add_argument("--bridge-kafka", default="",
                    help="extra kafka: lines of the bridge config, ';'-separated, e.g. "
                         "'properties: {linger.ms: \"0\"}'")
    args = ap.parse_args()
    bindir = Path(args.bin).resolve()
    cluster.BIN_DIR = bindir
    import uoptest.sta as sta
    sta.BIN_DIR = bindir
    work = Path(tempfile.mkdtemp(prefix="uop-sta-bench-"))
    print(f"work directory (logs): {work}", flush=True)
    procs: list[Proc] = []
    try:
        kafka = DevKafka("kafka", {"noise.observations": 6, "noise.observations.deadletter": 1},
                         work)
        kafka.argv = pinned(1, kafka.argv)
        procs.append(kafka)
        kafka.start()
        mq = Mosquitto("mosquitto", work)
        mq.argv = pinned(1, mq.argv)
        procs.append(mq)
        mq.start()
        catalogue = work / "catalogue.json"
        subprocess.run([bindir / "uop-noise-sim", "--catalogue-out", catalogue], check=True)
        bridge = Bridge("bridge", work, catalogue=catalogue, kafka=kafka.bootstrap,
                        mqtt_port=mq.port, client_id="bench-bridge", extra_http="threads: 32",
                        extra_mqtt=args.bridge_mqtt.replace(";", "\n"),
                        extra_kafka=args.bridge_kafka.replace(";", "\n"))
        bridge.argv = pinned(0, bridge.argv)
        procs.append(bridge)
        bridge.start()
        wait_until(lambda: bridge.metrics().value("uop_sta_mqtt_connects_total") >= 1, 20,
                   "bridge connected")
        url = f"{bridge.url}/v1.1"
        load = bindir / "sta_load"
        # Warm-up: producer id, metadata, thread pools.
        subprocess.run(pinned(1, [load, "--mode", "http", "--url", url, "--count", "2000"]),
                       check=True, capture_output=True)

        results: dict[str, list[float]] = {"raw": [], "mqtt": [], "http": [], "bulk": []}
        # Share of one core the bridge used in each phase: below ~90% the bridge was waiting
        # (for Kafka, mosquitto or the load generator on the other core), not computing.
        busy: dict[str, list[float]] = {"mqtt": [], "http": [], "bulk": []}
        cpu: dict[str, list[dict]] = {"mqtt": [], "http": [], "bulk": []}
        side = [kafka.pid, mq.pid]
        for run in range(args.runs):
            r = subprocess.run(pinned(0, [load, "--mode", "raw", "--bootstrap", kafka.bootstrap,
                                          "--count", args.raw]),
                               check=True, capture_output=True, text=True)
            results["raw"].append(json.loads(r.stdout)["rate"])

            phase = Phase(bridge.pid, side)
            n = args.mqtt
            before = accepted(bridge)
            prof = Profile(args.perf, bridge.pid, work / f"perf-mqtt-{run + 1}.data")
            sim = subprocess.Popen(pinned(1, [load, "--mode", "mqtt", "--count", n,
                                              "--max-unacked", "1000",
                                              "--mqtt", f"127.0.0.1:{mq.port}"]),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            sim.stderr.readline()  # "ready": payloads made, connecting; the clock starts now
            t0 = time.monotonic()
            wait_until(lambda: accepted(bridge) >= before + n, 600, f"{n} MQTT observations",
                       interval=0.02)
            results["mqtt"].append(n / (time.monotonic() - t0))
            m = bridge.metrics()
            print(f"  mqtt: {m.value('uop_sta_accepted_total', via='mqtt'):.0f} accepted in "
                  f"{m.value('uop_sta_mqtt_batches_total'):.0f} batches so far", flush=True)
            sim.wait(60)
            prof.stop()
            cpu["mqtt"].append(phase.end())
            phase = Phase(bridge.pid, side)

            prof = Profile(args.perf, bridge.pid, work / f"perf-http-{run + 1}.data")
            r = subprocess.run(pinned(1, [load, "--mode", "http", "--url", url, "--count",
                                          args.http, "--connections", "32"]),
                               capture_output=True, text=True)
            prof.stop()
            h = json.loads(r.stdout)
            if h["failed_requests"]:
                print(f"  http: {h['failed_requests']} requests failed "
                      f"({h['of_which_503']} answered 503)", flush=True)
            results["http"].append(h["rate"])
            cpu["http"].append(phase.end())
            phase = Phase(bridge.pid, side)
            prof = Profile(args.perf, bridge.pid, work / f"perf-bulk-{run + 1}.data")
            r = subprocess.run(pinned(1, [load, "--mode", "bulk", "--url", url, "--count",
                                          args.bulk, "--connections", "4", "--bulk", "1000"]),
                               capture_output=True, text=True)
            prof.stop()
            h = json.loads(r.stdout)
            if h["failed_requests"]:
                print(f"  bulk: {h['failed_requests']} requests failed "
                      f"({h['of_which_503']} answered 503)", flush=True)
            results["bulk"].append(h["rate"])
            cpu["bulk"].append(phase.end())
            for k in busy:
                busy[k].append(cpu[k][-1]["bridge"])
            print(f"round {run + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}/s"
                                                   for k, v in results.items()), flush=True)
        m = bridge.metrics()
        rejected = sum(v for (name, _), v in m.items() if name == "uop_sta_rejected_total")
        targets = {"raw": None, "mqtt": 50000, "http": 20000, "bulk": 200000}
        raw = statistics.median(results["raw"])
        print(f"\nmedian of {args.runs} rounds (bridge pinned to one core; shared machine)")
        print(f"{'path':<34}{'obs/s':>10}{'x raw':>8}{'target':>10}{'':>8}{'bridge CPU':>12}"
              f"{'obs/CPU-s':>11}{'load side':>11}{'foreign':>9}")
        names = {"raw": "plain librdkafka produce (ceiling)", "mqtt": "MQTT QoS 1 (mosquitto)",
                 "http": "HTTP single POST, keep-alive", "bulk": "HTTP CreateObservations"}
        for k, v in results.items():
            med = statistics.median(v)
            t = targets[k]
            line = f"{names[k]:<34}{med:>10,.0f}{med / raw:>8.2f}"
            if t is not None:
                line += f"{t:>10,}" + ("      ok" if med >= t else "  MISSED")
            if k in busy:
                # Observations per second of bridge CPU: steadier than obs/s on a busy host.
                per_cpu = statistics.median(r / max(b, 1e-9) for r, b in zip(v, busy[k]))
                # Cores used by Kafka + mosquitto + load generator (CPU 1), and by others.
                side_cores = statistics.median(c["load_side"] for c in cpu[k])
                foreign = statistics.median(c["foreign"] for c in cpu[k])
                line += (f"{statistics.median(busy[k]) * 100:>11.0f}%{per_cpu:>11,.0f}"
                         f"{side_cores:>11.2f}{foreign:>9.2f}")
            print(line)
        print(f"rejected by the bridge during the run: {rejected:.0f}")
        if args.perf:  # perf's overhead distorts the figures: not a result
            print(f"perf profiles in {work} (perf report -i FILE --no-children --sort sym)")
            return 0
        text = json.dumps({"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "argv": sys.argv[1:], "load_average": os.getloadavg(),
                           "runs": results, "bridge_cpu_share": busy, "cpu_cores": cpu,
                           "median": {k: statistics.median(v) for k, v in results.items()}},
                          indent=1)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        for name in ("sta-latest.json", f"sta-{stamp}.json"):
            (HERE / "results" / name).write_text(text)
        print(f"written: {HERE / 'results'}/sta-latest.json and sta-{stamp}.json")
    finally:
        for p in reversed(procs):
            p.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
