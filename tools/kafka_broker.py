"""A local, single-node Apache Kafka 4 for development, tests and the demo; no Docker.

The broker is plain jars from Maven Central (``deploy/kafka/pom.xml``, fetched once with
``mvn`` into a cache folder) run by the machine's ``java`` (17+) in KRaft combined mode: one
process is both broker and controller. Everything it writes lives in one data dir::

    <data dir>/server.properties    written on every start from BrokerConfig
    <data dir>/kraft/               the log dirs (formatted once, on the first start)
    <data dir>/logs/server.log      the broker's log (Log4j2, deploy/kafka/log4j2.properties)
    <data dir>/logs/stdout.log      the JVM's own output (crashes, bad options)
    <data dir>/broker.pid           the pid of the running broker

Choices worth knowing: listeners on 127.0.0.1 only; ``auto.create.topics.enable=false``, so a
misspelt topic is an error instead of a silently created one (topics come from
:mod:`streams.topics`); replication 1 and min ISR 1 for the internal topics;
``group.initial.rebalance.delay.ms=0`` so consumer groups start at once.

Typical use::

    broker = Broker(BrokerConfig.from_env(port=19092))
    broker.start()          # fetches the jars if missing, formats once, waits until it answers
    broker.status()         # BrokerStatus(pid=..., answering=True, ...)
    broker.stop()           # SIGTERM, then SIGKILL after a grace period

Configuration (options of ``atoguard broker``, or these variables):

| variable | meaning | default |
|---|---|---|
| ``ATOGUARD_BROKER_PORT`` | client (PLAINTEXT) port | 9092 |
| ``ATOGUARD_BROKER_CONTROLLER_PORT`` | KRaft controller port | client port + 1 |
| ``ATOGUARD_BROKER_DATA_DIR`` | data dir | ``.atoguard/kafka`` in the cwd |
| ``ATOGUARD_KAFKA_VERSION`` | Kafka version from Maven Central | :data:`KAFKA_VERSION` |
| ``ATOGUARD_KAFKA_LIB`` | jar cache folder | ``deploy/kafka/lib/<version>`` |
| ``ATOGUARD_BROKER_HEAP`` | JVM maximum heap | ``768m`` |
| ``ATOGUARD_BROKER_SECURITY`` | ``plaintext`` or ``sasl_ssl`` | ``plaintext`` |

Security (``security="sasl_ssl"``): the client port is a ``SASL_SSL`` listener with
SCRAM-SHA-512 only, its certificate signed by a CA made for this data dir with ``openssl``
(``<data dir>/security/ca.pem`` is what clients trust); the controller listener takes SASL/PLAIN
from the admin only. ``StandardAuthorizer`` is on with ``User:admin`` the only super user and
no ACL meaning no access. The admin's SCRAM credential is written into the metadata when the
storage is formatted (``kafka-storage format --add-scram``, KIP-900: no ZooKeeper needed), its
password is random and kept in ``<data dir>/security/admin.password`` (mode 600). Other users
and ACLs are added while the broker runs: :meth:`Broker.add_scram_user`, :meth:`Broker.add_acls`.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ADMIN_USER", "KAFKA_VERSION", "SECURITY_MODES", "Broker", "BrokerConfig", "BrokerError",
    "BrokerStatus", "answers", "fetch_jars", "new_cluster_id",
]

#: The Kafka release atoguard runs by default (keep ``deploy/kafka/pom.xml`` in step).
KAFKA_VERSION = "4.3.1"

DEPLOY_DIR = Path(__file__).resolve().parents[1] / "deploy" / "kafka"
POM = DEPLOY_DIR / "pom.xml"
LOG4J2_CONFIG = DEPLOY_DIR / "log4j2.properties"

class BrokerError(RuntimeError):
    """The broker could not be fetched, started or stopped; the message says why and what next."""


@dataclass(frozen=True)
class BrokerConfig:
    """Where and how the local broker runs. Build it with :meth:`from_env` to honour env vars."""

    port: int = 9092
    controller_port: int | None = None  # None: port + 1
    data_dir: Path = field(default_factory=lambda: Path(".atoguard") / "kafka")
    version: str = KAFKA_VERSION
    lib_dir: Path | None = None  # None: deploy/kafka/lib/<version>
    heap: str = "768m"
    host: str = "127.0.0.1"
    #: ``plaintext`` (default) or ``sasl_ssl``: SCRAM-SHA-512 over TLS with ACLs (module docstring)
    security: str = "plaintext"

    def __post_init__(self) -> None:
        for label, value in (("port", self.port), ("controller port", self.ctl_port)):
            if not 1 <= value <= 65535:
                raise ValueError(f"broker {label} {value} is not in 1..65535")
        if self.port == self.ctl_port:
            raise ValueError(f"client and controller ports must differ (both {self.port})")
        _heap_mb(self.heap)
        if self.security not in SECURITY_MODES:
            raise ValueError(f"broker security {self.security!r}: expected one of {', '.join(SECURITY_MODES)}")
        # Absolute paths: the pid check and `stop` must work from any working directory.
        object.__setattr__(self, "data_dir", Path(self.data_dir).resolve())
        if self.lib_dir is not None:
            object.__setattr__(self, "lib_dir", Path(self.lib_dir).resolve())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> BrokerConfig:
        """Defaults, then ``ATOGUARD_BROKER_*`` / ``ATOGUARD_KAFKA_*`` variables, then overrides.

        ``None`` overrides are ignored, so unset command-line options can be passed through.
        """
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for variable, name, convert in _ENV:
            text = env.get(variable, "").strip()
            if text:
                try:
                    values[name] = convert(text)
                except ValueError:
                    raise ValueError(f"{variable}={text!r} is not a valid {name}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    @property
    def ctl_port(self) -> int:
        """The controller listener's port."""
        return self.controller_port if self.controller_port is not None else self.port + 1

    @property
    def bootstrap(self) -> str:
        """``host:port`` for clients (``ATOGUARD_BOOTSTRAP_SERVERS``)."""
        return f"{self.host}:{self.port}"

    @property
    def jars(self) -> Path:
        """The folder holding this version's jars."""
        return self.lib_dir if self.lib_dir is not None else DEPLOY_DIR / "lib" / self.version

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "logs" / "server.log"

    @property
    def stdout_file(self) -> Path:
        return self.data_dir / "logs" / "stdout.log"

    @property
    def properties_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_dirs(self) -> Path:
        return self.data_dir / "kraft"

    @property
    def security_dir(self) -> Path:
        """Certificates and the admin's password of a ``sasl_ssl`` broker."""
        return self.data_dir / "security"

    @property
    def ca_file(self) -> Path:
        """The CA certificate clients of a ``sasl_ssl`` broker trust (``ATOGUARD_SSL_CAFILE``)."""
        return self.security_dir / "ca.pem"

    @property
    def admin_password_file(self) -> Path:
        return self.security_dir / "admin.password"


