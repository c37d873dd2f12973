"""``atoguard run``: the stream worker.

Reads <prefix>device, <prefix>location, <prefix>transaction and <prefix>verdicts (created
beforehand with `atoguard topics create`, all with the same partition count), runs every event
through the detection engine, and writes commands to <prefix>commands, alerts to <prefix>alerts
and bad input to <prefix>dead-letter. The online models are saved to a signed snapshot file on a
timer and at shutdown (SIGTERM / Ctrl-C), and loaded at start.

Two runtimes share the engine:

* quix (default, streams/runtimes/quix.py): Quix Streams; per-account state in RocksDB with a
  changelog topic; exactly once by default (an event's outputs, its state change and its input
  offset commit in one Kafka transaction, every --commit-interval seconds; consumers of the
  outputs read with isolation.level=read_committed); at-least-once as an option. Events of the
  worker's partitions are taken in event-time (ts) order.
* faust (--runtime faust, streams/runtimes/faust.py): Faust tables; at least once: after a crash some events
  are processed again, and the outputs they cause repeat with the same ids (command_id, alert id /
  ce_id), so consumers drop repeats.

Scale out by starting more workers with the same --app-id (each with its own --data-dir); the
partitions are shared among them. Prometheus metrics: http://<web-host>:<web-port>/metrics.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from detectors.config import ConfigError
from streams.cli import quiet_kafka_logs
from streams.config import add_config_option, load_config
from streams.settings import Settings

__all__ = ["build", "build_quix", "configure", "kafka_logs_as_usual", "preflight", "run", "run_quix"]

EPILOG = """\
examples (--dev: the built-in development keys; without it set the three keys below):
  atoguard broker start && atoguard topics create
  atoguard run --dev                             # Quix, exactly once, 127.0.0.1:9092, prefix ato.
  atoguard run --dev --instance-id w1 --data-dir /var/lib/atoguard/w1   # static membership, fencing on restart
  atoguard run --dev --processing-guarantee at-least-once --commit-interval 1
  atoguard run --dev --runtime faust --store memory --web-port 6067 --data-dir /tmp/w2
  ATOGUARD_BOOTSTRAP_SERVERS=kafka:9092 atoguard run --config policy.toml   # keys in policy.toml's [keys]
  ATOGUARD_POLICY__DRY_RUN=true atoguard run --dev --app-id ato.shadow --web-port 6067 --data-dir /tmp/shadow
                                                 # a candidate policy in shadow (see atoguard console)
  curl -s localhost:6066/metrics | grep atoguard_commands_total

environment (options win over it):
  ATOGUARD_BOOTSTRAP_SERVERS, ATOGUARD_TOPIC_PREFIX, ATOGUARD_PARTITIONS, ATOGUARD_APP_ID,
  ATOGUARD_STORE, ATOGUARD_WEB_PORT, ATOGUARD_DATA_DIR, ATOGUARD_SNAPSHOT,
  ATOGUARD_INSTANCE_ID, ATOGUARD_CONFIG and ATOGUARD_<SECTION>__<KEY> policy overrides;
  ATOGUARD_SECURITY_PROTOCOL, ATOGUARD_SASL_MECHANISM, ATOGUARD_SASL_USERNAME,
  ATOGUARD_SASL_PASSWORD (or ATOGUARD_SASL_PASSWORD_FILE), ATOGUARD_SSL_CAFILE for a secured
  cluster (secrets never on the command line); ATOGUARD_DEV=1 like --dev

keys: the built-in HMAC keys are for development only; without --dev the worker refuses them.
Set ATOGUARD_KEYS__COMMAND_HMAC, ATOGUARD_KEYS__PSEUDONYM_HMAC and ATOGUARD_KEYS__SNAPSHOT_HMAC
(from a secret), or a [keys] table in a --config file only the worker can read (docs/security.md).

