"""Process-level test harness for uopd federations (pure Python 3.11 standard library).

Everything here starts real processes: ``uopctl dev-kafka`` (a librdkafka mock Kafka cluster in
its own process), ``uopd`` nodes with real mutual TLS, ``uopctl simulate`` and ``uopctl compare``.
Tests get a :class:`Cluster` through the ``cluster`` fixture (see ``tests/integration/conftest.py``);
it owns every process and proxy it started and kills them all on teardown. When a test fails,
the tail of every process's stderr is attached to the failure report.

Rules kept here: every port is chosen by the OS (port 0, read back from ready/bootstrap files);
every wait is a condition polled against a deadline (:func:`wait_until`), never a bare sleep.

Binaries are taken from ``$UOP_BIN_DIR`` (default ``<repo>/build/bin``), scripts from
``$UOP_SOURCE_DIR`` (default ``<repo>``). ``$UOP_TEST_TIMEOUT_SCALE`` multiplies every deadline
(for sanitizer builds).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from uoptest.proxy import TcpProxy

__all__ = [
    "BIN_DIR", "SOURCE_DIR", "LINK", "TIMEOUT_SCALE", "Cluster", "DevKafka", "Federation", "Metrics",
    "Peer", "Proc", "Uopd", "make_pki", "parse_metrics", "scaled", "wait_until",
]

_REPO = Path(__file__).resolve().parents[3]
BIN_DIR = Path(os.environ.get("UOP_BIN_DIR") or _REPO / "build" / "bin")
SOURCE_DIR = Path(os.environ.get("UOP_SOURCE_DIR") or _REPO)
TIMEOUT_SCALE = float(os.environ.get("UOP_TEST_TIMEOUT_SCALE") or 1.0)

# Short link timings so failures are detected and healed within seconds.
LINK = {
    "heartbeat_interval_ms": 500,
    "dead_peer_timeout_ms": 2500,
    "reconnect_backoff_initial_ms": 100,
    "reconnect_backoff_max_ms": 1000,
}

# Children die with the test process even if it is killed (ctest timeout, ^C): the kernel sends
# them SIGKILL when the thread that started them exits. Only used from the main thread, because
# the signal follows the *thread* that forked, not the process.
_SETPRIV = shutil.which("setpriv")


def summarize_stacks(gdb_output: str) -> str:
    """``thread apply all bt`` output as one line per thread: its name and its frames' function
    names, innermost first, joined by " < ", without libc's and unnamed frames; threads left with
    nothing (librdkafka's and gRPC's own, waiting) are only counted."""
    lines: list[str] = []
    idle = 0
    name, frames = "", []

    def function(frame: str) -> str:
        frame = re.sub(r" (?:at|from) \S+$", "", frame)
        frame = re.sub(r"^0x[0-9a-f]+ in ", "", frame)
        if frame.endswith(")"):  # drop the argument list: the last balanced "(...)"
            depth = 0
            for i in range(len(frame) - 1, -1, -1):
                depth += {")": 1, "(": -1}.get(frame[i], 0)
                if depth == 0:
                    frame = frame[:i].rstrip()
                    break
        return re.sub(r"<.*>", "<>", frame)

    def flush() -> None:
        nonlocal idle
        if not name:
            return
        if frames:
            lines.append(f"{name}: " + " < ".join(frames))
        else:
            idle += 1

    for line in gdb_output.splitlines():
        head = re.match(r'Thread \d+ \(Thread 0x[0-9a-f]+ \(LWP (\d+)\) "([^"]*)"\)', line)
        if head:
            flush()
            name, frames = f"{head.group(2)}[{head.group(1)}]", []
            continue
        frame = re.match(r"#\d+\s+(.+)$", line)
        if frame and name:
            fn = function(frame.group(1))
            if fn != "??" and not fn.startswith(("__", "_IO_", "start_thread", "clone")) \
                    and "pthread_cond" not in fn and "futex" not in fn:
                frames.append(fn)
    flush()
    if not lines and not idle:
        return "(no threads in gdb's output)\n" + gdb_output[-2000:]
    return "\n".join(lines + [f"({idle} more threads with only unnamed or libc frames)"])


def scaled(seconds: float) -> float:
    return seconds * TIMEOUT_SCALE


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, *,
               interval: float = 0.05, procs: Iterable["Proc"] = ()) -> Any:
    """Poll ``predicate`` until it returns something truthy and return that. Raise
    AssertionError naming ``what`` when ``timeout`` seconds (scaled) pass, or at once when one of
    ``procs`` exits meanwhile."""
    timeout = scaled(timeout)
    procs = list(procs)
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if last:
            return last
        for p in procs:
            if not p.alive:
                raise AssertionError(
                    f"{p.name} exited with status {p.returncode} while waiting for {what}\n"
                    f"--- {p.name} stderr (tail) ---\n{p.tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what} "
                                 f"(last value: {last!r})")
        time.sleep(interval)


def make_pki(outdir: Path) -> Path:
    """Run deploy/pki/make-pki.sh into ``outdir`` and return it."""
    script = SOURCE_DIR / "deploy" / "pki" / "make-pki.sh"
    r = subprocess.run(["bash", str(script), str(outdir)], capture_output=True, text=True,
                       timeout=scaled(120))
    if r.returncode != 0:
        raise RuntimeError(f"{script} failed ({r.returncode}): {r.stderr}")
    for city in ("helsinki", "tallinn"):
        for f in ("ca.pem", "node.pem", "node.key"):
            assert (outdir / city / f).is_file(), f"make-pki.sh did not create {city}/{f}"
    return outdir


# ---------------------------------------------------------------------------------------- metrics

_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


class Metrics(dict):
    """Prometheus samples: ``{(name, frozenset(labels.items())): value}``."""

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``; 0 if there is none."""
        return sum(v for (n, ls), v in self.items()
                   if n == name and set(labels.items()) <= ls)

    def has(self, name: str, **labels: str) -> bool:
        return any(n == name and set(labels.items()) <= ls for (n, ls) in self)

    def series(self, name: str) -> dict[frozenset, float]:
        return {ls: v for (n, ls), v in self.items() if n == name}


