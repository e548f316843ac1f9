"""SensorThings ingestion end to end: uop-noise-sim -> real mosquitto -> uop-sta-bridge -> Kafka
(a `uopctl dev-kafka` mock cluster in its own process, or the bridge's embedded one), HTTP create
semantics and errors, kill -9 of the bridge mid-stream, Kafka down."""

from __future__ import annotations

import http.server
import json
import re
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from uoptest.cluster import BIN_DIR, DevKafka, Proc, scaled, wait_until
from uoptest.sta import (Bridge, Mosquitto, expected_observations, observations_by_key,
                         read_topic, simulator)

TOPIC = "noise.observations"
DLQ = TOPIC + ".deadletter"
START = "2026-12-02T06:00:00Z"


class Procs:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.all: list[Proc] = []

    def add(self, p: Proc) -> Proc:
        self.all.append(p)
        return p

    def close(self) -> None:
        for p in reversed(self.all):
            p.cleanup()


@pytest.fixture
def procs(tmp_path, request):
    for b in ("uop-sta-bridge", "uop-noise-sim"):
        if not (BIN_DIR / b).is_file():
            pytest.fail(f"{BIN_DIR / b} not found: build first or set UOP_BIN_DIR")
    ps = Procs(tmp_path)
    yield ps
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        for p in ps.all:
            print(f"--- {p.name} ---\n{p.tail(60)}")
    ps.close()


@pytest.fixture
def catalogue(tmp_path) -> Path:
    path = tmp_path / "catalogue.json"
    r = Proc("sim-catalogue", [BIN_DIR / "uop-noise-sim", "--catalogue-out", path], tmp_path)
    r.start()
    assert r.wait(30) == 0
    return path


def dev_kafka(procs: Procs) -> DevKafka:
    if not (BIN_DIR / "uopctl").is_file():
        pytest.fail(f"{BIN_DIR / 'uopctl'} not found (uopctl dev-kafka runs the test's Kafka)")
    k = procs.add(DevKafka("kafka", {TOPIC: 6, DLQ: 3}, procs.workdir))
    k.start()
    return k