cross-account facts (logins per IP / device): the quix runtime counts them over the events the
worker itself processes (several workers each see their own partitions); the faust runtime
repartitions them by source and they reach decisions asynchronously (streams/runtimes/faust_facts.py).
Where they matter live decisions can differ slightly from `atoguard replay` (docs/performance.md).
"""


def _env(name: str, default=None):
    value = os.environ.get("ATOGUARD_" + name)
    return value if value not in (None, "") else default


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("--runtime", choices=("quix", "faust"), default=_env("RUNTIME", "quix"),
                        help="stream runtime: quix (default; Quix Streams, exactly once) or faust")
    parser.add_argument("--processing-guarantee", choices=("exactly-once", "at-least-once"),
                        default=_env("PROCESSING_GUARANTEE", "exactly-once"),
                        help="quix runtime: exactly-once (default; Kafka transactions) or at-least-once; "
                             "the faust runtime is always at least once")
    kafka = parser.add_argument_group("Kafka")
    kafka.add_argument("--bootstrap-servers", help="host:port[,host:port] (default 127.0.0.1:9092)")
    kafka.add_argument("--topic-prefix", help="prefix of the contract topics (default 'ato.')")
    kafka.add_argument("--partitions", type=int,
                       help="expected partition count of the input topics; the worker checks the live "
                            "topics and fails when they differ from each other (default: whatever they have)")
    kafka.add_argument("--app-id", default=_env("APP_ID"),
                       help="consumer group and prefix of internal topics (default '<prefix>worker')")
    kafka.add_argument("--instance-id", default=_env("INSTANCE_ID"),
                       help="static group membership id: a restarted worker with the same id takes its "
                            "partitions back without a rebalance (unique per running worker)")
    state = parser.add_argument_group("state")
    state.add_argument("--store", choices=("rocksdb", "memory"), default=_env("STORE", "rocksdb"),
                       help="faust table store: rocksdb (default; local files, quick restart) or memory "
                            "(rebuilt from the changelog at every start); the quix runtime always uses RocksDB")
    state.add_argument("--data-dir", type=Path, default=Path(_env("DATA_DIR", ".atoguard/worker")),
                       help="tables and model snapshots of this worker (default ./.atoguard/worker); "
                            "one per worker process")
    state.add_argument("--snapshot", type=Path, default=_env("SNAPSHOT"),
                       help="Faust runtime: model snapshot file (default <data-dir>/<app-id>.models.snap; the Quix "
                            "runtime keeps the models in its checkpointed state), signed with "
                            "keys.snapshot_hmac; a file with a wrong signature is refused")
    state.add_argument("--snapshot-interval", type=float, default=60.0,
                       help="seconds between model snapshots (default 60; 0: only at shutdown)")
    web = parser.add_argument_group("web (metrics)")
    web.add_argument("--web-port", type=int, default=int(_env("WEB_PORT", 6066)),
                     help="port of /metrics and /healthz (default 6066)")
    web.add_argument("--web-host", default=_env("WEB_HOST", "127.0.0.1"), help="bind address (default 127.0.0.1)")
    tune = parser.add_argument_group("tuning")
    tune.add_argument("--commit-interval", type=float, default=None,
                      help="seconds between checkpoints / offset commits (default: quix 0.1, i.e. outputs visible "
                           "to read_committed consumers within about 0.1 s; faust 1)")
    tune.add_argument("--arrival-order", action="store_true",
                      help="quix: take records in Quix's own order (by Kafka timestamp, per partition number) "
                           "instead of event-time (ts) order across the worker's partitions")
    tune.add_argument("--transaction-timeout", type=float, default=10.0,
                      help="quix, exactly-once, no --instance-id: transaction.timeout.ms in seconds, how long a killed "
                           "worker's open transaction can hold back read_committed readers (default 10)")
    tune.add_argument("--session-timeout", type=float, default=30.0,
                      help="seconds before the group drops a silent worker (default 30)")
    tune.add_argument("--standby-replicas", type=int, default=1, help="table standby replicas (default 1)")
    tune.add_argument("--buffer", type=int, default=4096, help="faust stream_buffer_maxsize (default 4096)")
    tune.add_argument("--max-poll-records", type=int, default=None, help="faust broker_max_poll_records")
    tune.add_argument("--no-facts", action="store_true",
                      help="do not compute cross-account facts (per-IP / per-device login counts); the "
                           "cross_account and login_burst detectors then see none")
    tune.add_argument("--no-ack-wait", action="store_true",
                      help="do not wait for Kafka to acknowledge an event's commands/alerts before its profile "
                           "is written (faster; a crash may then lose the outputs of the last events)")
    parser.add_argument("--dev", action="store_true",
                        help="a development run: allow the built-in development HMAC keys (env ATOGUARD_DEV=1)")
    parser.add_argument("--log-level", default=_env("LOG_LEVEL", "info"),
                        choices=("debug", "info", "warning", "error"), help="default info")
    add_config_option(parser)


def _settings_and_config(args: argparse.Namespace):
    from streams.topics import shards_for

    settings = Settings.from_env(bootstrap_servers=args.bootstrap_servers, topic_prefix=args.topic_prefix,
                                 partitions=args.partitions)
    cfg = load_config(args.config)
    expected = args.partitions
    settings, cfg = shards_for(settings, cfg)
    if expected is not None and expected != settings.partitions:
        raise ValueError(f"--partitions {expected} but the input topics have {settings.partitions}")
    return settings, cfg


def build_quix(args: argparse.Namespace):
    """Settings, config and Quix options from the command line; checks the live topics."""
    from streams.runtimes.quix import QuixOptions

    settings, cfg = _settings_and_config(args)
    options = QuixOptions(
        app_id=args.app_id, data_dir=args.data_dir, web_host=args.web_host, web_port=args.web_port,
        instance_id=args.instance_id,
        session_timeout_s=args.session_timeout, processing_guarantee=args.processing_guarantee,
        commit_interval_s=0.1 if args.commit_interval is None else args.commit_interval,
        transaction_timeout_s=args.transaction_timeout,
        loglevel="INFO" if args.log_level == "debug" else "WARNING", event_time=not args.arrival_order,
    )
    return settings, cfg, options


def build(args: argparse.Namespace):
    """Settings, config and Faust options from the command line; checks the live topics."""
    from streams.runtimes.faust import WorkerOptions, ensure_internal_topics

    settings, cfg = _settings_and_config(args)
    options = WorkerOptions(
        app_id=args.app_id, store=args.store, data_dir=args.data_dir, web_host=args.web_host,
        web_port=args.web_port, snapshot_path=args.snapshot, snapshot_interval_s=args.snapshot_interval,
        instance_id=args.instance_id, session_timeout_s=args.session_timeout,
        standby_replicas=args.standby_replicas,
        commit_interval_s=1.0 if args.commit_interval is None else args.commit_interval,
        stream_buffer_maxsize=args.buffer, max_poll_records=args.max_poll_records,
        ack_outputs=not args.no_ack_wait, follow_facts=not args.no_facts,
    )
    ensure_internal_topics(settings, options.resolved_app_id(settings), settings.partitions)
    return settings, cfg, options


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_kafka_logs()  # a failed start-up check is one line, not the client's retries
    from streams.topics import PartitionMismatch

    refused = preflight(args)
    if refused is not None:
        message, code = refused
        print(f"atoguard run: {message}", file=sys.stderr)
        return code
    if args.runtime == "quix":
        return run_quix(args)
    try:
        settings, cfg, options = build(args)
    except (PartitionMismatch, ConfigError, ValueError) as exc:
        print(f"atoguard run: {exc}", file=sys.stderr)
        return 2
    from streams.runtimes.faust import create_app
    from faust import Worker

    kafka_logs_as_usual()
    app = create_app(settings, cfg, options)
    print(f"atoguard run: app {options.resolved_app_id(settings)} on {settings.bootstrap_servers}, "
          f"prefix {settings.topic_prefix!r}, {settings.partitions} partitions, store {options.store}, "
          f"metrics http://{options.web_host}:{options.web_port}/metrics", file=sys.stderr, flush=True)
    worker = Worker(app, loglevel=args.log_level.upper(), quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()  # returns when the worker stops (SIGTERM / SIGINT)
    return 0


def kafka_logs_as_usual() -> None:
    """Once the start-up checks passed: the Kafka clients' warnings and errors reach the log again
    (at the worker's --log-level, never below warning)."""
    for name in ("kafka", "aiokafka"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))