def parse_metrics(text: str) -> Metrics:
    m = Metrics()
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            raise ValueError(f"unparsable metrics line: {line!r}")
        name, labels, value = match.groups()
        ls = frozenset((k, bytes(v, "utf-8").decode("unicode_escape"))
                       for k, v in _LABEL.findall(labels or ""))
        m[(name, ls)] = float(value)
    return m


# -------------------------------------------------------------------------------------- processes

class Proc:
    """A child process whose stdout and stderr go to files in the test's directory. Restarts
    append to the same files, after a ``=== start #n`` line."""

    def __init__(self, name: str, argv: Sequence[str], logdir: Path,
                 env: Optional[Mapping[str, str]] = None) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.stderr_path = logdir / f"{name}.stderr"
        self.stdout_path = logdir / f"{name}.stdout"
        self.env = dict(os.environ, **(env or {}))
        self.popen: Optional[subprocess.Popen] = None
        self.starts = 0
        self._start_offset = 0  # where the current incarnation's stderr begins

    def start(self) -> None:
        if self.alive:
            raise RuntimeError(f"{self.name} is already running")
        self.starts += 1
        with open(self.stderr_path, "ab") as f:
            f.write(f"=== {self.name} start #{self.starts}: {' '.join(self.argv)}\n".encode())
            self._start_offset = f.tell()
        with open(self.stdout_path, "ab") as f:
            f.write(f"=== start #{self.starts}\n".encode())
        argv = self.argv
        if _SETPRIV and threading.current_thread() is threading.main_thread():
            argv = [_SETPRIV, "--pdeathsig", "KILL", "--", *argv]
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                          env=self.env)

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> Optional[int]:
        return None if self.popen is None else self.popen.poll()

    def wait(self, timeout: float) -> int:
        assert self.popen is not None
        try:
            return self.popen.wait(timeout=scaled(timeout))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} did not exit within {scaled(timeout):.0f}s\n"
                                 f"--- where its threads wait ---\n{self.stacks()}\n"
                                 f"--- stderr (tail) ---\n{self.tail()}") from None

    def stacks(self) -> str:
        """Where each thread of the running process is, one line per thread with our code on it
        (innermost frame first), from gdb; what a hang needs to be explained."""
        if self.popen is None or self.popen.poll() is not None:
            return "(not running)"
        gdb = shutil.which("gdb")
        if gdb is None:
            return "(gdb not installed)"
        try:
            out = subprocess.run([gdb, "-p", str(self.popen.pid), "-batch", "-nx",
                                  "-ex", "set print frame-arguments none",
                                  "-ex", "thread apply all bt 30"],
                                 capture_output=True, text=True, timeout=120).stdout
        except subprocess.TimeoutExpired:
            return "(gdb timed out)"
        return summarize_stacks(out)

    def kill9(self) -> None:
        """SIGKILL and reap."""
        if self.alive:
            self.popen.send_signal(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(timeout=30)

    def terminate(self, timeout: float = 20, expect_rc: Optional[int] = 0) -> int:
        """SIGTERM, wait up to ``timeout`` seconds, assert the exit status."""
        if self.alive:
            self.popen.send_signal(signal.SIGTERM)
        rc = self.wait(timeout)
        if expect_rc is not None:
            assert rc == expect_rc, (f"{self.name} exited with {rc} after SIGTERM, expected "
                                     f"{expect_rc}\n--- stderr (tail) ---\n{self.tail()}")
        return rc

    def cleanup(self) -> None:
        """Teardown: whatever state it is in, make sure it is gone."""
        if self.alive:
            self.popen.send_signal(signal.SIGKILL)
        if self.popen is not None:
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass

    # --- logs

    def stderr_text(self, current_only: bool = False) -> str:
        try:
            data = self.stderr_path.read_bytes()
        except FileNotFoundError:
            return ""
        if current_only:
            data = data[self._start_offset:]
        return data.decode("utf-8", "replace")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.stderr_text().splitlines()[-lines:])

    def log_mark(self) -> int:
        """A position in the stderr file; pass to events(since=...) to see only later lines."""
        try:
            return self.stderr_path.stat().st_size
        except FileNotFoundError:
            return 0

    def events(self, event: Optional[str] = None, since: int = 0, **fields: str) -> list[dict]:
        """The JSON log lines (all incarnations, from byte ``since``) whose "event" is ``event``
        and whose fields equal ``fields``."""
        try:
            data = self.stderr_path.read_bytes()[since:]
        except FileNotFoundError:
            return []
        out = []
        for raw in data.decode("utf-8", "replace").splitlines():
            if not raw.startswith("{"):
                continue
            try:
                e = json.loads(raw)
            except ValueError:
                continue  # a line still being written
            if event is not None and e.get("event") != event:
                continue
            if all(e.get(k) == v for k, v in fields.items()):
                out.append(e)
        return out