def test_simulator_over_mqtt_into_kafka_exactly(procs, catalogue):
    """Every simulated observation arrives once, keyed by its Datastream, with location context;
    a malformed message is dead-lettered with its reason; MQTT 5 responses carry the selfLink
    or the error."""
    mq = procs.add(Mosquitto("mosquitto", procs.workdir))
    mq.start()
    bridge = procs.add(Bridge("bridge", procs.workdir, catalogue=catalogue, mqtt_port=mq.port))
    bridge.start()
    wait_until(lambda: bridge.metrics().value("uop_sta_mqtt_connects_total") >= 1, 20,
               "bridge connected to mosquitto", procs=[bridge])
    args = ["--seed", "5", "--start", START, "--count", "30", "--speed", "0"]
    want = expected_observations(procs.workdir, *args)
    assert len(want) == 13 * 30
    sim = procs.add(simulator("sim", procs.workdir, *args, "--mqtt", f"127.0.0.1:{mq.port}"))
    sim.start()
    assert sim.wait(60) == 0, sim.tail()
    assert json.loads(sim.stdout_path.read_text().splitlines()[-1])["published"] == 390

    wait_until(lambda: bridge.metrics().value("uop_sta_accepted_total") == 390, 60,
               "390 observations accepted", procs=[bridge])
    replies = procs.add(mq.subscriber("replies/#", 2, procs.workdir))
    mq.publish("v1.1/Datastreams('helsinki-kaivopuisto-laeq')/Observations",
               '{"phenomenonTime":"2026-12-02T07:00:00Z","result":44.5}',
               props=["response-topic replies/ok", "correlation-data req-1"])
    mq.publish("v1.1/Datastreams('helsinki-kaivopuisto-laeq')/Observations",
               '{"phenomenonTime":"2026-12-02T07:01:00Z","result":"loud"}',
               props=["response-topic replies/bad", "correlation-data req-2"])
    mq.publish("v1.1/Things(1)/Observations", '{"result":1}')
    assert replies.wait(30) == 0
    lines = [l for l in replies.stdout_path.read_text().splitlines()
             if l.startswith("replies/")]
    ok_line, bad_line = (l for l in lines if l.startswith("replies/ok")), \
        (l for l in lines if l.startswith("replies/bad"))
    ok_topic, ok_corr, ok_body = next(ok_line).split(" ", 2)
    assert ok_corr == "req-1"
    self_link = json.loads(ok_body)["@iot.selfLink"]
    assert re.fullmatch(rf"{re.escape(bridge.url)}/v1\.1/Observations\('[0-9a-f]{{16}}'\)",
                        self_link), self_link
    _, bad_corr, bad_body = next(bad_line).split(" ", 2)
    assert bad_corr == "req-2"
    assert json.loads(bad_body) == {
        "code": 400, "type": "error", "field": "result", "reason": "result_type",
        "message": "result: Datastream helsinki-kaivopuisto-laeq is an OM_Measurement: "
                   "expected a number, got string"}

    wait_until(lambda: len(read_topic(bridge.bootstrap, TOPIC)) == 391, 30, "391 records")
    records = read_topic(bridge.bootstrap, TOPIC)
    got = observations_by_key(records)
    sim_keys = {k: v for k, v in got.items() if k[1] != "2026-12-02T07:00:00Z" or
                k[0] != "helsinki-kaivopuisto-laeq"}
    assert {k: [o["result"] for o in v] for k, v in sim_keys.items()} == \
        {k: [v] for k, v in want.items()}
    # Keyed by Datastream: one Datastream never spans partitions.
    parts: dict[str, set[int]] = {}
    for r in records:
        assert r["key"] == json.loads(r["value"])["Datastream"]["@iot.id"]
        parts.setdefault(r["key"], set()).add(r["partition"])
    assert all(len(p) == 1 for p in parts.values()), parts
    one = got[("tallinn-vanasadam-d-laeq", "2026-12-02T06:00:00Z")][0]
    assert one["FeatureOfInterest"]["feature"] == {"type": "Point",
                                                   "coordinates": [24.773, 59.44]}
    assert one["Datastream"]["unitOfMeasurement"]["symbol"] == "dB(A)"
    assert one["Datastream"]["Thing"]["name"] == \
        "Vanasadam Old City Harbour, Terminal D (Helsinki ferries)"
    assert one["uop"]["via"] == "mqtt"
    assert one["uop"]["locationSource"] == "Thing.Location"
    assert [o["@iot.selfLink"] for o in got[("helsinki-kaivopuisto-laeq",
                                              "2026-12-02T07:00:00Z")]] == [self_link]

    wait_until(lambda: len(read_topic(bridge.bootstrap, DLQ)) == 2, 30, "2 dead letters")
    dead = sorted(read_topic(bridge.bootstrap, DLQ), key=lambda r: r["key"])
    assert [(d["key"], d["value"], d["headers"]["uop.deadletter.reason"],
             d["headers"]["uop.deadletter.message"]) for d in dead] == [
        ("v1.1/Datastreams('helsinki-kaivopuisto-laeq')/Observations",
         '{"phenomenonTime":"2026-12-02T07:01:00Z","result":"loud"}', "result_type",
         "result: Datastream helsinki-kaivopuisto-laeq is an OM_Measurement: expected a number, "
         "got string"),
        ("v1.1/Things(1)/Observations", '{"result":1}', "bad_topic",
         "topic: 'v1.1/Things(1)/Observations' is not an Observations topic (v1.1/Observations "
         "or v1.1/Datastreams(ID)/Observations)")]
    m = bridge.metrics()
    assert m.value("uop_sta_accepted_total", via="mqtt") == 391
    assert m.value("uop_sta_rejected_total", via="mqtt", reason="result_type") == 1
    assert m.value("uop_sta_rejected_total", via="mqtt", reason="bad_topic") == 1
    assert m.value("uop_sta_dead_lettered_total") == 2


