"""Aggregation and rate limits on a live export stream (issue 7), end to end.

helsinki shares ``noise.observations`` with tallinn as 1-second windows per Datastream (only the
aggregates leave). While observations flow, one node is killed with SIGKILL and started again;
then ``uopctl compare --policy`` runs the same share over helsinki's topic and finds every window
in tallinn's mirror exactly once, with the same bytes, in order. A share with a rate limit is
paced to that rate, and every record still arrives.

Run: ``cd tests/integration && python3 -m pytest -q test_policy_aggregate.py`` (after building).
"""

from __future__ import annotations

import json
import time

import pytest

from uoptest.cluster import Cluster, Federation, wait_until

TOPIC = Federation.TOPIC

AGGREGATE = f"""dataset: {TOPIC}
format: sensorthings-observation
shares:
  - peer: tallinn
    aggregate: {{window: 1s, lateness: 2s, by: Datastream.@iot.id, values: [count, mean, max]}}
"""


def compare_policy(f: Federation, wait: float = 60) -> dict:
    r = f.cluster.uopctl("compare", "--source-bootstrap", f.hk.bootstrap, "--source-topic", TOPIC,
                         "--target-bootstrap", f.tk.bootstrap, "--origin", "helsinki",
                         "--policy", f.helsinki.dir / "policies", "--peer", "tallinn",
                         "--wait", wait, "--json", timeout=wait + 120)
    out = json.loads(r.stdout)
    out["rc"] = r.returncode
    return out


@pytest.mark.parametrize("victim", ["receiver", "owner"])
def test_every_window_exactly_once_across_kill9(cluster: Cluster, victim: str):
    f = Federation(cluster, policies={"noise.yaml": AGGREGATE})
    f.wait_streaming()
    sim = cluster.simulate_in_background(f.hk.bootstrap, TOPIC, 12000, 1200, seed=7)
    # Windows are closing and arriving (6 sites: 6 windows a second): 5 s into the 10-second run.
    wait_until(lambda: f.imported() >= 12, 60, "tallinn to import 12 aggregates",
               procs=[f.helsinki, f.tallinn, sim])
    node = f.tallinn if victim == "receiver" else f.helsinki
    node.kill9()
    assert sim.alive, "simulate finished before the kill: nothing was in flight"
    if victim == "receiver":
        f.tallinn.restart()
    else:
        f.restart_owner()
    cluster.finish_simulate(sim, 12000)
    c = compare_policy(f)
    assert c["rc"] == 0 and c["ok"], c
    assert (c["lost"], c["duplicated"], c["out_of_order"], c["mismatched"]) == (0, 0, 0, 0), c
    assert c["source"] == 12000, c
    # 10 s of observations from 6 sites in 1 s windows: about 60 windows.
    assert c["expected"] >= 50 and c["target"] == c["expected"], c
    assert c["withheld_by_reason"].get("late", 0) == 0, c
    # Only aggregates left helsinki: none of tallinn's records is an observation.
    assert f.helsinki.metric("uop_export_records_total", peer="tallinn", topic=TOPIC) < 12000


def test_rate_limit_paces_and_delivers_everything(cluster: Cluster):
    rate = 200
    policy = f"dataset: {TOPIC}\nshares:\n  - peer: tallinn\n    rate: {{records_per_s: {rate}}}\n"
    f = Federation(cluster, policies={"noise.yaml": policy})
    f.wait_streaming()
    start = time.monotonic()  # before the first record exists
    cluster.simulate(f.hk.bootstrap, TOPIC, 1200, seed=3)  # all at once
    wait_until(lambda: f.imported() >= 1200, 60, "tallinn to import 1200 records",
               procs=[f.helsinki, f.tallinn])
    took = time.monotonic() - start
    # A second's burst (200), then one every 5 ms: the last goes 5 s after the first.
    assert took >= 4.9, f"1200 records at {rate}/s arrived in {took:.1f} s"
    c = f.compare()
    assert c["ok"] and c["lost"] == 0 and c["duplicated"] == 0, c
