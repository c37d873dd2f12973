"""Hand-inlined hot paths against the library code they stand in for, to the bit."""

from __future__ import annotations

import math
import random

from river import stats

from detectors.profile import AmountStats
from detectors.update import _amount_update


def test_amount_statistics_equal_rivers_var_to_the_bit():
    rng = random.Random(3)
    for trial in range(50):
        mine = AmountStats()
        for _ in range(rng.randint(1, 40)):
            x = math.log1p(rng.choice([0.0, 1.0, rng.lognormvariate(3, 1.5), rng.uniform(0, 1e6)]))
            a = mine
            v = stats.Var._from_state(a.n, a.mean, a.var) if a.n else stats.Var()  # as update.py did
            v.update(x)
            expected = AmountStats(v.n, v.mean.get(), v.get())
            mine = _amount_update(mine, x)
            assert (mine.n, mine.mean, mine.var) == (expected.n, expected.mean, expected.var)
            assert all(type(m) is type(e) for m, e in zip((mine.n, mine.mean, mine.var),
                                                        (expected.n, expected.mean, expected.var)))


def test_facts_table_cached_answers_equal_a_recount_from_the_updates():
    """FactsTable.source keeps the last answer per source (the bound moves once a bucket) and
    FactsTable.facts returns the shared NO_FACTS when nothing is known: both against a plain
    count of the updates below the bound, bound by bound, with late updates invalidating the cache."""
    from detectors.events import DeviceEvent
    from detectors.facts import NO_FACTS, FactsSettings, FactsTable, SourceFacts, SourceUpdate

    rng = random.Random(5)
    settings = FactsSettings(delay_ms=0, bucket_ms=1_000, window=5)
    for trial in range(30):
        table, updates = FactsTable(settings), []
        for step in range(60):
            u = SourceUpdate(f"ip:10.0.0.{rng.randint(1, 3)}", "login", f"a{rng.randint(1, 6)}", f"e{trial}-{step}",
                             rng.randint(0, 12_000), failed=rng.random() < 0.5)
            table.add(u)
            updates.append(u)
            bound = rng.randint(0, 14)
            for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.9"):
                got = table.facts(DeviceEvent("x", "z", bound * 1_000, "payment_view", ip=ip), bound)
                mine = [v for v in updates if v.source == "ip:" + ip and bound - 5 <= v.ts // 1_000 < bound]
                expected = SourceFacts(len({v.account_id for v in mine}), sum(v.failed for v in mine), len(mine))
                if not mine:
                    assert got is NO_FACTS
                else:
                    assert got.ip == expected and got.device == SourceFacts() and got.burst == 0.0