def test_kill9_bridge_mid_stream_loses_nothing(procs, catalogue):
    """kill -9 of the bridge while the simulator publishes: after a restart with the same MQTT
    session, every (Datastream, phenomenonTime) is in Kafka. Replays of records that reached
    Kafka just before the kill are possible (at-least-once) and carry the same @iot.id."""
    kafka = dev_kafka(procs)
    mq = procs.add(Mosquitto("mosquitto", procs.workdir))
    mq.start()
    bridge = procs.add(Bridge("bridge", procs.workdir, catalogue=catalogue, kafka=kafka.bootstrap,
                              mqtt_port=mq.port, client_id="bridge-kill9"))
    bridge.start()
    wait_until(lambda: bridge.metrics().value("uop_sta_mqtt_connects_total") >= 1, 20,
               "bridge connected", procs=[bridge])
    count = 400
    args = ["--seed", "9", "--start", START, "--count", str(count)]
    want = expected_observations(procs.workdir, *args, "--speed", "0")
    # About 13 x 400 observations over ~4 s: the kill lands in the middle of the stream.
    sim = procs.add(simulator("sim", procs.workdir, *args, "--speed", str(60 * 100),
                              "--mqtt", f"127.0.0.1:{mq.port}"))
    sim.start()
    wait_until(lambda: bridge.metrics().value("uop_sta_accepted_total") >= 1000, 60,
               "1000 accepted before the kill", procs=[bridge])
    bridge.kill9()
    accepted_before = len(read_topic(kafka.bootstrap, TOPIC))
    assert accepted_before < len(want), "the stream ended before the kill: slow the simulator"
    bridge.start()
    assert sim.wait(120) == 0, sim.tail()
    try:
        wait_until(lambda: len(observations_by_key(read_topic(kafka.bootstrap, TOPIC))) ==
                   len(want), 90, f"all {len(want)} observations in Kafka", procs=[bridge])
    finally:
        got = observations_by_key(read_topic(kafka.bootstrap, TOPIC))
        missing = sorted(set(want) - set(got))
        print(f"kill -9: {len(got)} of {len(want)} in Kafka; first missing: {missing[:5]}")
    # librdkafka's mock cluster keeps at most 5 MiB per partition and silently drops older
    # records beyond that (rdkafka_mock.c, max_size): make sure that did not happen here.
    records = read_topic(kafka.bootstrap, TOPIC)
    for p in {r["partition"] for r in records}:
        assert min(r["offset"] for r in records if r["partition"] == p) == 0, \
            f"the mock cluster truncated partition {p}"
    assert set(got) == set(want)
    assert {k: {o["result"] for o in v} for k, v in got.items()} == \
        {k: {v} for k, v in want.items()}
    # Copies from the replay are the same Observation: same @iot.id.
    assert all(len({o["@iot.id"] for o in v}) == 1 for v in got.values())
    duplicates = sum(len(v) - 1 for v in got.values())
    print(f"kill -9: {accepted_before} records before the kill, {duplicates} replayed copies")


def test_kafka_down_mqtt_stops_acknowledging_then_delivers(procs, catalogue):
    """With Kafka gone the bridge acknowledges nothing (memory bounded by one batch); the MQTT
    broker keeps the messages; a bridge with the same session and a working Kafka gets them
    all."""
    kafka = dev_kafka(procs)
    mq = procs.add(Mosquitto("mosquitto", procs.workdir))
    mq.start()
    bridge = procs.add(Bridge("bridge", procs.workdir, catalogue=catalogue, kafka=kafka.bootstrap,
                              mqtt_port=mq.port, client_id="bridge-down"))
    bridge.start()
    wait_until(lambda: bridge.metrics().value("uop_sta_mqtt_connects_total") >= 1, 20,
               "bridge connected", procs=[bridge])
    kafka.kill9()
    args = ["--seed", "3", "--start", START, "--count", "10", "--speed", "0"]
    want = expected_observations(procs.workdir, *args)
    sim = procs.add(simulator("sim", procs.workdir, *args, "--qos", "1",
                              "--mqtt", f"127.0.0.1:{mq.port}"))
    sim.start()
    assert sim.wait(60) == 0, sim.tail()  # mosquitto acknowledged them to the publisher
    wait_until(lambda: bridge.metrics().value("uop_sta_unavailable_total", via="mqtt") >= 2, 30,
               "the bridge waiting for Kafka", procs=[bridge])
    assert bridge.metrics().value("uop_sta_accepted_total") == 0
    # A graceful stop while Kafka is away must not acknowledge the batch either; it exits 1
    # because the producer could not flush.
    bridge.terminate(timeout=60, expect_rc=1)
    assert bridge.events("mqtt_stopped_unacknowledged")
    assert bridge.events("kafka_flush_failed")
    kafka2 = procs.add(DevKafka("kafka2", {TOPIC: 3, DLQ: 3}, procs.workdir))
    kafka2.start()
    bridge2 = procs.add(Bridge("bridge2", procs.workdir, catalogue=catalogue,
                               kafka=kafka2.bootstrap, mqtt_port=mq.port, client_id="bridge-down"))
    bridge2.start()
    wait_until(lambda: len(observations_by_key(read_topic(kafka2.bootstrap, TOPIC))) == len(want),
               60, f"all {len(want)} observations after Kafka came back", procs=[bridge2])
    got = observations_by_key(read_topic(kafka2.bootstrap, TOPIC))
    assert {k: [o["result"] for o in v] for k, v in got.items()} == \
        {k: [v] for k, v in want.items()}


