"""Security around the worker: the connection check, the development-key guard and the ACLs.

* :func:`check_connection` connects once with the configured security (SASL/TLS) before anything
  else, and turns what librdkafka reports (bad credentials, an untrusted certificate, nothing
  listening) into one line for :class:`KafkaUnreachable`, so ``atoguard run`` can exit with that
  line instead of a traceback or a minute of retries.
* :func:`development_keys_refusal` is the message ``atoguard run`` prints when the configuration
  still holds the built-in development keys (``detectors.config.Keys``) and the run is not
  declared a development run (``--dev`` or ``ATOGUARD_DEV=1``).
* :func:`worker_acls` lists the ACLs a worker's principal needs and nothing more: read the input
  topics, write the output topics, everything on its own internal topics (Quix's
  ``changelog__<app id>…`` and ``repartition__<app id>…``), its consumer group, and the
  transactional ids ``<app id>-…`` (with ``--instance-id``: ``<app id>-<instance id>``).

Secrets never come from the command line: the SASL password is ``ATOGUARD_SASL_PASSWORD`` or the
file named by ``ATOGUARD_SASL_PASSWORD_FILE``, the HMAC keys ``ATOGUARD_KEYS__*`` or the
``[keys]`` table of the configuration file (see docs/security.md).
"""

from __future__ import annotations

import os
import threading
import time

from detectors import contract as c
from detectors.config import Config
from streams.settings import Settings
from streams.topics import topic_name

__all__ = ["DEV_VARIABLE", "KafkaUnreachable", "check_connection", "development_keys_refusal",
           "development_run", "worker_acls"]

#: the variable that declares a development run (like ``atoguard run --dev``)
DEV_VARIABLE = "ATOGUARD_DEV"


class KafkaUnreachable(Exception):
    """The worker cannot use the Kafka cluster (authentication, TLS, nothing answering); the
    message is one line saying why and what to check."""


def development_run(flag: bool = False, environ: dict[str, str] | None = None) -> bool:
    """Whether this run is declared a development run: ``--dev`` or ``ATOGUARD_DEV`` true."""
    env = os.environ if environ is None else environ
    return flag or env.get(DEV_VARIABLE, "").strip().lower() in ("1", "true", "yes", "on")


def development_keys_refusal(cfg: Config, dev: bool) -> str | None:
    """The message refusing a non-development run with built-in keys, or ``None`` when the run
    may go on."""
    names = cfg.keys.development()
    if not names or dev:
        return None
    variables = ", ".join(f"ATOGUARD_KEYS__{n.upper()}" for n in names)
    return (f"keys {', '.join(names)} are the built-in development keys (anyone can forge commands "
            f"and reverse pseudonyms with them); set real ones in {variables} or in the [keys] table "
            f"of a --config file only the worker can read, or pass --dev ({DEV_VARIABLE}=1) for a "
            "development run")


def check_connection(settings: Settings, timeout_s: float = 15.0) -> None:
    """Connect once with ``settings`` and list the topics; :class:`KafkaUnreachable` with one line
    when that fails. librdkafka's own log lines are kept off stderr."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    errors: list[KafkaError] = []
    failed = threading.Event()

    def on_error(err: KafkaError) -> None:
        errors.append(err)
        if err.code() in (KafkaError._AUTHENTICATION, KafkaError._SSL):
            failed.set()

    conf = {**settings.librdkafka_options(), "error_cb": on_error, "log_level": 0,
            "socket.timeout.ms": max(1000, int(timeout_s * 1000))}
    try:
        admin = AdminClient(conf)
    except KafkaException as exc:  # a bad setting, e.g. a CA file that does not exist
        raise KafkaUnreachable(f"cannot configure the Kafka client: {exc.args[0].str()}") from None
    deadline = time.monotonic() + timeout_s
    while not failed.is_set() and time.monotonic() < deadline:
        try:
            admin.list_topics(timeout=min(2.0, max(0.1, deadline - time.monotonic())))
        except KafkaException:
            admin.poll(0.2)  # serves error_cb: an authentication or TLS error ends the wait
            continue
        admin.poll(0)
        if not failed.is_set():
            return
    raise KafkaUnreachable(_explain(settings, errors))


def _explain(settings: Settings, errors: list) -> str:
    """One line for the first telling error librdkafka reported."""
    from confluent_kafka import KafkaError

    where = settings.bootstrap_servers
    for err in errors:
        if err.code() == KafkaError._AUTHENTICATION:
            return (f"authentication to {where} failed for user {settings.sasl_username!r} "
                    f"({settings.sasl_mechanism or 'no SASL'}): check ATOGUARD_SASL_USERNAME and "
                    "ATOGUARD_SASL_PASSWORD (or ATOGUARD_SASL_PASSWORD_FILE)")
    for err in errors:
        if err.code() == KafkaError._SSL:
            return (f"TLS handshake with {where} failed ({_short(err.str())}): check "
                    "ATOGUARD_SSL_CAFILE and ATOGUARD_SECURITY_PROTOCOL")
    detail = f" ({_short(errors[-1].str())})" if errors else ""
    return (f"no Kafka answered at {where}{detail}; is the broker up, and is "
            f"ATOGUARD_SECURITY_PROTOCOL={settings.security_protocol} what its listener expects?")


def _short(text: str) -> str:
    return text.split(": ", 1)[-1][:200]


def worker_acls(settings: Settings, app_id: str, principal: str) -> list:
    """The ``confluent_kafka.admin.AclBinding``\\ s a worker's ``principal`` (``User:<name>``)
    needs: read the input topics, write the output topics, all on its internal topics, its
    consumer group, its transactional ids; nothing else."""
    from confluent_kafka.admin import AclBinding, AclOperation as Op, AclPermissionType, \
        ResourcePatternType as Pattern, ResourceType as Res

    def allow(kind, name, pattern, op) -> AclBinding:
        return AclBinding(kind, name, pattern, principal, "*", op, AclPermissionType.ALLOW)

    prefix = settings.topic_prefix
    out = []
    for t in (*c.INPUT_TOPICS, c.SIGNALS):  # Quix checks the topics' configs at start (DescribeConfigs)
        for op in (Op.READ, Op.DESCRIBE, Op.DESCRIBE_CONFIGS):
            out.append(allow(Res.TOPIC, topic_name(t, prefix), Pattern.LITERAL, op))
    for t in (*c.OUTPUT_TOPICS, c.DECISIONS, c.SIGNALS_OUT):  # contract v3 outputs too
        for op in (Op.WRITE, Op.DESCRIBE, Op.DESCRIBE_CONFIGS):
            out.append(allow(Res.TOPIC, topic_name(t, prefix), Pattern.LITERAL, op))
    for internal in (f"changelog__{app_id}--", f"repartition__{app_id}--"):
        out.append(allow(Res.TOPIC, internal, Pattern.PREFIXED, Op.ALL))
    out.append(allow(Res.GROUP, app_id, Pattern.LITERAL, Op.READ))
    for op in (Op.WRITE, Op.DESCRIBE):
        out.append(allow(Res.TRANSACTIONAL_ID, f"{app_id}-", Pattern.PREFIXED, op))
    return out
