"""OpenID Shared Signals with partners: receive their security events, transmit ours.

  atoguard ssf keygen --out ssf-key.pem
      a 2048-bit RSA signing key for the transmitter (PEM, mode 600)

  atoguard ssf receive --config ssf.toml --directory subjects.jsonl --port 8441
      partners push SETs to POST /ssf/push (or are polled); each verified event becomes one
      <prefix>signals message for the account its subject maps to; /metrics for Prometheus

  atoguard ssf transmit --config ssf.toml --directory-topic bank.subjects --port 8442
      reads <prefix>signals-out and delivers signed SETs on the streams partners open at
      /ssf/stream (metadata: /.well-known/ssf-configuration)

The subject directory maps subjects (e-mail, phone number, partner's iss/sub, opaque id) to
account ids: a JSON Lines file for one node (--directory), or a compacted topic of the
deployment's (--directory-topic; key the subject key, e.g. "email:ana@example.com", value the
entry, null to remove). The configuration file's tables are described in
streams/ssf/config.py; partners read docs/partners.md.
"""

from __future__ import annotations

import argparse
import os

from streams.cli import EXIT_USAGE, CliError, add_kafka_options, kafka_settings, quiet_kafka_logs

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    keygen = sub.add_parser("keygen", help="write a new RSA signing key (PEM) for the transmitter",
                            description="Write a new RSA signing key (PEM, mode 600) for `atoguard ssf transmit`.\n\n"
                            "example:\n  atoguard ssf keygen --out ssf-key.pem --bits 3072",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    keygen.add_argument("--out", required=True, metavar="FILE", help="where to write the private key")
    keygen.add_argument("--bits", type=int, default=2048, help="key size, at least 2048 (default 2048)")
    for name, text, example in (
        ("receive", "accept partners' SETs (push and poll), write <prefix>signals",
         "atoguard ssf receive --config ssf.toml --directory subjects.jsonl --port 8441"),
        ("transmit", "deliver <prefix>signals-out to partners' streams as signed SETs",
         "atoguard ssf transmit --config ssf.toml --directory subjects.jsonl --port 8442"),
    ):
        p = sub.add_parser(name, help=text, description=f"{text[0].upper()}{text[1:]}.\n\nexample:\n  {example}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--config", required=True, metavar="FILE", help="the SSF configuration (TOML)")
        where = p.add_mutually_exclusive_group(required=True)
        where.add_argument("--directory", metavar="FILE", help="subject directory, JSON Lines (one node)")
        where.add_argument("--directory-topic", metavar="TOPIC", help="subject directory, a compacted topic")
        p.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
        p.add_argument("--port", type=int, default=8441 if name == "receive" else 8442,
                       help="port (default %(default)s)")
        add_kafka_options(p)


def run(args: argparse.Namespace) -> int:
    if args.action == "keygen":
        return _keygen(args)
    from detectors import contract as c
    from streams.ssf import SSFConfigError, SubjectError, load_directory_file, load_receiver, load_transmitter
    from streams.ssf.serve import receiver_app, serve, transmitter_app
    from streams.topics import topic_name

    quiet_kafka_logs()
    settings = kafka_settings(args)
    try:
        config = (load_receiver if args.action == "receive" else load_transmitter)(args.config)
        if args.directory:
            directory = load_directory_file(args.directory)
        else:
            from streams.ssf.subjects import TopicDirectory
            directory = TopicDirectory(settings, args.directory_topic).start()
    except (SSFConfigError, SubjectError, ValueError) as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    if args.action == "receive":
        from streams.ssf.receiver import KafkaWriter, Receiver

        writer = KafkaWriter(settings, topic_name(c.SIGNALS, settings.topic_prefix))
        app = receiver_app(Receiver(config, directory, writer))
    else:
        from streams.ssf.transmitter import Transmitter

        try:
            tx = Transmitter(config, directory)
        except (ValueError, OSError) as exc:
            raise CliError(str(exc), EXIT_USAGE) from None
        app = transmitter_app(tx, settings, topic_name(c.SIGNALS_OUT, settings.topic_prefix))
    serve(app, args.host, args.port)
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from joserfc.jwk import RSAKey

    if args.bits < 2048:
        raise CliError("--bits must be at least 2048 (the CAEP interoperability profile)", EXIT_USAGE)
    if os.path.exists(args.out):
        raise CliError(f"{args.out} exists; not overwritten")
    pem = RSAKey.generate_key(args.bits).as_pem(private=True)
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    print(f"wrote {args.out} ({args.bits}-bit RSA); its public half is served at /ssf/jwks.json")
    return 0
