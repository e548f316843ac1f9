"""Real Apache Kafka clusters and uopd nodes for the fault-round tests (Python 3.11 stdlib only).

`KafkaCluster` drives ``deploy/kafka/kafka-cluster.sh`` (one KRaft JVM per city, started with
``setsid`` so it outlives the script). Because such a broker would also outlive this test if the
test were killed (ctest timeout, ^C), `KafkaWatchdog` runs a small detached shell that stops the
clusters as soon as the test process is gone.

`UopdNode` is a uopd process with its own name, ready file and log file but a config file that
may be shared: the receiving city runs several nodes with the same node name and the same
configuration (scale-out through a Kafka consumer group), which the integration harness's
``Uopd`` (one node per name) cannot express. Processes, logs and waits reuse the integration
harness (``tests/integration/uoptest``, imported read-only).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from uoptest.cluster import (  # noqa: E402  (path set above)
    BIN_DIR, LINK, SOURCE_DIR, Metrics, Proc, parse_metrics, scaled, wait_until)

__all__ = ["BIN_DIR", "SOURCE_DIR", "LINK", "KafkaCluster", "KafkaWatchdog", "UopdNode",
           "fetch_kafka", "rss_kib", "scaled", "wait_until"]

KAFKA_DIR = SOURCE_DIR / "deploy" / "kafka"


def _run(argv: Sequence[str], timeout: float, what: str,
         env: Optional[dict] = None) -> subprocess.CompletedProcess:
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                       timeout=scaled(timeout), stdin=subprocess.DEVNULL,
                       env=dict(os.environ, **(env or {})))
    if r.returncode != 0:
        raise AssertionError(f"{what} failed with exit status {r.returncode}\n"
                             f"--- stdout ---\n{r.stdout[-4000:]}\n--- stderr ---\n"
                             f"{r.stderr[-4000:]}")
    return r


def fetch_kafka() -> Path:
    """The Kafka jars (installs Java/Maven and downloads from Maven Central on a clean machine;
    a no-op when cached). Returns the libs directory."""
    r = _run(["bash", KAFKA_DIR / "fetch-kafka.sh"], 900, "deploy/kafka/fetch-kafka.sh")
    libs = Path(r.stdout.strip().splitlines()[-1])
    assert libs.is_dir(), f"fetch-kafka.sh printed {libs}, which is not a directory"
    return libs


class KafkaCluster:
    """One single-node KRaft cluster in ``dir`` (see deploy/kafka/kafka-cluster.sh)."""

    def __init__(self, name: str, dir: Path) -> None:
        self.name = name
        self.dir = dir
        self.bootstrap = ""
        self.restarts = 0
        self._starting: Optional[subprocess.Popen] = None

    # --- lifecycle; start_async()+wait_started() lets two clusters boot in parallel

    def start_async(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._starting = subprocess.Popen(
            ["bash", str(KAFKA_DIR / "kafka-cluster.sh"), "start", self.name, str(self.dir)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)

    def wait_started(self, timeout: float = 300) -> str:
        assert self._starting is not None
        try:
            out, err = self._starting.communicate(timeout=scaled(timeout))
        except subprocess.TimeoutExpired:
            self._starting.kill()
            out, err = self._starting.communicate()
            raise AssertionError(f"kafka-cluster.sh start {self.name}: no answer in "
                                 f"{scaled(timeout):.0f}s\n{err[-4000:]}") from None
        rc, self._starting = self._starting.returncode, None
        assert rc == 0, f"kafka-cluster.sh start {self.name} failed ({rc}):\n{err[-4000:]}"
        self.bootstrap = out.strip().splitlines()[-1]
        return self.bootstrap

    def start(self, timeout: float = 300) -> str:
        self.start_async()
        return self.wait_started(timeout)

    def restart(self, timeout: float = 300) -> float:
        """Stop (SIGTERM) and start again on the same ports with the same data. Returns the
        seconds it took."""
        t0 = time.monotonic()
        r = _run(["bash", KAFKA_DIR / "kafka-cluster.sh", "restart", self.dir], timeout,
                 f"kafka-cluster.sh restart {self.name}")
        self.restarts += 1
        again = r.stdout.strip().splitlines()[-1]
        assert again == self.bootstrap, f"{self.name} came back on {again}, not {self.bootstrap}"
        return time.monotonic() - t0

    def stop(self) -> None:
        subprocess.run(["bash", str(KAFKA_DIR / "kafka-cluster.sh"), "stop", str(self.dir)],
                       capture_output=True, timeout=scaled(90), stdin=subprocess.DEVNULL)

    @property
    def pid(self) -> Optional[int]:
        try:
            return int((self.dir / "pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    # --- tools

    def create_topic(self, topic: str, partitions: int) -> None:
        _run(["bash", KAFKA_DIR / "kafka-tool.sh", "org.apache.kafka.tools.TopicCommand",
              "--bootstrap-server", self.bootstrap, "--create", "--topic", topic,
              "--partitions", partitions, "--replication-factor", 1], 120,
             f"TopicCommand --create {topic} on {self.name}",
             env={"UOP_KAFKA_JAVA_OPTS": "-XX:TieredStopAtLevel=1"})

    # --- diagnostics

    def log_tail(self, lines: int = 30) -> str:
        """The broker's ERROR/FATAL lines, then the tail of its log."""
        parts = []
        for f in (self.dir / "logs" / "kafka.out", self.dir / "logs" / "server.log"):
            try:
                text = f.read_text(errors="replace").splitlines()
            except FileNotFoundError:
                continue
            errors = [ln for ln in text if "] ERROR " in ln or "] FATAL " in ln]
            if errors:
                parts.append(f"--- {f} (last ERROR/FATAL lines) ---\n" + "\n".join(errors[-15:]))
            parts.append(f"--- {f} (tail) ---\n" + "\n".join(text[-lines:]))
        return "\n".join(parts)


