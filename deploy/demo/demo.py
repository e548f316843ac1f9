#!/usr/bin/env python3
"""The two-city demo: Helsinki and Tallinn uopd nodes, each with embedded Kafka, share their
noise observations with each other over mutual-TLS gRPC. In each city, uop-noise-sim publishes
SensorThings Observations from real sites over MQTT (QoS 1) to a mosquitto broker, and
uop-sta-bridge validates them, adds their location and writes them to the city's Kafka:

  uop-noise-sim -> mosquitto -> uop-sta-bridge -> Helsinki Kafka -> uopd => uopd -> Tallinn Kafka
  (and the same from Tallinn to Helsinki)

Helsinki shares its observations shaped by its policy (fields dropped, identifiers pseudonymised,
Helsinki's box, a 250 m grid); Tallinn shares only 15-minute statistics per sensor (aggregates).
Prints what crosses the border, live and at the end, checks record by record (and window by
window) that nothing was lost or doubled, shows what arrived on the other side per site, and
stops cleanly."""

import argparse
import collections
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Partitions of noise.observations. Records are keyed by Datastream (librdkafka's CRC32
# partitioner), and the embedded (mock) Kafka keeps only about 5 MiB per partition, dropping older
# records beyond that: with 11 partitions no two Helsinki sensors (and at most two Tallinn ones)
# share one, so a demo run's ~1.3 KB SensorThings records stay far below the limit.
PARTITIONS = 11


def log(msg=""):
    print(msg, flush=True)


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise SystemExit(f"demo: timed out after {timeout}s waiting for {what}")


def metrics(admin):
    try:
        with urllib.request.urlopen(f"http://{admin}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def node_config(city, peer, listen_port, admin_port, peer_port):
    return f"""# Demo node {city}: embedded Kafka, mTLS to {peer}.
node: {city}
listen: 127.0.0.1:{listen_port}
admin: 127.0.0.1:{admin_port}
tls: {{cert: pki/{city}/node.pem, key: pki/{city}/node.key}}
peers:
  - name: {peer}
    address: 127.0.0.1:{peer_port}
    ca: pki/{peer}/ca.pem
    identity: uopd.{peer}.example
kafka:
  embedded:
    topics: {{noise.observations: {PARTITIONS}, noise.observations.deadletter: 1}}
policies: policies-{city}
"""


# Helsinki's realistic share with Tallinn: identifiers pseudonymised with a key for Tallinn
# only, the sensor hardware and free-form parameters dropped, only observations inside
# Helsinki's box, positions snapped to a 250 m grid. Tallinn shares its own data plainly, so
# that direction is checked byte for byte.
SHARE_POLICY = {
    "helsinki": """# Helsinki's noise observations for Tallinn's cross-border noise map (docs/policy.md).
dataset: noise.observations
format: sensorthings-observation
location: FeatureOfInterest.feature
owner: {organisation: City of Helsinki, contact: data@hel.example}
shares:
  - peer: tallinn
    purpose: cross-border-noise-map
    licence: CC-BY-4.0
    retention: 30d
    fields:
      drop: [Datastream.Sensor, Datastream.Thing.properties, parameters]
      pseudonymise: [Datastream.@iot.id]
      pseudonym_key: tallinn-demo
      record_key: pseudonymise
    spatial:
      within: {bbox: [24.78, 60.10, 25.25, 60.26]}   # Helsinki, not Vantaa (Tikkurila stays home)
      generalise: {grid_m: 250}
      no_location: deny
""",
    "tallinn": """# Tallinn shares 15-minute noise statistics per sensor with Helsinki: no observation
# leaves, only each window's count, mean and maximum (windows of fewer than 5 are withheld).
dataset: noise.observations
format: sensorthings-observation
owner: {organisation: City of Tallinn, contact: data@tallinn.example}
shares:
  - peer: helsinki
    purpose: cross-border-noise-map
    licence: CC-BY-4.0
    aggregate: {window: 15m, lateness: 2m, by: Datastream.@iot.id, of: result,
                values: [count, mean, max], min_count: 5}
""",
}
# What each city takes from the other: its noise data (Helsinki's observations; Tallinn's
# aggregates, plain JSON), at most 64 KiB a record, kept at most 14 days (the lower of this and
# the owner's retention applies).
ACCEPT_FORMAT = {"tallinn": "sensorthings-observation", "helsinki": "json"}
ACCEPT_POLICY = """# What this city takes from {peer}: its noise data, at most 64 KiB a record, kept at most
# 14 days (the lower of this and the owner's retention applies).
accept:
  - peer: {peer}
    dataset: noise.observations
    max_record_bytes: 65536
    format: {format}
    max_retention: 14d
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bridge_config(city, kafka, mqtt_port):
    return f"""# SensorThings bridge of {city}: MQTT from mosquitto into {city}'s Kafka.
node: {city}-sta
kafka:
  bootstrap: {kafka}
  topic: noise.observations
catalogue:
  file: {city}-catalogue.json
mqtt:
  broker: 127.0.0.1:{mqtt_port}
  client_id: {city}-sta-bridge
http:
  listen: 127.0.0.1:0
ready_file: {city}-bridge.ready.json
"""


def json_values(kcat, bootstrap, topic):
    """Every record value of `topic` that is JSON, decoded, in partition order."""
    r = subprocess.run([kcat, "-C", "-b", bootstrap, "-t", topic, "-e", "-q", "-f", "%s\n"],
                       capture_output=True, text=True, timeout=120)
    for line in r.stdout.splitlines():
        try:
            yield json.loads(line)
        except ValueError:
            continue


def site_summary(kcat, bootstrap, topic):
    """Observations per site in `topic`: (site name, city) -> (count, mean, min, max LAeq)."""
    by = collections.defaultdict(list)
    for o in json_values(kcat, bootstrap, topic):
        by[o["Datastream"]["Thing"]["name"]].append(o["result"])
    return {k: (len(v), sum(v) / len(v), min(v), max(v)) for k, v in sorted(by.items())}


def window_summary(kcat, bootstrap, topic):
    """15-minute aggregates per sensor in `topic`: key -> (windows, observations, mean of the
    window means weighted by count, highest max)."""
    by = collections.defaultdict(list)
    for w in json_values(kcat, bootstrap, topic):
        by[w["key"]].append(w)
    out = {}
    for key, ws in sorted(by.items()):
        n = sum(w["count"] for w in ws)
        out[key] = (len(ws), n, sum(w["mean"] * w["count"] for w in ws) / n,
                    max(w["max"] for w in ws))
    return out


def first_record(kcat, bootstrap, topic):
    r = subprocess.run([kcat, "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-c", "1",
                        "-e", "-q", "-f", "%s"], capture_output=True, text=True, timeout=60)
    return r.stdout.strip() or "(none)"


def one_crossing(kcat, owner_bootstrap, receiver_bootstrap):
    """The first record of Tallinn's mirror of Helsinki's noise, and the origin record it came
    from (by its uop.origin.partition/offset headers), each as one line of JSON."""
    r = subprocess.run([kcat, "-C", "-b", receiver_bootstrap, "-t", "helsinki.noise.observations",
                        "-p", "0", "-o", "beginning", "-c", "1", "-e", "-q", "-J"],
                       capture_output=True, text=True, timeout=60)
    if not r.stdout.strip():
        return "(none)", "(none)"
    m = json.loads(r.stdout.splitlines()[0])
    h = dict(zip(m["headers"][0::2], m["headers"][1::2]))
    o = subprocess.run([kcat, "-C", "-b", owner_bootstrap, "-t", "noise.observations",
                        "-p", h["uop.origin.partition"], "-o", h["uop.origin.offset"], "-c", "1",
                        "-e", "-q", "-f", "%s"], capture_output=True, text=True, timeout=60)
    return o.stdout.strip(), m["payload"]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bin", default=str(ROOT / "build" / "bin"))
    ap.add_argument("--workdir", default=str(ROOT / "demo-run"))
    ap.add_argument("--base-port", type=int, default=7443)
    ap.add_argument("--records", type=int, default=15000, help="Helsinki observations")
    ap.add_argument("--rate", type=int, default=1500, help="Helsinki observations per second")
    ap.add_argument("--keep-running", action="store_true", help="stay up until Ctrl-C")
    args = ap.parse_args()

    bin_dir = Path(args.bin).resolve()
    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    uopd, uopctl = str(bin_dir / "uopd"), str(bin_dir / "uopctl")
    bridge, sim = str(bin_dir / "uop-sta-bridge"), str(bin_dir / "uop-noise-sim")
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    kcat = shutil.which("kcat") or "kcat"

    log("== uop-federation demo: Helsinki <-> Tallinn over mutual-TLS gRPC ==")
    subprocess.run([str(ROOT / "deploy/pki/make-pki.sh"), str(work / "pki")], check=True,
                   stdout=subprocess.DEVNULL)
    log(f"PKI (one CA per city):        {work / 'pki'}")

    p = args.base_port
    cities = {
        "helsinki": dict(peer="tallinn", listen=p, admin=p + 2021, peer_port=p + 1),
        "tallinn": dict(peer="helsinki", listen=p + 1, admin=p + 2022, peer_port=p),
    }
    for city, c in cities.items():
        pdir = work / f"policies-{city}"
        (pdir / "keys").mkdir(parents=True, exist_ok=True)
        (pdir / "noise.yaml").write_text(SHARE_POLICY[city])
        (pdir / "accept.yaml").write_text(ACCEPT_POLICY.format(peer=c["peer"], format=ACCEPT_FORMAT[city]))
        # A fresh pseudonymisation key per run, never printed (docs/policy.md).
        (pdir / "keys" / f"{c['peer']}-demo.key").write_text(secrets.token_hex(32) + "\n")
        (work / f"{city}.yaml").write_text(
            node_config(city, c["peer"], c["listen"], c["admin"], c["peer_port"]))

    procs, logs = {}, {}

    def stop_all():
        # Simulators' brokers and bridges first, then the uopd nodes they write to.
        codes = {}
        for group in ([n for n in procs if n not in cities], [n for n in procs if n in cities]):
            for name in group:
                if procs[name].poll() is None:
                    procs[name].send_signal(signal.SIGTERM)
            for name in group:
                try:
                    codes[name] = procs[name].wait(timeout=20)
                except subprocess.TimeoutExpired:
                    procs[name].kill()
                    codes[name] = "killed after 20 s"
        return codes

    try:
        for city in cities:
            ready = work / f"{city}.ready.json"
            ready.unlink(missing_ok=True)
            logs[city] = open(work / f"{city}.log", "w")
            procs[city] = subprocess.Popen(
                [uopd, "--config", str(work / f"{city}.yaml"), "--ready-file", str(ready)],
                stderr=logs[city], cwd=work)
        info = {}
        for city in cities:
            ready = work / f"{city}.ready.json"

            def started(city=city, ready=ready):
                if procs[city].poll() is not None:
                    raise SystemExit(f"demo: uopd {city} exited with {procs[city].returncode}; "
                                     f"see {work / (city + '.log')}")
                return ready.exists() and json.loads(ready.read_text())
            info[city] = wait_for(started, 20, f"uopd {city} to start")
            log(f"uopd {city:9s} federation {info[city]['federation']}  admin "
                f"http://{info[city]['admin']}  kafka {info[city]['kafka_bootstrap']}")

        log("\nWhile the demo runs, look for yourself:")
        log(f"  curl -s http://{info['tallinn']['admin']}/metrics | grep uop_import")
        log(f"  kcat -b {info['tallinn']['kafka_bootstrap']} -t helsinki.noise.observations "
            f"-C -c 2 -e -f '%k %h\\n%s\\n\\n'")
        log(f"  tail -f {work / 'tallinn.log'}\n")

        def streams_up():
            for dst, src in (("tallinn", "helsinki"), ("helsinki", "tallinn")):
                m = metrics(info[dst]["admin"])
                if m.get(f'uop_import_stream_up{{peer="{src}",topic="noise.observations"}}', 0) < PARTITIONS:
                    return False
            return True
        t0 = time.monotonic()
        wait_for(streams_up, 60, f"the links to stream all {PARTITIONS} partitions both ways")
        log(f"Links up, mTLS verified both ways, {PARTITIONS} partition streams each way "
            f"(Kafka group assignment took {time.monotonic() - t0:.1f} s)\n")

        # Per city: mosquitto, the SensorThings bridge into the city's Kafka, the simulator.
        sensors = {}
        for city in cities:
            mqtt_port = free_port()
            (work / f"{city}-mosquitto.conf").write_text(
                f"listener {mqtt_port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                # Keep every QoS 1 message for the bridge's session, however long it is away.
                "max_inflight_messages 0\nmax_queued_messages 0\n")
            logs[f"{city}-mosquitto"] = open(work / f"{city}-mosquitto.log", "w")
            procs[f"{city}-mosquitto"] = subprocess.Popen(
                [mosquitto, "-c", str(work / f"{city}-mosquitto.conf")],
                stdout=logs[f"{city}-mosquitto"], stderr=subprocess.STDOUT, cwd=work)
            subprocess.run([sim, "--city", city, "--catalogue-out",
                            str(work / f"{city}-catalogue.json")], check=True)
            sensors[city] = len(json.loads((work / f"{city}-catalogue.json").read_text())["Things"])
            (work / f"{city}-bridge.yaml").write_text(
                bridge_config(city, info[city]["kafka_bootstrap"], mqtt_port))
            (work / f"{city}-bridge.ready.json").unlink(missing_ok=True)
            logs[f"{city}-bridge"] = open(work / f"{city}-bridge.log", "w")
            procs[f"{city}-bridge"] = subprocess.Popen(
                [bridge, "--config", str(work / f"{city}-bridge.yaml")],
                stderr=logs[f"{city}-bridge"], cwd=work)
            info[f"{city}-mqtt"] = mqtt_port

        def bridge_up(city):
            ready = work / f"{city}-bridge.ready.json"
            if procs[f"{city}-bridge"].poll() is not None:
                raise SystemExit(f"demo: uop-sta-bridge {city} exited; see "
                                 f"{work / (city + '-bridge.log')}")
            if not ready.exists():
                return False
            port = json.loads(ready.read_text())["http_port"]
            return metrics(f"127.0.0.1:{port}").get("uop_sta_mqtt_connects_total", 0) >= 1
        for city in cities:
            wait_for(lambda: bridge_up(city), 30, f"uop-sta-bridge {city} connected to mosquitto")
            port = json.loads((work / f"{city}-bridge.ready.json").read_text())["http_port"]
            info[f"{city}-bridge"] = f"127.0.0.1:{port}"
            log(f"uop-sta-bridge {city:9s} mqtt 127.0.0.1:{info[city + '-mqtt']} -> kafka "
                f"{info[city]['kafka_bootstrap']}  metrics http://{info[city + '-bridge']}/metrics")

        # One observation per sensor per simulated minute, accelerated to the requested rate.
        rates = {"helsinki": args.rate, "tallinn": max(1, args.rate // 3)}
        totals = {"helsinki": args.records, "tallinn": max(1, args.records // 3)}
        feeds, sims = {}, {}
        for city in cities:
            per_sensor = max(1, totals[city] // sensors[city])
            speed = rates[city] * 60 / sensors[city]
            feeds[city] = (per_sensor * sensors[city], rates[city])
            sims[city] = subprocess.Popen(
                [sim, "--city", city, "--count", str(per_sensor), "--speed", f"{speed:.1f}",
                 "--seed", "2026", "--client-id", f"{city}-noise-sim",
                 "--mqtt", f"127.0.0.1:{info[city + '-mqtt']}"],
                stdout=subprocess.PIPE, text=True)
        log(f"\nNoise sensors publishing over MQTT: Helsinki {feeds['helsinki'][0]} observations "
            f"({sensors['helsinki']} sites) at {feeds['helsinki'][1]}/s, Tallinn "
            f"{feeds['tallinn'][0]} ({sensors['tallinn']} sites) at {feeds['tallinn'][1]}/s\n")

        def crossing(dst, src):
            m = metrics(info[dst]["admin"])
            labels = f'{{peer="{src}",topic="noise.observations"}}'
            # What the owner's policy kept back counts as done: it never leaves. (Tallinn's
            # aggregates count as windows, not as the observations in them.)
            withheld = 0 if dst == "helsinki" else metrics(info[src]["admin"]).get(
                f'uop_export_withheld_total{{peer="{dst}",topic="noise.observations"}}', 0)
            return (m.get(f"uop_import_records_total{labels}", 0) + withheld,
                    m.get(f"uop_import_lag_records{labels}", 0),
                    m.get(f"uop_import_lag_seconds{labels}", 0),
                    m.get(f'uop_link_up{{peer="{src}"}}', 0))

        def bridged(city):
            return metrics(info[f"{city}-bridge"]).get('uop_sta_accepted_total{via="mqtt"}', 0)

        start = time.monotonic()
        last = {"tallinn": 0, "helsinki": 0}
        first_seen, done_at, caught_up = {}, {}, collections.Counter()
        expected = {"tallinn": feeds["helsinki"][0], "helsinki": feeds["tallinn"][0]}
        deadline = start + args.records / max(1, args.rate) + 60
        while True:
            time.sleep(1.0)  # the live display ticks once a second
            t = time.monotonic() - start
            sims_done = all(s.poll() is not None for s in sims.values())
            parts = []
            for dst, src in (("tallinn", "helsinki"), ("helsinki", "tallinn")):
                n, lag, lag_s, up = crossing(dst, src)
                if n and dst not in first_seen:
                    first_seen[dst] = t
                if dst == "helsinki":
                    # Aggregates: done once Tallinn's Kafka has every observation and Helsinki
                    # is not behind it (two ticks running; the last windows stay open).
                    done = sims_done and bridged(src) >= expected[dst] and n > 0 and lag == 0
                    caught_up[dst] = caught_up[dst] + 1 if done else 0
                    done = caught_up[dst] >= 2
                else:
                    done = n >= expected[dst]
                if done and dst not in done_at:
                    done_at[dst] = t
                unit = "win" if dst == "helsinki" else "rec"
                parts.append(f"{src[:3].upper()}->{dst[:3].upper()} {int(n):6d} {unit} "
                             f"({int(n - last[dst]):5d}/s) lag {int(lag):5d} rec {lag_s:5.2f} s "
                             f"link {'up' if up else 'DOWN'}")
                last[dst] = n
            log(f"t={t:5.1f}s  " + " | ".join(parts))
            if sims_done and len(done_at) == 2:
                break
            if time.monotonic() > deadline:
                log("demo: not everything crossed before the deadline")
                break

        for city, s in sims.items():
            out = s.communicate()[0].strip()
            if s.returncode != 0:
                raise SystemExit(f"demo: simulator for {city} failed: {out}")

        log("\n== What crossed the border (checked record by record) ==")
        ok = True
        for dst, src in (("tallinn", "helsinki"), ("helsinki", "tallinn")):
            r = subprocess.run(
                [uopctl, "compare", "--source-bootstrap", info[src]["kafka_bootstrap"],
                 "--source-topic", "noise.observations",
                 "--target-bootstrap", info[dst]["kafka_bootstrap"], "--origin", src,
                 "--wait", "30", "--json",
                 # the owner's rules applied to the origin give the expected bytes
                 "--policy", str(work / f"policies-{src}"), "--peer", dst],
                capture_output=True, text=True)
            c = json.loads(r.stdout) if r.stdout.strip() else {"ok": False, "first_problem": r.stderr}
            span = done_at.get(dst, 0) - first_seen.get(dst, 0)
            rate = c.get("target", 0) / span if span > 0 else 0
            what = "15-minute windows" if dst == "helsinki" else "records"
            log(f"{src:8s} -> {dst:8s}: {c.get('target', 0)} of {c.get('expected', 0)} {what}, "
                f"{rate:,.0f} {what.split()[-1]}/s while streaming, {c.get('lost', '?')} lost, "
                f"{c.get('duplicated', '?')} duplicate, {c.get('out_of_order', '?')} out of order, "
                f"{c.get('mismatched', '?')} altered, {c.get('withheld', 0)} withheld by "
                f"{src}'s policy {c.get('withheld_by_reason') or ''}"
                + ("" if c.get("ok") else f"  <-- PROBLEM: {c.get('first_problem')}"))
            ok = ok and bool(c.get("ok"))
        for city in cities:
            bm = metrics(info[f"{city}-bridge"])
            rejected = sum(v for k, v in bm.items() if k.startswith("uop_sta_rejected_total"))
            accepted = int(bm.get('uop_sta_accepted_total{via="mqtt"}', 0))
            log(f"uop-sta-bridge {city}: {accepted} observations accepted over MQTT, "
                f"{int(rejected)} rejected")

        log("\n== One observation as it left Helsinki, and as Tallinn received it ==")
        left, arrived = one_crossing(kcat, info["helsinki"]["kafka_bootstrap"],
                                     info["tallinn"]["kafka_bootstrap"])
        log(f"left helsinki:    {left}")
        log(f"arrived tallinn:  {arrived}")
        cat = json.loads(urllib.request.urlopen(
            f"http://{info['tallinn']['admin']}/datasets", timeout=10).read())
        for d in cat["imports"]:
            log(f"tallinn's terms for {d['peer']}/{d['dataset']}: purpose {d['purpose']}, "
                f"licence {d['licence']}, owner {d['owner']['organisation']}, retention "
                f"{d['owner_retention_ms']} ms (tallinn keeps at most 14 d), policy "
                f"{d['policy_version']}")

        log("\n== One 15-minute aggregate as Helsinki received it from Tallinn ==")
        log(f"arrived helsinki: {first_record(kcat, info['helsinki']['kafka_bootstrap'], 'tallinn.noise.observations')}")

        log("\n== What arrived in the other city ==")
        log("in tallinn's helsinki.noise.observations (observations per site):")
        for site, (n, mean, lo, hi) in site_summary(
                kcat, info["tallinn"]["kafka_bootstrap"], "helsinki.noise.observations").items():
            log(f"  {site:58s} {n:6d} obs  LAeq mean {mean:5.1f}  min {lo:5.1f}  "
                f"max {hi:5.1f} dB(A)")
        log("in helsinki's tallinn.noise.observations (15-minute aggregates per Datastream; each "
            "sensor's last window is still open, so its observations have not left yet):")
        for key, (windows, n, mean, hi) in window_summary(
                kcat, info["helsinki"]["kafka_bootstrap"], "tallinn.noise.observations").items():
            log(f"  {key:40s} {windows:4d} windows of {n:6d} obs  LAeq mean {mean:5.1f}  "
                f"max {hi:5.1f} dB(A)")

        m = metrics(info["helsinki"]["admin"])
        acked = m.get('uop_export_acked_records_total{peer="tallinn",topic="noise.observations"}', 0)
        log(f"helsinki's own record: {int(acked)} records acknowledged by tallinn as durably written")
        log(f"Each record in {'tallinn'}'s helsinki.noise.observations carries provenance headers: "
            "uop.origin, uop.origin.topic/partition/offset/timestamp, uop.policy.version, uop.resume")

        if args.keep_running:
            log("\n--keep-running: nodes stay up; press Ctrl-C to stop.")
            try:
                signal.pause()
            except KeyboardInterrupt:
                pass
    finally:
        codes = stop_all()
        for f in logs.values():
            f.close()
    log(f"\nNodes stopped: " + ", ".join(f"{c} exit {code}" for c, code in codes.items()))
    log(f"Logs: {work}/*.log")
    clean = all(code == 0 for code in codes.values())
    if ok and clean:
        log("Demo finished: 0 lost, 0 duplicate.")
        return 0
    log("Demo finished WITH PROBLEMS (see above).")
    return 1


if __name__ == "__main__":
    sys.exit(main())
