"""Challenges (contract v2 and v3): which methods to ask for, and what an answer means.

A step-up stops a thief only with a method the thief cannot pass, and shuts out a holder only
with a method the holder has lost. The engine does not know which methods an account has
enrolled (the account service offers the first listed one that is), so it orders the methods by
what the evidence says about the person acting:

* **Compromised methods are never listed.** A code to a phone number that just moved to a new
  SIM or changed (``sim_change``, ``phone_change``) may ring on the thief's phone; a code to an
  e-mail address that just changed goes to the thief's mailbox; an authenticator app or push
  device enrolled by an MFA change may be the thief's; a push after pushes were *denied* is push
  bombing; a method that just failed proves nothing when asked again.
* **Who can pass what.** Nobody remote holds ``passkey`` or ``app_push`` (bound to the holder's
  already trusted device) or ``face`` (a live match against the identity on file): these stop
  every remote thief (push only until pushes are denied: push bombing). A real-time phishing
  relay forwards whatever the victim types, so it passes every one-time code and the payment
  password; a thief with a stolen password, a session token or a SIM holds none of them but the
  SIM's SMS. So a first challenge lists the remote-proof methods first and then the others by how
  few thieves hold them: payment password, authenticator, e-mail, SMS. An account that enrolled
  no remote-proof method is offered the payment password, which stops all but a * **Any listed method will do** (contract v3): the person may use any listed method they
  enrolled and try another after a failure, so a list is only as strong as its weakest method.
  Where a thief may be in view - a device not yet trusted, evidence of someone elsewhere, a
  second risky moment after a weak pass (what a relay looks like after passing the codes) -
  only remote-proof methods are listed (``face`` first and no push for a new device: the
  holder's new phone, the old one perhaps lost), then ``id_check``, the identity re-check every
  holder can complete, slowly. On the holder's trusted device with nothing pointing elsewhere,
  every method not compromised is listed. A freeze's way back always ends with ``id_check``.

ain).

An answer feeds back (:func:`is_strong`): a **strong pass** (``face``, ``passkey``, or any pass on
a device with ``strong`` attestation bound to the account for 30 days or more) makes the device and
the session known-good; a **weak pass** (a code, a push, the payment password) only answers the
question of the device's novelty for a day, because real-time phishing and push fatigue pass
them; a **failure** or a challenge left unanswered is evidence (:func:`failure_finding`).
"""

from __future__ import annotations

from detectors import contract as c
from detectors import signals
from detectors.base import Finding
from detectors.profile import DAY_MS, Challenge, Profile

__all__ = [
    "DEVICE_BOUND", "REMOTE_PROOF", "STRENGTH", "STRONG_METHODS", "compromised", "failure_finding", "failure_of",
    "ID_CHECK", "is_strong", "methods_for", "strongly_verified", "trusted_pass", "way_back", "weak_passes",
]

#: every method, strongest first
STRENGTH = ("passkey", "face", "app_push", "totp", "payment_password", "email_otp", "sms_otp")
#: passes that prove the person is the holder: bound to the holder's device, their face, or their
#: identity re-checked
STRONG_METHODS = frozenset({"face", "passkey", "id_check"})  # id_check: a document and a live selfie
#: methods a remote thief cannot hold (a push only until pushes are denied: push bombing)
REMOTE_PROOF = ("passkey", "face", "app_push")
#: methods that live on the holder's already trusted device
DEVICE_BOUND = frozenset({"passkey", "app_push"})

#: a first challenge: remote-proof first, then by how few thieves hold each
FIRST_ORDER = ("passkey", "face", "app_push", "payment_password", "totp", "email_otp", "sms_otp")
#: a first challenge of a device not yet trusted: what a holder on a new phone still has first
#: (v3: any listed method will do, so no code a relay forwards and no push a thief can bomb)
NEW_DEVICE_ORDER = ("face", "passkey")
#: the identity re-check every holder can complete, slowly (contract v3)
ID_CHECK = c.ID_CHECK

#: credential change -> the method whose channel it hands to whoever made it
TAKES_OVER = {
    "sim_change": ("sms_otp",),
    "phone_change": ("sms_otp",),
    "email_change": ("email_otp",),
    "mfa_change": ("totp", "app_push"),
}
#: a device bound this long, with strong attestation, makes any pass on it strong
ATTESTED_BOUND_MS = 30 * DAY_MS
#: failures this recent weigh on the account
FAILURE_MS = DAY_MS
#: score of a failed challenge as evidence, by reason: a wrong code or a face that does not match
#: is someone trying; a refused push is the holder refusing someone else's sign-in; an unanswered
#: or abandoned one may be the holder busy; not enrolled says nothing about the person
FAILURE_SCORE = {"wrong_code": 0.6, "mismatch": 0.7, "denied": 0.7, "timeout": 0.4, "abandoned": 0.4,
                 "not_enrolled": 0.2}


def compromised(profile: Profile, ts: int, cred_ms: int) -> set[str]:
    """The methods the account's recent evidence says someone else may hold."""
    out: set[str] = set()
    for kind, change in profile.creds.items():
        if kind in TAKES_OVER and 0 <= ts - change.ts <= cred_ms:
            out.update(TAKES_OVER[kind])
    if profile.signals:  # partners' signals (contract v3): a mailbox or a number in other hands
        out |= signals.removed_methods(profile, ts, cred_ms)
    for f in profile.failures:
        if 0 <= ts - f.ts <= FAILURE_MS:
            if f.reason == "denied":
                out.add("app_push")  # push bombing: the holder refused a push they did not ask for
            if f.method and f.reason != "not_enrolled":
                out.add(f.method)  # never ask again with the method that just failed
    return out


