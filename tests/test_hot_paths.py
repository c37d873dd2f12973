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


def test_event_facts_built_fast_equal_the_dataclass():
    from detectors.facts import EventFacts, SourceFacts, _event_facts

    for args in [(SourceFacts(1, 2, 3), SourceFacts(), 0.5, "mobile", 7), (SourceFacts(), SourceFacts(4), 0.0, None, None)]:
        fast, plain = _event_facts(*args), EventFacts(*args)
        assert fast == plain and hash(fast) == hash(plain) and repr(fast) == repr(plain)
