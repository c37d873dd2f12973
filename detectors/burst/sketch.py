"""Hashing for the count-min sketches of :mod:`detectors.burst.midas`.

The bucket of a key in one sketch row follows the MIDAS reference implementation
(Stream-AD/MIDAS, ``src/CountMinSketch.hpp``, ``Hash``)::

    bucket = ((a + 104729 * b) * p1 + p2) mod buckets        (C ``int``, 32-bit)

with ``a`` the source node and ``b`` the destination node for the edge sketch, ``b = 0`` for the
node sketches, ``p1`` drawn from ``[1, 2**31 - 1]`` and ``p2`` from ``[0, 2**31 - 1]`` per row.
The reference computes in 32-bit signed ``int`` and relies on the products wrapping around; that
wrap-around is what makes the rows of a sketch disagree about which keys collide (without it,
``buckets`` being prime, every row would put the same keys together). We reproduce the 32-bit
two's-complement wrap-around exactly, in Python integers for one edge and in ``int64`` numpy
arrays for many, so both give the same buckets. Node ids wider than 32 bits (such as
:func:`key_hash` values) are folded to their low 32 bits first, as a C cast to ``int`` would.

>>> p = make_hash_params(seed=0, rows=2)
>>> p.shape
(3, 2, 2)
>>> b = edge_buckets_one(7, 9, p[0], 2719)
>>> b == [int(x) for x in edge_buckets(np.array([7]), np.array([9]), p[0], 2719)[0]]
True
>>> key_hash("alice@example.com") == key_hash("alice@example.com")
True
>>> 0 <= key_hash("alice@example.com") < 2**63
True
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = [
    "EDGE_MULTIPLIER",
    "key_hash",
    "make_hash_params",
    "edge_buckets",
    "edge_buckets_one",
    "node_buckets",
    "node_buckets_one",
]

#: The prime that combines source and destination into one edge key (the reference's ``m``).
EDGE_MULTIPLIER = 104729

_LOW32 = 0xFFFFFFFF
_SIGN32 = 0x80000000
_P_MAX = 2**31 - 1  # glibc RAND_MAX, the range of the reference's rand()


def key_hash(text: str) -> int:
    """A stable 63-bit integer id for a string node id.

    blake2b with an 8-byte digest, read little-endian, top bit cleared so it fits ``int64``.
    Unlike the built-in ``hash``, it is the same in every process and on every machine.

    >>> key_hash("")
    3797230976420062948
    >>> key_hash("10.0.0.1") != key_hash("10.0.0.2")
    True
    """
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


def make_hash_params(seed: int, rows: int) -> np.ndarray:
    """Draw the hash parameters of the edge, source and destination sketches.

    Returns an ``int64`` array of shape ``(3, rows, 2)``: for sketch ``k`` (0 edge, 1 source,
    2 destination) and row ``r``, ``[p1, p2]`` with ``1 <= p1 <= 2**31 - 1`` and
    ``0 <= p2 <= 2**31 - 1``. The "current" and "total" sketch of a kind share their parameters,
    as in the reference (the total sketch is a copy of the current one).
    """
    rng = np.random.default_rng(seed)
    p1 = rng.integers(1, _P_MAX, size=(3, rows), endpoint=True, dtype=np.int64)
    p2 = rng.integers(0, _P_MAX, size=(3, rows), endpoint=True, dtype=np.int64)
    return np.stack([p1, p2], axis=-1)


def _wrap32(x: int) -> int:
    """Two's-complement wrap of a Python int to a signed 32-bit value."""
    return ((x & _LOW32) ^ _SIGN32) - _SIGN32


def _wrap32_array(x: np.ndarray) -> np.ndarray:
    return ((x & _LOW32) ^ _SIGN32) - _SIGN32


def edge_buckets_one(src: int, dst: int, params: np.ndarray, buckets: int) -> list[int]:
    """Buckets of one edge, one per row (``params`` of shape ``(rows, 2)``)."""
    key = _wrap32(_wrap32(src) + EDGE_MULTIPLIER * _wrap32(dst))
    return [_wrap32(key * int(p1) + int(p2)) % buckets for p1, p2 in params]


def node_buckets_one(node: int, params: np.ndarray, buckets: int) -> list[int]:
    """Buckets of one node, one per row (``params`` of shape ``(rows, 2)``)."""
    key = _wrap32(node)
    return [_wrap32(key * int(p1) + int(p2)) % buckets for p1, p2 in params]


def edge_buckets(src: np.ndarray, dst: np.ndarray, params: np.ndarray, buckets: int) -> np.ndarray:
    """Buckets of many edges: ``int64`` array of shape ``(n, rows)``.

    ``src`` and ``dst`` are integer arrays (values beyond ``int64`` are not accepted); the
    result equals :func:`edge_buckets_one` edge by edge.
    """
    key = _wrap32_array(_wrap32_array(src) + EDGE_MULTIPLIER * _wrap32_array(dst))
    return _rows(key, params, buckets)


def node_buckets(node: np.ndarray, params: np.ndarray, buckets: int) -> np.ndarray:
    """Buckets of many nodes: ``int64`` array of shape ``(n, rows)``."""
    return _rows(_wrap32_array(node), params, buckets)


def _rows(key: np.ndarray, params: np.ndarray, buckets: int) -> np.ndarray:
    # |key| < 2**31 and p1, p2 < 2**31, so key * p1 + p2 cannot overflow int64.
    out = np.empty((key.shape[0], params.shape[0]), dtype=np.int64)
    for r, (p1, p2) in enumerate(params):
        out[:, r] = _wrap32_array(key * p1 + p2) % buckets
    return out
