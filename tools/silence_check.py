"""Mutation proof: silence each registered detector in turn and see which tests notice.

For every name in :data:`detectors.registry.REGISTRY`, runs the broker-free tests with that one
detector's ``score`` patched to return None (:mod:`tools.silence_plugin`), and prints a table:
detector, tests that failed *beyond those failing with nothing silenced* (a baseline run comes
first, so work in progress elsewhere does not count), and the first of them. Exits non-zero when
some detector can be silenced without any test failing.

    .venv/bin/python -m tools.silence_check            # the detector tests (about 15 s a run)
    .venv/bin/python -m tools.silence_check --all      # the whole broker-free suite
    .venv/bin/python -m tools.silence_check new_country drain
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

from detectors.registry import REGISTRY

#: the tests that exercise detectors (and the doctests of detectors/)
DETECTOR_TESTS = ("tests/test_rules.py", "tests/test_detector_contract.py", "tests/test_policy.py",
                  "tests/test_models.py", "tests/test_midas.py", "detectors")

_FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE)


def failures(paths: list[str], silence: str | None) -> set[str]:
    """The ids of the tests that fail (or error) with ``silence`` silenced (None: nothing)."""
    env = dict(os.environ)
    env.pop("ATOGUARD_SILENCE", None)
    if silence:
        env["ATOGUARD_SILENCE"] = silence
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "not kafka", "--tb=no", "-rfE", "-p", "no:cacheprovider",
           "-p", "tools.silence_plugin", *paths]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode not in (0, 1):  # 2+: interrupted, usage error, nothing collected
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        raise SystemExit(f"silence_check: pytest exited {proc.returncode} ({silence or 'baseline'}): "
                         + " | ".join(tail))
    return set(_FAILED.findall(proc.stdout))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="detectors to silence (default: every registered one)")
    parser.add_argument("--all", action="store_true", help="run the whole broker-free suite, not the detector tests")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in REGISTRY]
    if unknown:
        parser.error(f"not registered: {', '.join(unknown)}; known: {', '.join(REGISTRY)}")
    paths = [] if args.all else list(DETECTOR_TESTS)
    baseline = failures(paths, None)
    print(f"baseline (nothing silenced): {len(baseline)} failing" + "".join(f"\n  {t}" for t in sorted(baseline)))
    print(f"\n{'detector':<24} {'tests failed':>12}  first")
    blind = []
    for name in args.names or list(REGISTRY):
        caught = sorted(failures(paths, name) - baseline)
        if not caught:
            blind.append(name)
        print(f"{name:<24} {len(caught):>12}  {caught[0] if caught else '-- NOTHING NOTICED'}", flush=True)
    if blind:
        print(f"\nsilenced without any test failing: {', '.join(blind)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
