"""Subject identifiers (RFC 9493) and the subject directory that maps them to accounts.

A partner never sees an account id and atoguard never trusts a partner's idea of one: both
sides speak in subjects (an e-mail address, a phone number, the partner's own ``iss``/``sub``,
an opaque pseudonym), and the deployment's **subject directory** says which subject is which
account, and which partner may hear of it.

A directory entry is one JSON object::

    {"account_id": "acct-42", "subject": {"format": "email", "email": "ana@example.com"},
     "partners": ["mailco"]}

``partners`` (optional) names the partners (the receiver's ``[[receiver.transmitters]]`` /
the transmitter's ``[[transmitter.receivers]]`` names) with whom this subject may be used, both ways: absent,
every partner. A per-partner pseudonym (``opaque``) is listed for its one partner.

Two sources, same entries:

- a **file** (JSON Lines, one entry a line), for a single node: ``--directory FILE``;
- a **compacted topic** of the deployment's (``--directory-topic NAME``): key the canonical
  subject key (:func:`subject_key`, UTF-8), value the entry, a null value (tombstone) removes
  it. Every node reads it from the beginning at start and follows it.

>>> subject_key({"format": "email", "email": "Ana@Example.COM"})
'email:ana@example.com'
>>> d = Directory([{"account_id": "a1", "subject": {"format": "phone_number", "phone_number": "+15551234567"}}])
>>> d.account_of({"format": "phone_number", "phone_number": "+15551234567"}, "carrier")
('a1', 'phone_number')
>>> d.subjects_of("a1", "carrier")
[{'format': 'phone_number', 'phone_number': '+15551234567'}]
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from detectors import contract as c

__all__ = ["Directory", "SubjectError", "load_directory_file", "subject_key", "user_subject", "TopicDirectory"]

log = logging.getLogger("atoguard.ssf")

#: RFC 9493 formats and the members that identify the subject in each.
MEMBERS: dict[str, tuple[str, ...]] = {
    "email": ("email",),
    "phone_number": ("phone_number",),
    "iss_sub": ("iss", "sub"),
    "opaque": ("id",),
    "account": ("uri",),
    "did": ("url",),
    "uri": ("uri",),
}
assert set(MEMBERS) == set(c.SUBJECT_FORMATS)


class SubjectError(ValueError):
    """A subject identifier that is not one of RFC 9493's formats, or lacks a member."""


def subject_key(subject: Any) -> str:
    """The canonical key of a simple subject identifier: ``format:value``.

    E-mail addresses are compared without case (RFC 9493 leaves the local part's case to the
    provider; every provider we know ignores it). ``iss_sub`` keys on both members.
    """
    if not isinstance(subject, dict):
        raise SubjectError("a subject identifier is a JSON object")
    fmt = subject.get("format")
    members = MEMBERS.get(fmt) if isinstance(fmt, str) else None
    if members is None:
        raise SubjectError(f"subject format {fmt!r} is not one of {sorted(MEMBERS)}")
    values = []
    for member in members:
        value = subject.get(member)
        if not isinstance(value, str) or not value or len(value) > 1024:
            raise SubjectError(f"subject format {fmt} needs a non-empty string {member!r}")
        values.append(value)
    if fmt == "email":
        values = [values[0].strip().lower()]
    return f"{fmt}:" + " ".join(values)


def user_subject(sub_id: Any) -> list[dict]:
    """The simple subjects a SET's ``sub_id`` names about a person, in order of preference:
    the identifier itself, the ``user`` of a ``complex`` subject, or each of ``aliases``."""
    if not isinstance(sub_id, dict):
        raise SubjectError("sub_id is a JSON object")
    fmt = sub_id.get("format")
    if fmt == "complex":
        user = sub_id.get("user")
        if user is None:
            raise SubjectError("a complex subject without a user member names no person")
        return user_subject(user)
    if fmt == "aliases":
        identifiers = sub_id.get("identifiers")
        if not isinstance(identifiers, list) or not identifiers:
            raise SubjectError("an aliases subject needs a non-empty identifiers list")
        return [s for i in identifiers for s in user_subject(i)]
    subject_key(sub_id)  # raises for a bad one
    return [sub_id]


