"""Fixtures of the conformance suite: the stubs generated from the .proto at test time, the demo
PKI, and the process harness of the integration tests (tests/integration/uoptest)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "integration"))

from uoptest.cluster import BIN_DIR, SOURCE_DIR, Cluster, make_pki  # noqa: E402

import peer  # noqa: E402


def _generate_stubs() -> Path:
    """protoc --python_out --grpc_python_out into the build directory (UOP_CONFORMANCE_GEN_DIR),
    from proto/uop/federation/v1/federation.proto only: the peer knows nothing else of uopd."""
    gen = Path(os.environ.get("UOP_CONFORMANCE_GEN_DIR") or BIN_DIR.parent / "conformance-gen")
    protoc = os.environ.get("UOP_PROTOC") or shutil.which("protoc")
    plugin = os.environ.get("UOP_GRPC_PYTHON_PLUGIN") or shutil.which("grpc_python_plugin")
    if not protoc or not plugin:
        pytest.exit("protoc and grpc_python_plugin are needed (Debian: protobuf-compiler, "
                    "protobuf-compiler-grpc)", returncode=2)
    shutil.rmtree(gen, ignore_errors=True)
    gen.mkdir(parents=True)
    proto_root = SOURCE_DIR / "proto"
    r = subprocess.run([protoc, f"-I{proto_root}", f"--python_out={gen}", f"--grpc_python_out={gen}",
                        f"--plugin=protoc-gen-grpc_python={plugin}",
                        str(proto_root / "uop" / "federation" / "v1" / "federation.proto")],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        pytest.exit(f"protoc failed: {r.stderr}", returncode=2)
    return gen


peer.load_stubs(_generate_stubs())


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def cluster(request, tmp_path, pki) -> Cluster:
    for binary in ("uopd", "uopctl"):
        if not (BIN_DIR / binary).is_file():
            pytest.fail(f"{BIN_DIR / binary} not found: build first or set UOP_BIN_DIR")
    c = Cluster(tmp_path, pki)
    request.node._uop_cluster = c
    yield c
    c.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the stderr tails of every process of a failed test to its report."""
    outcome = yield
    rep = outcome.get_result()
    c = getattr(item, "_uop_cluster", None)
    if rep.failed and c is not None:
        rep.sections.append((f"uop processes ({rep.when})", c.report()))
