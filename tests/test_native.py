"""The native kernels (native/, Rust through PyO3) against the Python reference, output for output.

Each test runs the same inputs through the Python code (``ATOGUARD_ENGINE=python``) and the
native code (``ATOGUARD_ENGINE=native``) and requires identical results: scores equal to the bit
(``==`` on floats), the same model state, the same replay output byte for byte. The tests that
need the module are skipped when it is not built (``pip install ./native``; ``make venv`` does it
where cargo is on PATH).
"""

from __future__ import annotations

import copy
import hashlib
import math
import random
import sys

import numpy as np
import pytest
from river import anomaly as river_anomaly

from detectors import native
from detectors.burst.midas import MidasR, _NativeCells
from detectors.context import Context
from detectors.facts import NO_FACTS
from detectors.models import anomaly
from detectors.models.anomaly import BehaviourAnomaly, _Forest, _NativeForest

atoguard_native = pytest.importorskip("atoguard_native", reason="native kernels not built (pip install ./native)")


def _use(monkeypatch, engine: str) -> None:
    monkeypatch.setenv(native.ENV, engine)


# -- the choice of engine --------------------------------------------------------------------------

def test_engine_is_native_when_built_and_python_when_asked(monkeypatch):
    monkeypatch.delenv(native.ENV, raising=False)
    assert native.engine() == "native"
    _use(monkeypatch, "python")
    assert native.engine() == "python" and native.module() is None


def test_native_asked_but_not_built_says_how_to_build(monkeypatch):
    monkeypatch.setitem(sys.modules, "atoguard_native", None)  # import now raises ImportError
    _use(monkeypatch, "native")
    with pytest.raises(native.NativeUnavailable, match="pip install ./native"):
        native.module()
    _use(monkeypatch, "auto")
    assert native.module() is None  # auto falls back to Python


def test_models_built_under_each_engine_use_its_kernels(monkeypatch):
    kinds = {}
    for engine in ("python", "native"):
        _use(monkeypatch, engine)
        model = BehaviourAnomaly(seed=1, min_learned=0, window_size=10)
        for _ in range(3):
            model.learn(_login(random.Random(0)), risk=0.0)
        midas = MidasR(seed=1)
        midas.score_one(1, 2, 1)
        kinds[engine] = (type(model._groups["login"].forest), type(midas._one))
    assert kinds["python"][0] is _Forest and kinds["native"][0] is _NativeForest
    assert kinds["python"][1] is not _NativeCells and kinds["native"][1] is _NativeCells


# -- Half-Space Trees ------------------------------------------------------------------------------

def _trained_trees(n_trees: int, height: int, window: int, dims: int, seed: int):
    hst = river_anomaly.HalfSpaceTrees(n_trees=n_trees, height=height, window_size=window, seed=seed)
    hst.learn_one({f"f{i}": 0.5 for i in range(dims)})  # River builds its trees on the first one
    return hst, tuple(f"f{i}" for i in range(dims))


def _vector(rng: random.Random, dims: int) -> list[float]:
    v = [rng.random() for _ in range(dims)]
    k = rng.randrange(dims)
    v[k] = rng.choice((0.0, 1.0, -0.5, 1.5, v[k], math.nan, math.inf))  # edges, out of range, nan
    return v


@pytest.mark.parametrize("n_trees,height,window,dims", [(10, 6, 250, 13), (3, 1, 2, 1), (7, 9, 37, 4),
                                                        (25, 8, 100, 10)])
def test_forest_scores_and_masses_equal_the_python_forest(n_trees, height, window, dims):
    hst, names = _trained_trees(n_trees, height, window, dims, seed=n_trees + height)
    py = _Forest(copy.deepcopy(hst), names)
    nat = _NativeForest(copy.deepcopy(hst), names, atoguard_native)
    rng = random.Random(window)
    for i in range(6 * window + 17):  # several pivots
        v = _vector(rng, dims)
        if i % 3:
            assert nat.first_window == py.first_window
            assert nat.score(v) == py.score(v)  # to the bit
        py.learn(v)
        nat.learn(v)
    py.sync()
    nat.sync()
    assert [(n.r_mass, n.l_mass) for n in nat.nodes] == [(n.r_mass, n.l_mass) for n in py.nodes]
    assert (nat.hst.counter, nat.hst._first_window) == (py.hst.counter, py.hst._first_window)


