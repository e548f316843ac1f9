"""Fixtures for the process-level integration tests (see uoptest/cluster.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from uoptest.cluster import BIN_DIR, Cluster, make_pki  # noqa: E402


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Path:
    """The demo PKI (deploy/pki/make-pki.sh), generated once per session."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def cluster(request, tmp_path, pki) -> Cluster:
    """Owns the processes and proxies of one test; kills them all on teardown."""
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
