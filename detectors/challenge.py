"""Challenges (contract v2): which methods to ask for, and what an answer means.

A step-up stops a thief only with a method the thief cannot pass, and shuts out a holder only
with a method the holder has lost. The engine does not know which methods an account has
enrolled (the account service offers the first listed one that is), so it orders the methods by
what the evidence says about the person acting:

* **Compromised methods are never listed.** A code to a phone number that just moved to a new
  SIM or changed (``sim_change``, ``phone_change``) may ring on the thief's phone; a code to an
  e-mail address that just changed goes to the thief's mailbox; an authenticator app or push
  device enrolled by an MFA change may be the thief's; a push after pushes were *denied* is push
  bombing; a method that just failed proves nothing when asked again.
* **When a remote thief is likely** - evidence beyond the device's own novelty (an anonymising
  or suspect network, an impossible trip, a credential changed from an untrusted origin, the
  crowd), a failed challenge, or a second risky moment after a weak pass - only the methods a
  remote thief cannot hold are listed: ``passkey`` and ``app_push`` (bound to the holder's
  already trusted device) and ``face`` (a live match against the identity on file). A real-time
  phishing relay passes every one-time code and the payment password, so those prove nothing
  here.
* **Otherwise** the question is only "is this new device yours?", which a holder on a new phone
  must be able to answer: ``face`` first (it works on any phone), then what the holder knows or
  receives (payment password, e-mail and SMS codes), and the methods that live on the old device
  last (a holder who lost their phone cannot approve a push on it).
* On an already trusted device the strongest first: passkey, face, push, authenticator, payment
  password, e-mail, SMS.

An answer feeds back (:func:`is_strong`): a **strong pass** (``face``, ``passkey``, or any pass on
a device with ``strong`` attestation bound to the account for 30 days or more) makes the device and
the session known-good; a **weak pass** (a code, a push, the payment password) only answers the
question of the device's novelty for a day, because real-time phishing and push fatigue pass
them; a **failure** or a challenge left unanswered is evidence (:func:`failure_finding`).
"""

from __future__ import annotations

from detectors.base import Finding
from detectors.profile import DAY_MS, Profile

__all__ = [
    "DEVICE_BOUND", "REMOTE_PROOF", "STRENGTH", "STRONG_METHODS", "compromised", "failure_finding",
    "is_strong", "methods_for", "strongly_verified", "way_back", "weak_passes",
]

#: every method, strongest first
STRENGTH = ("passkey", "face", "app_push", "totp", "payment_password", "email_otp", "sms_otp")
#: passes that prove the person is the holder: bound to the holder's device, or their face
STRONG_METHODS = frozenset({"face", "passkey"})
#: methods a remote thief cannot hold (a push only until pushes are denied: push bombing)
REMOTE_PROOF = ("passkey", "face", "app_push")
#: methods that live on the holder's already trusted device
DEVICE_BOUND = frozenset({"passkey", "app_push"})
#: what a holder on a new phone still has, most convincing first
NEW_DEVICE_ORDER = ("face", "payment_password", "email_otp", "sms_otp", "totp", "passkey", "app_push")

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
    for f in profile.failures:
        if 0 <= ts - f.ts <= FAILURE_MS:
            if f.reason == "denied":
                out.add("app_push")  # push bombing: the holder refused a push they did not ask for
            if f.method and f.reason != "not_enrolled":
                out.add(f.method)  # never ask again with the method that just failed
    return out


def methods_for(profile: Profile, ts: int, *, device_trusted: bool, remote_thief: bool,
                weak_passed: frozenset[str], cred_ms: int) -> list[str]:
    """The methods of a challenge, strongest first (see the module docstring).

    >>> p = Profile()
    >>> methods_for(p, 0, device_trusted=False, remote_thief=True, weak_passed=frozenset(), cred_ms=1)
    ['passkey', 'face', 'app_push']
    >>> methods_for(p, 0, device_trusted=False, remote_thief=False, weak_passed=frozenset(), cred_ms=1)
    ['face', 'payment_password', 'email_otp', 'sms_otp', 'totp', 'passkey', 'app_push']
    """
    bad = compromised(profile, ts, cred_ms) | weak_passed
    if remote_thief:
        order = REMOTE_PROOF
    elif device_trusted:
        order = STRENGTH
    else:
        order = NEW_DEVICE_ORDER
    return [m for m in order if m not in bad]


def way_back(profile: Profile, ts: int, *, remote_thief: bool, cred_ms: int) -> list[str]:
    """The methods with which a frozen holder can lift the freeze themselves: never one that just
    failed or whose channel the evidence says the thief holds; with a remote thief in view, only
    the methods a remote thief cannot hold."""
    bad = compromised(profile, ts, cred_ms)
    order = REMOTE_PROOF if remote_thief else STRENGTH
    return [m for m in order if m not in bad]


def is_strong(profile: Profile, method: str, device: str | None, attestation: str | None, ts: int) -> bool:
    """Whether a pass proves the holder: ``face`` or ``passkey``, or any method passed on a device
    with ``strong`` attestation that the account has had, trusted, for 30 days or more."""
    if method in STRONG_METHODS:
        return True
    if attestation != "strong" or device is None:
        return False
    d = profile.devices.get(device)
    return d is not None and d.trust == 1 and ts - d.first >= ATTESTED_BOUND_MS


def failure_finding(profile: Profile, ts: int, device: str | None, session: str | None,
                    ip: str | None) -> Finding | None:
    """A recent failed or unanswered challenge of the same device, session or address, as
    evidence of family ``challenge`` (the strongest of them), or None."""
    best = None
    for f in profile.failures:
        if not 0 <= ts - f.ts <= FAILURE_MS:
            continue
        if (device and f.device == device) or (session and f.session == session) or (ip and f.ip == ip):
            score = FAILURE_SCORE.get(f.reason, 0.4)
            if best is None or score > best[0]:
                best = (score, "CHALLENGE_UNANSWERED" if f.reason in ("timeout", "abandoned") else "CHALLENGE_FAILED")
    if best is None:
        return None
    return Finding("challenge", best[0], (best[1],), "challenge")


def weak_passes(profile: Profile, ts: int, device: str | None, session: str | None) -> frozenset[str]:
    """Methods passed weakly within the last day on this device or session."""
    out = set()
    for key in (device and "device:" + device, session and "session:" + session):
        p = profile.passes.get(key) if key else None
        if p is not None and not p.strong and 0 <= ts - p.ts <= DAY_MS:
            out.add(p.method)
    return frozenset(out)


def strongly_verified(profile: Profile, ts: int, device: str | None, session: str | None,
                      since: int = 0) -> bool:
    """Whether this device or session passed a strong challenge (after ``since``)."""
    for key in (device and "device:" + device, session and "session:" + session):
        p = profile.passes.get(key) if key else None
        if p is not None and p.strong and since <= p.ts <= ts:
            return True
    return False

