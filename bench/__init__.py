"""Benchmarks: commands that print tables of throughput and detection figures.

Run from the repository root, e.g. ``python -m bench.darpa_midas``. Nothing here is imported by
the detectors or the stream workers.
"""

__all__: list[str] = []