def test_http_create_semantics_and_errors(procs, catalogue):
    bridge = procs.add(Bridge("bridge", procs.workdir, catalogue=catalogue))
    bridge.start()
    ds = "helsinki-mannerheimintie-laeq"
    status, headers, body = bridge.request(
        "POST", f"/v1.1/Datastreams('{ds}')/Observations",
        '{"phenomenonTime":"2026-12-02T08:00:00+02:00","result":66.2,"parameters":{"q":1}}')
    assert (status, body) == (201, "")
    location = headers["Location"]
    assert re.fullmatch(rf"{re.escape(bridge.url)}/v1\.1/Observations\('[0-9a-f]{{16}}'\)",
                        location)
    status, headers, _ = bridge.request(
        "POST", "/v1.1/Observations",
        json.dumps({"@iot.id": 5001, "phenomenonTime": "2026-12-02T06:01:00Z", "result": 66.0,
                    "Datastream": {"@iot.id": ds},
                    "Datastream@iot.navigationLink": "http://x/v1.1/Observations(5001)/Datastream",
                    "@iot.selfLink": "http://x/v1.1/Observations(5001)"}))
    assert status == 201
    assert headers["Location"] == f"{bridge.url}/v1.1/Observations(5001)"

    def error(path, body):
        status, _, text = bridge.request("POST", path, body)
        return status, json.loads(text)

    assert error("/v1.1/Observations", '{"phenomenonTime":"2026-12-02T06:00:00Z","result":1}') == (
        400, {"code": 400, "type": "error", "field": "Datastream", "reason": "missing_field",
              "message": "Datastream: missing (POST to Datastreams(ID)/Observations or link a "
                         "Datastream)"})
    assert error("/v1.1/Datastreams(999)/Observations",
                 '{"phenomenonTime":"2026-12-02T06:00:00Z","result":1}') == (
        400, {"code": 400, "type": "error", "field": "Datastream.@iot.id",
              "reason": "unknown_datastream",
              "message": "Datastream.@iot.id: no Datastream with @iot.id 999"})
    assert error(f"/v1.1/Datastreams('{ds}')/Observations",
                 '{"phenomenonTime":"yesterday","result":1}') == (
        400, {"code": 400, "type": "error", "field": "phenomenonTime", "reason": "bad_time",
              "message": "phenomenonTime: 'yesterday' is not an ISO 8601 date-time (expected "
                         "e.g. 2026-12-02T14:00:00Z or 2026-12-02T14:00:00.250+02:00)"})
    assert error(f"/v1.1/Datastreams('{ds}')/Observations", '{"result":') == (
        400, {"code": 400, "type": "error", "reason": "malformed_json",
              "message": "body is not valid JSON: The JSON document has an improper structure: "
                         "missing or superfluous commas, braces, missing keys, etc."})

    rows = {"Datastream": {"@iot.id": ds},
            "components": ["phenomenonTime", "result"],
            "dataArray@iot.count": 3,
            "dataArray": [["2026-12-02T06:10:00Z", 60.1], ["2026-12-02T06:11:00Z", "x"],
                          ["2026-12-02T06:12:00Z", 61.3]]}
    status, _, text = bridge.request("POST", "/v1.1/CreateObservations", json.dumps([rows]))
    assert status == 201
    result = json.loads(text)
    assert result[1] == "error"
    assert all(re.fullmatch(rf"{re.escape(bridge.url)}/v1\.1/Observations\('[0-9a-f]{{16}}'\)", r)
               for r in (result[0], result[2]))
    status, _, text = bridge.request("POST", "/v1.1/CreateObservations?details=true",
                                     json.dumps([rows]))
    assert json.loads(text)[1] == ("error: [0].dataArray[1]: result: Datastream "
                                   f"{ds} is an OM_Measurement: expected a number, got string")
    assert json.loads(text)[0] == result[0]  # the same Observation gets the same id

    wait_until(lambda: len(read_topic(bridge.bootstrap, TOPIC)) == 6, 30, "6 records")
    got = observations_by_key(read_topic(bridge.bootstrap, TOPIC))
    assert sorted(k[1] for k in got) == ["2026-12-02T06:00:00Z", "2026-12-02T06:01:00Z",
                                         "2026-12-02T06:10:00Z", "2026-12-02T06:12:00Z"]
    assert got[(ds, "2026-12-02T06:00:00Z")][0]["@iot.selfLink"] == location
    assert got[(ds, "2026-12-02T06:00:00Z")][0]["parameters"] == {"q": 1}
    m = bridge.metrics()
    assert m.value("uop_sta_accepted_total", via="http") == 6
    assert m.value("uop_sta_rejected_total", via="http", reason="missing_field") == 1
    assert m.value("uop_sta_rejected_total", via="http", reason="unknown_datastream") == 1
    assert m.value("uop_sta_rejected_total", via="http", reason="bad_time") == 1
    assert m.value("uop_sta_rejected_total", via="http", reason="malformed_json") == 1
    assert m.value("uop_sta_rejected_total", via="http", reason="result_type") == 2
    # JSON logs on stderr.
    assert bridge.events("bridge_started")[0]["http_port"] == str(bridge.ready["http_port"])