class DevKafka(Proc):
    """``uopctl dev-kafka``: a mock Kafka cluster in its own process, so it survives the uopd
    nodes that use it."""

    def __init__(self, name: str, topics: Mapping[str, int], workdir: Path) -> None:
        self.bootstrap_file = workdir / f"{name}.bootstrap"
        argv = [BIN_DIR / "uopctl", "dev-kafka", "--bootstrap-file", self.bootstrap_file]
        for topic, partitions in topics.items():
            argv += ["--topic", f"{topic}:{partitions}"]
        super().__init__(name, argv, workdir)
        self.topics = dict(topics)
        self.bootstrap = ""

    def start(self, timeout: float = 20) -> None:
        self.bootstrap_file.unlink(missing_ok=True)
        super().start()
        wait_until(lambda: self.bootstrap_file.is_file()
                   and self.bootstrap_file.read_text().strip(),
                   timeout, f"{self.name}: bootstrap file {self.bootstrap_file}", procs=[self])
        self.bootstrap = self.bootstrap_file.read_text().strip()

    def stop(self) -> None:
        self.terminate(expect_rc=0)


@dataclasses.dataclass
class Peer:
    name: str
    ca: Path
    identity: str
    address: Optional[str] = None  # set on the receiver: it dials the owner
    audit_key: Optional[Path] = None  # the peer's audit verifier key (vkey file), if any


def _yaml_str(value: Any) -> str:
    return json.dumps(str(value))  # a JSON string is a valid YAML scalar