#: ``BrokerConfig.security`` values
SECURITY_MODES = ("plaintext", "sasl_ssl")
#: the super user of a ``sasl_ssl`` broker (SCRAM-SHA-512 on the client port, PLAIN on the controller's)
ADMIN_USER = "admin"
SCRAM = "SCRAM-SHA-512"


_ENV: tuple[tuple[str, str, type], ...] = (
    ("ATOGUARD_BROKER_PORT", "port", int),
    ("ATOGUARD_BROKER_CONTROLLER_PORT", "controller_port", int),
    ("ATOGUARD_BROKER_DATA_DIR", "data_dir", Path),
    ("ATOGUARD_KAFKA_VERSION", "version", str),
    ("ATOGUARD_KAFKA_LIB", "lib_dir", Path),
    ("ATOGUARD_BROKER_HEAP", "heap", str),
    ("ATOGUARD_BROKER_SECURITY", "security", str),
)


@dataclass(frozen=True)
class BrokerStatus:
    """What :meth:`Broker.status` found: our process (if any) and whether the port answers."""

    bootstrap: str
    pid: int | None  # the pid of our broker process, if it is running
    answering: bool  # a Kafka metadata request on ``bootstrap`` succeeded
    data_dir: Path
    log_file: Path

    @property
    def up(self) -> bool:
        return self.answering

    def describe(self) -> str:
        """One human line, e.g. for ``atoguard broker status``."""
        if self.answering and self.pid:
            return f"up: Kafka answers at {self.bootstrap} (pid {self.pid}, data {self.data_dir})"
        if self.answering:
            return f"up: a Kafka broker answers at {self.bootstrap} (not started from {self.data_dir})"
        if self.pid:
            return (f"starting or stuck: pid {self.pid} runs but {self.bootstrap} does not answer; "
                    f"see {self.log_file}")
        return f"down: nothing answers at {self.bootstrap}"