def preflight(args: argparse.Namespace) -> tuple[str, int] | None:
    """Before the runtime starts: the settings and configuration load, the keys are not the
    built-in development keys (unless ``--dev`` / ``ATOGUARD_DEV=1``), and a secured cluster
    accepts our credentials. Returns ``(one line, exit code)`` when the run must not go on."""
    from streams.security import KafkaUnreachable, check_connection, development_keys_refusal, development_run

    try:
        settings = Settings.from_env(bootstrap_servers=args.bootstrap_servers, topic_prefix=args.topic_prefix)
        cfg = load_config(args.config)
    except (ConfigError, ValueError) as exc:
        return str(exc), 2
    refusal = development_keys_refusal(cfg, development_run(getattr(args, "dev", False)))
    if refusal is not None:
        return refusal, 2
    if settings.secured:
        try:
            check_connection(settings)
        except (KafkaUnreachable, ValueError) as exc:
            return str(exc), 1
    return None


def run_quix(args: argparse.Namespace) -> int:
    """The Quix runtime: runs until SIGTERM / Ctrl-C, then commits and saves the models."""
    from streams.topics import PartitionMismatch

    try:
        settings, cfg, options = build_quix(args)
    except (PartitionMismatch, ConfigError, ValueError) as exc:
        print(f"atoguard run: {exc}", file=sys.stderr)
        return 2
    from confluent_kafka import KafkaException
    from quixstreams.models.topics.exceptions import TopicPermissionError

    from streams.runtimes.quix import QuixWorker

    try:
        worker = QuixWorker(settings, cfg, options).build()
    except (TopicPermissionError, KafkaException) as exc:  # e.g. an ACL missing on a secured cluster
        print(f"atoguard run: {exc}", file=sys.stderr)
        return 1
    kafka_logs_as_usual()
    print(f"atoguard run: quix app {worker.app_id} on {settings.bootstrap_servers}, prefix {settings.topic_prefix!r}, "
          f"{settings.partitions} partitions, {options.processing_guarantee}, commit every "
          f"{options.commit_interval_s:g} s, metrics http://{options.web_host}:{options.web_port}/metrics",
          file=sys.stderr, flush=True)
    try:
        worker.run()
    except OSError as exc:  # e.g. the web port is taken
        print(f"atoguard run: {exc}", file=sys.stderr)
        return 2
    return 0