def test_http_503_with_retry_after_when_kafka_is_down(procs, catalogue):
    kafka = dev_kafka(procs)
    bridge = procs.add(Bridge("bridge", procs.workdir, catalogue=catalogue, kafka=kafka.bootstrap,
                              extra_http="delivery_timeout_ms: 1500\nretry_after_s: 2"))
    bridge.start()
    body = '{"phenomenonTime":"2026-12-02T06:00:00Z","result":50}'
    path = "/v1.1/Datastreams('tallinn-kadriorg-laeq')/Observations"
    assert bridge.request("POST", path, body)[0] == 201
    kafka.kill9()
    status, headers, text = bridge.request("POST", path, body.replace("06:00", "06:01"))
    assert status == 503
    assert headers["Retry-After"] == "2"
    assert json.loads(text)["code"] == 503
    assert bridge.metrics().value("uop_sta_unavailable_total", via="http") == 1


@pytest.mark.parametrize("bulk", [1, 40])
def test_simulator_over_http_single_and_create_observations(procs, catalogue, bulk):
    """uop-noise-sim posting to the bridge, one Observation per request or CreateObservations
    with 40 rows: all arrive exactly once."""
    bridge = procs.add(Bridge("bridge", procs.workdir, catalogue=catalogue))
    bridge.start()
    args = ["--seed", "4", "--start", START, "--count", "20", "--speed", "0"]
    want = expected_observations(procs.workdir, *args)
    sim = procs.add(simulator("sim", procs.workdir, *args, "--http", f"{bridge.url}/v1.1",
                              "--bulk", str(bulk)))
    sim.start()
    assert sim.wait(60) == 0, sim.tail()
    wait_until(lambda: len(read_topic(bridge.bootstrap, TOPIC)) == len(want), 30,
               f"{len(want)} records")
    got = observations_by_key(read_topic(bridge.bootstrap, TOPIC))
    assert {k: [o["result"] for o in v] for k, v in got.items()} == \
        {k: [v] for k, v in want.items()}
    assert bridge.metrics().value("uop_sta_accepted_total", via="http") == len(want)


