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
import signal
import subprocess
import time

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

    # uopctl compare --policy applies the same share to the origin and checks the mirror byte
    # for byte: nothing lost, nothing twice, the withheld ones accounted for by reason.
    r = cluster.uopctl("compare", "--source-bootstrap", f.hk.bootstrap, "--source-topic", TOPIC,
                       "--target-bootstrap", f.tk.bootstrap, "--origin", "helsinki", "--json",
                       "--policy", f.helsinki.dir / "policies", "--peer", "tallinn")
    c = json.loads(r.stdout)
    assert r.returncode == 0 and c["ok"], (r, c)
    assert (c["source"], c["expected"], c["target"], c["withheld"]) == (4, 2, 2, 2), c
    assert c["withheld_by_reason"] == {"no_location": 1, "outside_area": 1}, c


# ------------------------------------------------------------------------------ reload and expiry

def share_policy(drop: list[str], extra: str = "") -> str:
    return (f"dataset: {TOPIC}\nformat: json\nowner: {{organisation: City of Helsinki, "
            f"contact: data@hel.example}}\nshares:\n  - peer: tallinn\n"
            f"    purpose: cross-border-noise-map\n    licence: CC-BY-4.0\n    retention: 30d\n"
            f"    fields:\n      drop: [{', '.join(drop)}]\n{extra}")


def produce(f: Federation, records: list[tuple[str, str]]) -> None:
    kcat("-P", "-b", f.hk.bootstrap, "-t", TOPIC, "-p", "0", "-K", "\t",
         stdin="".join(f"{k}\t{v}\n" for k, v in records))


def mirrored(f: Federation) -> list[dict]:
    return [json.loads(line) for line in kcat(
        "-C", "-b", f.tk.bootstrap, "-t", MIRROR, "-e", "-J", "-X",
        "isolation.level=read_committed").splitlines() if line.strip()]