class Uopd(Proc):
    """A uopd node: writes its config (and policy files) into its own directory, starts with
    --ready-file and waits for it."""

    def __init__(self, node: str, workdir: Path, *, cert: Path, key: Path,
                 peers: Sequence[Peer] = (), kafka_bootstrap: Optional[str] = None,
                 embedded_topics: Optional[Mapping[str, int]] = None,
                 policies: Optional[Mapping[str, str]] = None,
                 link: Optional[Mapping[str, int]] = None,
                 kafka_properties: Optional[Mapping[str, str]] = None,
                 audit: Optional[Mapping[str, Any]] = None,
                 env: Optional[Mapping[str, str]] = None) -> None:
        self.dir = workdir / node
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.dir / "node.yaml"
        self.ready_path = self.dir / "ready.json"
        super().__init__(node, [BIN_DIR / "uopd", "--config", self.config_path,
                                "--ready-file", self.ready_path], workdir, env)
        self.node = node
        self.cert, self.key = cert, key
        self.peers = list(peers)
        self.kafka_bootstrap = kafka_bootstrap
        self.embedded_topics = embedded_topics
        self.kafka_properties = dict(kafka_properties or {})
        self.link = dict(LINK if link is None else link)
        self.audit = dict(audit) if audit else None  # the `audit` section: dir, key, ...
        self.ready: dict = {}
        self.write_config()
        self.write_policies(policies or {})

    # --- configuration

    def config_text(self) -> str:
        lines = [
            f"node: {self.node}",
            "listen: 127.0.0.1:0",
            "admin: 127.0.0.1:0",
            f"tls: {{cert: {_yaml_str(self.cert)}, key: {_yaml_str(self.key)}}}",
        ]
        if self.peers:
            lines.append("peers:")
            for p in self.peers:
                lines.append(f"  - name: {p.name}")
                if p.address:
                    lines.append(f"    address: {p.address}")
                lines.append(f"    ca: {_yaml_str(p.ca)}")
                lines.append(f"    identity: {p.identity}")
                if p.audit_key:
                    lines.append(f"    audit_key: {_yaml_str(p.audit_key)}")
        lines.append("kafka:")
        if self.kafka_bootstrap:
            lines.append(f"  bootstrap: {self.kafka_bootstrap}")
        else:
            topics = ", ".join(f"{t}: {n}" for t, n in (self.embedded_topics or {}).items())
            lines.append(f"  embedded: {{topics: {{{topics}}}}}")
        if self.kafka_properties:
            props = ", ".join(f"{k}: {_yaml_str(v)}" for k, v in self.kafka_properties.items())
            lines.append(f"  properties: {{{props}}}")
        lines.append("policies: policies")
        lines.append("link: {" + ", ".join(f"{k}: {v}" for k, v in self.link.items()) + "}")
        if self.audit:
            lines.append("audit: {" + ", ".join(
                f"{k}: {v if isinstance(v, int) else _yaml_str(v)}"
                for k, v in self.audit.items()) + "}")
        return "\n".join(lines) + "\n"

    def write_config(self) -> None:
        self.config_path.write_text(self.config_text())

    def write_policies(self, policies: Mapping[str, str]) -> None:
        """Replace the policy directory with ``{file name: YAML text}``."""
        pdir = self.dir / "policies"
        if pdir.exists():
            shutil.rmtree(pdir)
        pdir.mkdir()
        for name, text in policies.items():
            (pdir / name).parent.mkdir(parents=True, exist_ok=True)  # e.g. keys/NAME.key
            (pdir / name).write_text(text)

    # --- lifecycle

    def start(self, timeout: float = 30) -> dict:
        self.ready_path.unlink(missing_ok=True)
        super().start()
        wait_until(self.ready_path.is_file, timeout, f"{self.name}: ready file", procs=[self])
        self.ready = json.loads(self.ready_path.read_text())
        assert self.ready["node"] == self.node, self.ready
        assert self.ready["pid"] == self.pid, (self.ready, self.pid)
        return self.ready

    def restart(self, timeout: float = 30) -> dict:
        """Start again with the same config (after kill9() or terminate()). Port 0 means a new
        federation port: put a TcpProxy in front of an owner that restarts."""
        assert not self.alive, f"{self.name} is still running"
        return self.start(timeout)

    @property
    def federation(self) -> str:
        return self.ready["federation"]

    @property
    def federation_port(self) -> int:
        return int(self.federation.rsplit(":", 1)[1])

    @property
    def kafka(self) -> str:
        return self.ready["kafka_bootstrap"]

    def http_get(self, path: str, timeout: float = 5) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://{self.ready['admin']}{path}",
                                        timeout=scaled(timeout)) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def http_post(self, path: str, timeout: float = 10) -> tuple[int, str]:
        req = urllib.request.Request(f"http://{self.ready['admin']}{path}", data=b"",
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=scaled(timeout)) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metrics(self) -> Metrics:
        status, body = self.http_get("/metrics")
        assert status == 200, f"{self.name} /metrics answered {status}: {body}"
        return parse_metrics(body)

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics().value(name, **labels)