def test_bridge_reconnects_when_mosquitto_restarts(procs, catalogue):
    """mosquitto goes away and comes back (on the same port, without persistence, so the session
    is gone): the bridge reconnects with backoff, subscribes again and ingests again."""
    mq = procs.add(Mosquitto("mosquitto", procs.workdir))
    mq.start()
    bridge = procs.add(Bridge("bridge", procs.workdir, catalogue=catalogue, mqtt_port=mq.port,
                              client_id="bridge-reconnect"))
    bridge.start()
    wait_until(lambda: bridge.metrics().value("uop_sta_mqtt_connects_total") == 1, 20,
               "first connection", procs=[bridge])
    topic = "v1.1/Datastreams('tallinn-kadriorg-laeq')/Observations"
    mq.publish(topic, '{"phenomenonTime":"2026-12-02T06:00:00Z","result":41.0}')
    wait_until(lambda: bridge.metrics().value("uop_sta_accepted_total") == 1, 20, "first record")
    mq.kill9()
    wait_until(lambda: bridge.events("mqtt_connection_lost") or
               bridge.events("mqtt_disconnected"), 30, "the bridge noticing", procs=[bridge])
    # Same port: the config file is reused as written.
    Proc.start(mq)
    wait_until(mq._accepts, 10, "mosquitto back", procs=[mq])
    wait_until(lambda: bridge.metrics().value("uop_sta_mqtt_connects_total") == 2, 30,
               "the bridge reconnected", procs=[bridge])
    mq.publish(topic, '{"phenomenonTime":"2026-12-02T06:01:00Z","result":42.0}')
    wait_until(lambda: bridge.metrics().value("uop_sta_accepted_total") == 2, 20, "second record")
    got = observations_by_key(read_topic(bridge.bootstrap, TOPIC))
    assert sorted((k[1], v[0]["result"]) for k, v in got.items()) == [
        ("2026-12-02T06:00:00Z", 41.0), ("2026-12-02T06:01:00Z", 42.0)]


def test_catalogue_fetched_from_an_sta_server(procs, catalogue):
    """catalogue.url: the bridge reads Things (expanded) and FeaturesOfInterest from an STA
    server, following @iot.nextLink, and validates against them."""
    things = json.loads(catalogue.read_text())["Things"]
    requests: list[str] = []

    class Sta(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            requests.append(self.path)
            url = urlparse(self.path)
            base = f"http://127.0.0.1:{self.server.server_port}/FROST-Server/v1.1"
            if url.path.endswith("/Things"):
                skip = int(parse_qs(url.query).get("$skip", ["0"])[0])
                page = {"value": things[skip:skip + 5]}
                if skip + 5 < len(things):
                    page["@iot.nextLink"] = f"{base}/Things?$skip={skip + 5}"
            elif url.path.endswith("/FeaturesOfInterest"):
                page = {"value": [{"@iot.id": 77, "name": "Kauppatori", "feature": {
                    "type": "Point", "coordinates": [24.9525, 60.1675]}}]}
            else:
                self.send_response(404)
                self.end_headers()
                return
            body = json.dumps(page).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sta)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        bridge = procs.add(Bridge("bridge", procs.workdir, catalogue_url=(
            f"http://127.0.0.1:{server.server_port}/FROST-Server/v1.1")))
        bridge.start()
        assert bridge.events("catalogue_loaded")[0]["datastreams"] == "13"
        assert bridge.events("catalogue_loaded")[0]["features_of_interest"] == "1"
        assert [r.split("?")[0] for r in requests] == ["/FROST-Server/v1.1/Things"] * 3 + [
            "/FROST-Server/v1.1/FeaturesOfInterest"]
        status, headers, _ = bridge.request(
            "POST", "/v1.1/Datastreams('tallinn-kadriorg-laeq')/Observations",
            '{"phenomenonTime":"2026-12-02T06:00:00Z","result":42.5,'
            '"FeatureOfInterest":{"@iot.id":77}}')
        assert status == 201
        wait_until(lambda: len(read_topic(bridge.bootstrap, TOPIC)) == 1, 30, "the record")
        rec = json.loads(read_topic(bridge.bootstrap, TOPIC)[0]["value"])
        assert rec["FeatureOfInterest"] == {
            "@iot.id": 77, "name": "Kauppatori", "encodingType": "application/geo+json",
            "feature": {"type": "Point", "coordinates": [24.9525, 60.1675]}}
        assert rec["uop"]["locationSource"] == "FeatureOfInterest"
    finally:
        server.shutdown()