def test_reload_switches_rules_at_a_record_boundary_and_a_bad_edit_keeps_them(cluster: Cluster):
    """A tightening reload (file change) applies to every record read after it, with nothing lost
    or repeated; a bad edit is refused with file:line:column and the last good rules stay; a
    revoked share ends the stream on both sides and the receiver stops asking until it is back."""
    f = Federation(cluster, owner_topics={TOPIC: 1},
                   policies={"noise.yaml": share_policy(["operator"])})
    f.wait_streaming()
    produce(f, [(f"a{i}", json.dumps({"sensor": f"a{i}", "operator": "Jane", "n": i}))
                for i in range(3)])
    wait_until(lambda: f.imported() == 3, 20, "the first 3 records", procs=[f.helsinki, f.tallinn])
    first_version = json.loads(f.helsinki.http_get("/policy/status")[1])["version"]

    # Tighten by editing the file: the watcher loads it; the stream restarts under the new rules.
    mark = f.helsinki.log_mark()
    (f.helsinki.dir / "policies" / "noise.yaml").write_text(share_policy(["operator", "sensor"]))
    wait_until(lambda: f.helsinki.events("policies_loaded", since=mark, trigger="file change"), 20,
               "helsinki to load the edited policy", procs=[f.helsinki])
    tight_version = f.helsinki.events("policies_loaded", since=mark)[-1]["version"]
    assert tight_version != first_version
    produce(f, [(f"b{i}", json.dumps({"sensor": f"b{i}", "operator": "Jane", "n": 10 + i}))
                for i in range(3)])
    wait_until(lambda: f.imported() == 6, 30, "the 3 records after the reload",
               procs=[f.helsinki, f.tallinn])
    assert f.helsinki.events("export_share_changed", since=mark)
    out = mirrored(f)
    values = [json.loads(m["payload"]) for m in out]
    assert [v["n"] for v in values] == [0, 1, 2, 10, 11, 12]  # nothing lost, nothing twice
    assert all("operator" not in v for v in values)
    assert [("sensor" in v) for v in values] == [True] * 3 + [False] * 3
    versions = [dict(zip(m["headers"][0::2], m["headers"][1::2]))["uop.policy.version"]
                for m in out]
    assert versions == [first_version] * 3 + [tight_version] * 3

    # A bad edit: refused with where and why, the tight rules stay and the stream goes on.
    (f.helsinki.dir / "policies" / "noise.yaml").write_text(
        share_policy(["operator", "sensor"]).replace("retention: 30d", "retention: soon"))
    status, body = f.helsinki.http_post("/policy/reload")
    assert status == 422, body
    reply = json.loads(body)
    assert reply["ok"] is False and reply["version"] == tight_version
    assert "noise.yaml:" in reply["error"] and "retention" in reply["error"], reply
    st = json.loads(f.helsinki.http_get("/policy/status")[1])
    assert st["version"] == tight_version and st["last_attempt_ok"] is False, st
    assert f.helsinki.metric("uop_policy_last_reload_ok") == 0
    r = cluster.uopctl("policy", "reload", "--admin", f.helsinki.ready["admin"])
    assert r.returncode == 1 and r.stdout.startswith("refused: ") and tight_version in r.stdout, r
    r = cluster.uopctl("policy", "status", "--admin", f.helsinki.ready["admin"])
    assert r.returncode == 1 and "refused: " in r.stdout and "noise.observations" in r.stdout, r
    assert f.helsinki.metric("uop_policy_reloads_total", result="rejected") >= 1
    produce(f, [("c0", json.dumps({"sensor": "c0", "operator": "Jane", "n": 20}))])
    wait_until(lambda: f.imported() == 7, 20, "a record after the bad edit",
               procs=[f.helsinki, f.tallinn])
    assert "sensor" not in json.loads(mirrored(f)[-1]["payload"])

    # The receiver's catalogue shows the terms the owner sent.
    def catalogue() -> dict:
        (imp,) = json.loads(f.tallinn.http_get("/datasets")[1])["imports"]
        return imp
    # dev-kafka keeps no topic configs: the catalogue says so rather than claim a retention.
    wait_until(lambda: "retention_note" in catalogue(), 20, "tallinn to try retention.ms",
               procs=[f.tallinn])
    imp = catalogue()
    assert (imp["dataset"], imp["peer"], imp["state"]) == (TOPIC, "helsinki", "streaming"), imp
    assert (imp["purpose"], imp["licence"]) == ("cross-border-noise-map", "CC-BY-4.0"), imp
    assert imp["owner"] == {"organisation": "City of Helsinki", "contact": "data@hel.example"}
    assert imp["owner_retention_ms"] == 30 * 86400 * 1000, imp
    assert imp["retention_ms_applied"] is None, imp
    r = cluster.uopctl("status", "--admin", f.tallinn.ready["admin"])
    assert r.returncode == 0, r
    assert "cross-border-noise-map" in r.stdout and "CC-BY-4.0" in r.stdout, r.stdout
    assert "streaming" in r.stdout and str(30 * 86400 * 1000) in r.stdout, r.stdout

    # Revoke (SIGHUP): both sides log it; the receiver stops asking until the share is back.
    tmark, hmark = f.tallinn.log_mark(), f.helsinki.log_mark()
    (f.helsinki.dir / "policies" / "noise.yaml").write_text(
        f"dataset: {TOPIC}\nformat: json\nshares: []\n")
    f.helsinki.popen.send_signal(signal.SIGHUP)
    wait_until(lambda: f.tallinn.events("import_share_withdrawn", since=tmark), 20,
               "tallinn to see the share withdrawn", procs=[f.helsinki, f.tallinn])
    assert f.helsinki.events("export_share_revoked", since=hmark)
    produce(f, [("d0", json.dumps({"sensor": "d0", "operator": "Jane", "n": 30}))])
    wait_until(lambda: json.loads(f.tallinn.http_get("/datasets")[1])["imports"][0]["state"]
               == "withdrawn", 20, "tallinn's catalogue to say withdrawn", procs=[f.tallinn])
    (f.helsinki.dir / "policies" / "noise.yaml").write_text(share_policy(["operator", "sensor"]))
    f.helsinki.popen.send_signal(signal.SIGHUP)
    wait_until(lambda: f.imported() == 8, 40, "the record produced while revoked, once back",
               procs=[f.helsinki, f.tallinn])
    assert f.tallinn.events("import_share_back", since=tmark)
    # While withdrawn, tallinn did not keep subscribing: at most the one refusal in flight.
    assert len(f.helsinki.events("subscribe_denied", since=hmark)) <= 1
    assert [json.loads(m["payload"])["n"] for m in mirrored(f)][-2:] == [20, 30]


def test_a_share_past_its_validity_window_stops_by_itself(cluster: Cluster):
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + scaled(8)))
    f = Federation(cluster, owner_topics={TOPIC: 1}, policies={"noise.yaml": share_policy(
        ["operator"]).replace("    retention: 30d\n",
                              f"    valid: {{from: 2026-01-01T00:00:00Z, until: {until}}}\n")})
    f.wait_streaming()
    produce(f, [("a0", json.dumps({"sensor": "a0", "operator": "Jane"}))])
    wait_until(lambda: f.imported() == 1, 20, "a record inside the window",
               procs=[f.helsinki, f.tallinn])
    wait_until(lambda: f.helsinki.events("share_stopped", dataset=TOPIC, peer="tallinn"), 30,
               "helsinki to log the share's end", procs=[f.helsinki])
    wait_until(lambda: f.tallinn.events("import_share_withdrawn"), 20,
               "tallinn to stop asking", procs=[f.tallinn])
    (stopped,) = f.helsinki.events("export_share_stopped")
    assert "expired at " + until in stopped["reason"], stopped
    st = json.loads(f.helsinki.http_get("/policy/status")[1])
    assert [s["state"] for s in st["shares"]] == ["expired"], st
    assert f.helsinki.metric("uop_policy_shares_active") == 0


