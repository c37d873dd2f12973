"""Signed model snapshots: what is saved loads back; anything not signed with our key is refused
before it is unpickled."""

from __future__ import annotations

import copy
import pickle

import pytest

from detectors.config import Config
from detectors.engine import Engine
from detectors.events import DeviceEvent
from streams.snapshots import MAGIC, SnapshotRefused, load_snapshot, save_snapshot
from tests.loop import run_records

KEY = "test-snapshot-key"


STATES: dict = {}


def trained_engine() -> Engine:
    engine = Engine(Config(shards=2))
    events = [DeviceEvent(f"e{i}", f"a{i % 4}", 1764000000000 + i * 60_000, "login_success",
                          device_id=f"d{i % 4}") for i in range(20)]
    list(run_records(engine, events, STATES))
    return engine


def test_models_round_trip(tmp_path):
    engine = trained_engine()
    path = tmp_path / "m.snap"
    save_snapshot(path, engine.snapshot(), key=KEY, shards=2)
    models = load_snapshot(path, key=KEY, shards=2)
    assert models == engine.snapshot()
    fresh = Engine(Config(shards=2))
    fresh.restore(models)
    # the restored models behave like the saved ones (pickles need not be byte-identical)
    store_a, store_b = copy.deepcopy(STATES), copy.deepcopy(STATES)
    later = [DeviceEvent(f"n{i}", f"a{i % 4}", 1764003000000 + i * 60_000, "login_success",
                         device_id="d-new" if i % 3 else f"d{i % 4}", ip=f"192.0.2.{i}") for i in range(12)]
    for ev in later:
        assert list(run_records(engine, [ev], store_a)) == list(run_records(fresh, [ev], store_b))
    assert set(fresh.snapshot()) == set(engine.snapshot())


def test_missing_file_is_none(tmp_path):
    assert load_snapshot(tmp_path / "nothing.snap", key=KEY, shards=2) is None


def test_wrong_key_is_refused(tmp_path):
    path = tmp_path / "m.snap"
    save_snapshot(path, {0: {}}, key="another-key-entirely", shards=1)
    with pytest.raises(SnapshotRefused, match="signature does not match"):
        load_snapshot(path, key=KEY, shards=1)


def test_tampered_payload_is_refused_without_unpickling(tmp_path, monkeypatch):
    path = tmp_path / "m.snap"
    save_snapshot(path, {0: {"m": b"x"}}, key=KEY, shards=1)
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    calls = []
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: calls.append(a))
    with pytest.raises(SnapshotRefused, match="signature does not match"):
        load_snapshot(path, key=KEY, shards=1)
    assert calls == []


@pytest.mark.parametrize("content", [b"", b"hello", MAGIC + b"short\n" + b"x", MAGIC + b"nolinebreak"])
def test_malformed_files_are_refused(tmp_path, content):
    path = tmp_path / "m.snap"
    path.write_bytes(content)
    with pytest.raises(SnapshotRefused):
        load_snapshot(path, key=KEY, shards=1)


def test_other_shard_count_is_refused(tmp_path):
    path = tmp_path / "m.snap"
    save_snapshot(path, {0: {}}, key=KEY, shards=6)
    with pytest.raises(SnapshotRefused, match="made for 6 shards, the worker has 3"):
        load_snapshot(path, key=KEY, shards=3)


def test_runtime_refuses_and_starts_fresh(tmp_path, caplog):
    from streams.runtimes.faust import WorkerOptions, create_app
    from streams.settings import Settings

    path = tmp_path / "m.snap"
    save_snapshot(path, {0: {"behaviour_anomaly": b"junk"}}, key="not-the-worker-key", shards=3)
    settings = Settings(bootstrap_servers="127.0.0.1:1", topic_prefix="s.", partitions=3)
    with caplog.at_level("ERROR", logger="atoguard.worker"):
        app = create_app(settings, Config(shards=3), WorkerOptions(store="memory", data_dir=tmp_path,
                                                                   snapshot_path=path, web_enabled=False))
    assert "REFUSED model snapshot" in caplog.text and "starting with fresh models" in caplog.text
    assert app.atoguard.engine.snapshot() == {}
    assert app.atoguard.metrics.snapshots.value(outcome="refused") == 1
