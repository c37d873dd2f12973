"""The online-learning detectors: cold start, what they flag, what they refuse to learn, the
percentile calibration, snapshots, determinism, and the fast path agreeing with plain River."""

from __future__ import annotations

import math
import pickle
import random

import pytest

from detectors.base import Finding
from detectors.facts import NO_FACTS
from detectors.context import Context
from detectors.models import BehaviourAnomaly, PercentileCalibrator, VerdictModel
from detectors.models.anomaly import FEATURES, MAX_SCORE, contribution


# -- contexts, built the easy way ---------------------------------------------------------------

def ctx(kind: str = "payment", **slots) -> Context:
    x = Context()
    x.kind, x.facts, x.money_out = kind, NO_FACTS, kind in ("payment", "transfer_out", "withdrawal", "loan_draw")
    x.device_new = x.device_young = x.ip_new = x.asn_new = x.country_new = False
    x.ip_type, x.fails_recent = "residential", 0
    for name, value in slots.items():
        setattr(x, name, value)
    return x


def typical_payment(rng: random.Random) -> Context:
    amount = rng.lognormvariate(3.5, 0.5)
    return ctx("payment", amount=amount, amount_z=rng.gauss(0.0, 1.0), hour_share=rng.uniform(0.05, 0.12),
               drain_ratio=rng.uniform(0.01, 0.2), fails_recent=rng.choice((0, 0, 0, 0, 1)))


def typical_login(rng: random.Random) -> Context:
    return ctx("login_success", hour_share=rng.uniform(0.05, 0.12), fails_recent=rng.choice((0, 0, 0, 1)),
               ip_new=rng.random() < 0.03)


def outlier_payment() -> Context:
    """A huge amount at 4 am (an hour never active), from a new device, after many failures."""
    return ctx("payment", amount=250_000.0, amount_z=9.0, hour_share=0.0, drain_ratio=0.99,
               device_new=True, device_young=True, ip_new=True, fails_recent=9, cred_age_h=2.0)


def stream(n: int, seed: int = 1) -> list[Context]:
    rng = random.Random(seed)
    return [typical_payment(rng) if rng.random() < 0.5 else typical_login(rng) for _ in range(n)]


def train(model: BehaviourAnomaly, contexts: list[Context], risk: float = 0.0) -> None:
    for x in contexts:
        model.score(x)
        model.learn(x, risk)


@pytest.fixture(scope="module")
def trained() -> tuple[BehaviourAnomaly, list[Context]]:
    model = BehaviourAnomaly(seed=3)
    data = stream(4000)
    train(model, data)
    return model, data


# -- behaviour anomaly ----------------------------------------------------------------------------

def test_cold_anomaly_model_returns_none():
    model = BehaviourAnomaly(seed=0, min_learned=100)
    assert model.score(outlier_payment()) is None
    train(model, [typical_payment(random.Random(i)) for i in range(99)])
    assert model.n_learned("money_out") == 99
    assert model.score(outlier_payment()) is None  # still cold: 99 < min_learned


def test_anomaly_model_ignores_unwatched_events(trained):
    model, _ = trained
    before = model.state()
    for x in (ctx("gps_fix"), ctx("logout"), ctx("payee_added"), ctx("login_failure", fails_recent=15),
              ctx("loan_repayment", money_out=False, amount=10.0)):
        assert model.score(x) is None
        model.learn(x, 0.0)
    assert model.state() == before


def test_outlier_scores_far_above_typical_events(trained):
    model, _ = trained
    rng = random.Random(99)
    typical = [typical_payment(rng) for _ in range(400)]
    percentiles = [model.percentile(x) for x in typical]
    assert sum(percentiles) / len(percentiles) < 0.6
    flagged = sum(model.score(x) is not None for x in typical)
    assert flagged / len(typical) < 0.1
    assert model.percentile(outlier_payment()) >= 0.999
    finding = model.score(outlier_payment())
    assert finding == Finding("behaviour_anomaly", MAX_SCORE, ("BEHAVIOUR_ANOMALY",), "model")
    lone_login = ctx("login_success", hour_share=0.0, device_new=True, device_young=True, ip_new=True,
                     asn_new=True, ip_type="tor", fails_recent=12)
    assert model.score(lone_login).score > 0.75 * MAX_SCORE


