"""A pytest plugin that silences one registered detector: with ``ATOGUARD_SILENCE=<name>`` (a name
of :data:`detectors.registry.REGISTRY`), that detector's ``score`` returns None for the whole run.

    ATOGUARD_SILENCE=new_country python -m pytest -p tools.silence_plugin -m "not kafka" tests

Used by :mod:`tools.silence_check` to show that every detector has a test that notices it gone.
Without the variable the plugin does nothing.
"""

from __future__ import annotations

import os

import pytest

VARIABLE = "ATOGUARD_SILENCE"


def _silent_score(self, x):
    """A detector that never finds anything."""
    return None


def pytest_configure(config: pytest.Config) -> None:
    name = os.environ.get(VARIABLE, "").strip()
    if not name:
        return
    from detectors.registry import REGISTRY

    if name not in REGISTRY:
        raise pytest.UsageError(f"{VARIABLE}={name}: not a registered detector; known: {', '.join(REGISTRY)}")
    REGISTRY[name].detector_class().score = _silent_score


def pytest_report_header(config: pytest.Config) -> str | None:
    name = os.environ.get(VARIABLE, "").strip()
    return f"detector silenced: {name}" if name else None
