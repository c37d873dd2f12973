"""The analyst console (``atoguard console``): a web application over the real topics, where
the security team sees, judges and undoes.

Layout: :mod:`~streams.console.index` (the SQLite index of its own and the thread that feeds it
from the topics and the worker's changelog), :mod:`~streams.console.auth` (local accounts with
scrypt-hashed passwords, OpenID Connect, sessions, CSRF, roles, the audit log),
:mod:`~streams.console.pages` (server-rendered HTML, no JavaScript) and
:mod:`~streams.console.app` (the Starlette routes). The command is :mod:`streams.cli.console`;
the guide is docs/console.md.
"""

from streams.console.app import ConsoleConfig, create_app
from streams.console.auth import ROLES, OidcClient, OidcSettings, UserStore
from streams.console.index import Feeder, Index, account_ref

__all__ = ["ConsoleConfig", "Feeder", "Index", "OidcClient", "OidcSettings", "ROLES", "UserStore", "account_ref",
           "create_app"]