def test_anomaly_findings_stay_a_supporting_signal(trained):
    model, data = trained
    scores = [f.score for x in data + [outlier_payment()] if (f := model.score(x)) is not None]
    assert scores and max(scores) <= MAX_SCORE <= 0.4


def test_anomaly_model_does_not_learn_what_it_flags():
    model = BehaviourAnomaly(seed=5)
    train(model, stream(3000, seed=5))
    n = model.n_learned("money_out")
    x = outlier_payment()
    assert model.score(x) is not None and model.percentile(x) >= model.flag_at
    model.learn(x, 0.0)
    assert model.n_learned("money_out") == n
    assert model.n_skipped("money_out") >= 1
    # nor from an ordinary-looking event the engine judged risky
    ordinary = typical_payment(random.Random(0))
    model.score(ordinary)
    model.learn(ordinary, 0.7)
    assert model.n_learned("money_out") == n
    model.learn(ordinary, 0.1)  # learn() without a score() first works too
    assert model.n_learned("money_out") == n + 1


def raw_score(model: BehaviourAnomaly, x: Context) -> float:
    group = "money_out" if x.money_out else "login"
    return model._assess(x, group, model._groups[group])[2]


def test_flagged_events_do_not_become_normal():
    model = BehaviourAnomaly(seed=6)
    train(model, stream(3000, seed=6))
    raw, p = raw_score(model, outlier_payment()), model.percentile(outlier_payment())
    # a burst of the same attack that the engine caught: neither trees nor calibration move
    train(model, [outlier_payment() for _ in range(300)], risk=0.9)
    assert (raw_score(model, outlier_payment()), model.percentile(outlier_payment())) == (raw, p)
    # a few repeats nobody else caught: still flagged, still not learned. (The calibration counts
    # every event the engine did not judge risky, flagged or not, as River's QuantileFilter does,
    # so a repeat that grows past 1 - flag_at of the group's traffic stops being flagged.)
    train(model, [outlier_payment() for _ in range(10)], risk=0.0)
    assert raw_score(model, outlier_payment()) == raw
    assert model.score(outlier_payment()) is not None


def test_missing_features_are_tolerated(trained):
    model, _ = trained
    bare = Context()
    bare.kind, bare.money_out, bare.facts = "payment", True, NO_FACTS
    model.score(bare)  # no amount, no history, no flags: must not raise
    bare_login = Context()
    bare_login.kind, bare_login.facts = "login_success", NO_FACTS
    model.score(bare_login)


PROBE = stream(300, seed=77) + [outlier_payment()]


def signature(model: BehaviourAnomaly) -> tuple:
    """What a model would say on a fixed probe, and its counters (pickle bytes may differ in
    how objects are shared without the models differing)."""
    return ([model.percentile(x) for x in PROBE], [model.score(x) for x in PROBE],
            [(model.n_learned(g), model.n_skipped(g)) for g in FEATURES])


def test_anomaly_state_round_trip_scores_identically(trained):
    model, _ = trained
    restored = BehaviourAnomaly(seed=3)
    restored.load_state(model.state())
    assert signature(restored) == signature(model)


def test_restored_detector_matches_the_original_going_forward():
    original = BehaviourAnomaly(seed=8)
    train(original, stream(1500, seed=8))
    restored = BehaviourAnomaly(seed=8)
    restored.load_state(original.state())
    for x in stream(800, seed=12) + [outlier_payment()]:
        assert restored.score(x) == original.score(x)
        assert restored.percentile(x) == original.percentile(x)
        restored.learn(x, 0.0)
        original.learn(x, 0.0)
    assert signature(restored) == signature(original)
    again = BehaviourAnomaly(seed=8)
    again.load_state(restored.state())
    assert signature(again) == signature(original)


