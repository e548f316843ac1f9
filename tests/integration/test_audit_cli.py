"""`uopctl audit`: the auditor's tools end to end over logs written by the real AuditLog."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

BIN_DIR = Path(os.environ.get("UOP_BIN_DIR", "build/bin"))


def audit(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN_DIR / "uopctl"), "audit", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=60)


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    r = audit("demo", "--out", ".", "--batches", "6", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    return tmp_path


KEYS = ["--key", "helsinki-key/audit.vkey", "--peer-key", "tallinn-key/audit.vkey"]


def test_keygen_writes_a_private_key_only_its_owner_reads_and_never_prints_it(tmp_path):
    r = audit("keygen", "--name", "riga", "--out", "k", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    key = tmp_path / "k" / "audit.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "BEGIN PRIVATE KEY" in key.read_text()
    pem_body = key.read_text().splitlines()[1]
    assert pem_body not in r.stdout + r.stderr
    vkey = (tmp_path / "k" / "audit.vkey").read_text().strip()
    # name + key id + base64(0x01 || 32-byte key)
    assert re.fullmatch(r"riga\+[0-9a-f]{8}\+[A-Za-z0-9+/]{44}", vkey)
    assert vkey in r.stdout
    again = audit("keygen", "--name", "riga", "--out", "k", cwd=tmp_path)
    assert again.returncode == 1
    assert "exists; refusing to overwrite an audit key" in again.stderr


def test_verify_query_prove_export_reconcile(demo):
    r = audit("verify", "helsinki-audit", *KEYS, "--witnessed",
              "helsinki-witnessed-by-tallinn.note", cwd=demo)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[-1] == (
        "OK helsinki-audit: log of helsinki, 33 leaves, 33 entries checked; 5 checkpoints "
        "(latest signs 32 entries), 6 receipts, 2 cosignatures by peers, 2 peer checkpoints "
        "cosigned")

    r = audit("query", "tallinn-audit", "--type", "batch_received", "--json", cwd=demo)
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert r.returncode == 0 and len(rows) == 6
    assert {row["type"] for row in rows} == {"batch_received"}
    assert [(row["topic"], row["partition"], row["first_offset"]) for row in rows] == [
        ("noise.observations", b % 2, (b // 2) * 1000) for b in range(6)]

    r = audit("prove", "helsinki-audit", "--batch", "noise.observations:1:1500", "--out", "p",
              cwd=demo)
    assert r.returncode == 0, r.stderr
    ok = audit("verify-proof", "p", "--key", "helsinki-key/audit.vkey", cwd=demo)
    assert ok.returncode == 0 and ok.stdout.startswith(
        "OK: entry 15 (batch_sent tallinn noise.observations/1 1000..1999, 1000 records"), ok.stdout
    wrong = audit("verify-proof", "p", "--key", "tallinn-key/audit.vkey", cwd=demo)
    assert wrong.returncode == 1 and "checkpoint has no signature by key tallinn+" in wrong.stdout
    lines = (demo / "p").read_text().splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith("hash "))
    lines[i] = "hash " + "A" * 43 + "="
    (demo / "p").write_text("\n".join(lines) + "\n")
    bad = audit("verify-proof", "p", "--key", "helsinki-key/audit.vkey", cwd=demo)
    assert bad.returncode == 1 and "inclusion proof: computed root " in bad.stdout

    r = audit("prove", "helsinki-audit", "--consistency", "8:32", "--out", "c", cwd=demo)
    assert r.returncode == 0, r.stderr
    ok = audit("verify-proof", "c", "--key", "helsinki-key/audit.vkey", cwd=demo)
    assert ok.returncode == 0 and "extends its checkpoint of 8 entries" in ok.stdout

    r = audit("export", "tallinn-audit", "--key", "tallinn-key/audit.vkey", "--peer-key",
              "helsinki-key/audit.vkey", "--out", "t.bundle", cwd=demo)
    assert r.returncode == 0, r.stderr
    r = audit("verify", "t.bundle", "--key", "tallinn-key/audit.vkey", "--peer-key",
              "helsinki-key/audit.vkey", cwd=demo)
    assert r.returncode == 0 and r.stdout.startswith("OK t.bundle: log of tallinn"), r.stdout
    r = audit("reconcile", "helsinki-audit", "t.bundle", "--key", "helsinki-key/audit.vkey",
              "--peer-key", "tallinn-key/audit.vkey", cwd=demo)
    assert r.returncode == 0, r.stdout
    assert r.stdout.splitlines()[-1] == "12 batches: 12 agree, 0 disagree; 0 log problems"


def test_reconcile_lists_every_disagreement(tmp_path):
    assert audit("demo", "--out", ".", "--batches", "6", "--disagree", cwd=tmp_path).returncode == 0
    assert audit("export", "tallinn-audit", "--key", "tallinn-key/audit.vkey", "--peer-key",
                 "helsinki-key/audit.vkey", "--out", "t.bundle", cwd=tmp_path).returncode == 0
    r = audit("reconcile", "helsinki-audit", "t.bundle", "--key", "helsinki-key/audit.vkey",
              "--peer-key", "tallinn-key/audit.vkey", cwd=tmp_path)
    assert r.returncode == 1
    rows = [line.split(None, 7) for line in r.stdout.splitlines()[2:-1]]
    assert [(row[0], row[2], row[3], row[7]) for row in rows] == [
        ("helsinki", "noise.observations/1", "1000..1999",
         "helsinki refused tallinn's receipt: receipt record count is 998, the batch sent has "
         "1000; record count differs: sent 1000, received 998"),
        ("tallinn", "air.observations/0", "2000..2999", "tallinn logged no receipt from helsinki"),
    ]


def test_verify_names_segment_offset_entry_and_reason(demo):
    segment = demo / "helsinki-audit" / "audit-000001.log"
    data = bytearray(segment.read_bytes())
    # The first record: its payload starts at byte 7; a changed byte there breaks its checksum.
    data[20] ^= 0x01
    segment.write_bytes(bytes(data))
    r = audit("verify", "helsinki-audit", *KEYS, cwd=demo)
    assert r.returncode == 1
    assert r.stdout.splitlines()[-1] == (
        "FAIL helsinki-audit: audit-000001.log offset 0 entry 0: checksum mismatch")
    data[20] ^= 0x01
    segment.write_bytes(bytes(data[:-5]))  # a torn write at the end
    r = audit("verify", "helsinki-audit", *KEYS, cwd=demo)
    assert r.returncode == 1
    assert re.fullmatch(
        r"FAIL helsinki-audit: audit-000001\.log offset (\d+) entry 32: segment ends inside a "
        r"record \(torn tail: opening the log would cut it at offset \1\)",
        r.stdout.splitlines()[-1]), r.stdout