# -- jars -------------------------------------------------------------------------------------

def fetch_jars(version: str = KAFKA_VERSION, lib_dir: Path | None = None) -> Path:
    """Make sure the jars of Kafka ``version`` are in ``lib_dir``; fetch them with mvn if not.

    The jars are copied to a temporary sibling folder first and moved into place when mvn has
    finished, so an interrupted fetch never leaves a half-filled folder behind.
    """
    lib = lib_dir if lib_dir is not None else DEPLOY_DIR / "lib" / version
    if _jars_ready(lib, version):
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("mvn (Apache Maven) is needed to fetch the Kafka jars: "
                          "apt-get install -y maven")
    staging = lib.with_name(f"{lib.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    command = [mvn, "-q", "-B", "-f", str(POM), f"-Dkafka.version={version}",
               "dependency:copy-dependencies", f"-DoutputDirectory={staging}"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not (staging / f"kafka_2.13-{version}.jar").exists():
        shutil.rmtree(staging, ignore_errors=True)
        output = (done.stdout + done.stderr).strip()[-3000:]
        raise BrokerError(f"fetching Kafka {version} with mvn failed (exit {done.returncode}):\n"
                          f"  {' '.join(command)}\n{output}")
    if lib.exists():
        lib.rmdir()  # empty: _jars_ready refused a non-empty folder without the jars
    staging.rename(lib)
    return lib


def _jars_ready(lib: Path, version: str) -> bool:
    if (lib / f"kafka_2.13-{version}.jar").exists():
        return True
    if not lib.is_dir() or not any(lib.iterdir()):
        return False
    others = sorted(p.name for p in lib.glob("kafka_2.13-*.jar"))
    found = f"holds {others[0]}, not Kafka {version}" if others else f"holds no Kafka {version} jars"
    raise BrokerError(f"{lib} {found}: point ATOGUARD_KAFKA_LIB at a folder of its own for "
                      f"{version} (or empty this one; it is never overwritten)")


# -- probing ----------------------------------------------------------------------------------

def answers(bootstrap: str, timeout_s: float = 3.0, **client_options: object) -> bool:
    """Whether a Kafka broker answers at ``host:port``: a TCP connect, then a metadata call
    (with ``client_options`` for kafka-python, e.g. SASL and TLS settings)."""
    host, _, port = bootstrap.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError:
        return False
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaConfigurationError, KafkaError

    timeout_ms = int(timeout_s * 1000)
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="atoguard-probe",
                                 request_timeout_ms=timeout_ms,
                                 bootstrap_timeout_ms=timeout_ms, **client_options)
    except KafkaConfigurationError:
        raise  # our bug, not a broker that is down
    except (KafkaError, OSError):
        return False
    try:
        return bool(admin.describe_cluster().get("brokers"))
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def new_cluster_id() -> str:
    """A random KRaft cluster id: 16 bytes, URL-safe base64 without padding, like Kafka's."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not text.startswith("-"):  # Kafka avoids ids that read like a command-line flag
            return text


# -- the broker -------------------------------------------------------------------------------

class Broker:
    """Start, stop and probe the local broker described by a :class:`BrokerConfig`."""

    def __init__(self, config: BrokerConfig | None = None) -> None:
        self.config = config or BrokerConfig.from_env()
        self._process: subprocess.Popen[bytes] | None = None

    # public ---------------------------------------------------------------------------------

    def fetch(self) -> Path:
        """The jar folder, fetched first if needed."""
        return fetch_jars(self.config.version, self.config.jars)

    def status(self, timeout_s: float = 3.0) -> BrokerStatus:
        cfg = self.config
        return BrokerStatus(cfg.bootstrap, self.pid(), self._answers(timeout_s),
                            cfg.data_dir, cfg.log_file)

    def _answers(self, timeout_s: float = 3.0) -> bool:
        if self.secured and not self.config.admin_password_file.exists():
            return False  # never started: no credentials yet
        return answers(self.config.bootstrap, timeout_s, **self.admin_options())

    # security -------------------------------------------------------------------------------

    @property
    def secured(self) -> bool:
        return self.config.security == "sasl_ssl"

    def admin_password(self) -> str:
        """The admin's password of a ``sasl_ssl`` broker (made on the first start)."""
        return self.config.admin_password_file.read_text().strip()

    def admin_options(self) -> dict[str, object]:
        """kafka-python keyword arguments that connect as the admin (empty for plaintext)."""
        if not self.secured:
            return {}
        return {"security_protocol": "SASL_SSL", "sasl_mechanism": SCRAM,
                "sasl_plain_username": ADMIN_USER, "sasl_plain_password": self.admin_password(),
                "ssl_cafile": str(self.config.ca_file)}

    def client_config(self, user: str = ADMIN_USER, password: str | None = None) -> dict[str, str]:
        """A confluent-kafka (librdkafka) configuration connecting as ``user`` (the admin by default)."""
        conf = {"bootstrap.servers": self.config.bootstrap}
        if self.secured:
            conf.update({"security.protocol": "SASL_SSL", "sasl.mechanism": SCRAM, "sasl.username": user,
                         "sasl.password": self.admin_password() if password is None else password,
                         "ssl.ca.location": str(self.config.ca_file)})
        return conf

    def add_scram_user(self, user: str, password: str, timeout_s: float = 30.0) -> None:
        """Create (or change) the SCRAM-SHA-512 credential of ``user``, as the admin."""
        from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                           UserScramCredentialUpsertion)

        admin = AdminClient(self.client_config())
        upsert = UserScramCredentialUpsertion(
            user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), password.encode("utf-8"))
        for future in admin.alter_user_scram_credentials([upsert]).values():
            future.result(timeout=timeout_s)

    def add_acls(self, bindings: list, timeout_s: float = 30.0) -> None:
        """Create ACLs (``confluent_kafka.admin.AclBinding`` objects), as the admin."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(self.client_config())
        for future in admin.create_acls(bindings, request_timeout=timeout_s).values():
            future.result(timeout=timeout_s)

    def pid(self) -> int | None:
        """The pid of our running broker, from the pid file; ``None`` when it is not running."""
        try:
            pid = int(self.config.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if self._is_ours(pid) else None

    def start(self, timeout_s: float = 90.0) -> float:
        """Start the broker and wait until it answers; return the seconds that took.

        Does nothing (returns 0) when our broker already answers. Raises :class:`BrokerError`
        with the tail of the log when the broker exits or does not answer within ``timeout_s``
        (it is then stopped, so nothing half-started is left behind).
        """
        cfg = self.config
        if self.pid() is not None and self._answers():
            return 0.0
        if self.pid() is not None:
            raise BrokerError(f"a broker from {cfg.data_dir} runs (pid {self.pid()}) but does not "
                              f"answer at {cfg.bootstrap}; run 'atoguard broker stop' first\n"
                              + self.log_tail())
        for port in (cfg.port, cfg.ctl_port):
            if _port_busy(cfg.host, port):
                raise BrokerError(f"port {cfg.host}:{port} is already in use by another program; "
                                  "choose other ports with --port / --controller-port")
        jars = self.fetch()
        if self.secured:
            self._make_security()
        self._write_properties()
        self._format_once(jars)
        began = time.monotonic()
        self._launch(jars)
        self._wait_until_answering(began, timeout_s)
        return time.monotonic() - began

    def stop(self, grace_s: float = 30.0) -> bool:
        """Stop our broker: SIGTERM, then SIGKILL after ``grace_s``. False if none was running."""
        pid = self.pid()
        if pid is None:
            self.config.pid_file.unlink(missing_ok=True)
            return False
        _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while self._alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if self._alive(pid):
            _signal(pid, signal.SIGKILL)
            while self._alive(pid):
                time.sleep(0.05)
        self.config.pid_file.unlink(missing_ok=True)
        self._process = None
        return True

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the broker's log and of the JVM's output, for error messages."""
        parts = []
        for path in (self.config.stdout_file, self.config.log_file):
            if path.exists() and path.stat().st_size:
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- last lines of {path} ---\n" + "\n".join(tail))
        return "\n".join(parts) or f"(no log yet in {self.config.log_file.parent})"

    # steps of start -------------------------------------------------------------------------

    def properties(self) -> dict[str, str]:
        """The ``server.properties`` of this broker."""
        cfg = self.config
        h, p, c = cfg.host, cfg.port, cfg.ctl_port
        return {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"{h}:{c}",
            "listeners": f"PLAINTEXT://{h}:{p},CONTROLLER://{h}:{c}",
            "advertised.listeners": f"PLAINTEXT://{h}:{p},CONTROLLER://{h}:{c}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(cfg.log_dirs),
            "num.partitions": "6",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "10",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "share.coordinator.state.topic.num.partitions": "10",
            "group.initial.rebalance.delay.ms": "0",
            "log.retention.hours": "168",
            **(self._security_properties() if self.secured else {}),
        }

    def _security_properties(self) -> dict[str, str]:
        """The listeners, TLS, SASL and authorizer settings of a ``sasl_ssl`` broker."""
        cfg = self.config
        h, p, c = cfg.host, cfg.port, cfg.ctl_port
        password = self.admin_password()
        sec = cfg.security_dir
        return {
            "listeners": f"SASL_SSL://{h}:{p},CONTROLLER://{h}:{c}",
            "advertised.listeners": f"SASL_SSL://{h}:{p},CONTROLLER://{h}:{c}",
            "inter.broker.listener.name": "SASL_SSL",
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT",
            "sasl.enabled.mechanisms": SCRAM,
            "sasl.mechanism.inter.broker.protocol": SCRAM,
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{ADMIN_USER}" password="{password}";',
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config":
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'username="{ADMIN_USER}" password="{password}" user_{ADMIN_USER}="{password}";',
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(sec / "server.pem"),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(sec / "ca.pem"),
            "ssl.client.auth": "none",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"User:{ADMIN_USER}",
            "allow.everyone.if.no.acl.found": "false",
        }

    def _make_security(self) -> None:
        """Once per data dir: a CA, the broker's key and certificate (for 127.0.0.1 and
        localhost) signed by it, and a random admin password; all under ``security/``."""
        cfg = self.config
        sec = cfg.security_dir
        if (sec / "server.pem").exists() and cfg.admin_password_file.exists():
            return
        openssl = shutil.which("openssl")
        if openssl is None:
            raise BrokerError("openssl is needed to make the broker's certificates: apt-get install -y openssl")
        sec.mkdir(parents=True, exist_ok=True)
        os.chmod(sec, 0o700)
        (sec / "san.cnf").write_text(f"subjectAltName=IP:{cfg.host},IP:127.0.0.1,DNS:localhost\n")
        steps = [
            ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj", "/CN=atoguard test CA",
             "-keyout", "ca.key", "-out", "ca.pem"],
            ["req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cfg.host}",
             "-keyout", "server.key", "-out", "server.csr"],
            ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "3650", "-extfile", "san.cnf", "-out", "server.crt"],
            ["pkcs8", "-topk8", "-nocrypt", "-in", "server.key", "-out", "server.pk8"],
        ]
        for step in steps:
            done = subprocess.run([openssl, *step], cwd=sec, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise BrokerError(f"openssl {step[0]} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
        # Kafka's PEM keystore: the PKCS#8 key, then the certificate chain
        (sec / "server.pem").write_text((sec / "server.pk8").read_text() + (sec / "server.crt").read_text())
        password = cfg.admin_password_file
        password.write_text(secrets.token_urlsafe(24) + "\n")
        os.chmod(password, 0o600)

    def _write_properties(self) -> None:
        cfg = self.config
        cfg.log_file.parent.mkdir(parents=True, exist_ok=True)
        header = "# written by tools/kafka_broker.py on every start; edit BrokerConfig, not this file\n"
        body = "".join(f"{k}={v}\n" for k, v in self.properties().items())
        cfg.properties_file.write_text(header + body)

    def _format_once(self, jars: Path) -> None:
        """Format the log dirs with a new cluster id, unless they already are."""
        cfg = self.config
        if (cfg.log_dirs / "meta.properties").exists():
            return
        command = [*self._java(jars, heap="256m"), "kafka.tools.StorageTool", "format",
                   "--standalone", "-t", new_cluster_id(), "-c", str(cfg.properties_file)]
        if self.secured:  # KIP-900: the admin's SCRAM credential goes into the bootstrap metadata
            command += ["--add-scram", f"{SCRAM}=[name={ADMIN_USER},password={self.admin_password()}]"]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BrokerError(f"formatting {cfg.log_dirs} failed (exit {done.returncode}):\n"
                              + (done.stdout + done.stderr).strip()[-3000:])

    def _launch(self, jars: Path) -> None:
        cfg = self.config
        command = [*self._java(jars, heap=cfg.heap), "kafka.Kafka", str(cfg.properties_file)]
        with open(cfg.stdout_file, "ab") as out:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True,
            )
        cfg.pid_file.write_text(f"{self._process.pid}\n")

    def _wait_until_answering(self, began: float, timeout_s: float) -> None:
        cfg = self.config
        pid = self._process.pid if self._process else None
        while time.monotonic() - began < timeout_s:
            if pid is None or not self._alive(pid):
                cfg.pid_file.unlink(missing_ok=True)
                raise BrokerError(f"the broker exited during start-up\n{self.log_tail()}")
            if self._answers(timeout_s=2.0):
                return
            time.sleep(0.2)
        self.stop(grace_s=5.0)
        raise BrokerError(f"the broker did not answer at {cfg.bootstrap} within {timeout_s:.0f} s "
                          f"and was stopped\n{self.log_tail()}")

    def _java(self, jars: Path, heap: str) -> list[str]:
        java = _java_binary()
        cfg = self.config
        return [
            java, f"-Xms{min(256, _heap_mb(heap))}m", f"-Xmx{heap}",
            "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
            f"-Dkafka.logs.dir={cfg.log_file.parent}",
            "-cp", str(jars.resolve() / "*"),
        ]

    # process bookkeeping --------------------------------------------------------------------

    def _alive(self, pid: int) -> bool:
        if self._process is not None and self._process.pid == pid:
            return self._process.poll() is None  # reaps our own child, so no zombie lingers
        return _pid_alive(pid)

    def _is_ours(self, pid: int) -> bool:
        """Whether ``pid`` is alive and is a Kafka started with this data dir's properties."""
        if not self._alive(pid):
            return False
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return True  # no /proc (not Linux): trust the pid file
        return str(self.config.properties_file).encode() in cmdline and b"kafka.Kafka" in cmdline


def _java_binary() -> str:
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).exists():
        raise BrokerError("java (17 or newer) is needed to run Kafka 4: "
                          "apt-get install -y openjdk-17-jre-headless")
    return java


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie still has a pid but is gone
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _port_busy(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _heap_mb(text: str) -> int:
    """``768m`` / ``1g`` / ``524288k`` in MiB (for the initial heap)."""
    units = {"k": 1 / 1024, "m": 1, "g": 1024}
    try:
        return max(1, int(float(text[:-1]) * units[text[-1].lower()]))
    except (KeyError, ValueError, IndexError):
        raise ValueError(f"heap {text!r} is not like 768m or 1g") from None
