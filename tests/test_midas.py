"""MIDAS-R (detectors.burst) and its DARPA benchmark (bench.darpa_midas, bench.metrics).

Expected scores are worked out by hand from the paper's formulas, written next to each case:
current count ``a`` (decayed by 0.5 at each change of tick, then +1 per edge), total ``s``,
tick ``t``; X2 = ((a - s/t) * t)**2 / (s * (t - 1)); score = log(1 + max over edge, source,
destination).
"""

from __future__ import annotations

import math
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from detectors.burst import MidasR, key_hash
from detectors.burst.sketch import edge_buckets_one, make_hash_params, node_buckets_one

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # bench/ is a top-level folder, not an installed package
    sys.path.insert(0, str(ROOT))

from bench import darpa_midas  # noqa: E402
from bench.metrics import average_precision, roc_auc  # noqa: E402

DARPA_ZIP = Path(darpa_midas.default_zip())


def x2(a: float, s: float, t: float) -> float:
    return 0.0 if t == 1 or s == 0 else ((a - s / t) * t) ** 2 / (s * (t - 1))


def run_one(model: MidasR, edges) -> list[float]:
    return [model.score_one(s, d, t) for s, d, t in edges]


def arrays(edges):
    src, dst, tick = zip(*edges)
    return np.array(src), np.array(dst), np.array(tick)


def distinct_cells(seed: int, edges, nodes_src, nodes_dst, buckets: int = 2719) -> bool:
    """Precondition of the hand-derived cases: no two keys share a bucket in every row."""
    p = make_hash_params(seed, 2)

    def no_full_collision(rows: list[list[int]]) -> bool:
        return len({tuple(r) for r in rows}) == len(rows)

    return (no_full_collision([edge_buckets_one(s, d, p[0], buckets) for s, d in edges])
            and no_full_collision([node_buckets_one(v, p[1], buckets) for v in nodes_src])
            and no_full_collision([node_buckets_one(v, p[2], buckets) for v in nodes_dst]))


# -- the formulas, by hand ---------------------------------------------------------------------

STEADY_THEN_BURST = [  # (src, dst, tick) and the hand-derived X2 of the edge (= source = dest)
    ((1, 2, 1), 0.0),                                   # t == 1
    ((1, 2, 2), ((1.5 - 2 / 2) * 2) ** 2 / (2 * 1)),    # a = 0.5 + 1, s = 2      -> 0.5
    ((1, 2, 3), ((1.75 - 3 / 3) * 3) ** 2 / (3 * 2)),   # a = 0.75 + 1, s = 3     -> 0.84375
    ((1, 2, 4), ((1.875 - 4 / 4) * 4) ** 2 / (4 * 3)),  # a = 0.875 + 1, s = 4
    ((1, 2, 5), ((1.9375 - 5 / 5) * 5) ** 2 / (5 * 4)),  # a = 0.9375 + 1, s = 5
    ((1, 2, 5), ((2.9375 - 6 / 5) * 5) ** 2 / (6 * 4)),  # burst: +1 within the tick
    ((1, 2, 5), ((3.9375 - 7 / 5) * 5) ** 2 / (7 * 4)),
    ((1, 2, 5), ((4.9375 - 8 / 5) * 5) ** 2 / (8 * 4)),  # = 16.6875**2 / 32
]


def test_steady_edge_then_burst_scores_follow_the_formula():
    edges = [e for e, _ in STEADY_THEN_BURST]
    expected = [math.log1p(x) for _, x in STEADY_THEN_BURST]
    assert expected[1] == pytest.approx(math.log1p(0.5))
    assert expected[-1] == pytest.approx(math.log1p(278.47265625 / 32))
    assert run_one(MidasR(), edges) == pytest.approx(expected, rel=1e-12, abs=0)


def test_source_fanning_out_is_scored_by_the_source_sketch():
    # tick 1: 1->10. tick 2: 1->11, 1->12, 1->13 (source 1 decayed to 0.5, then +1 per edge).
    edges = [(1, 10, 1), (1, 11, 2), (1, 12, 2), (1, 13, 2)]
    assert distinct_cells(0, [(s, d) for s, d, _ in edges], [1], [10, 11, 12, 13])
    expected = [
        0.0,
        max(x2(1, 1, 2), x2(1.5, 2, 2), x2(1, 1, 2)),  # edge 1, source 0.5, dest 1
        max(x2(1, 1, 2), x2(2.5, 3, 2), x2(1, 1, 2)),  # source (2.5 - 1.5) * 2 = 2 -> 4/3
        max(x2(1, 1, 2), x2(3.5, 4, 2), x2(1, 1, 2)),  # source (3.5 - 2) * 2 = 3 -> 9/4
    ]
    assert expected[1:] == [1.0, 4 / 3, 9 / 4]
    want = [math.log1p(x) for x in expected]
    assert run_one(MidasR(seed=0), edges) == pytest.approx(want, rel=1e-12, abs=0)
    got = MidasR(seed=0).score_many(*arrays(edges))
    assert got.tolist() == pytest.approx(want, rel=1e-12, abs=0)