def test_anomaly_state_is_checked():
    model = BehaviourAnomaly(seed=1)
    train(model, stream(300))
    other = BehaviourAnomaly(seed=1, n_trees=5)
    with pytest.raises(ValueError, match="saved with"):
        other.load_state(model.state())
    with pytest.raises(ValueError, match="os.system|posix.system"):
        model.load_state(pickle.dumps(__import__("os").system))
    with pytest.raises(ValueError, match="not readable"):
        model.load_state(model.state()[:40])
    model.load_state(b"")  # an empty state is a cold detector
    assert model.n_learned("money_out") == 0


def test_same_seed_same_scores_different_seed_different_trees():
    a, b, c = BehaviourAnomaly(seed=4), BehaviourAnomaly(seed=4), BehaviourAnomaly(seed=5)
    data = stream(1500, seed=2)
    for m in (a, b, c):
        train(m, data)
    probe = stream(300, seed=3) + [outlier_payment()]
    assert [a.percentile(x) for x in probe] == [b.percentile(x) for x in probe]
    assert [a.score(x) for x in probe] == [b.score(x) for x in probe]
    assert a.state() == b.state()  # built the same way: the same bytes
    assert [a.percentile(x) for x in probe] != [c.percentile(x) for x in probe]


def test_fast_path_equals_plain_river_pipeline():
    """The fused score/learn walk gives exactly what pipeline.score_one / learn_one give."""
    model = BehaviourAnomaly(seed=2, window_size=50, min_learned=60)
    reference = {g: model._new_group(g).pipeline for g in FEATURES}
    rng = random.Random(4)
    data = stream(1200, seed=4)
    for i, x in enumerate(data):  # growing amounts keep the scaler's range moving now and then
        if x.money_out and i % 97 == 0:
            x.amount = x.amount * (1 + i)
    data += [outlier_payment() for _ in range(20)]
    checked = 0
    masses_checked = 0
    for i, x in enumerate(data):
        group = "money_out" if x.money_out else "login"
        v = model._vector(x, group)
        named = dict(zip(model._groups[group].names, v)) if group in model._groups else None
        ref = reference[group]
        g = model._groups.get(group)
        if g is not None and g.score(g.scale(v)) is not None:
            assert g.score(g.scale(v)) == ref.score_one(named)
            assert dict(zip(g.names, g.scale(v))) == ref["MinMaxScaler"].transform_one(named)
            checked += 1
        before = model.n_learned(group)
        model.score(x)
        model.learn(x, rng.choice((0.0, 0.0, 0.0, 0.9)))
        if model.n_learned(group) > before:
            ref.learn_one(named if named is not None else dict(zip(model._groups[group].names, v)))
        if i % 89 == 0 or i == len(data) - 1:  # the masses, mid-window too, equal River's
            for name, r in reference.items():
                if name in model._groups:
                    hst, ref_hst = model._groups[name].synced()["HalfSpaceTrees"], r["HalfSpaceTrees"]
                    assert (hst.counter, hst._first_window) == (ref_hst.counter, ref_hst._first_window)
                    for nodes, ref_nodes in zip(hst._tree_nodes, ref_hst._tree_nodes):
                        assert [(n.l_mass, n.r_mass) for n in nodes] == [(n.l_mass, n.r_mass) for n in ref_nodes]
                    masses_checked += 1
    assert checked > 1000 and masses_checked > 20


@pytest.mark.parametrize("kwargs", [
    {"flag_at": 1.0}, {"flag_at": 0.0}, {"n_trees": 0}, {"height": 0}, {"window_size": 1},
    {"min_learned": -1}, {"events": ()}, {"events": ("money_out", "transfers")}, {"events": "login"},
    {"seed": 1.5},
])
def test_anomaly_parameters_are_checked(kwargs):
    with pytest.raises(ValueError):
        BehaviourAnomaly(**kwargs)


def test_anomaly_model_watches_only_the_chosen_groups():
    model = BehaviourAnomaly(seed=0, min_learned=10, window_size=10, events=("login",))
    train(model, stream(200))
    assert model.n_learned("money_out") == 0 and model.n_learned("login") > 0
    assert model.score(outlier_payment()) is None


