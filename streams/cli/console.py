"""``atoguard console``: the analyst console, a web application over the real topics.

Serves http://HOST:PORT/ (default 127.0.0.1:8080): the live queue of freezes and unanswered
step-ups, each account's page (why atoguard acted, what the holder saw and answered, partners'
signals, a verdict button), the policy in shadow, and the worker's health. It keeps an index of
its own (SQLite, --index) fed from <prefix>commands, alerts, decisions, signals, signals-out,
verdicts, dead-letter, the challenge answers on <prefix>device, and the worker's changelog
(read_committed). Device ids and addresses are shown only as keyed pseudonyms
(keys.pseudonym_hmac of --config).

Sign-in is required: local users (--add-user, passwords hashed with scrypt, kept in --users) or
OpenID Connect (--oidc-issuer, --oidc-client-id, secret in ATOGUARD_CONSOLE_OIDC_SECRET; roles
from the ID token's 'roles' claim: atoguard-viewer, atoguard-analyst, atoguard-admin). Roles:
viewer reads, analyst also gives verdicts, admin also reads the audit log. The guide is
docs/console.md.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from pathlib import Path

from streams.cli import CliError, EXIT_USAGE, add_config_option, add_kafka_options, kafka_settings, load_policy

__all__ = ["configure", "run"]

EPILOG = """\
examples:
  atoguard console --add-user ana --role analyst      # asks for the password (or ATOGUARD_CONSOLE_PASSWORD)
  atoguard console                                    # http://127.0.0.1:8080/, broker 127.0.0.1:9092, prefix ato.
  atoguard console --worker-metrics 127.0.0.1:6066 --port 8081
  atoguard console --oidc-issuer https://id.example.com --oidc-client-id atoguard \\
                   --public-url https://console.example.com

environment: ATOGUARD_BOOTSTRAP_SERVERS, ATOGUARD_TOPIC_PREFIX, ATOGUARD_APP_ID (the worker whose
changelog is read), ATOGUARD_CONSOLE_PASSWORD (for --add-user), ATOGUARD_CONSOLE_OIDC_SECRET.

Cookies are Secure: browsers keep them over https, and over plain http only on 127.0.0.1 or
localhost; serve it behind TLS elsewhere (or --insecure-cookies on a closed network).
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    parser.add_argument("--index", type=Path, default=Path(".atoguard-console/index.sqlite"),
                        help="the console's index, rebuilt from the topics when missing "
                             "(default .atoguard-console/index.sqlite)")
    parser.add_argument("--users", type=Path, default=Path(".atoguard-console/users.sqlite"),
                        help="users, sessions and the audit log (default .atoguard-console/users.sqlite)")
    parser.add_argument("--worker-metrics", action="append", default=[], metavar="HOST:PORT",
                        help="a worker's web address for the health page (repeatable), e.g. 127.0.0.1:6066")
    parser.add_argument("--app-id", default=os.environ.get("ATOGUARD_APP_ID") or None,
                        help="the worker's app id, whose changelog is read (default '<prefix>worker')")
    parser.add_argument("--add-user", metavar="NAME", help="add (or reset) a local user and exit")
    parser.add_argument("--role", choices=("viewer", "analyst", "admin"), default="viewer",
                        help="the role of --add-user (default viewer)")
    parser.add_argument("--oidc-issuer", metavar="URL", help="sign in with this OpenID Connect provider")
    parser.add_argument("--oidc-client-id", metavar="ID", help="the console's client id at the provider")
    parser.add_argument("--public-url", metavar="URL",
                        help="the console's address as browsers see it (the OIDC redirect; default http://HOST:PORT)")
    parser.add_argument("--insecure-cookies", action="store_true",
                        help="session cookies without Secure (plain http on a closed network only)")
    parser.add_argument("--refresh", type=int, default=10, metavar="SECONDS",
                        help="how often the queue page reloads itself (default 10)")
    add_kafka_options(parser)
    add_config_option(parser)


def _add_user(args: argparse.Namespace) -> int:
    from streams.console.auth import AuthError, UserStore

    password = os.environ.get("ATOGUARD_CONSOLE_PASSWORD")
    if password is None:
        if not sys.stdin.isatty():
            raise CliError("no password: set ATOGUARD_CONSOLE_PASSWORD or run it in a terminal", EXIT_USAGE)
        password = getpass.getpass(f"password for {args.add_user}: ")
    args.users.parent.mkdir(parents=True, exist_ok=True)
    try:
        UserStore(args.users).add_user(args.add_user, args.role, password)
    except AuthError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    print(f"user {args.add_user} ({args.role}) saved in {args.users}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.add_user:
        return _add_user(args)
    import uvicorn
    from confluent_kafka import Producer

    from streams.cli.account import changelog_topic
    from streams.console import ConsoleConfig, Feeder, Index, OidcClient, OidcSettings, UserStore, create_app

    settings = kafka_settings(args)
    cfg = load_policy(args)
    if bool(args.oidc_issuer) != bool(args.oidc_client_id):
        raise CliError("--oidc-issuer and --oidc-client-id go together", EXIT_USAGE)
    for path in (args.index, args.users):
        path.parent.mkdir(parents=True, exist_ok=True)
    users = UserStore(args.users)
    if not users.users() and not args.oidc_issuer:
        raise CliError(f"no user can sign in: add one with atoguard console --add-user NAME --role analyst "
                       f"--users {args.users} (or configure --oidc-issuer)", EXIT_USAGE)
    public = (args.public_url or f"http://{args.host}:{args.port}").rstrip("/")
    oidc = None
    if args.oidc_issuer:
        oidc = OidcClient(OidcSettings(args.oidc_issuer, args.oidc_client_id,
                                       os.environ.get("ATOGUARD_CONSOLE_OIDC_SECRET"), f"{public}/auth/callback"))
    index = Index(args.index, cfg.keys.pseudonym_hmac)
    prefix = settings.topic_prefix
    changelog = changelog_topic(args.app_id or f"{prefix}worker", prefix)
    feeder = Feeder(index, settings.bootstrap_servers, prefix, changelog).start()
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "partitioner": "murmur2_random",
                         "enable.idempotence": True, "acks": "all"})
    config = ConsoleConfig(key=cfg.keys.pseudonym_hmac, topic_prefix=prefix,
                           bootstrap_servers=settings.bootstrap_servers,
                           worker_metrics=tuple(args.worker_metrics), secure_cookies=not args.insecure_cookies,
                           oidc_name=args.oidc_issuer, refresh_s=args.refresh)
    app = create_app(config, index, users, producer=producer, feeder=feeder, oidc=oidc)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    print(f"atoguard console on {public}/ (Kafka {settings.bootstrap_servers}, prefix {prefix}, "
          f"index {args.index})", flush=True)
    try:
        uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, access_log=False,
                                      log_level="warning")).run()
    finally:
        feeder.stop()
        producer.flush(5)
    return 0