def test_decay_happens_once_per_change_of_tick_not_per_tick_elapsed():
    # 1->2 at tick 1, again at tick 5: the current count is halved once (0.5), not four times.
    got = run_one(MidasR(), [(1, 2, 1), (1, 2, 5)])
    assert got[1] == pytest.approx(math.log1p(x2(1.5, 2, 5)), rel=1e-12)
    assert x2(1.5, 2, 5) == pytest.approx(30.25 / 8)


def test_first_tick_of_a_stream_scores_zero_only_at_tick_one():
    m = MidasR()
    assert [m.score_one(3, 4, 1), m.score_one(3, 4, 1)] == [0.0, 0.0]
    m2 = MidasR()
    assert m2.score_one(3, 4, 7) == pytest.approx(math.log1p(x2(1, 1, 7)), rel=1e-12)


# -- vectorised path == edge at a time, to the bit ---------------------------------------------

def random_stream(rng: np.random.Generator, n: int, nodes: int, new_tick_p: float, t0: int = 1):
    src = rng.integers(0, nodes, n)
    dst = rng.integers(0, nodes, n)
    tick = t0 + np.cumsum(rng.random(n) < new_tick_p) * rng.integers(1, 4)
    return src, dst, tick


@pytest.mark.parametrize("rows,buckets,factor", [(2, 2719, 0.5), (1, 7, 0.5), (3, 13, 0.3),
                                                 (2, 1, 0.9), (2, 31, 0.0), (2, 31, 1.0)])
def test_score_many_equals_score_one_bit_for_bit(rows, buckets, factor):
    rng = np.random.default_rng(rows * 1000 + buckets)
    for trial in range(6):
        # few nodes and few tick changes: many edges per tick, many repeated edges
        src, dst, tick = random_stream(rng, 1500, int(rng.integers(2, 40)), rng.random() * 0.2)
        one = MidasR(rows, buckets, factor, seed=trial)
        expected = np.array([one.score_one(int(s), int(d), int(t))
                             for s, d, t in zip(src, dst, tick)])
        many = MidasR(rows, buckets, factor, seed=trial)
        got = many.score_many(src, dst, tick, chunk=int(rng.integers(1, 700)))
        assert np.array_equal(got, expected)
        assert many.to_bytes() == one.to_bytes()


@pytest.mark.parametrize("factor", [0.5, 0.25, 0.3])
def test_lazy_decay_of_score_one_equals_the_arrays_after_long_silences(factor):
    # A cell left alone for 1,100 changes of tick decays into subnormal floats and then to 0:
    # score_one decays it only when touched again, and must land on the very floats that
    # multiplying the whole sketch at every change gives (score_many, and the saved state).
    rng = np.random.default_rng(11)
    edges = [(1, 2, 1), (1, 2, 1), (5, 6, 2)]
    edges += [(3, 4, t) for t in range(3, 1103)] + [(1, 2, 1103), (5, 6, 1104), (5, 6, 1104)]
    edges += [(int(rng.integers(0, 9)), int(rng.integers(0, 9)), 1104 + int(k)) for k in range(200)]
    src, dst, tick = arrays(edges)
    one = MidasR(buckets=97, factor=factor, seed=2)
    expected = np.array(run_one(one, edges))
    many = MidasR(buckets=97, factor=factor, seed=2)
    assert np.array_equal(many.score_many(src, dst, tick), expected)
    assert one.to_bytes() == many.to_bytes()


@pytest.mark.parametrize("factor", [0.5, 0.25, 0.3, 0.0, 1.0])
def test_lazy_decay_equals_multiplying_once_per_change_of_tick(factor):
    from detectors.burst.midas import _Cells

    cells = _Cells(np.zeros(1), np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64), factor)
    rng = np.random.default_rng(4)
    values = [0.0, 1.0, 2.9375, 5e-324, 3e-310] + list(rng.random(40) * 10.0 ** rng.integers(-5, 6, 40))
    for v in values:
        for k in [1, 2, 3, 60, 1021, 1022, 1023, 1074, 1075, 1076, 1100, 2200] + list(rng.integers(1, 1200, 10)):
            slow = float(v)
            for _ in range(int(k)):
                slow *= factor
            assert cells.decay(float(v), int(k)) == slow, (v, k)


