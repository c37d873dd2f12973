"""The simulator's configuration: one frozen value with defaults.

Rates are shares of the account population. Every account is assigned at most one scenario,
drawn once from a categorical distribution whose probabilities are these rates, so the number of
accounts labelled with scenario ``s`` is Binomial(accounts, rate_s) (up to pairing and grouping
for ``shared_tablet`` and ``corporate_nat``, see ``simulator.population``).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt

from detectors.contract import METHODS

#: Benign situations that look risky; labelled ``legit``.
BENIGN_SCENARIOS: tuple[str, ...] = (
    "travel",
    "new_phone",
    "shared_tablet",
    "repay_redraw",
    "password_reset",
    "corporate_nat",
    "trip_new_phone",
    "lost_phone_recovery",
    "repay_new_phone",
    "household_device",
)

#: Account takeover attacks; labelled ``ato``.
ATTACK_SCENARIOS: tuple[str, ...] = (
    "credential_stuffing",
    "phishing_takeover",
    "sim_swap_payout",
    "session_hijack",
    "impossible_travel",
    "slow_takeover",
    "warmed_device",
    "mule_ring",
    "remote_access_scam",
)

#: Accounts a stuffing campaign tried but did not take over (label ``ato``, no loss). Not a rate
#: of its own: their number follows from the campaigns' success rates.
STUFFING_ATTEMPT = "credential_stuffing_attempt"

SCENARIOS: tuple[str, ...] = BENIGN_SCENARIOS + ATTACK_SCENARIOS

#: Kinds that move money out of the account holder's control (``first_loss_ts``).
MONEY_KINDS: frozenset[str] = frozenset({"payment", "transfer_out", "withdrawal", "loan_draw"})

DEFAULT_START = "2026-01-05T00:00:00Z"


def parse_start(text: str) -> int:
    """Parse an ISO 8601 instant (``2026-01-05`` or ``2026-01-05T00:00Z``) to epoch milliseconds.

    A time without an offset is UTC.

    >>> parse_start("2026-01-05T00:00Z")
    1767571200000
    >>> parse_start("2026-01-05")
    1767571200000
    """
    text = text.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    moment = _dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return int(moment.timestamp() * 1000)


@dataclasses.dataclass(frozen=True)
class SimConfig:
    """Everything that shapes a simulated population; same config => byte-identical output.

    Parameters
    ----------
    accounts, days, seed
        Population size, span in days, and the seed of every random draw.
    start
        ISO 8601 instant of the first simulated midnight (UTC). Never the wall clock.
    rate_*
        Share of accounts that get each scenario (see the module docstring).
    late_location_share
        Share of location fixes written up to ``late_location_max_s`` seconds after their event
        time, i.e. out of order across topics (as the contract allows). 0 keeps the file in
        strict event-time order.
    enrol_*
        Share of accounts that have enrolled each challenge method (contract v2), drawn
        independently per method; written as one ``enrolled`` line per account in the labels.
    phishing_push_fatigue_share
        Share of phishing takeovers that are push-fatigue attacks (a phished password, then
        pushes until the holder approves) rather than a real-time relay of the one-time codes.
    """

    accounts: int = 1000
    days: int = 7
    seed: int = 0
    start: str = DEFAULT_START
    # benign situations (label legit)
    rate_travel: float = 0.02
    rate_new_phone: float = 0.02
    rate_shared_tablet: float = 0.01
    rate_repay_redraw: float = 0.015
    rate_password_reset: float = 0.02
    rate_corporate_nat: float = 0.02
    rate_trip_new_phone: float = 0.005
    rate_lost_phone_recovery: float = 0.008
    rate_repay_new_phone: float = 0.005
    rate_household_device: float = 0.008
    # attacks (label ato)
    rate_credential_stuffing: float = 0.003
    rate_phishing_takeover: float = 0.003
    rate_sim_swap_payout: float = 0.002
    rate_session_hijack: float = 0.002
    rate_impossible_travel: float = 0.002
    rate_slow_takeover: float = 0.002
    rate_warmed_device: float = 0.002
    rate_mule_ring: float = 0.002
    rate_remote_access_scam: float = 0.001
    # population shape
    credit_share: float = 0.25
    vpn_share: float = 0.05
    ipv6_share: float = 0.15
    # delivery
    late_location_share: float = 0.0
    late_location_max_s: float = 120.0
    # challenge methods enrolled (v2): a consumer-credit app where everyone has a phone number
    enrol_sms_otp: float = 1.0
    enrol_email_otp: float = 0.7
    enrol_app_push: float = 0.75
    enrol_totp: float = 0.05
    enrol_payment_password: float = 0.85
    enrol_face: float = 0.4
    enrol_passkey: float = 0.18
    # how the attacks work (v2 labels)
    phishing_push_fatigue_share: float = 0.2
    #: share of ``warmed_device`` thieves holding the holder's identity documents ("fullz"):
    #: they may pass ``id_check``
    warmed_documents_share: float = 0.25

    def __post_init__(self) -> None:
        if self.accounts < 1:
            raise ValueError(f"accounts must be >= 1, got {self.accounts}")
        if self.days < 1:
            raise ValueError(f"days must be >= 1, got {self.days}")
        parse_start(self.start)  # raises ValueError with the offending text
        for name, value in self.rates().items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"rate_{name} must be in [0, 1], got {value}")
        total = sum(self.rates().values())
        if total > 1.0:
            raise ValueError(
                f"the scenario rates add up to {total:.3f}; each account gets at most one "
                "scenario, so they must add up to at most 1"
            )
        shares = ("credit_share", "vpn_share", "ipv6_share", "late_location_share", "phishing_push_fatigue_share",
                  "warmed_documents_share",
                  *(f"enrol_{m}" for m in METHODS))
        for name in shares:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.late_location_max_s < 0:
            raise ValueError(f"late_location_max_s must be >= 0, got {self.late_location_max_s}")

    @property
    def start_ms(self) -> int:
        return parse_start(self.start)

    def rates(self) -> dict[str, float]:
        """Scenario name -> share of accounts, benign first, in ``SCENARIOS`` order."""
        return {name: getattr(self, f"rate_{name}") for name in SCENARIOS}

    def enrolment_shares(self) -> dict[str, float]:
        """Challenge method -> share of accounts that enrolled it, in the contract's order."""
        return {m: getattr(self, f"enrol_{m}") for m in METHODS}

    def with_mix(self, mix: str) -> "SimConfig":
        """This config with the scenario rates of ``mix`` changed (see :func:`parse_mix`)."""
        return dataclasses.replace(self, **{f"rate_{k}": v for k, v in parse_mix(mix, self.rates()).items()})


def parse_mix(text: str, rates: dict[str, float]) -> dict[str, float]:
    """Parse a scenario mix ``NAME=SHARE`` or ``NAME=FACTORx``, comma-separated.

    ``SHARE`` replaces the scenario's rate; ``FACTORx`` multiplies the rate it has in ``rates``.
    Raises ValueError naming the offending item.

    >>> parse_mix("phishing_takeover=2x, credential_stuffing=0.5x,travel=0.05",
    ...           {"phishing_takeover": 0.003, "credential_stuffing": 0.004, "travel": 0.02})
    {'phishing_takeover': 0.006, 'credential_stuffing': 0.002, 'travel': 0.05}
    """
    out: dict[str, float] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, value = (x.strip() for x in item.partition("="))
        name = name.replace("-", "_")
        if not sep or name not in rates:
            raise ValueError(f"--mix {item!r}: expected NAME=SHARE or NAME=FACTORx with NAME one of "
                             f"{', '.join(rates)}")
        try:
            if value.lower().endswith("x"):
                out[name] = round(rates[name] * float(value[:-1]), 12)
            else:
                out[name] = float(value)
        except ValueError:
            raise ValueError(f"--mix {item!r}: {value!r} is not a share (0.01) nor a factor (2x)") from None
    return out