def test_contribution_mapping():
    assert contribution(0.0) == contribution(0.95) == 0.0
    assert contribution(0.999) == contribution(1.0) == MAX_SCORE
    ps = [0.95 + i * 0.0005 for i in range(101)]
    values = [contribution(p) for p in ps]
    assert values == sorted(values)
    assert contribution(0.99) == pytest.approx(MAX_SCORE * math.log(5) / math.log(50))


# -- calibration ----------------------------------------------------------------------------------

def test_calibration_percentiles_on_a_hand_checked_sequence():
    cal = PercentileCalibrator(bins=10)
    assert cal.percentile(0.5) == 0.0  # nothing seen yet
    for raw in (0.05, 0.15, 0.15, 0.35, 0.55, 0.55, 0.55, 0.95):  # bins 0, 1, 1, 3, 5, 5, 5, 9
        cal.update(raw)
    assert cal.counts() == [1, 2, 0, 1, 0, 3, 0, 0, 0, 1]
    assert cal.percentile(0.0) == 0.0     # nothing strictly below
    assert cal.percentile(0.05) == 0.0    # same bin as the lowest: not below
    assert cal.percentile(0.12) == 1 / 8  # the 0.05
    assert cal.percentile(0.25) == 3 / 8
    assert cal.percentile(0.58) == 4 / 8  # the three 0.55 share its bin
    assert cal.percentile(0.65) == 7 / 8
    assert cal.percentile(0.99) == 7 / 8
    assert cal.percentile(1.0) == 7 / 8   # 1.0 falls in the last bin, with the 0.95
    assert cal.percentile(2.0) == 7 / 8 and cal.percentile(-1.0) == 0.0  # clamped


def test_calibration_is_in_unit_interval_and_monotone():
    rng = random.Random(0)
    cal = PercentileCalibrator()
    for _ in range(5000):
        cal.update(rng.betavariate(2, 8))
    grid = [i / 1000 for i in range(-10, 1011)]
    values = [cal.percentile(r) for r in grid]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert values == sorted(values)
    assert values[-1] > 0.99


def test_calibration_forgets_by_halving_and_round_trips():
    cal = PercentileCalibrator(bins=4, max_count=8)
    for raw in (0.1,) * 7:
        cal.update(raw)
    cal.update(0.9)  # the 8th count halves everything
    assert cal.n == 4.0
    assert cal.counts() == [3.5, 0.0, 0.0, 0.5]
    assert cal.percentile(0.9) == 3.5 / 4
    back = PercentileCalibrator.from_state(cal.to_state())
    assert back == cal and back.percentile(0.9) == cal.percentile(0.9)
    with pytest.raises(ValueError):
        PercentileCalibrator(bins=1)
    with pytest.raises(ValueError):
        PercentileCalibrator.from_state([4, 8, 0.0, 1.0])


# -- verdict model ----------------------------------------------------------------------------------

ATO = {"device_new": 1.0, "device_young": 1.0, "ip_new": 1.0, "cred_recent": 1.0, "fails": 6.0,
       "money_out": 1.0, "drain": 0.95, "amount_z": 4.0, "hour_share": 0.0}
LEGIT = {"device_new": 0.0, "device_young": 0.0, "ip_new": 0.0, "cred_recent": 0.0, "fails": 0.0,
         "money_out": 1.0, "drain": 0.1, "amount_z": 0.3, "hour_share": 0.09}


def jitter(features: dict, rng: random.Random) -> dict:
    return {k: v + rng.uniform(-0.1, 0.1) for k, v in features.items()}


def ato_context() -> Context:
    return ctx("transfer_out", device_new=True, device_young=True, ip_new=True, cred_age_h=3.0,
               fails_recent=6, amount=9000.0, drain_ratio=0.95, amount_z=4.0, hour_share=0.0)


def legit_context() -> Context:
    return ctx("payment", amount=40.0, drain_ratio=0.1, amount_z=0.3, hour_share=0.09)