# ----------------------------------------------------------------------------------------- cluster

class Cluster:
    """Owns every process and proxy of one test."""

    def __init__(self, workdir: Path, pki: Path) -> None:
        self.dir = workdir
        self.pki = pki
        self.procs: list[Proc] = []
        self.proxies: list[TcpProxy] = []

    # --- factories

    def dev_kafka(self, name: str, topics: Mapping[str, int]) -> DevKafka:
        k = DevKafka(name, topics, self.dir)
        self.procs.append(k)
        k.start()
        return k

    def uopd(self, node: str, *, start: bool = True, **kwargs: Any) -> Uopd:
        kwargs.setdefault("cert", self.pki / node / "node.pem")
        kwargs.setdefault("key", self.pki / node / "node.key")
        u = Uopd(node, self.dir, **kwargs)
        self.procs.append(u)
        if start:
            u.start()
        return u

    def peer(self, name: str, address: Optional[str] = None) -> Peer:
        """The standard peer entry for a city of the demo PKI."""
        return Peer(name=name, ca=self.pki / name / "ca.pem", identity=f"uopd.{name}.example",
                    address=address)

    def proxy(self, target_port: int, target_host: str = "127.0.0.1") -> TcpProxy:
        p = TcpProxy(target_host, target_port)
        p.start()
        self.proxies.append(p)
        return p

    # --- uopctl one-shots

    def uopctl(self, *args: Any, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN_DIR / "uopctl"), *map(str, args)], capture_output=True,
                              text=True, timeout=scaled(timeout), stdin=subprocess.DEVNULL)

    def simulate(self, bootstrap: str, topic: str, count: int, *, seed: int = 1,
                 city: str = "helsinki") -> dict:
        r = self.uopctl("simulate", "--bootstrap", bootstrap, "--topic", topic, "--count", count,
                        "--seed", seed, "--city", city)
        assert r.returncode == 0, f"uopctl simulate failed ({r.returncode}): {r.stderr}"
        out = json.loads(r.stdout)
        assert out["produced"] == count and out["unflushed"] == 0, out
        return out

    def simulate_in_background(self, bootstrap: str, topic: str, count: int, rate: float, *,
                               seed: int = 1, name: str = "simulate") -> Proc:
        """Paced producer (``--rate``); wait for it with :meth:`finish_simulate`."""
        p = Proc(f"{name}-{len(self.procs)}",
                 [BIN_DIR / "uopctl", "simulate", "--bootstrap", bootstrap, "--topic", topic,
                  "--count", count, "--rate", rate, "--seed", seed], self.dir)
        self.procs.append(p)
        p.start()
        return p

    @staticmethod
    def finish_simulate(p: Proc, count: int, timeout: float = 120) -> dict:
        rc = p.wait(timeout)
        assert rc == 0, f"{p.name} exited with {rc}: {p.tail()}"
        out = json.loads(p.stdout_path.read_text().splitlines()[-1])
        assert out["produced"] == count and out["unflushed"] == 0, out
        return out

    def compare(self, source_bootstrap: str, source_topic: str, target_bootstrap: str, *,
                origin: str = "helsinki", wait: float = 0,
                target_topic: Optional[str] = None) -> dict:
        """``uopctl compare --json``; returns its JSON object plus "rc"."""
        args = ["compare", "--source-bootstrap", source_bootstrap, "--source-topic", source_topic,
                "--target-bootstrap", target_bootstrap, "--origin", origin, "--json"]
        if wait:
            args += ["--wait", scaled(wait)]
        if target_topic:
            args += ["--target-topic", target_topic]
        r = self.uopctl(*args, timeout=wait + 180)
        try:
            out = json.loads(r.stdout)
        except ValueError:
            raise AssertionError(f"uopctl compare printed no JSON (rc {r.returncode}): "
                                 f"stdout={r.stdout!r} stderr={r.stderr!r}") from None
        out["rc"] = r.returncode
        assert (r.returncode == 0) == bool(out["ok"]), f"exit status disagrees with ok: {out}"
        return out

    # --- teardown and diagnostics

    def close(self) -> None:
        for p in self.proxies:
            try:
                p.stop()
            except Exception:  # teardown must go on
                pass
        for p in reversed(self.procs):
            p.cleanup()

    def report(self, lines: int = 60) -> str:
        parts = []
        for p in self.procs:
            state = "running" if p.alive else f"exited {p.returncode}"
            parts.append(f"--- {p.name} ({state}, started {p.starts}x) stderr tail: "
                         f"{p.stderr_path} ---\n{p.tail(lines)}")
        for i, px in enumerate(self.proxies):
            parts.append(f"--- proxy {i} :{px.port} -> {px.target}: connections "
                         f"{int(px.connections_total)}, rejected {int(px.connections_rejected)}, "
                         f"upstream failures {int(px.upstream_failures)}, "
                         f"bytes {int(px.bytes_forwarded)}")
        return "\n".join(parts)


