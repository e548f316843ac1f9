"""Helpers for the SensorThings connector tests: a real mosquitto broker, uop-sta-bridge and
uop-noise-sim processes, and Kafka topics read back with kcat.

Same rules as cluster.py: every wait is a condition with a deadline (:func:`wait_until`). The
one exception to port 0 is mosquitto, which cannot report the port it bound: the OS picks a
free port, mosquitto is given it, and a start that fails to bind is retried with another.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from uoptest.cluster import BIN_DIR, Proc, parse_metrics, scaled, wait_until

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PUB = shutil.which("mosquitto_pub")
MOSQUITTO_SUB = shutil.which("mosquitto_sub")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto(Proc):
    """A mosquitto 2.0 broker configured as the bridge needs it: QoS 1 messages for an offline
    persistent session are kept without limit (max_queued_messages 0), and nothing caps the
    messages in flight to one client (max_inflight_messages 0)."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.conf = workdir / f"{name}.conf"
        super().__init__(name, [MOSQUITTO, "-c", self.conf], workdir)
        self.port = 0

    def start(self, timeout: float = 10) -> None:
        for _ in range(5):
            self.port = free_port()
            self.conf.write_text(
                f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                "max_inflight_messages 0\nmax_queued_messages 0\nlog_type error\n"
                "log_type warning\nlog_type notice\n")
            super().start()
            try:
                wait_until(lambda: self._accepts(), timeout, f"{self.name} listening on "
                           f"{self.port}", procs=[self])
                return
            except AssertionError:
                if self.alive:
                    raise
        raise AssertionError(f"{self.name} did not start:\n{self.tail()}")

    def _accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def publish(self, topic: str, payload: str, *, qos: int = 1,
                props: Sequence[str] = ()) -> None:
        argv = [MOSQUITTO_PUB, "-p", str(self.port), "-q", str(qos), "-t", topic, "-m", payload]
        if props:
            argv[1:1] = ["-V", "5"]
            for p in props:
                argv += ["-D", "publish", *p.split(" ", 1)]
        subprocess.run(argv, check=True, timeout=scaled(10))

    def subscriber(self, topic: str, count: int, logdir: Path) -> Proc:
        """mosquitto_sub (MQTT 5) printing '<topic> <correlation data> <payload>' lines; returns
        once its SUBACK arrived (-d prints it), so nothing published later is missed."""
        p = Proc(f"sub-{topic.replace('/', '_').replace('#', 'all')}",
                 ["stdbuf", "-oL", MOSQUITTO_SUB, "-d", "-V", "5", "-p", str(self.port), "-t", topic, "-C",
                  str(count), "-F", "%t %D %p"], logdir)
        p.start()
        wait_until(lambda: "received SUBACK" in p.stdout_path.read_text(), 10,
                   f"{p.name} subscribed", procs=[p])
        return p


class Bridge(Proc):
    """uop-sta-bridge with a generated config; ``start`` waits for its ready file."""

    def __init__(self, name: str, workdir: Path, *, catalogue: Optional[Path] = None,
                 catalogue_url: str = "", kafka: str = "embedded",
                 mqtt_port: Optional[int] = None, http: bool = True, client_id: str = "bridge",
                 extra_http: str = "", extra_mqtt: str = "", extra_kafka: str = "",
                 topic: str = "noise.observations") -> None:
        self.config = workdir / f"{name}.yaml"
        self.ready_file = workdir / f"{name}.ready.json"
        lines = [f"node: {name}", "kafka:", f"  bootstrap: {kafka}", f"  topic: {topic}",
                 "  partitions: 3"] + [f"  {l}" for l in extra_kafka.splitlines() if l.strip()] + [
                 "catalogue:", f"  file: {catalogue}" if catalogue else f"  url: {catalogue_url}"]
        if mqtt_port is not None:
            lines += ["mqtt:", f"  broker: 127.0.0.1:{mqtt_port}", f"  client_id: {client_id}",
                      "  keepalive_s: 10"] + [
                          f"  {l}" for l in extra_mqtt.splitlines() if l.strip()]
        if http:
            lines += ["http:", "  listen: 127.0.0.1:0"] + [
                f"  {l}" for l in extra_http.splitlines() if l.strip()]
        lines.append(f"ready_file: {self.ready_file}")
        self.config.write_text("\n".join(lines) + "\n")
        super().__init__(name, [BIN_DIR / "uop-sta-bridge", "--config", self.config], workdir)
        self.topic = topic
        self.ready: dict = {}

    def start(self, timeout: float = 20) -> dict:
        self.ready_file.unlink(missing_ok=True)
        super().start()
        wait_until(lambda: self.ready_file.is_file(), timeout, f"{self.name} ready file",
                   procs=[self])
        self.ready = json.loads(self.ready_file.read_text())
        return self.ready

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ready['http_port']}"

    @property
    def bootstrap(self) -> str:
        return self.ready["kafka_bootstrap"]

    def request(self, method: str, path: str, body: Optional[str] = None,
                timeout: float = 10) -> tuple[int, dict, str]:
        req = urllib.request.Request(self.url + path, method=method,
                                     data=None if body is None else body.encode())
        try:
            with urllib.request.urlopen(req, timeout=scaled(timeout)) as r:
                return r.status, dict(r.headers), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read().decode()

    def metrics(self):
        status, _, text = self.request("GET", "/metrics")
        assert status == 200
        return parse_metrics(text)


def read_topic(bootstrap: str, topic: str, timeout: float = 30) -> list[dict[str, Any]]:
    """Every record of ``topic`` (all partitions, to their current end) as
    {"key", "partition", "offset", "headers", "value"}."""
    assert KCAT, "kcat is not installed (deploy/scripts/install-deps.sh)"
    r = subprocess.run([KCAT, "-C", "-b", bootstrap, "-t", topic, "-e", "-q", "-J"],
                       capture_output=True, text=True, timeout=scaled(timeout))
    if r.returncode != 0:
        # Topic not there yet (nothing produced) reads as empty.
        if "Unknown topic" in r.stderr or "not available" in r.stderr:
            return []
        raise AssertionError(f"kcat failed ({r.returncode}): {r.stderr}")
    out = []
    for line in r.stdout.splitlines():
        m = json.loads(line)
        hdrs = m.get("headers") or []
        out.append({"key": m.get("key"), "partition": m["partition"], "offset": m["offset"],
                    "headers": dict(zip(hdrs[0::2], hdrs[1::2])), "value": m.get("payload")})
    return out


def simulator(name: str, workdir: Path, *args: Any) -> Proc:
    return Proc(name, [BIN_DIR / "uop-noise-sim", *args], workdir)


def expected_observations(workdir: Path, *args: Any) -> dict[tuple[str, str], float]:
    """What the simulator publishes for ``args`` (seed, start, count...): run it with --stdout
    and key by (Datastream, phenomenonTime)."""
    r = subprocess.run([BIN_DIR / "uop-noise-sim", *args, "--stdout"], capture_output=True,
                       text=True, timeout=scaled(60), check=True)
    out = {}
    for line in r.stdout.splitlines():
        ds, payload = line.split(" ", 1)
        o = json.loads(payload)
        out[(ds, o["phenomenonTime"])] = o["result"]
    return out


def observations_by_key(records: Iterable[dict]) -> dict[tuple[str, str], list[dict]]:
    out: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        v = json.loads(r["value"])
        out.setdefault((v["Datastream"]["@iot.id"], v["phenomenonTime"]), []).append(v)
    return out