def test_score_many_continues_a_tick_left_open_by_score_one():
    rng = np.random.default_rng(5)
    src, dst, tick = random_stream(rng, 2000, 15, 0.05)
    ref = MidasR(seed=3)
    expected = np.array([ref.score_one(int(s), int(d), int(t)) for s, d, t in zip(src, dst, tick)])
    m = MidasR(seed=3)
    cuts = [0, 1, 37, 38, 500, 1111, 2000]
    parts = []
    for i, (lo, hi) in enumerate(zip(cuts, cuts[1:])):
        if i % 2:
            parts.append(m.score_many(src[lo:hi], dst[lo:hi], tick[lo:hi]))
        else:
            parts.append([m.score_one(int(s), int(d), int(t))
                          for s, d, t in zip(src[lo:hi], dst[lo:hi], tick[lo:hi])])
    assert np.array_equal(np.concatenate(parts), expected)


def test_score_many_handles_wide_and_negative_node_ids_like_score_one():
    ids = [key_hash(f"user-{i}") for i in range(5)] + [-3, 2**40 + 1]
    rng = np.random.default_rng(1)
    src = np.array(ids)[rng.integers(0, len(ids), 400)]
    dst = np.array(ids)[rng.integers(0, len(ids), 400)]
    tick = 1 + np.arange(400) // 17
    one = MidasR()
    expected = [one.score_one(int(s), int(d), int(t)) for s, d, t in zip(src, dst, tick)]
    assert np.array_equal(MidasR().score_many(src, dst, tick), np.array(expected))


def test_empty_batch_returns_empty_and_learns_nothing():
    m = MidasR()
    out = m.score_many(np.array([], dtype=np.int64), np.array([], dtype=np.int64),
                       np.array([], dtype=np.int64))
    assert out.shape == (0,) and m.tick is None


# -- behaviour -----------------------------------------------------------------------------

def test_a_source_suddenly_hitting_many_destinations_scores_far_above_steady_traffic():
    rng = np.random.default_rng(0)
    rows = []
    for t in range(1, 101):  # 50 sources, each to one of its three usual destinations, per tick
        rows += [(s, 100 + (7 * s + int(rng.integers(0, 3))) % 60, t) for s in range(50)]
    steady = len(rows)
    rows += [(999, 1000 + d, 101) for d in range(200)]  # the burst
    scores = MidasR().score_many(*arrays(rows))
    steady_max = scores[:steady].max()
    burst = scores[steady:]
    assert burst.min() > steady_max
    assert np.median(burst) > 2 * steady_max


def test_same_seed_same_scores_different_seed_different_hashes():
    src, dst, tick = random_stream(np.random.default_rng(9), 3000, 500, 0.1)
    a = MidasR(buckets=31, seed=1).score_many(src, dst, tick)
    b = MidasR(buckets=31, seed=1).score_many(src, dst, tick)
    c = MidasR(buckets=31, seed=2).score_many(src, dst, tick)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


# -- state -------------------------------------------------------------------------------------

def test_state_round_trip_continues_scoring_identically():
    src, dst, tick = random_stream(np.random.default_rng(2), 3000, 30, 0.05)
    whole = MidasR(buckets=101, factor=0.4, seed=8)
    expected = whole.score_many(src, dst, tick)
    m = MidasR(buckets=101, factor=0.4, seed=8)
    head = m.score_many(src[:1234], dst[:1234], tick[:1234])  # ends mid-tick
    blob = m.to_bytes()
    assert blob[:8] == b"ATGMIDR\x00" and b"numpy" not in blob
    restored = MidasR.from_bytes(blob)
    assert (restored.rows, restored.buckets, restored.factor, restored.seed) == (2, 101, 0.4, 8)
    assert restored.tick == m.tick
    tail_many = restored.score_many(src[1234:], dst[1234:], tick[1234:])
    again = MidasR.from_bytes(blob)
    tail_one = [again.score_one(int(s), int(d), int(t))
                for s, d, t in zip(src[1234:], dst[1234:], tick[1234:])]
    assert np.array_equal(np.concatenate([head, tail_many]), expected)
    assert np.array_equal(np.array(tail_one), expected[1234:])
    assert restored.to_bytes() == whole.to_bytes()


