"""Pickling of the River model parts of a detector's state, with a restricted unpickler.

River models are object graphs, so the models' ``state()`` pickles them. That is acceptable only
because the stream worker signs snapshots with HMAC and refuses unsigned ones; as defence in
depth, :func:`loads` also refuses any global that a River model does not need (classes from
``river`` and a handful of containers), so a forged blob cannot name ``os.system`` or the like.

>>> loads(dumps({"n": 1}))
{'n': 1}
>>> import pickle, os
>>> loads(pickle.dumps(os.getcwd))
Traceback (most recent call last):
...
ValueError: model state refers to posix.getcwd, which a model snapshot never contains
"""

from __future__ import annotations

import io
import pickle
from typing import Any

__all__ = ["dumps", "loads", "load_versioned"]

_ALLOWED = frozenset({
    ("builtins", "bool"), ("builtins", "bytes"), ("builtins", "complex"), ("builtins", "dict"),
    ("builtins", "float"), ("builtins", "frozenset"), ("builtins", "int"), ("builtins", "list"),
    ("builtins", "set"), ("builtins", "str"), ("builtins", "tuple"),
    ("collections", "Counter"), ("collections", "OrderedDict"), ("collections", "defaultdict"),
    ("collections", "deque"), ("functools", "partial"), ("random", "Random"),
    ("copyreg", "_reconstructor"), ("builtins", "object"),
})


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        if module == "river" or module.startswith("river."):
            obj = super().find_class(module, name)
            if isinstance(obj, type):  # classes only: no River function is ever needed
                return obj
        raise ValueError(f"model state refers to {module}.{name}, which a model snapshot never contains")


def dumps(obj: Any) -> bytes:
    """Pickle ``obj`` (protocol 5)."""
    return pickle.dumps(obj, protocol=5)


def loads(data: bytes) -> Any:
    """Unpickle what :func:`dumps` produced, refusing unexpected globals with ``ValueError``."""
    try:
        return _Unpickler(io.BytesIO(data)).load()
    except ValueError:
        raise
    except Exception as exc:  # truncated or garbled bytes
        raise ValueError(f"model state is not readable: {exc!r}") from None


def load_versioned(data: bytes, version: int, params: Any, what: str) -> dict:
    """Unpickle a detector state and check its format version and parameters."""
    obj = loads(data)
    if not isinstance(obj, dict) or obj.get("version") != version:
        raise ValueError(f"not a {what} state of version {version}")
    if obj["params"] != params:
        raise ValueError(f"{what} state was saved with {obj['params']}, this detector has {params}")
    return obj