# ------------------------------------------------------------------------------------- federation

class Federation:
    """The standard two-city setup: helsinki owns ``noise.observations`` (3 partitions) and shares
    it with tallinn; each city has its own dev-kafka process; tallinn dials helsinki through a
    TcpProxy (so helsinki may restart on a new port, and links can be cut)."""

    TOPIC = "noise.observations"
    MIRROR = "helsinki.noise.observations"

    def __init__(self, cluster: Cluster, *, owner_topics: Optional[Mapping[str, int]] = None,
                 policies: Optional[Mapping[str, str]] = None,
                 receiver_policies: Optional[Mapping[str, str]] = None) -> None:
        self.cluster = cluster
        self.owner_topics = dict(owner_topics or {self.TOPIC: 3})
        self.hk = cluster.dev_kafka("helsinki-kafka", self.owner_topics)
        mirror_topics: dict[str, int] = {}
        for t, n in self.owner_topics.items():
            # The mock cluster cannot create topics on request: the mirrors must exist already.
            mirror_topics[f"helsinki.{t}"] = n
            mirror_topics[f"helsinki.{t}.deadletter"] = n
        self.tk = cluster.dev_kafka("tallinn-kafka", mirror_topics)
        if policies is None:
            policies = {"noise.yaml": f"dataset: {self.TOPIC}\nshares:\n  - peer: tallinn\n"}
        self.helsinki = cluster.uopd("helsinki", peers=[cluster.peer("tallinn")],
                                     kafka_bootstrap=self.hk.bootstrap, policies=policies)
        self.proxy = cluster.proxy(self.helsinki.federation_port)
        self.tallinn = cluster.uopd("tallinn",
                                    peers=[cluster.peer("helsinki", self.proxy.address)],
                                    kafka_bootstrap=self.tk.bootstrap,
                                    policies=receiver_policies)

    def restart_owner(self) -> None:
        """Restart helsinki (after kill9/terminate) and point the proxy at its new port."""
        self.helsinki.restart()
        self.proxy.set_target("127.0.0.1", self.helsinki.federation_port)

    def imported(self, topic: str = TOPIC) -> float:
        return self.tallinn.metric("uop_import_records_total", peer="helsinki", topic=topic)

    def streams(self, topic: str = TOPIC) -> tuple[float, float]:
        """(partitions assigned to tallinn, partition streams flowing) for ``topic``."""
        m = self.tallinn.metrics()
        labels = {"peer": "helsinki", "topic": topic}
        return (m.value("uop_import_partitions_assigned", **labels),
                m.value("uop_import_stream_up", **labels))

    def wait_streaming(self, topic: str = TOPIC, timeout: float = 60) -> None:
        """Until every partition of ``topic`` streams into tallinn (the receiver first checks its
        topics and joins its Kafka consumer group, which takes several seconds on dev-kafka)."""
        partitions = self.owner_topics[topic]
        wait_until(lambda: self.streams(topic) == (partitions, partitions), timeout,
                   f"tallinn's {partitions} import streams of helsinki/{topic}",
                   procs=[self.helsinki, self.tallinn])

    def compare(self, topic: str = TOPIC, wait: float = 60) -> dict:
        return self.cluster.compare(self.hk.bootstrap, topic, self.tk.bootstrap, wait=wait)