def test_cold_state_round_trips():
    cold = MidasR(rows=3, buckets=50, factor=0.25, seed=4)
    back = MidasR.from_bytes(cold.to_bytes())
    assert back.tick is None and back.to_bytes() == cold.to_bytes()
    assert back.score_one(1, 2, 1) == 0.0


@pytest.mark.parametrize("mangle", [lambda b: b[:10], lambda b: b"XXXXXXXX" + b[8:],
                                    lambda b: b[:-8], lambda b: b + b"\0"])
def test_malformed_state_raises_value_error(mangle):
    m = MidasR(buckets=11)
    m.score_one(1, 2, 3)
    with pytest.raises(ValueError):
        MidasR.from_bytes(mangle(m.to_bytes()))


# -- errors ------------------------------------------------------------------------------------

def test_ticks_going_backwards_raise_and_leave_the_state_untouched():
    m = MidasR()
    m.score_one(1, 2, 5)
    before = m.to_bytes()
    with pytest.raises(ValueError, match="backwards"):
        m.score_one(1, 2, 4)
    with pytest.raises(ValueError, match="backwards"):
        m.score_many(np.array([1, 1]), np.array([2, 2]), np.array([4, 6]))
    with pytest.raises(ValueError, match="backwards"):
        m.score_many(np.array([1, 1, 1]), np.array([2, 2, 2]), np.array([5, 7, 6]))
    assert m.to_bytes() == before


def test_ticks_below_one_raise():
    with pytest.raises(ValueError, match="start at 1"):
        MidasR().score_one(1, 2, 0)
    with pytest.raises(ValueError, match="start at 1"):
        MidasR().score_many(np.array([1]), np.array([2]), np.array([0]))


def test_bad_arrays_raise():
    m = MidasR()
    with pytest.raises(ValueError, match="length"):
        m.score_many(np.array([1, 2]), np.array([2]), np.array([1, 1]))
    with pytest.raises(ValueError, match="integers"):
        m.score_many(np.array([1.5]), np.array([2]), np.array([1]))
    with pytest.raises(ValueError, match="1-d"):
        m.score_many(np.ones((2, 2), dtype=int), np.ones(2, dtype=int), np.ones(2, dtype=int))


@pytest.mark.parametrize("kwargs", [{"rows": 0}, {"rows": 1.0}, {"buckets": 0},
                                    {"buckets": True}, {"factor": -0.1}, {"factor": 1.01},
                                    {"factor": "0.5"}, {"seed": -1}, {"seed": None}])
def test_bad_parameters_raise_value_error(kwargs):
    with pytest.raises(ValueError):
        MidasR(**kwargs)


def test_init_only_stores_parameters():
    m = MidasR(rows=3, buckets=17, factor=0.25, seed=9)
    assert (m.rows, m.buckets, m.factor, m.seed) == (3, 17, 0.25, 9)
    assert m._base is None and m.tick is None


def test_key_hash_is_stable_and_fits_int64():
    assert key_hash("") == 3797230976420062948  # blake2b(b"", digest_size=8), little-endian
    assert key_hash("alice") == key_hash("alice") != key_hash("bob")
    assert all(0 <= key_hash(f"n{i}") < 2**63 for i in range(100))


# -- metrics -----------------------------------------------------------------------------------

def test_roc_auc_and_average_precision_on_a_hand_computed_case():
    # scores: 0.9 pos, 0.8 neg, 0.7 pos, 0.7 neg (tie), 0.1 pos.
    y = [1, 0, 1, 0, 1]
    s = [0.9, 0.8, 0.7, 0.7, 0.1]
    # pairs (pos, neg): (.9,.8) 1, (.9,.7) 1, (.7,.8) 0, (.7,.7) 1/2, (.1,.8) 0, (.1,.7) 0
    assert roc_auc(y, s) == pytest.approx(2.5 / 6)
    # thresholds .9: P=1, R=1/3; .8: P=1/2, R=1/3; .7: P=2/4, R=2/3; .1: P=3/5, R=1
    assert average_precision(y, s) == pytest.approx(1 / 3 * 1 + 0 + 1 / 3 * 0.5 + 1 / 3 * 0.6)


def test_metrics_extremes():
    y = [0, 0, 1, 1]
    assert roc_auc(y, [1, 2, 3, 4]) == 1.0
    assert roc_auc(y, [4, 3, 2, 1]) == 0.0
    assert roc_auc(y, [1, 1, 1, 1]) == 0.5
    assert average_precision(y, [1, 2, 3, 4]) == 1.0
    assert average_precision(y, [1, 1, 1, 1]) == 0.5
    with pytest.raises(ValueError):
        roc_auc([1, 1], [0.1, 0.2])


