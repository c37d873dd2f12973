"""Loading the engine configuration from a file and the environment (the I/O half of
:mod:`detectors.config`)."""

from __future__ import annotations

import os
from pathlib import Path

from detectors.config import Config, ConfigError

__all__ = ["load_config", "add_config_option"]


def load_config(path: str | os.PathLike | None = None, env: dict[str, str] | None = None) -> Config:
    """The configuration in ``path`` (TOML) with ``ATOGUARD_SECTION__KEY`` overrides from the
    environment; the default policy when ``path`` is None. ``ATOGUARD_CONFIG`` names a file too."""
    env = dict(os.environ) if env is None else env
    path = path or env.get("ATOGUARD_CONFIG")
    text = ""
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read configuration {path}: {exc.strerror}") from None
    try:
        return Config.from_toml(text, env)
    except ConfigError as exc:
        raise ConfigError(f"{path or 'environment'}: {exc}") from None


def add_config_option(parser) -> None:
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="policy/engine configuration (TOML); default: the built-in default "
                             "policy, which enforces (dry_run = false). Env: ATOGUARD_CONFIG, and "
                             "ATOGUARD_<SECTION>__<KEY> overrides, e.g. ATOGUARD_POLICY__FREEZE_AT=0.9")