def test_verdict_model_is_silent_before_min_labels():
    model = VerdictModel(seed=0, min_labels=20)
    rng = random.Random(1)
    assert model.score(ato_context()) is None
    for i in range(19):
        model.learn_verdict(jitter(ATO if i % 2 else LEGIT, rng), bool(i % 2))
    assert not model.ready and model.score(ato_context()) is None


def test_verdict_model_needs_a_few_of_each_class():
    model = VerdictModel(seed=0, min_labels=20)
    rng = random.Random(2)
    for _ in range(30):
        model.learn_verdict(jitter(LEGIT, rng), False)
    model.learn_verdict(ATO, True)
    assert not model.ready and model.score(ato_context()) is None


def test_verdict_model_separates_ato_from_legit_once_ready():
    model = VerdictModel(seed=0, min_labels=20)
    rng = random.Random(3)
    for i in range(30):
        is_ato = i % 3 == 0
        model.learn_verdict(jitter(ATO if is_ato else LEGIT, rng), is_ato)
    assert model.ready
    finding = model.score(ato_context())
    assert finding is not None and finding.detector == "supervised"
    assert finding.reasons == ("LEARNED_RISK",) and finding.family == "model"
    assert 0.3 < finding.score <= 0.6
    assert model.score(legit_context()) is None
    assert model.predict_proba(ATO) > 0.8 > 0.2 > model.predict_proba(LEGIT)


def test_verdict_model_scores_only_events_that_matter():
    model = VerdictModel(seed=0, min_labels=6)
    for _ in range(5):
        model.learn_verdict(ATO, True)
        model.learn_verdict(LEGIT, False)
    risky = dict(device_new=True, device_young=True, ip_new=True, cred_age_h=1.0, fails_recent=6, hour_share=0.0)
    assert model.score(ctx("login_success", **risky)) is not None
    assert model.score(ctx("password_change", **risky)) is not None
    assert model.score(ctx("gps_fix", **risky)) is None
    assert model.score(ctx("logout", **risky)) is None


def test_verdict_model_tolerates_odd_feature_dicts_and_never_changes_when_scoring():
    model = VerdictModel(seed=0, min_labels=6)
    model.learn_verdict({}, True)  # nothing usable: ignored
    model.learn_verdict({"device_new": "yes", "fails": float("nan"), "unknown": 3.0}, True)
    assert model.n_labels == 0
    for _ in range(4):
        model.learn_verdict({**ATO, "extra": "x"}, True)
        model.learn_verdict({"device_new": False, "fails": 0}, False)
    before = model.state()
    model.score(ato_context())
    model.predict_proba({"log_speed": 7.0, "credit": 1.0})  # features never seen in a verdict
    model.learn(ato_context(), 0.9)  # events carry no label
    assert model.state() == before


def test_verdict_model_state_round_trip_and_determinism():
    a, b = VerdictModel(seed=7), VerdictModel(seed=7)
    rng = random.Random(5)
    for i in range(40):
        f, y = jitter(ATO if i % 4 == 0 else LEGIT, rng), i % 4 == 0
        a.learn_verdict(f, y)
        b.learn_verdict(f, y)
    assert a.state() == b.state()
    restored = VerdictModel(seed=7)
    restored.load_state(a.state())
    for x in (ato_context(), legit_context()):
        assert restored.score(x) == a.score(x)
    restored.learn_verdict(ATO, True)
    a.learn_verdict(ATO, True)
    assert restored.predict_proba(LEGIT) == a.predict_proba(LEGIT)
    with pytest.raises(ValueError):
        VerdictModel(seed=7, min_labels=30).load_state(a.state())
    restored.load_state(b"")
    assert restored.n_labels == 0 and restored.score(ato_context()) is None


@pytest.mark.parametrize("kwargs", [{"min_labels": 0}, {"min_per_class": 0}, {"min_labels": 4, "min_per_class": 3},
                                    {"seed": "x"}])
def test_verdict_parameters_are_checked(kwargs):
    with pytest.raises(ValueError):
        VerdictModel(**kwargs)