def test_native_forest_refuses_a_short_vector_as_python_does():
    hst, names = _trained_trees(2, 3, 10, 5, seed=3)
    nat = _NativeForest(hst, names, atoguard_native)
    with pytest.raises(IndexError):
        nat.learn([0.5])
    with pytest.raises(IndexError):
        nat.score([])


def test_scale_equals_python_scale(monkeypatch):
    rng = random.Random(9)
    lo = [0.0, -3.0, math.inf, 1.0, 0.5]
    hi = [1.0, 6.0, -math.inf, 1.0, 2.5]
    span = [h - a for a, h in zip(lo, hi)]
    for _ in range(500):
        v = [rng.choice((rng.uniform(-5, 10), 0.0, 1.0, math.nan)) for _ in lo]
        ref = [(xi - a) / d if d else 0.0 for xi, a, d in zip(v, lo, span)]
        got = atoguard_native.scale(v, lo, span)
        assert [x.hex() for x in got] == [x.hex() for x in ref]


def _login(rng: random.Random) -> Context:
    x = Context()
    x.kind, x.money_out, x.facts = "login_success", False, NO_FACTS
    x.fails_recent = rng.choice((0, 0, 0, 1, 4, 12))
    x.device_new = rng.random() < 0.05
    x.device_young = x.device_new or rng.random() < 0.05
    x.hour_share = rng.uniform(0.0, 0.25)
    return x


def _run_model(monkeypatch, engine: str, n: int = 4000, state: bytes | None = None):
    _use(monkeypatch, engine)
    model = BehaviourAnomaly(seed=5, min_learned=300, window_size=100)
    if state is not None:
        model.load_state(state)
    rng = random.Random(3 if state is None else 4)
    out = []
    for _ in range(n):
        x = _login(rng)
        finding = model.score(x)
        out.append((finding, model.percentile(x)))
        model.learn(x, risk=rng.choice((0.0, 0.0, 0.0, 0.9)))
    return model, out


def test_behaviour_anomaly_same_findings_percentiles_and_state(monkeypatch):
    py, out_py = _run_model(monkeypatch, "python")
    nat, out_nat = _run_model(monkeypatch, "native")
    assert sum(f is not None for f, _ in out_py) > 20  # the test has findings to compare
    assert out_nat == out_py
    assert (nat.n_learned("login"), nat.n_skipped("login")) == (py.n_learned("login"), py.n_skipped("login"))
    assert nat.state() == py.state()


def test_snapshot_of_one_engine_carries_on_in_the_other(monkeypatch):
    py, _ = _run_model(monkeypatch, "python", n=1500)
    nat, _ = _run_model(monkeypatch, "native", n=1500)
    state = py.state()
    _, python_then_native = _run_model(monkeypatch, "native", n=1500, state=state)
    _, native_then_python = _run_model(monkeypatch, "python", n=1500, state=nat.state())
    _, python_then_python = _run_model(monkeypatch, "python", n=1500, state=state)
    assert python_then_native == python_then_python == native_then_python


# -- MIDAS-R -------------------------------------------------------------------------------------

def _edges(seed: int, n: int):
    rng = random.Random(seed)
    tick, out = 1, []
    for _ in range(n):
        r = rng.random()
        if r < 0.2:
            tick += 1
        elif r < 0.22:
            tick += rng.randrange(2, 3000)  # long gaps: many decays owed at once
        src = rng.choice((rng.randrange(50), rng.randrange(2**63), -rng.randrange(2**40)))
        dst = rng.choice((rng.randrange(50), rng.randrange(2**63)))
        out.append((src, dst, tick))
    return out


