"""The owner applies its sharing rules to what leaves (issue 7), end to end.

helsinki shares a JSON dataset with tallinn with one field dropped, one field and the record key
pseudonymised (HMAC-SHA256 under the share's key) and a bounding box. Records inside the box
arrive at tallinn with exactly the expected bytes; the others never leave and are counted per
reason on helsinki's /metrics.

Run: ``cd tests/integration && python3 -m pytest -q test_policy_exchange.py`` (after building).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess

from uoptest.cluster import Cluster, Federation, scaled, wait_until

TOPIC = Federation.TOPIC
MIRROR = Federation.MIRROR
KEY = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"  # 64 bytes, hex text

POLICY = f"""dataset: {TOPIC}
format: json
location: geometry
shares:
  - peer: tallinn
    fields:
      drop: [operator]
      pseudonymise: [sensor]
      pseudonym_key: tallinn-test
      record_key: pseudonymise
    spatial:
      within: {{bbox: [24.5, 59.9, 25.3, 60.4]}}
"""


def pseudonym(text: str) -> str:
    return hmac.new(KEY.encode(), text.encode(), hashlib.sha256).hexdigest()


def record(sensor: str, lon: float | None, lat: float | None) -> str:
    r = {"sensor": sensor, "operator": "Jane", "level": 61.5}
    if lon is not None:
        r["geometry"] = {"type": "Point", "coordinates": [lon, lat]}
    return json.dumps(r, separators=(",", ":"))


def kcat(*args: str, stdin: str | None = None) -> str:
    r = subprocess.run(["kcat", *args], input=stdin, capture_output=True, text=True,
                       timeout=scaled(30))
    assert r.returncode == 0, f"kcat {args} failed: {r.stderr}"
    return r.stdout


def test_share_drops_pseudonymises_and_filters_by_bbox(cluster: Cluster):
    f = Federation(cluster, owner_topics={TOPIC: 1},
                   policies={"noise.yaml": POLICY, "keys/tallinn-test.key": KEY + "\n"})
    f.wait_streaming()
    inputs = [("hel-1", record("hel-1", 24.95, 60.17)),   # inside: leaves
              ("hel-2", record("hel-2", 10.0, 50.0)),     # outside the box: withheld
              ("hel-3", record("hel-3", None, None)),     # no location: withheld
              ("hel-4", record("hel-4", 25.1, 60.3))]     # inside: leaves
    kcat("-P", "-b", f.hk.bootstrap, "-t", TOPIC, "-p", "0", "-K", "\t",
         stdin="".join(f"{k}\t{v}\n" for k, v in inputs))

    wait_until(lambda: f.imported() == 2, 20, "tallinn to import the 2 records inside the box",
               procs=[f.helsinki, f.tallinn])
    out = [json.loads(line) for line in kcat(
        "-C", "-b", f.tk.bootstrap, "-t", MIRROR, "-e", "-J", "-X",
        "isolation.level=read_committed").splitlines() if line.strip()]
    got = [(m["key"], m["payload"]) for m in out]
    expected = []
    for sensor, lon, lat in [("hel-1", 24.95, 60.17), ("hel-4", 25.1, 60.3)]:
        value = json.dumps({"sensor": pseudonym(sensor), "level": 61.5,
                            "geometry": {"type": "Point", "coordinates": [lon, lat]}},
                           separators=(",", ":"))
        expected.append((pseudonym(sensor), value))
    assert got == expected
    for m in out:  # every record carries the version of the policy it left under
        headers = dict(zip(m["headers"][0::2], m["headers"][1::2]))
        assert headers.get("uop.policy.version"), headers
        assert "hel-" not in json.dumps(m)  # no clear identifier leaves

    exp = {"peer": "tallinn", "topic": TOPIC}
    hm = f.helsinki.metrics()
    assert hm.value("uop_export_withheld_records_total", reason="outside_area", **exp) == 1
    assert hm.value("uop_export_withheld_records_total", reason="no_location", **exp) == 1
    assert hm.value("uop_export_withheld_total", **exp) == 2
    assert hm.value("uop_export_records_total", **exp) == 2
    assert KEY not in f.helsinki.http_get("/metrics")[1]
