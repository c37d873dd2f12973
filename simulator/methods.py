"""Who can pass which challenge: the v2 label fields, derived from how each situation works.

The contract's labels (v2) say, per ``ato`` incident, which challenge methods its attacker passes
(``attacker_passes``), per ``legit`` incident which methods the holder can still pass
(``holder_passes``; written only where the situation narrows them, missing = all), and per
account which methods are enrolled (``{"label": "enrolled", "methods": [...]}``).

Everything is derived from the *mechanism* of the simulated situation (what the attacker holds,
what the holder has lost), never from what a detector sees:

* :data:`ATTACKER_KIT` - what each attack's attacker holds from the start, one row a scenario;
* :data:`TAKEN_OVER_BY` - what an attacker gains by the credential events they make themselves
  (a contact point moved to them);
* :func:`holder_passes` - the rules of the benign situations, from the incident's parameters
  (recorded by ``simulator.benign`` as the situation is played).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from detectors.contract import METHODS

__all__ = ["ATTACKER_KIT", "HOLDER_DRIVEN", "METHODS", "PHISHING_KITS", "TAKEN_OVER_BY", "attacker_passes",
           "draw_enrolment", "holder_passes", "ordered"]

_CODES = frozenset({"sms_otp", "email_otp", "totp"})

#: The two kinds of phishing kit (``params["kit"]`` of a ``phishing_takeover``).
PHISHING_KITS = ("relay", "push_fatigue")

#: scenario (or scenario/kit) -> the methods its attacker passes from the start.
ATTACKER_KIT: dict[str, frozenset[str]] = {
    # a botnet's list holds the password only: no phone, no mailbox, no device of the holder
    "credential_stuffing": frozenset(),
    # tried and never got in: holds at most a password that did not work
    "credential_stuffing_attempt": frozenset(),
    # a real-time phishing relay (adversary in the middle) forwards whatever the victim types
    # into the fake page at once: the one-time codes and the payment password, never a face or
    # a passkey (bound to the holder's device and origin) nor a push (approved on the holder's
    # phone, which shows the real request)
    "phishing_takeover/relay": _CODES | {"payment_password"},
    # a phished password plus push bombing until the tired holder taps "approve": the push only
    "phishing_takeover/push_fatigue": frozenset({"app_push"}),
    # the number now rings on the thief's SIM: every SMS code; the password reset was done with
    # it, so the mailbox is the thief's only if the attack also changed the email (see below)
    "sim_swap_payout": frozenset({"sms_otp"}),
    # a replayed session token: no password, no code, no device; a fresh challenge stops it
    "session_hijack": frozenset(),
    # stolen credentials used from far away: the password only
    "impossible_travel": frozenset(),
    # a quiet new device with stolen credentials (infostealer, reused password): password only
    "slow_takeover": frozenset(),
    # an infostealer's password and a device the thief bound himself: a push to the account's
    # trusted devices reaches his too; with the holder's documents ("fullz") also the identity
    # re-check (a document plus a selfie the kit fakes), never face or passkey
    "warmed_device/password": frozenset({"app_push"}),
    "warmed_device/documents": frozenset({"app_push", "id_check"}),
    # a ring working through a list of stolen passwords, all paying one mule: password only
    "mule_ring": frozenset(),
    # the holder's own phone, driven by a caller through a screen-sharing app: the holder is
    # there and coached, so every method the holder has passes except the slow identity
    # re-check, which takes hours and is done out of the call
    "remote_access_scam": frozenset({"sms_otp", "email_otp", "app_push", "totp", "payment_password",
                                     "face", "passkey"}),
}

#: Attacks whose "attacker" is the holder acting under someone else's direction: face and
#: passkey are theirs (every other attack is remote and never passes them).
HOLDER_DRIVEN: frozenset[str] = frozenset({"remote_access_scam"})

#: device kind made by the attacker -> the method it hands them (the contact point is theirs).
TAKEN_OVER_BY: dict[str, str] = {
    "sim_change": "sms_otp",  # the holder's number moved to the attacker's SIM
    "phone_change": "sms_otp",  # the account's number is now the attacker's
    "email_change": "email_otp",  # the account's mailbox is now the attacker's
    "mfa_change": "totp",  # the attacker enrolled their own authenticator
}


def ordered(methods: Iterable[str]) -> list[str]:
    """Methods in the contract's order (so label files are stable).

    >>> ordered({"face", "sms_otp"})
    ['sms_otp', 'face']
    """
    s = set(methods)
    return [m for m in METHODS if m in s] + (["id_check"] if "id_check" in s else [])


def attacker_passes(scenario: str, params: Mapping, kinds: Iterable[str]) -> list[str]:
    """The methods the attacker of one incident passes.

    ``kinds`` are the kinds of the incident's own events (the attacker's, and the carrier's
    ``sim_change`` of a SIM swap). A contact point the attacker moved to themselves counts for
    the whole incident: the label has no time, so a challenge made before the change is scored
    as if the attacker could pass it (the conservative side for "stopped before loss").

    >>> attacker_passes("sim_swap_payout", {}, ["sim_change", "password_reset", "email_change"])
    ['sms_otp', 'email_otp']
    >>> attacker_passes("phishing_takeover", {"kit": "relay"}, ["login_success"])
    ['sms_otp', 'email_otp', 'totp', 'payment_password']
    >>> attacker_passes("session_hijack", {}, ["transfer_out"])
    []
    """
    key = f"{scenario}/{params['kit']}" if "kit" in params else scenario
    held = set(ATTACKER_KIT[key])
    held.update(TAKEN_OVER_BY[k] for k in kinds if k in TAKEN_OVER_BY)
    return ordered(held)


# -- the holder ------------------------------------------------------------------------------

#: Share of trips on a local SIM / single-SIM phone where SMS to the home number does not arrive.
LOCAL_SIM_NO_SMS = 0.6
#: Share of trips on roaming where the home carrier has no roaming service there.
ROAMING_NO_SERVICE = 0.1


def holder_passes(scenario: str, params: Mapping) -> list[str] | None:
    """The methods the holder can pass during a benign situation; None = all (not narrowed).

    * ``travel``: SMS to the home number does not arrive when ``params["sms_lost"]`` (a local
      SIM in a single-SIM phone, or roaming without service); everything else travels along.
    * ``new_phone``: the old phone is gone (``old_phone_kept`` false): no ``app_push`` and no
      ``passkey`` (both live on the old device); the authenticator app went with it too unless
      MFA was re-enrolled on the new phone (``mfa_reenrolled``). SMS works: the number is on the
      SIM in the new phone (a ``sim_change`` in the situation is that move). Face matching works
      on any phone.
    * ``shared_tablet``: for the person using someone else's tablet (``role`` sharer) the tablet
      is not their device: no ``passkey`` nor ``app_push`` on it. The owner passes everything.
    * ``trip_new_phone``: the travel rule and the new-phone rule together (the new phone abroad
      has the same SIM, so SMS reaches it as it reached the old one, or not).
    * ``lost_phone_recovery``: the new-phone rule; SMS is lost too until the carrier's
      replacement SIM (``sms_lost`` when the holder never got one within the situation).
    * ``repay_new_phone``: the new-phone rule.
    * ``household_device``: the sharer rule (the housemate's device is not the holder's).
    * ``password_reset``, ``repay_redraw``, ``corporate_nat``: nothing is lost.

    >>> holder_passes("new_phone", {"old_phone_kept": False, "mfa_reenrolled": False})
    ['sms_otp', 'email_otp', 'payment_password', 'face']
    >>> holder_passes("travel", {"sms_lost": False}) is None
    True
    """
    lost: set[str] = set()
    if params.get("sms_lost"):  # travel, trip_new_phone, lost_phone_recovery before the new SIM
        lost.add("sms_otp")
    if "old_phone_kept" in params:  # new_phone and every situation that moves to a new phone
        if not params["old_phone_kept"]:
            lost |= {"app_push", "passkey"}
            if not params.get("mfa_reenrolled", False):
                lost.add("totp")
    if params.get("role") == "sharer":  # someone else's device (shared_tablet, household_device)
        lost |= {"app_push", "passkey"}
    if not lost:
        return None
    return [m for m in METHODS if m not in lost]


# -- enrolment -------------------------------------------------------------------------------

def draw_enrolment(n: int, shares: Mapping[str, float], seed: int) -> list[list[str]]:
    """The enrolled methods of accounts ``0..n-1``: method ``m`` independently with probability
    ``shares[m]``; seeded, so the same ``(n, shares, seed)`` gives the same lists."""
    rng = np.random.default_rng([seed, 0xE201])
    out: list[list[str]] = [[] for _ in range(n)]
    for m in METHODS:  # one column per method, in a fixed order
        hit = (rng.random(n) < shares.get(m, 0.0)).tolist()
        for i in range(n):
            if hit[i]:
                out[i].append(m)
    return out