class KafkaWatchdog:
    """A detached shell that stops the given clusters once this process has exited, however it
    ended. Stop it with close() after stopping the clusters normally."""

    def __init__(self, clusters: Sequence[KafkaCluster], logdir: Path) -> None:
        stops = " ; ".join(
            f"bash {_sh(KAFKA_DIR / 'kafka-cluster.sh')} stop {_sh(c.dir)}" for c in clusters)
        # Polling the parent once a second is the point here (nothing to wait on across a
        # setsid boundary); it never gates a test step.
        script = f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 1; done; {stops}"
        with open(logdir / "kafka-watchdog.log", "ab") as log:
            self.proc = subprocess.Popen(["setsid", "bash", "-c", script],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # only the watchdog shell (by pid): the clusters are already down
            self.proc.wait(timeout=30)


def _sh(p: Path) -> str:
    return "'" + str(p).replace("'", "'\\''") + "'"


def rss_kib(pid: int) -> Optional[int]:
    """VmRSS of a live process in KiB, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None
    return None


class UopdNode(Proc):
    """``uopd --config CONFIG --ready-file <logdir>/<name>.ready.json``. ``name`` names the
    process (logs, reports); the node name is in the config, which several nodes may share."""

    def __init__(self, name: str, config: Path, logdir: Path) -> None:
        self.config = config
        self.ready_path = logdir / f"{name}.ready.json"
        # Nodes sharing a config on one host stand for nodes on different hosts: --instance
        # tells them apart as different host names would.
        super().__init__(name, [BIN_DIR / "uopd", "--config", config, "--instance", name,
                                "--ready-file", self.ready_path], logdir)
        self.ready: dict = {}
        self.instances: list[int] = []  # pid of every incarnation, in order

    def start(self, timeout: float = 90) -> dict:
        self.ready_path.unlink(missing_ok=True)
        super().start()
        wait_until(self.ready_path.is_file, timeout, f"{self.name}: ready file", procs=[self])
        self.ready = json.loads(self.ready_path.read_text())
        assert self.ready["pid"] == self.pid, (self.ready, self.pid)
        self.instances.append(self.pid)
        return self.ready

    @property
    def instance(self) -> str:
        """``name#n``: this incarnation (a restart is a new process with its own memory)."""
        return f"{self.name}#{len(self.instances)}"

    @property
    def federation_port(self) -> int:
        return int(self.ready["federation"].rsplit(":", 1)[1])

    def metrics(self, timeout: float = 10) -> Metrics:
        try:
            with urllib.request.urlopen(f"http://{self.ready['admin']}/metrics",
                                        timeout=scaled(timeout)) as r:
                return parse_metrics(r.read().decode())
        except (urllib.error.URLError, OSError) as e:
            raise AssertionError(f"{self.name}: GET /metrics failed: {e!r}") from None

    def http_get(self, path: str, timeout: float = 10) -> tuple[int, str]:
        with urllib.request.urlopen(f"http://{self.ready['admin']}{path}",
                                    timeout=scaled(timeout)) as r:
            return r.status, r.read().decode()

    def try_metrics(self) -> Optional[Metrics]:
        """Metrics, or None while the node is down or not answering."""
        if not self.alive or not self.ready:
            return None
        try:
            return self.metrics(timeout=5)
        except AssertionError:
            return None
