"""Which kernels the engine runs: the native ones (Rust, the ``atoguard_native`` module built from
``native/`` by ``pip install ./native``) or the Python reference.

The choice is the ``ATOGUARD_ENGINE`` variable, read when a model is built (not per event):

* unset, empty or ``auto``: native when the module imports, else Python;
* ``native``: native, and an error saying how to build it when it does not import;
* ``python``: the Python reference, always.

Both give the same outputs, to the bit (``tests/test_native.py`` runs both and compares). The
kernels that have a native twin: the Half-Space Trees forest and the scaling of
:mod:`detectors.models.anomaly`, and the edge-at-a-time cells of :mod:`detectors.burst.midas`.

>>> engine({"ATOGUARD_ENGINE": "python"})
'python'
>>> engine({"ATOGUARD_ENGINE": "fast"})
Traceback (most recent call last):
...
ValueError: ATOGUARD_ENGINE='fast': the engine is one of auto, native, python
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import ModuleType

__all__ = ["CHOICES", "ENV", "NativeUnavailable", "engine", "module"]

ENV = "ATOGUARD_ENGINE"
CHOICES = ("auto", "native", "python")


class NativeUnavailable(RuntimeError):
    """``ATOGUARD_ENGINE=native`` but the native module does not import."""


def _choice(env: Mapping[str, str] | None) -> str:
    env = os.environ if env is None else env
    choice = env.get(ENV, "").strip().lower() or "auto"
    if choice not in CHOICES:
        raise ValueError(f"{ENV}={env.get(ENV)!r}: the engine is one of {', '.join(CHOICES)}")
    return choice


def module(env: Mapping[str, str] | None = None) -> ModuleType | None:
    """The ``atoguard_native`` module if the native kernels are to run, else None."""
    choice = _choice(env)
    if choice == "python":
        return None
    try:
        import atoguard_native
    except ImportError as exc:
        if choice == "native":
            raise NativeUnavailable(
                f"{ENV}=native but the native module atoguard_native is not installed ({exc}); "
                "build it with `.venv/bin/pip install ./native` (needs cargo), or set "
                f"{ENV}=python") from None
        return None
    return atoguard_native


def engine(env: Mapping[str, str] | None = None) -> str:
    """``"native"`` or ``"python"``: the kernels a model built now would run."""
    return "python" if module(env) is None else "native"
