"""Kafka's default partitioner (murmur2 of the key), so the engine can shard its models exactly
like the input topics are partitioned.

>>> shard_of("a1", 6) == shard_of("a1", 6)
True
"""

from __future__ import annotations

from functools import lru_cache

__all__ = ["murmur2", "shard_of"]


def murmur2(data: bytes) -> int:
    """The 32-bit murmur2 hash as Kafka's Java client computes it (seed 0x9747b28c)."""
    length = len(data)
    seed, m, r = 0x9747B28C, 0x5BD1E995, 24
    h = (seed ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    tail = length % 4
    base = length - tail
    if tail == 3:
        h ^= data[base + 2] << 16
    if tail >= 2:
        h ^= data[base + 1] << 8
    if tail >= 1:
        h ^= data[base]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


@lru_cache(maxsize=262_144)
def shard_of(account_id: str, shards: int) -> int:
    """The partition Kafka's default partitioner gives the key ``account_id`` among ``shards``."""
    return (murmur2(account_id.encode("utf-8")) & 0x7FFFFFFF) % shards
