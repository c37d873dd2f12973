"""``__all__`` is complete: in every module of ``detectors`` and ``streams``, each public function
and class defined there (not imported) is listed, and every listed name exists."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import detectors
import streams


def _modules() -> list[str]:
    names = []
    for package in (detectors, streams):
        names.append(package.__name__)
        names += [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
    return sorted(names)


MODULES = _modules()


def defined_here(module) -> set[str]:
    """The public functions and classes ``module`` itself defines."""
    return {name for name, obj in vars(module).items()
            if not name.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj))
            and getattr(obj, "__module__", None) == module.__name__}


@pytest.mark.parametrize("name", MODULES)
def test_all_lists_every_public_definition_and_nothing_missing(name):
    module = importlib.import_module(name)
    defined = defined_here(module)
    exported = getattr(module, "__all__", None)
    if exported is None:
        assert not defined, f"{name} defines {sorted(defined)} but has no __all__"
        return
    assert len(set(exported)) == len(exported), f"{name}.__all__ lists a name twice"
    absent = [n for n in exported if not hasattr(module, n)]
    assert not absent, f"{name}.__all__ lists names it does not have: {absent}"
    unlisted = sorted(defined - set(exported))
    assert not unlisted, f"{name} defines public names missing from __all__: {unlisted}"


def test_the_walk_finds_the_modules():
    assert {"detectors.engine", "detectors.rules.money", "streams.cli"} <= set(MODULES)
