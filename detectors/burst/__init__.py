"""Burst detectors: score each edge of a stream of (source, destination, tick) events.

Contract
--------
* A detector learns and scores in one call: ``score_one(src, dst, tick) -> float`` inserts the
  edge, then returns its score (higher is more anomalous; 0.0 while there is no history).
* ``score_many(src, dst, tick) -> numpy.ndarray`` does the same for arrays of edges in order and
  returns exactly (bit for bit) what ``score_one`` would, edge by edge.
* Node ids are integers; :func:`key_hash` turns a string id into a stable one. Ticks are
  integers from 1, never decreasing; a tick going backwards raises :class:`ValueError`.
* State is built on the first edge and saved with ``to_bytes`` / restored with ``from_bytes``
  (raw arrays and a header, no pickle). Everything is deterministic given the ``seed``.
* Pure, synchronous Python and numpy: no I/O.
"""

from detectors.burst.midas import MidasR
from detectors.burst.sketch import key_hash

__all__ = ["MidasR", "key_hash"]
