"""Synthetic account traffic with ground truth, for replay, backtests and evaluation.

Contract: given a :class:`SimConfig`, :func:`simulate` writes the wire contract's input events
(``device``, ``location``, ``transaction``) as JSON Lines in event-time order, and one label line
per incident (``account_id, scenario, label, start_ts, end_ts, first_loss_ts, event_ids``, and
the v2 fields ``attacker_passes`` / ``holder_passes``), then one ``enrolled`` line per account.
The same config gives byte-identical files. Generation goes day by day and streams to disk, so
memory stays at about one simulated day of events.

Modules: ``config`` (the frozen config, scenario names), ``geo`` (cities, networks, addresses),
``methods`` (who passes which challenge: the v2 label fields), ``population`` (personas), ``routine`` (normal life), ``benign`` and ``attacks`` (the labelled
scenarios), ``timeline`` (emission, incidents), ``generate`` (the day loop and sinks),
``cli`` (``atoguard simulate``).
"""

from simulator.config import ATTACK_SCENARIOS, BENIGN_SCENARIOS, MONEY_KINDS, SCENARIOS, STUFFING_ATTEMPT, SimConfig
from simulator.generate import FileSink, KafkaSink, Simulation, simulate

__all__ = [
    "ATTACK_SCENARIOS",
    "BENIGN_SCENARIOS",
    "MONEY_KINDS",
    "SCENARIOS",
    "STUFFING_ATTEMPT",
    "FileSink",
    "KafkaSink",
    "SimConfig",
    "Simulation",
    "simulate",
]
