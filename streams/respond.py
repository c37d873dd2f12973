"""Closed-loop replay's people and account service (contract v2/v3, "Closed-loop replay").

The rules live in :mod:`simulator.people`, shared by the offline loop (:mod:`streams.replay`,
``atoguard replay --respond LABELS``) and the live account service
(:mod:`simulator.account_service`); this module keeps their names where the stream side has
always found them. The loop itself - answers merged into their partition in ``(ts, id)`` order,
refused attackers' events withheld, the transcript - is replay's.
"""

from __future__ import annotations

from simulator.people import (
    ALL_METHODS, ANSWER_PREFIX, FREEZE_ANSWER_MS, HOLDER, ID_CHECK_ANSWER_MS, STEP_UP_ANSWER_MS, People, Respondent,
    load_people, payout_outcome, respond_to,
)

__all__ = ["ALL_METHODS", "ANSWER_PREFIX", "FREEZE_ANSWER_MS", "HOLDER", "ID_CHECK_ANSWER_MS", "People",
           "Respondent", "STEP_UP_ANSWER_MS", "load_people", "payout_outcome", "respond_to"]
