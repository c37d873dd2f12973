"""The simulator: reproducible, contract-valid, ordered, honest labels, scenarios at their rates."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import orjson
import pytest

from simulator import ATTACK_SCENARIOS, BENIGN_SCENARIOS, MONEY_KINDS, SCENARIOS, STUFFING_ATTEMPT, SimConfig, simulate
from simulator.generate import KafkaSink, Simulation
from simulator.geo import distance_km

ROOT = Path(__file__).resolve().parents[1]
HIGH = 0.035  # per scenario: 12 x 0.035 = 42% of accounts in a scenario
HIGH_RATES = {f"rate_{name}": HIGH for name in SCENARIOS}


def read_jsonl(path: Path) -> list[dict]:
    with open(path, "rb") as f:
        return [orjson.loads(line) for line in f]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """2,000 accounts x 6 days, every scenario at 3.5%; the incidents (enrolment lines apart)."""
    d = tmp_path_factory.mktemp("sim")
    config = SimConfig(accounts=2000, days=6, seed=11, **HIGH_RATES)
    simulate(config, str(d / "events.jsonl"), str(d / "labels.jsonl"))
    incidents = [r for r in read_jsonl(d / "labels.jsonl") if r["label"] != "enrolled"]
    return config, d / "events.jsonl", read_jsonl(d / "events.jsonl"), incidents


def test_same_seed_gives_byte_identical_files_and_another_seed_does_not(tmp_path):
    def run(seed: int, name: str) -> tuple[bytes, bytes]:
        config = SimConfig(accounts=300, days=4, seed=seed, **HIGH_RATES)
        simulate(config, str(tmp_path / f"{name}.jsonl"), str(tmp_path / f"{name}.labels.jsonl"))
        return (tmp_path / f"{name}.jsonl").read_bytes(), (tmp_path / f"{name}.labels.jsonl").read_bytes()

    a, b, c = run(5, "a"), run(5, "b"), run(6, "c")
    assert a == b
    assert a[0] != c[0] and a[1] != c[1]


def test_every_event_passes_the_contract_decoder(dataset):
    from detectors.events import BadInput, decode

    _, _, lines, _ = dataset
    for line in lines:
        assert set(line) == {"topic", "value"}
        value = line["value"]
        try:
            decode(line["topic"], orjson.dumps(value), key=value["account_id"].encode())
        except BadInput as exc:  # pragma: no cover - the message says which
            pytest.fail(f"{exc} in {value}")


def test_a_sample_of_events_passes_the_json_schemas_with_format_checking(dataset):
    jsonschema = pytest.importorskip("jsonschema")
    validators = {}
    for topic in ("device", "location", "transaction"):
        schema = json.loads((ROOT / "schemas" / "v1" / f"{topic}.schema.json").read_text())
        validators[topic] = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    _, _, lines, _ = dataset
    # every 20th event, plus the first of every (topic, kind) and every event with an IPv6 address
    seen = set()
    sample = []
    for i, line in enumerate(lines):
        key = (line["topic"], line["value"]["kind"])
        if i % 20 == 0 or key not in seen or ":" in line["value"].get("ip", ""):
            sample.append(line)
            seen.add(key)
    assert len(sample) > 1000
    for line in sample:
        errors = list(validators[line["topic"]].iter_errors(line["value"]))
        assert not errors, (line, [e.message for e in errors])


def test_event_ids_are_unique_and_the_file_is_in_event_time_order(dataset):
    _, _, lines, _ = dataset
    ids = [line["value"]["event_id"] for line in lines]
    assert len(ids) == len(set(ids))
    ts = [line["value"]["ts"] for line in lines]
    assert all(a <= b for a, b in zip(ts, ts[1:]))


def test_events_stay_inside_the_simulated_span(dataset):
    config, _, lines, _ = dataset
    start = config.start_ms
    assert all(start <= line["value"]["ts"] < start + config.days * 86_400_000 for line in lines)


def test_volume_is_a_few_events_per_account_per_day_across_all_topics(dataset):
    config, _, lines, _ = dataset
    per_day = len(lines) / (config.accounts * config.days)
    assert 2.5 <= per_day <= 5.0, per_day
    assert {line["topic"] for line in lines} == {"device", "location", "transaction"}


def test_labels_point_at_events_of_the_labelled_account_with_consistent_times(dataset):
    _, _, lines, labels = dataset
    events = {line["value"]["event_id"]: line["value"] for line in lines}
    assert labels
    for label in labels:
        v1 = {"account_id", "scenario", "label", "start_ts", "end_ts", "first_loss_ts", "event_ids"}
        assert set(label) - v1 <= {"attacker_passes", "holder_passes"} and v1 <= set(label)
        assert label["label"] in ("ato", "legit")
        assert label["event_ids"]
        incident = [events[e] for e in label["event_ids"]]  # KeyError = points at nothing
        assert all(ev["account_id"] == label["account_id"] for ev in incident)
        times = [ev["ts"] for ev in incident]
        assert label["start_ts"] == min(times) and label["end_ts"] == max(times)
        loss = label["first_loss_ts"]
        if label["label"] == "legit":
            assert loss is None
        money = sorted(ev["ts"] for ev in incident if ev["kind"] in MONEY_KINDS)
        if loss is not None:
            assert label["start_ts"] <= loss <= label["end_ts"]
            assert money and loss == money[0]
        elif label["label"] == "ato":
            assert not money


def test_labels_name_known_scenarios_with_the_right_label(dataset):
    _, _, _, labels = dataset
    for label in labels:
        if label["scenario"] in BENIGN_SCENARIOS:
            assert label["label"] == "legit"
        else:
            assert label["scenario"] in ATTACK_SCENARIOS + (STUFFING_ATTEMPT,)
            assert label["label"] == "ato"


def _tolerance(n: int, p: float, slack: int) -> float:
    """Four binomial standard deviations, plus a few accounts for pairing and incidents cut off
    by the end of the simulated span."""
    return 4 * math.sqrt(n * p * (1 - p)) + slack


def test_every_scenario_appears_at_the_rate_asked_for(dataset):
    config, _, _, labels = dataset
    accounts_by_scenario: dict[str, set[str]] = defaultdict(set)
    for label in labels:
        accounts_by_scenario[label["scenario"]].add(label["account_id"])
    for name in SCENARIOS:
        expected = config.accounts * HIGH
        got = len(accounts_by_scenario[name])
        assert abs(got - expected) <= _tolerance(config.accounts, HIGH, 3), (name, got, expected)
    # attacks have a loss in most incidents; attempts never do
    for name in ATTACK_SCENARIOS:
        with_loss = [lab for lab in labels if lab["scenario"] == name and lab["first_loss_ts"] is not None]
        assert len(with_loss) >= 0.6 * len(accounts_by_scenario[name]), name
    assert accounts_by_scenario[STUFFING_ATTEMPT]


def test_a_scenario_at_rate_zero_does_not_appear(tmp_path):
    rates = dict(HIGH_RATES, rate_phishing_takeover=0.0, rate_travel=0.0)
    config = SimConfig(accounts=500, days=3, seed=2, **rates)
    simulate(config, str(tmp_path / "e.jsonl"), str(tmp_path / "l.jsonl"))
    scenarios = {label.get("scenario") for label in read_jsonl(tmp_path / "l.jsonl")}
    assert "phishing_takeover" not in scenarios and "travel" not in scenarios
    assert "sim_swap_payout" in scenarios


def test_attacks_vary_so_no_single_rule_catches_a_scenario(dataset):
    _, _, lines, labels = dataset
    events = {line["value"]["event_id"]: line["value"] for line in lines}
    ip_types, first_money, delays, devices = set(), set(), [], Counter()
    for label in labels:
        if label["label"] != "ato" or label["scenario"] == STUFFING_ATTEMPT:
            continue
        incident = [events[e] for e in label["event_ids"]]
        ip_types |= {ev["ip_type"] for ev in incident if ev["kind"] == "ip_geo"}
        money = [ev for ev in incident if ev["kind"] in MONEY_KINDS]
        if money:
            first_money.add(money[0]["kind"])
            delays.append(label["first_loss_ts"] - label["start_ts"])
        for ev in incident:
            if ev.get("is_emulator"):
                devices["emulator"] += 1
            if ev.get("is_rooted"):
                devices["rooted"] += 1
    assert {"hosting", "residential", "mobile"} <= ip_types
    assert len(first_money) >= 3
    assert min(delays) < 60_000 and max(delays) > 6 * 3_600_000  # seconds to many hours
    assert devices["emulator"] and devices["rooted"]


def test_legit_people_never_teleport(dataset):
    """Consecutive GPS fixes of accounts without an attack imply at most airliner speed."""
    _, _, lines, labels = dataset
    attacked = {label["account_id"] for label in labels if label["label"] == "ato"}
    last: dict[str, tuple[int, float, float]] = {}
    for line in lines:
        v = line["value"]
        if v["kind"] != "gps_fix" or v["account_id"] in attacked:
            continue
        prev = last.get(v["account_id"])
        if prev is not None:
            hours = (v["ts"] - prev[0]) / 3_600_000
            assert distance_km(prev[1], prev[2], v["lat"], v["lon"]) <= 1000 * hours + 60, v
        last[v["account_id"]] = (v["ts"], v["lat"], v["lon"])


def test_travellers_report_locations_abroad(dataset):
    _, _, lines, labels = dataset
    events = {line["value"]["event_id"]: line["value"] for line in lines}
    abroad = 0
    travels = [label for label in labels if label["scenario"] == "travel"]
    for label in travels:
        fixes = [events[e] for e in label["event_ids"] if events[e]["kind"] == "gps_fix"]
        if len(fixes) >= 2 and distance_km(fixes[0]["lat"], fixes[0]["lon"], fixes[-1]["lat"], fixes[-1]["lon"]) > 300:
            abroad += 1
    assert abroad >= 0.5 * len(travels)


def test_late_location_fixes_arrive_out_of_order_but_nothing_is_lost(tmp_path):
    base = dict(accounts=300, days=3, seed=4)
    simulate(SimConfig(**base), str(tmp_path / "a.jsonl"), str(tmp_path / "a.l.jsonl"))
    simulate(SimConfig(**base, late_location_share=0.2, late_location_max_s=90), str(tmp_path / "b.jsonl"), str(tmp_path / "b.l.jsonl"))
    a, b = read_jsonl(tmp_path / "a.jsonl"), read_jsonl(tmp_path / "b.jsonl")
    assert sorted(x["value"]["event_id"] for x in a) == sorted(x["value"]["event_id"] for x in b)
    high = 0
    late = 0
    for line in b:
        v = line["value"]
        if v["ts"] < high:
            late += 1
            assert line["topic"] == "location" and high - v["ts"] <= 90_000
        high = max(high, v["ts"])
    assert late > 0
    assert (tmp_path / "a.l.jsonl").read_bytes() == (tmp_path / "b.l.jsonl").read_bytes()


def test_config_rejects_rates_that_add_up_to_more_than_one():
    with pytest.raises(ValueError, match="add up"):
        SimConfig(**{f"rate_{name}": 0.1 for name in SCENARIOS})
    with pytest.raises(ValueError, match="rate_travel"):
        SimConfig(rate_travel=-0.1)
    with pytest.raises(ValueError, match="accounts"):
        SimConfig(accounts=0)


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.flushed = self.closed = False

    def send(self, topic, key=None, value=None):
        self.sent.append((topic, key, value))

    def flush(self):
        self.flushed = True

    def close(self):
        self.closed = True


def test_kafka_sink_publishes_each_event_keyed_by_account_to_prefixed_topics(tmp_path):
    config = SimConfig(accounts=50, days=1, seed=3)
    producer = FakeProducer()
    Simulation(config).run(KafkaSink("unused:9092", prefix="t1.", producer=producer), str(tmp_path / "l.jsonl"), progress=False)
    simulate(config, str(tmp_path / "e.jsonl"), str(tmp_path / "l2.jsonl"))
    lines = read_jsonl(tmp_path / "e.jsonl")
    assert producer.flushed and producer.closed
    assert len(producer.sent) == len(lines)
    for (topic, key, value), line in zip(producer.sent, lines):
        assert topic == f"t1.{line['topic']}"
        assert orjson.loads(value) == line["value"]
        assert key == line["value"]["account_id"].encode()


def test_cli_help_teaches_the_scenarios_and_knobs():
    out = subprocess.run([sys.executable, "-m", "streams.cli", "simulate", "--help"], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    for name in SCENARIOS:
        assert name in out
        assert f"--rate-{name.replace('_', '-')}" in out
    assert "--to-kafka" in out and "example" in out


def test_cli_writes_events_and_labels(tmp_path):
    from streams.cli import main

    code = main(["simulate", "--accounts", "100", "--days", "2", "--seed", "9", "--quiet",
                 "--rate-phishing-takeover", "0.1", "--out", str(tmp_path / "e.jsonl"), "--labels", str(tmp_path / "l.jsonl")])  # fmt: skip
    assert code == 0
    assert read_jsonl(tmp_path / "e.jsonl")
    assert any(label.get("scenario") == "phishing_takeover" for label in read_jsonl(tmp_path / "l.jsonl"))