@pytest.mark.parametrize("factor", [0.5, 0.3, 1.0, 0.0, 0.25, 2.0**-30])
def test_midas_score_one_equals_python_bit_for_bit(monkeypatch, factor):
    edges = _edges(int(factor * 1000), 6000)
    scores, states = {}, {}
    for engine in ("python", "native"):
        _use(monkeypatch, engine)
        m = MidasR(rows=3, buckets=101, factor=factor, seed=7)
        scores[engine] = np.array([m.score_one(s, d, t) for s, d, t in edges])
        states[engine] = m.to_bytes()
    assert np.array_equal(scores["native"], scores["python"])
    assert scores["python"].max() > 1.0  # bursts were scored
    assert states["native"] == states["python"]


def test_midas_native_then_score_many_equals_python(monkeypatch):
    edges = _edges(11, 3000)
    src = np.array([s & 0x7FFFFFFF for s, _, _ in edges])
    dst = np.array([d & 0x7FFFFFFF for _, d, _ in edges])
    tick = np.array([t for _, _, t in edges])
    out = {}
    for engine in ("python", "native"):
        _use(monkeypatch, engine)
        m = MidasR(seed=3)
        first = [m.score_one(int(s), int(d), int(t)) for s, d, t in zip(src[:1500], dst[:1500], tick[:1500])]
        many = m.score_many(src[1500:2500], dst[1500:2500], tick[1500:2500])
        again = [m.score_one(int(s), int(d), int(t)) for s, d, t in zip(src[2500:], dst[2500:], tick[2500:])]
        out[engine] = (np.array(first + many.tolist() + again), m.to_bytes())
    assert np.array_equal(out["native"][0], out["python"][0])
    assert out["native"][1] == out["python"][1]


def test_midas_native_keeps_the_python_checks(monkeypatch):
    _use(monkeypatch, "native")
    m = MidasR()
    assert m.score_one(1, 2, 1) == 0.0
    m.score_one(1, 2, 3)
    with pytest.raises(ValueError, match="backwards"):
        m.score_one(1, 2, 2)
    with pytest.raises(ValueError, match="start at 1"):
        MidasR().score_one(1, 2, 0)
    assert m.tick == 3
    assert MidasR.from_bytes(m.to_bytes()).score_one(1, 2, 4) == m.score_one(1, 2, 4)


# -- a simulated population, open and closed loop ---------------------------------------------------

@pytest.fixture(scope="module")
def population(tmp_path_factory):
    from streams.cli import main
    d = tmp_path_factory.mktemp("native-pop")
    events, labels = d / "ev.jsonl", d / "lab.jsonl"
    assert main(["simulate", "--accounts", "600", "--days", "14", "--seed", "4", "--out", str(events),
                 "--labels", str(labels), "--quiet"]) == 0
    return events, labels


@pytest.mark.parametrize("closed_loop", [False, True], ids=["open-loop", "closed-loop"])
def test_replay_of_a_simulated_population_is_byte_identical(monkeypatch, tmp_path, population, closed_loop):
    from streams.cli import main
    events, labels = population
    digests, texts = {}, {}
    monkeypatch.setenv(native.ENV, "auto")  # restored after the test: --engine sets the variable
    for engine in ("python", "native"):
        out = tmp_path / f"{engine}.jsonl"
        argv = ["replay", str(events), "--out", str(out), "--quiet", "--engine", engine]
        if closed_loop:
            argv += ["--respond", str(labels)]
        assert main(argv) == 0
        texts[engine] = out.read_bytes()
        digests[engine] = hashlib.md5(texts[engine]).hexdigest()
    assert b"BEHAVIOUR_ANOMALY" in texts["python"]  # the trees took part in the decisions
    assert digests["native"] == digests["python"]


def test_replay_engine_native_not_built_is_a_usage_error(monkeypatch, tmp_path, population, capsys):
    from streams.cli import main
    monkeypatch.setitem(sys.modules, "atoguard_native", None)
    code = main(["replay", str(population[0]), "--out", str(tmp_path / "o.jsonl"), "--quiet", "--engine", "native"])
    err = capsys.readouterr().err
    assert code == 2 and "pip install ./native" in err and "Traceback" not in err