class Directory:
    """Subjects to accounts and back; thread-safe (a topic follower updates it live)."""

    def __init__(self, entries: Iterable[dict] = ()) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[str, dict] = {}
        self._by_account: dict[str, dict[str, dict]] = {}
        for entry in entries:
            self.put(entry)

    def __len__(self) -> int:
        return len(self._by_key)

    def put(self, entry: dict) -> None:
        """Add or replace the entry of ``entry['subject']``; :class:`SubjectError` if malformed."""
        account = entry.get("account_id") if isinstance(entry, dict) else None
        if not isinstance(account, str) or not account or len(account) > c.ID_MAX:
            raise SubjectError("a directory entry needs an account_id (1-128 characters)")
        key = subject_key(entry.get("subject"))
        partners = entry.get("partners")
        if partners is not None and not (isinstance(partners, list) and all(isinstance(p, str) for p in partners)):
            raise SubjectError("partners is a list of partner names")
        clean = {"account_id": account, "subject": dict(entry["subject"]),
                 "partners": None if partners is None else frozenset(partners)}
        with self._lock:
            self._drop(key)
            self._by_key[key] = clean
            self._by_account.setdefault(account, {})[key] = clean

    def remove(self, key: str) -> None:
        """Forget the subject of canonical key ``key`` (a tombstone on the topic)."""
        with self._lock:
            self._drop(key)

    def _drop(self, key: str) -> None:
        old = self._by_key.pop(key, None)
        if old is not None:
            subjects = self._by_account.get(old["account_id"], {})
            subjects.pop(key, None)
            if not subjects:
                self._by_account.pop(old["account_id"], None)

    def account_of(self, subject: dict, partner: str) -> tuple[str, str] | None:
        """``(account_id, format)`` of a simple subject heard from ``partner``, or ``None``."""
        try:
            key = subject_key(subject)
        except SubjectError:
            return None
        entry = self._by_key.get(key)
        if entry is None or (entry["partners"] is not None and partner not in entry["partners"]):
            return None
        return entry["account_id"], subject["format"]

    def subjects_of(self, account_id: str, partner: str) -> list[dict]:
        """The subjects of ``account_id`` that ``partner`` may hear about (never the id)."""
        entries = list(self._by_account.get(account_id, {}).values())
        return [dict(e["subject"]) for e in entries if e["partners"] is None or partner in e["partners"]]

    def keys_of(self, account_id: str, partner: str) -> dict[str, dict]:
        """:meth:`subjects_of` keyed by canonical subject key."""
        return {subject_key(s): s for s in self.subjects_of(account_id, partner)}


def load_directory_file(path: str | Path) -> Directory:
    """A directory from a JSON Lines file; a bad line is an error naming the line."""
    directory = Directory()
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                directory.put(json.loads(line))
            except (ValueError, SubjectError) as exc:
                raise SubjectError(f"{path}:{number}: {exc}") from None
    return directory


class TopicDirectory(Directory):
    """A :class:`Directory` read from a compacted topic and followed by a thread.

    :meth:`start` returns once the topic has been read up to the end offsets it had at start,
    so the first request already sees every subject written before the node came up.
    """

    def __init__(self, settings, topic: str) -> None:
        super().__init__()
        self.settings, self.topic = settings, topic
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, timeout_s: float = 30.0) -> "TopicDirectory":
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(**self.settings.client_options(10.0), enable_auto_commit=False,
                                 group_id=None, client_id="atoguard-ssf-directory")
        partitions = consumer.partitions_for_topic(self.topic)
        if not partitions:
            consumer.close()
            raise SubjectError(f"directory topic {self.topic!r} does not exist on {self.settings.bootstrap_servers}")
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        self._consume(consumer, until=ends, timeout_s=timeout_s)
        self._thread = threading.Thread(target=self._follow, args=(consumer,), daemon=True,
                                        name="ssf-directory")
        self._thread.start()
        return self

    def _apply(self, record) -> None:
        try:
            key = record.key.decode("utf-8") if record.key is not None else None
            if record.value is None:
                if key:
                    self.remove(key)
                return
            self.put(json.loads(record.value))
        except (ValueError, SubjectError, UnicodeDecodeError) as exc:
            log.warning("directory topic %s offset %s: %s", self.topic, record.offset, exc)

    def _consume(self, consumer, until, timeout_s: float) -> None:
        import time

        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end for tp, end in until.items()):
            if time.monotonic() > deadline:
                raise SubjectError(f"directory topic {self.topic!r} not read to its end in {timeout_s:.0f} s")
            for records in consumer.poll(timeout_ms=200).values():
                for record in records:
                    self._apply(record)

    def _follow(self, consumer) -> None:
        try:
            while not self._stop.is_set():
                for records in consumer.poll(timeout_ms=500).values():
                    for record in records:
                        self._apply(record)
        except Exception:  # noqa: BLE001 - a follower that dies must say so, the node keeps serving
            log.exception("directory topic %s: follower stopped", self.topic)
        finally:
            consumer.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