# -- the benchmark -----------------------------------------------------------------------------

def test_parse_rows_numbers_nodes_and_ticks_like_the_reference_preparation():
    data = (b"10.0.0.9,10.0.0.1,06/01/1998-08:00,-\n"
            b"10.0.0.9,10.0.0.5,06/01/1998-08:00,smurf\n"
            b"10.0.0.1,10.0.0.9,06/01/1998-08:07,-\n"
            b"10.0.0.5,10.0.0.1,06/02/1998-00:00,neptune\n")
    e = darpa_midas.parse_rows(data)
    # nodes: sorted distinct IPs 10.0.0.1 -> 0, 10.0.0.5 -> 1, 10.0.0.9 -> 2
    assert e.src.tolist() == [2, 2, 0, 1]
    assert e.dst.tolist() == [0, 1, 2, 0]
    # ticks: 1 + rank among distinct timestamps (a gap of minutes or a day is one tick)
    assert e.tick.tolist() == [1, 1, 2, 3]
    assert e.label.tolist() == [False, True, False, True]


def test_parse_rows_rejects_bad_rows():
    with pytest.raises(ValueError, match="row 2"):
        darpa_midas.parse_rows(b"a,b,06/01/1998-08:00,-\na,b,-\n")
    with pytest.raises(ValueError, match="earlier"):
        darpa_midas.parse_rows(b"a,b,06/01/1998-08:05,-\na,b,06/01/1998-08:00,-\n")


@pytest.fixture
def tiny_zip(tmp_path):
    """A 300-row DARPA-like stream in a zip: 7 sources, 11 destinations, one attack in five."""
    rows = [f"h{i % 7},h{(3 * i) % 11},06/01/1998-08:{i // 10:02d},{'-' if i % 5 else 'satan'}"
            for i in range(300)]
    path = tmp_path / "tiny.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("tiny.csv", "\n".join(rows) + "\n")
    return path


def test_benchmark_main_reads_a_zip_named_by_the_environment(tiny_zip, monkeypatch, capsys):
    monkeypatch.setenv(darpa_midas.ENV_ZIP, str(tiny_zip))
    assert darpa_midas.main(["--limit", "250"]) == 0
    out = capsys.readouterr().out
    assert "atoguard MidasR" in out and "paper MIDAS-R (C++)" in out and "250 edges" in out


@pytest.mark.skipif(not DARPA_ZIP.is_file(), reason="DARPA zip not available")
def test_benchmark_on_the_first_rows_of_darpa():
    edges = darpa_midas.load_darpa(DARPA_ZIP, limit=20_000)
    assert edges.src.shape == (20_000,)
    assert edges.tick[0] == 1 and np.all(np.diff(edges.tick) >= 0)
    assert edges.label.any() and not edges.label.all()
    result = darpa_midas.evaluate(edges)
    scores = result["scores"]
    assert scores.shape == (20_000,) and np.isfinite(scores).all() and (scores >= 0).all()
    assert 0.0 <= result["roc_auc"] <= 1.0 and 0.0 < result["average_precision"] <= 1.0
    assert result["roc_auc"] == roc_auc(edges.label, scores)
    # the same slice, edge by edge, gives the same scores
    one = MidasR()
    head = [one.score_one(int(s), int(d), int(t))
            for s, d, t in zip(edges.src[:3000], edges.dst[:3000], edges.tick[:3000])]
    assert np.array_equal(np.array(head), scores[:3000])
    table = darpa_midas.format_table(result, parse_seconds=0.1)
    assert "0.95" in table and "atoguard MidasR" in table


def test_benchmark_repeat_prints_each_seed_and_the_spread(tiny_zip, capsys):
    assert darpa_midas.main(["--zip", str(tiny_zip), "--buckets", "3", "--seed", "5",
                             "--repeat", "3"]) == 0
    out = capsys.readouterr().out
    spread = out.split("Over 3 hash seeds:")[1].strip().splitlines()
    seeds = [int(line.split()[0]) for line in spread[1:4]]
    assert seeds == [5, 6, 7]
    aucs = [float(line.split()[1]) for line in spread[1:4]]
    edges = darpa_midas.load_darpa(tiny_zip)
    expected = [darpa_midas.evaluate(edges, buckets=3, seed=s)["roc_auc"] for s in (5, 6, 7)]
    assert aucs == [round(a, 4) for a in expected]
    mean = float(spread[4].split()[1])
    assert mean == pytest.approx(sum(expected) / 3, abs=1e-4)
    assert min(aucs) == float(spread[5].split()[1]) and max(aucs) == float(spread[6].split()[1])