def test_a_receiver_accept_rule_refuses_an_oversized_record_into_its_dead_letter_topic(
        cluster: Cluster):
    """tallinn's own rule caps records from helsinki at 200 bytes: the big one goes to tallinn's
    dead-letter topic with the reason, the others to the mirror, and helsinki is told why."""
    accept = (f"accept:\n  - peer: helsinki\n    dataset: {TOPIC}\n    max_record_bytes: 200\n"
              f"    max_retention: 7d\n")
    f = Federation(cluster, owner_topics={TOPIC: 1},
                   policies={"noise.yaml": share_policy(["operator"])},
                   receiver_policies={"accept.yaml": accept})
    f.wait_streaming()
    big = json.dumps({"sensor": "big", "n": 1, "pad": "x" * 500})
    produce(f, [("s0", json.dumps({"sensor": "s0", "n": 0})), ("big", big),
                ("s2", json.dumps({"sensor": "s2", "n": 2}))])
    wait_until(lambda: f.tallinn.metric("uop_import_deadletter_total", peer="helsinki",
                                        topic=TOPIC) == 1 and f.imported() == 2, 20,
               "2 records mirrored and 1 dead-lettered", procs=[f.helsinki, f.tallinn])
    assert [json.loads(m["payload"])["n"] for m in mirrored(f)] == [0, 2]
    (dead,) = [json.loads(line) for line in kcat(
        "-C", "-b", f.tk.bootstrap, "-t", MIRROR + ".deadletter", "-e", "-J", "-X",
        "isolation.level=read_committed").splitlines() if line.strip()]
    headers = dict(zip(dead["headers"][0::2], dead["headers"][1::2]))
    assert headers["uop.deadletter.reason"].startswith("refused by accept rule: too_large"), headers
    assert dead["key"] == "big"
    assert f.tallinn.metric("uop_import_refused_records_total", peer="helsinki", topic=TOPIC,
                            reason="too_large") == 1
    wait_until(lambda: f.helsinki.metric("uop_export_refused_by_peer_total", peer="tallinn",
                                         topic=TOPIC, reason="too_large") == 1, 10,
               "helsinki to hear of the refusal", procs=[f.helsinki])
    (told,) = f.helsinki.events("export_refused_by_peer")
    assert told["reason"] == "too_large" and told["first_offset"] == "1", told
    # The lower retention wins: tallinn's 7d under helsinki's 30d (recorded; dev-kafka keeps no
    # topic configs, so it is not applied here: tests/kafka checks that on real Kafka).
    wait_until(lambda: "retention_note" in json.loads(
        f.tallinn.http_get("/datasets")[1])["imports"][0], 20, "the retention attempt",
        procs=[f.tallinn])
    note = f.tallinn.events("import_retention_not_set")[0]
    assert note["retention_ms"] == str(7 * 86400 * 1000), note


def test_policy_preview_shows_the_last_records_as_the_peer_would_get_them(cluster: Cluster,
                                                                          tmp_path):
    """`uopctl policy preview`: a dry run of a policy directory no node has loaded, on the last N
    records of a live Kafka topic."""
    k = cluster.dev_kafka("preview-kafka", {TOPIC: 1})
    kcat("-P", "-b", k.bootstrap, "-t", TOPIC, "-p", "0", "-K", "\t", stdin="".join(
        f"{s}\t{record(s, lon, lat)}\n" for s, lon, lat in [
            ("hel-0", 24.9, 60.1), ("hel-1", 24.95, 60.17), ("hel-2", 10.0, 50.0),
            ("hel-3", None, None), ("hel-4", 25.1, 60.3)]))
    pdir = tmp_path / "candidate"
    (pdir / "keys").mkdir(parents=True)
    (pdir / "noise.yaml").write_text(POLICY)
    (pdir / "keys" / "tallinn-test.key").write_text(KEY + "\n")
    r = cluster.uopctl("policy", "preview", "--dir", pdir, "--dataset", TOPIC, "--peer",
                       "tallinn", "--last", "4", "--bootstrap", k.bootstrap, "--peers", "tallinn")
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()
    assert "the last 4 records" in lines[0], r.stdout  # hel-0 is older than the last 4
    assert lines[1] == (f"p0@1 kept key={pseudonym('hel-1')} value="
                        + json.dumps({"sensor": pseudonym("hel-1"), "level": 61.5, "geometry": {
                            "type": "Point", "coordinates": [24.95, 60.17]}},
                            separators=(",", ":"))), r.stdout
    assert lines[2:4] == ["p0@2 withheld (outside_area)", "p0@3 withheld (no_location)"], r.stdout
    assert lines[4].startswith("p0@4 kept key=" + pseudonym("hel-4")), r.stdout
    assert lines[-1] == ("summary: 4 read, 2 kept, 2 withheld (no_location 1, outside_area 1), "
                         "0 into aggregation windows, 2 records would leave"), r.stdout
    assert KEY not in r.stdout and "hel-1" not in r.stdout