def methods_for(profile: Profile, ts: int, *, device_trusted: bool, weak_passed: frozenset[str],
                cred_ms: int, remote: bool = False) -> list[str]:
    """The methods of a step-up, strongest first (contract v3: any listed method will do, so
    only those the thief in view cannot pass are listed; see the module docstring).

    * A weak pass on this device or session, a device not yet trusted, or evidence of someone
      elsewhere (``remote``): the thief in view may relay codes (a phishing kit forwards them
      all) or bomb pushes, so only the remote-proof methods are listed - ``face`` first and no
      push for a new device - then ``id_check``: nothing quicker is safe for a holder who has
      none of them enrolled, or lost them with the old phone.
    * Otherwise (the holder's trusted device, nothing pointing elsewhere): the thief in view at
      most holds a session token, so every method not compromised is listed, by how few thieves
      hold each; ``id_check`` only when nothing is left.

    >>> p = Profile()
    >>> methods_for(p, 0, device_trusted=True, weak_passed=frozenset(), cred_ms=1)
    ['passkey', 'face', 'app_push', 'payment_password', 'totp', 'email_otp', 'sms_otp']
    >>> methods_for(p, 0, device_trusted=False, weak_passed=frozenset(), cred_ms=1)
    ['face', 'passkey', 'id_check']
    >>> methods_for(p, 0, device_trusted=True, weak_passed=frozenset(), cred_ms=1, remote=True)
    ['passkey', 'face', 'app_push', 'id_check']
    >>> methods_for(p, 0, device_trusted=False, weak_passed=frozenset({"sms_otp"}), cred_ms=1)
    ['passkey', 'face', 'app_push', 'id_check']
    """
    bad = compromised(profile, ts, cred_ms) | weak_passed
    if weak_passed or (remote and device_trusted):
        order = REMOTE_PROOF
    elif not device_trusted:
        order = NEW_DEVICE_ORDER
    else:
        order = FIRST_ORDER
    out = [m for m in order if m not in bad]
    if order is not FIRST_ORDER or not out:
        out.append(ID_CHECK)
    return out


def way_back(profile: Profile, ts: int, *, remote_thief: bool, cred_ms: int) -> list[str]:
    """The methods with which a frozen holder can lift the freeze themselves: never one that just
    failed or whose channel the evidence says the thief holds; with a remote thief in view, only
    the methods a remote thief cannot hold; always ending with ``id_check`` (contract v3: no
    holder is left without a way back).

    >>> way_back(Profile(), 0, remote_thief=True, cred_ms=1)
    ['passkey', 'face', 'app_push', 'id_check']
    """
    bad = compromised(profile, ts, cred_ms)
    order = REMOTE_PROOF if remote_thief else STRENGTH
    return [m for m in order if m not in bad] + [ID_CHECK]


def trusted_pass(profile: Profile, challenge: Challenge, method: str | None) -> bool:
    """Whether a pass with ``method`` closes ``challenge`` (contract v3: "its first pass that
    atoguard trusts"): a listed method whose channel no credential change since the challenge
    was issued hands to someone else."""
    if method is None or method not in challenge.methods:
        return False
    return not any(method in TAKES_OVER.get(kind, ()) for kind, change in profile.creds.items()
                   if change.ts > challenge.issued_at)


def is_strong(profile: Profile, method: str, device: str | None, attestation: str | None, ts: int) -> bool:
    """Whether a pass proves the holder: ``face`` or ``passkey``, or any method passed on a device
    with ``strong`` attestation that the account has had, trusted, for 30 days or more."""
    if method in STRONG_METHODS:
        return True
    if attestation != "strong" or device is None:
        return False
    d = profile.devices.get(device)
    return d is not None and d.trust == 1 and ts - d.first >= ATTESTED_BOUND_MS


def failure_of(reason: str) -> Finding:
    """A failed or unanswered challenge as evidence of family ``challenge``.

    >>> failure_of("denied")
    Finding(detector='challenge', score=0.7, reasons=('CHALLENGE_FAILED',), family='challenge')
    """
    code = "CHALLENGE_UNANSWERED" if reason in ("timeout", "abandoned") else "CHALLENGE_FAILED"
    return Finding("challenge", FAILURE_SCORE.get(reason, 0.4), (code,), "challenge")


def failure_finding(profile: Profile, ts: int, device: str | None, session: str | None,
                    ip: str | None) -> Finding | None:
    """A recent failed or unanswered challenge of the same device, session or address, as
    evidence of family ``challenge`` (the strongest of them), or None."""
    found = [failure_of(f.reason) for f in profile.failures if 0 <= ts - f.ts <= FAILURE_MS and (
        (device and f.device == device) or (session and f.session == session) or (ip and f.ip == ip))]
    return max(found, key=lambda f: f.score, default=None)


def weak_passes(profile: Profile, ts: int, device: str | None, session: str | None) -> frozenset[str]:
    """Methods passed weakly within the last day on this device or session."""
    out = set()
    for key in (device and "device:" + device, session and "session:" + session):
        p = profile.passes.get(key) if key else None
        if p is not None and not p.strong and 0 <= ts - p.ts <= DAY_MS:
            out.add(p.method)
    return frozenset(out)


def strongly_verified(profile: Profile, ts: int, device: str | None, session: str | None) -> int | None:
    """When this device or session last passed a strong challenge (None: never)."""
    when = None
    for key in (device and "device:" + device, session and "session:" + session):
        p = profile.passes.get(key) if key else None
        if p is not None and p.strong and p.ts <= ts and (when is None or p.ts > when):
            when = p.ts
    return when

