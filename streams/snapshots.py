"""Signed snapshots of the worker's online models.

Profiles live in the runtime's state and come back from its changelog; the River models of each
shard (``Engine.snapshot()``) live in worker memory, so the worker writes them to a file now and
then and on shutdown, and loads them at start. Both runtimes do that with :func:`load_models` and
:func:`save_models` (logged, and counted in ``atoguard_snapshots_total``).

File layout (all ASCII up to the payload)::

    ATOGUARD-SNAPSHOT 1\\n
    <hex HMAC-SHA256 of the payload, keyed with cfg.keys.snapshot_hmac>\\n
    <payload: pickle of {"format": 1, "shards": N, "policy_version": ..., "saved_at": ms,
                         "models": {shard: {detector: bytes}}}>

The signature is checked (constant-time) *before* anything is unpickled, so a file someone else
wrote is never executed; a file with a wrong signature, a foreign shard count or a broken
layout is refused with :class:`SnapshotRefused` and the worker starts with fresh models. Files are
written atomically (temporary file, fsync, rename).

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "models.snap")
>>> save_snapshot(path, {0: {"m": b"state"}}, key="k" * 16, shards=1)
>>> load_snapshot(path, key="k" * 16, shards=1)
{0: {'m': b'state'}}
>>> load_snapshot(path, key="another-key-000", shards=1)
Traceback (most recent call last):
...
streams.snapshots.SnapshotRefused: ... signature does not match ...
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import pickle
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from detectors.config import Config
    from detectors.engine import Engine
    from streams.metrics import WorkerMetrics

__all__ = ["MAGIC", "SnapshotRefused", "load_models", "load_snapshot", "save_models", "save_snapshot",
           "sign_payload"]

log = logging.getLogger("atoguard.worker")

MAGIC = b"ATOGUARD-SNAPSHOT 1\n"
FORMAT = 1

Models = dict[int, dict[str, bytes]]


class SnapshotRefused(Exception):
    """A snapshot file that must not be used (bad signature, wrong shape); the message says why."""


def sign_payload(payload: bytes, key: str) -> bytes:
    return hmac.new(key.encode("utf-8"), payload, hashlib.sha256).hexdigest().encode("ascii")


def save_snapshot(path: str | os.PathLike, models: Models, *, key: str, shards: int,
                  policy_version: str = "") -> None:
    """Write ``models`` to ``path`` signed with ``key``, atomically."""
    payload = pickle.dumps({"format": FORMAT, "shards": shards, "policy_version": policy_version,
                            "saved_at": int(time.time() * 1000), "models": models},
                           protocol=pickle.HIGHEST_PROTOCOL)
    data = MAGIC + sign_payload(payload, key) + b"\n" + payload
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def load_snapshot(path: str | os.PathLike, *, key: str, shards: int) -> Models | None:
    """The models in ``path``; None when there is no file; :class:`SnapshotRefused` when it must
    not be used. Nothing is unpickled before the signature has been verified."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    if not data.startswith(MAGIC):
        raise SnapshotRefused(f"snapshot {path}: not an atoguard snapshot (bad header)")
    rest = data[len(MAGIC):]
    signature, sep, payload = rest.partition(b"\n")
    if not sep or len(signature) != 64:
        raise SnapshotRefused(f"snapshot {path}: truncated or malformed signature line")
    if not hmac.compare_digest(signature, sign_payload(payload, key)):
        raise SnapshotRefused(f"snapshot {path}: signature does not match keys.snapshot_hmac "
                              "(written with another key, or altered); refusing to load it")
    try:
        body = pickle.loads(payload)  # signed by us: safe to unpickle
    except Exception as exc:  # pragma: no cover - a signed file we wrote ourselves
        raise SnapshotRefused(f"snapshot {path}: signed but unreadable: {exc}") from None
    if type(body) is not dict or body.get("format") != FORMAT:
        raise SnapshotRefused(f"snapshot {path}: unknown format {body.get('format') if type(body) is dict else '?'}")
    if body.get("shards") != shards:
        raise SnapshotRefused(f"snapshot {path}: made for {body.get('shards')} shards, the worker has {shards}")
    return body["models"]


# -- the worker's models ----------------------------------------------------------------------------

def load_models(engine: Engine, path: Path, cfg: Config, metrics: WorkerMetrics) -> str:
    """Restore ``engine``'s models from the signed snapshot at ``path``, if there is one.

    Returns the outcome, also counted in ``metrics.snapshots``: ``"loaded"``, ``"missing"`` (no
    file) or ``"refused"`` (a bad signature, a foreign shape or an unreadable file: the worker
    goes on with fresh models, and says so in the log).
    """
    try:
        models = load_snapshot(path, key=cfg.keys.snapshot_hmac, shards=cfg.shards)
    except SnapshotRefused as exc:
        log.error("REFUSED model snapshot: %s; starting with fresh models", exc)
        outcome = "refused"
    except OSError as exc:
        log.error("cannot read model snapshot %s: %s; starting with fresh models", path, exc)
        outcome = "refused"
    else:
        if models is None:
            log.info("no model snapshot at %s; starting with fresh models", path)
            outcome = "missing"
        else:
            engine.restore(models)
            log.warning("loaded model snapshot %s (%d shard(s))", path, len(models))
            outcome = "loaded"
    metrics.snapshots.inc(outcome=outcome)
    return outcome


def save_models(engine: Engine, path: Path, cfg: Config, metrics: WorkerMetrics) -> None:
    """Write ``engine``'s models to the signed snapshot at ``path`` (nothing when it has none)."""
    models = engine.snapshot()
    if not models:
        return
    save_snapshot(path, models, key=cfg.keys.snapshot_hmac, shards=cfg.shards, policy_version=cfg.policy.version)
    metrics.snapshots.inc(outcome="saved")
    log.info("saved model snapshot %s (%d shard(s))", path, len(models))
