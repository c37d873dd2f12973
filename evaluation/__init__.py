"""Evaluation: score atoguard's outputs against ground-truth labels (``atoguard eval``).

Contract: the inputs are the wire contract's files (events JSON Lines, the labels file, and the
outputs JSON Lines of commands and alerts); nothing else is read. The three are streamed once
each, in the order labels, outputs, events, and only small per-account summaries are kept.

* :mod:`evaluation.io` - streaming readers (generators) and :func:`alert_account_id`;
* :mod:`evaluation.metrics` - pure functions from small in-memory structures to the figures,
  with every definition in :data:`~evaluation.metrics.DEFINITIONS`;
* :mod:`evaluation.challenges` - the v2 scoring of a closed loop: the person of a command, the
  offered method, who passes it, and the friction figures;
* :mod:`evaluation.report` - terminal tables, ``report.md``, ``metrics.json``, PNG plots and
  :func:`~evaluation.report.friction_curve` (attacks stopped against friction over runs);
* :mod:`evaluation.cli` - ``configure(parser)`` / ``run(args)`` for the dispatcher.
"""

from .io import alert_account_id, iter_decisions, iter_events, iter_incidents, iter_messages
from .metrics import Decision, Event, EventSummary, Incident, evaluate, summarise_events
from .challenges import Scoring
from .report import format_headline, format_tables, friction_curve, write_report

__all__ = [
    "Decision", "Event", "EventSummary", "Incident", "Scoring", "alert_account_id", "evaluate",
    "format_headline", "format_tables", "friction_curve", "iter_decisions", "iter_events", "iter_incidents",
    "iter_messages", "summarise_events", "write_report",
]
