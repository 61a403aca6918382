"""A real single-node Apache Kafka broker (KRaft mode) for tests and the local demo.

Where the broker comes from, first match wins:

1. ``STREAMPOD_KAFKA_BOOTSTRAP=host:port`` names a broker that already runs (kind ``external``).
2. A Docker engine answers and testcontainers is installed: Confluent's cp-kafka image in KRaft
   mode through testcontainers (kind ``testcontainers``; image overridable with
   ``STREAMPOD_KAFKA_IMAGE``).
3. Otherwise the Apache Kafka jars from Maven Central, fetched once with ``mvn`` into
   ``${XDG_CACHE_HOME:-~/.cache}/streampod/kafka-<version>/`` and run with the machine's Java 17+
   (kind ``jars``).

``STREAMPOD_KAFKA_MODE=external|docker|jars`` forces one of them.

The jars broker listens on 127.0.0.1 only, on free ports picked at start, and is tuned for tests:
replication factor 1 everywhere, no initial rebalance delay, and ``auto.create.topics.enable=false``
so that a test gets exactly the partitions it asked for (see :func:`create_topic`) and a misspelt
topic fails loudly instead of being created with one partition.

Only the jars broker can be stopped and started again (``stop_broker_process`` /
``start_broker_process``), on the same ports and data, which fault tests need.

Only the jars broker can also open an extra SASL_SSL listener (:class:`SaslSslListener`: PLAIN with
one user, a PEM certificate chain and key), the shape of a managed service's endpoint such as Event
Hubs' Kafka endpoint; its address is ``sasl_ssl_bootstrap``. Inter-broker and the PLAINTEXT
listener stay as they are, so test helpers can still produce and verify on ``bootstrap_servers``.

``python -m streampod.localkafka`` runs one until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import fcntl
import importlib
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Final, Literal

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from streampod.ports import free_ports

__all__ = [
    "KAFKA_VERSION",
    "Kind",
    "LocalKafka",
    "SaslSslListener",
    "create_topic",
    "delete_topic",
    "ensure_kafka_jars",
    "main",
    "start_broker",
]

log = logging.getLogger(__name__)

Kind = Literal["external", "testcontainers", "jars"]

# 4.x is KRaft-only and needs Java 17, which is what the build machines have.
KAFKA_VERSION: Final = "4.2.0"
SCALA_BINARY_VERSION: Final = "2.13"
# Kafka's pom brings log4j-core but no SLF4J binding, so without this the broker would log nothing
# at all. Same binding as Kafka's own distribution, at the log4j version Kafka 4.2.0 depends on.
LOG4J_VERSION: Final = "2.25.3"
# Pinned so that Maven does not look up the newest plugin (a network round trip and a moving part).
DEPENDENCY_PLUGIN: Final = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
# testcontainers' KafkaContainer drives the cp-kafka start scripts; this is the tag it is tested with.
DOCKER_IMAGE: Final = "confluentinc/cp-kafka:7.6.0"

ENV_BOOTSTRAP: Final = "STREAMPOD_KAFKA_BOOTSTRAP"
ENV_MODE: Final = "STREAMPOD_KAFKA_MODE"
ENV_IMAGE: Final = "STREAMPOD_KAFKA_IMAGE"
MODES: Final = ("external", "docker", "jars")

READY_TIMEOUT_S: Final = 60.0
STOP_GRACE_S: Final = 15.0
ADMIN_TIMEOUT_S: Final = 30.0
MVN_TIMEOUT_S: Final = 900.0

JVM_OPTIONS: Final = (
    "-Xms256m",
    "-Xmx512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    # A broker that ran out of heap is useless to a test; better it dies and the test says so.
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)

_LOG4J2_PROPERTIES: Final = """\
# Written by streampod.localkafka. WARN and above, plus the one line that says the broker is up.
status = warn
# The console appender flushes every line, so log4j's own shutdown hook only adds a warning at exit.
shutdownHook = disable
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.out.ref = out
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = info
"""

_POM_TEMPLATE: Final = """\
<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by streampod.localkafka: only used to resolve the Kafka broker's classpath. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.streampod</groupId>
  <artifactId>kafka-broker-classpath</artifactId>
  <version>{kafka}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{scala}</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""


# --------------------------------------------------------------------------------------------------
# Topic helpers
# --------------------------------------------------------------------------------------------------


def _admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic(bootstrap: str, name: str, partitions: int, config: dict[str, str] | None = None) -> None:
    """Create a topic and wait until every partition has a leader; an existing topic is fine."""
    admin = _admin(bootstrap)
    # -1 takes the broker's default.replication.factor: 1 on our brokers, sensible on an external one.
    topic = NewTopic(name, num_partitions=partitions, replication_factor=-1, config=config or {})
    try:
        admin.create_topics([topic], operation_timeout=ADMIN_TIMEOUT_S)[name].result(timeout=ADMIN_TIMEOUT_S)
    except KafkaException as exc:
        if _error_code(exc) != KafkaError.TOPIC_ALREADY_EXISTS:
            raise
    _wait_for_leaders(admin, name, ADMIN_TIMEOUT_S)


def delete_topic(bootstrap: str, name: str) -> None:
    """Delete a topic and wait for the broker to accept it; a missing topic is fine."""
    admin = _admin(bootstrap)
    try:
        admin.delete_topics([name], operation_timeout=ADMIN_TIMEOUT_S)[name].result(timeout=ADMIN_TIMEOUT_S)
    except KafkaException as exc:
        if _error_code(exc) != KafkaError.UNKNOWN_TOPIC_OR_PART:
            raise


def _error_code(exc: KafkaException) -> int | None:
    error = exc.args[0] if exc.args else None
    return error.code() if isinstance(error, KafkaError) else None


def _has_leaders(topic: Any) -> bool:
    if topic is None or topic.error is not None or not topic.partitions:
        return False
    return all(p.leader >= 0 for p in topic.partitions.values())


def _wait_for_leaders(admin: AdminClient, name: str, timeout_s: float) -> None:
    # CreateTopics returns once the controller accepted the topic; the broker learns of it a moment
    # later, and a client that asks in between gets UNKNOWN_TOPIC errors and backs off for seconds.
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        topic = admin.list_topics(topic=name, timeout=5.0).topics.get(name)
        if _has_leaders(topic):
            return
        time.sleep(0.05)
    raise TimeoutError(f"topic {name!r} has no leader for every partition after {timeout_s:.0f} s")


# --------------------------------------------------------------------------------------------------
# Readiness
# --------------------------------------------------------------------------------------------------


def _probe_config(bootstrap: str) -> dict[str, str | int | float | bool]:
    return {
        "bootstrap.servers": bootstrap,
        # Refused connections are expected while the JVM starts; librdkafka would print each one.
        "log_level": 0,
        # The default reconnect backoff grows to 10 s, which would hide a broker that is already up.
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 250,
    }


def _wait_ready(bootstrap: str, timeout_s: float, check_alive: Callable[[], None] | None = None) -> None:
    """Return once the broker answers a metadata request that names at least one broker."""
    admin = AdminClient(_probe_config(bootstrap))
    deadline = time.monotonic() + timeout_s
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if check_alive is not None:
            check_alive()
        try:
            if admin.list_topics(timeout=1.0).brokers:
                return
        except KafkaException as exc:
            last_error = str(exc)
        time.sleep(0.1)
    raise TimeoutError(f"Kafka at {bootstrap} was not ready after {timeout_s:.0f} s ({last_error})")


# --------------------------------------------------------------------------------------------------
# Jars: fetch once, then run kafka.Kafka as a child process
# --------------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where this Kafka version's jars are kept between runs."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "streampod" / f"kafka-{KAFKA_VERSION}"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    # Two test sessions (or a test run and the demo) may start at once on a cold cache; the lock
    # makes the second wait for the first fetch instead of racing it into the same folder.
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_kafka_jars() -> Path:
    """Return the folder of the broker's jars, fetching them with Maven on first use only."""
    root = cache_dir()
    libs, marker = root / "libs", root / "complete"
    if marker.is_file() and libs.is_dir():
        return libs
    root.mkdir(parents=True, exist_ok=True)
    with _file_lock(root / ".lock"):
        if not (marker.is_file() and libs.is_dir()):
            _fetch_jars(root, libs)
            marker.write_text(f"kafka_{SCALA_BINARY_VERSION} {KAFKA_VERSION}\n")
    return libs


def _fetch_jars(root: Path, libs: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError("Maven (mvn) is needed once to fetch the Kafka jars; install it or set " + ENV_MODE)
    pom = root / "pom.xml"
    pom.write_text(_POM_TEMPLATE.format(kafka=KAFKA_VERSION, scala=SCALA_BINARY_VERSION, log4j=LOG4J_VERSION))
    # Copy into a side folder and rename, so an interrupted fetch never looks complete.
    staging = root / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    log.info("fetching Apache Kafka %s jars with Maven (first use only)", KAFKA_VERSION)
    started = time.monotonic()
    command = [
        mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(pom),
        f"{DEPENDENCY_PLUGIN}:copy-dependencies", f"-DoutputDirectory={staging}", "-DincludeScope=runtime",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=MVN_TIMEOUT_S, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        raise RuntimeError(f"mvn could not fetch the Kafka jars (exit {result.returncode}):\n{_last_lines(output)}")
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    log.info("fetched the Kafka jars into %s in %.1f s", libs, time.monotonic() - started)


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("Java 17 or newer is needed to run the Kafka jars; install a JRE or set JAVA_HOME")
    return java


def _cluster_id() -> str:
    # Kafka's own format: a random UUID as unpadded URL-safe base64.
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class SaslSslListener:
    """An extra listener with TLS and SASL/PLAIN for one user (jars broker only)."""

    username: str
    password: str = field(repr=False)
    #: PEM file with the broker's private key (unencrypted) followed by its certificate chain.
    key_and_chain: Path
    #: A port chosen by the caller (when the password must name it, as a connection string does); 0: a free one.
    port: int = 0


def _jaas_quote(text: str) -> str:
    if '"' in text or "\\" in text or "\n" in text:
        raise ValueError("the SASL user name and password must not contain quotes, backslashes or newlines")
    return f'"{text}"'


def _sasl_ssl_properties(listener: SaslSslListener) -> dict[str, str]:
    # Listener-scoped names, so the PLAINTEXT listener and the controller keep their defaults.
    user, password = _jaas_quote(listener.username)[1:-1], _jaas_quote(listener.password)
    return {
        "sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_ssl.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_ssl.plain.sasl.jaas.config": (
            f"org.apache.kafka.common.security.plain.PlainLoginModule required user_{user}={password};"
        ),
        "listener.name.sasl_ssl.ssl.keystore.type": "PEM",
        "listener.name.sasl_ssl.ssl.keystore.location": str(listener.key_and_chain),
    }


def _server_properties(
    broker_port: int, controller_port: int, data_dir: Path, sasl_ssl: tuple[int, SaslSslListener] | None = None
) -> str:
    listeners = f"PLAINTEXT://127.0.0.1:{broker_port}"
    extra: dict[str, str] = {}
    if sasl_ssl is not None:
        listeners += f",SASL_SSL://127.0.0.1:{sasl_ssl[0]}"
        extra = _sasl_ssl_properties(sasl_ssl[1])
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "controller.listener.names": "CONTROLLER",
        "listeners": f"{listeners},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": listeners,
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
        + (",SASL_SSL:SASL_SSL" if extra else ""),
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "default.replication.factor": "1",
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        # The default 50 partitions make the first consumer group join of a session slow.
        "offsets.topic.num.partitions": "5",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "5",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        **extra,
    }
    lines = [f"{key}={value}" for key, value in settings.items()]
    return "# Written by streampod.localkafka\n" + "\n".join(lines) + "\n"


def _last_lines(text: str, count: int = 40) -> str:
    return "\n".join(text.splitlines()[-count:])


def _log_tail(path: Path, count: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
    return _last_lines(text, count) or "(empty)"


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    # The JVM leads its own process group, so this reaches it and anything it forked, and nothing else.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


class _JarsBroker:
    """kafka.Kafka from the Maven jars, as a child JVM in its own process group."""

    kind: Final = "jars"

    def __init__(self, log_dir: Path | None, sasl_ssl: SaslSslListener | None = None) -> None:
        self._sasl_ssl = sasl_ssl
        self._sasl_ssl_port = 0
        self._owns_dir = log_dir is None
        self._dir = Path(tempfile.mkdtemp(prefix="streampod-kafka-")) if log_dir is None else log_dir
        self._process: subprocess.Popen[bytes] | None = None
        self._classpath = ""
        self._broker_port = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self._broker_port}"

    @property
    def log_path(self) -> Path:
        return self._dir / "broker.log"

    @property
    def sasl_ssl_bootstrap(self) -> str | None:
        return None if self._sasl_ssl is None else f"127.0.0.1:{self._sasl_ssl_port}"

    @property
    def _properties_path(self) -> Path:
        return self._dir / "server.properties"

    @property
    def _log4j_path(self) -> Path:
        return self._dir / "log4j2.properties"

    def start(self) -> str:
        self._classpath = str(ensure_kafka_jars() / "*")
        self._broker_port, controller_port, self._sasl_ssl_port = free_ports(3)
        if self._sasl_ssl is not None and self._sasl_ssl.port:
            self._sasl_ssl_port = self._sasl_ssl.port
        self._dir.mkdir(parents=True, exist_ok=True)
        extra = None if self._sasl_ssl is None else (self._sasl_ssl_port, self._sasl_ssl)
        properties = _server_properties(self._broker_port, controller_port, self._dir / "data", extra)
        self._properties_path.write_text(properties)
        self._log4j_path.write_text(_LOG4J2_PROPERTIES)
        self._format_storage()
        self.start_process()
        return self.bootstrap

    def stop(self) -> None:
        self.stop_process()
        if self._owns_dir:
            shutil.rmtree(self._dir, ignore_errors=True)

    def _format_storage(self) -> None:
        # A kept log_dir is reused as it is: formatting again would need its cluster id, and is not needed.
        if (self._dir / "data" / "meta.properties").is_file():
            return
        command = [
            _java(), "-Xmx256m", f"-Dlog4j2.configurationFile={self._log4j_path}", "-cp", self._classpath,
            "kafka.tools.StorageTool", "format",
            f"--cluster-id={_cluster_id()}", "--config", str(self._properties_path),
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            output = _last_lines((result.stdout + result.stderr).strip())
            raise RuntimeError(f"formatting the Kafka storage failed (exit {result.returncode}):\n{output}")

    def start_process(self) -> None:
        if self._process is not None and self._process.poll() is None:
            raise RuntimeError("the Kafka broker process is already running")
        command = [
            _java(), *JVM_OPTIONS, f"-Dlog4j2.configurationFile={self._log4j_path}",
            "-cp", self._classpath, "kafka.Kafka", str(self._properties_path),
        ]  # fmt: skip
        with self.log_path.open("ab") as out:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=self._dir, start_new_session=True,
            )  # fmt: skip
        log.debug("started Kafka broker pid %d, log %s", self._process.pid, self.log_path)
        try:
            _wait_ready(self.bootstrap, READY_TIMEOUT_S, self._raise_if_exited)
        except BaseException as exc:
            self.stop_process()
            if isinstance(exc, TimeoutError):
                raise TimeoutError(f"{exc}\n{self._log_excerpt()}") from None
            raise

    def _raise_if_exited(self) -> None:
        code = None if self._process is None else self._process.poll()
        if code is not None:
            raise RuntimeError(f"the Kafka broker exited with code {code} while starting\n{self._log_excerpt()}")

    def _log_excerpt(self) -> str:
        return f"--- last lines of {self.log_path} ---\n{_log_tail(self.log_path)}"

    def stop_process(self, *, hard: bool = False) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        _signal_group(process, signal.SIGKILL if hard else signal.SIGTERM)
        # A paused broker would sit on SIGTERM forever.
        _signal_group(process, signal.SIGCONT)
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            log.warning("Kafka broker pid %d ignored SIGTERM for %.0f s; killing it", process.pid, STOP_GRACE_S)
            _signal_group(process, signal.SIGKILL)
            process.wait()

    def signal_process(self, sig: signal.Signals) -> None:
        if self._process is None or self._process.poll() is not None:
            raise RuntimeError("the Kafka broker process is not running")
        _signal_group(self._process, sig)


# --------------------------------------------------------------------------------------------------
# External broker and testcontainers
# --------------------------------------------------------------------------------------------------


class _ExternalBroker:
    kind: Final = "external"

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    def start(self) -> str:
        _wait_ready(self.bootstrap, READY_TIMEOUT_S)
        return self.bootstrap

    def stop(self) -> None:
        """Someone else owns this broker."""


def _kafka_container_class() -> Any:
    try:
        module = importlib.import_module("testcontainers.community.kafka")
    except ModuleNotFoundError:
        # Older testcontainers 4.x keep it here; newer ones warn when this path is imported.
        module = importlib.import_module("testcontainers.kafka")
    return module.KafkaContainer


def _docker_is_local() -> bool:
    # Publishing on loopback only works when the engine runs on this host and we are not ourselves
    # inside a container (there testcontainers reaches the broker through the gateway address).
    docker_host = os.environ.get("DOCKER_HOST", "")
    local_engine = docker_host == "" or docker_host.startswith("unix://")
    return local_engine and not Path("/.dockerenv").exists() and not os.environ.get("TESTCONTAINERS_HOST_OVERRIDE")


class _ContainerBroker:
    kind: Final = "testcontainers"
    _KAFKA_PORT: Final = 9093  # the client port KafkaContainer exposes

    def __init__(self, image: str) -> None:
        self._image = image
        self._container: Any = None
        self.bootstrap = ""

    def start(self) -> str:
        container = _kafka_container_class()(image=self._image).with_kraft()
        if _docker_is_local():
            # testcontainers publishes on every interface by default; a test broker belongs on loopback.
            container.ports[self._KAFKA_PORT] = ("127.0.0.1", None)
        self._container = container
        container.start(timeout=int(READY_TIMEOUT_S))
        self.bootstrap = str(container.get_bootstrap_server())
        _wait_ready(self.bootstrap, READY_TIMEOUT_S)
        return self.bootstrap

    def stop(self) -> None:
        container, self._container = self._container, None
        if container is not None:
            container.stop()


def _docker_unavailable_reason() -> str | None:
    """None when a Docker engine answers and testcontainers is importable, else why not."""
    if importlib.util.find_spec("testcontainers") is None:
        return "testcontainers is not installed"
    docker = shutil.which("docker")
    if docker is None:
        return None if _docker_socket_answers() else "no docker client and no Docker socket answers"
    try:
        result = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"],
                                capture_output=True, text=True, timeout=3, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 3 s"
    if result.returncode != 0:
        return "no Docker engine reachable (`docker info` failed)"
    return None


def _docker_socket_answers() -> bool:
    docker_host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not docker_host.startswith("unix://"):
        return False  # a remote engine without a docker client: leave it to an explicit mode
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(3)
        try:
            sock.connect(docker_host.removeprefix("unix://"))
        except OSError:
            return False
    return True


_Backend = _ExternalBroker | _ContainerBroker | _JarsBroker


def _choose_backend(log_dir: Path | None, mode: str | None, sasl_ssl: SaslSslListener | None = None) -> _Backend:
    if sasl_ssl is not None:
        # Only a broker of our own can be given another listener; say so rather than ignore it.
        chosen = (mode or os.environ.get(ENV_MODE, "")).strip().lower()
        if chosen not in ("", "jars"):
            raise RuntimeError(f"an extra SASL_SSL listener needs the jars broker, not {ENV_MODE}={chosen}")
        return _JarsBroker(log_dir, sasl_ssl)
    chosen = (mode or os.environ.get(ENV_MODE, "")).strip().lower()
    if chosen and chosen not in MODES:
        raise ValueError(f"{ENV_MODE} must be one of {', '.join(MODES)}; got {chosen!r}")
    bootstrap = os.environ.get(ENV_BOOTSTRAP, "").strip()
    if chosen == "external" or (not chosen and bootstrap):
        if not bootstrap:
            raise RuntimeError(f"{ENV_MODE}=external needs {ENV_BOOTSTRAP}=host:port")
        return _ExternalBroker(bootstrap)
    if chosen == "jars":
        return _JarsBroker(log_dir)
    reason = _docker_unavailable_reason()
    if reason is None:
        return _ContainerBroker(os.environ.get(ENV_IMAGE) or DOCKER_IMAGE)
    if chosen == "docker":
        raise RuntimeError(f"{ENV_MODE}=docker but {reason}")
    log.info("%s; running Kafka %s from its jars", reason, KAFKA_VERSION)
    return _JarsBroker(log_dir)


# --------------------------------------------------------------------------------------------------
# Public handle
# --------------------------------------------------------------------------------------------------


class LocalKafka:
    """One Kafka broker for a test session or the demo; start() picks where it comes from.

    ``log_dir`` keeps the jars broker's data, properties and ``broker.log`` there (default: a
    temporary folder removed by stop()). The other kinds ignore it.
    """

    def __init__(
        self, *, log_dir: Path | None = None, mode: str | None = None, sasl_ssl: SaslSslListener | None = None
    ) -> None:
        self._log_dir = log_dir
        self._mode = mode
        self._sasl_ssl = sasl_ssl
        self._backend: _Backend | None = None

    def start(self) -> LocalKafka:
        """Start the broker and wait until it answers; calling it again does nothing."""
        if self._backend is not None:
            return self
        backend = _choose_backend(self._log_dir, self._mode, self._sasl_ssl)
        # Registered before starting, so a JVM or container left by a failed start is cleaned up too.
        atexit.register(self.stop)
        self._backend = backend
        try:
            backend.start()
        except BaseException:
            self.stop()
            raise
        log.info("Kafka broker ready: kind=%s bootstrap=%s", backend.kind, backend.bootstrap)
        return self

    def stop(self) -> None:
        """Stop the broker and remove its temporary data (an external broker is left alone)."""
        backend, self._backend = self._backend, None
        atexit.unregister(self.stop)
        if backend is not None:
            backend.stop()

    @property
    def kind(self) -> Kind:
        return self._started().kind

    @property
    def bootstrap_servers(self) -> str:
        return self._started().bootstrap

    @property
    def sasl_ssl_bootstrap(self) -> str:
        """host:port of the extra SASL_SSL listener (started with ``sasl_ssl=``)."""
        backend = self._started()
        address = backend.sasl_ssl_bootstrap if isinstance(backend, _JarsBroker) else None
        if address is None:
            raise RuntimeError("this broker was started without a SASL_SSL listener")
        return address

    @property
    def can_restart(self) -> bool:
        """Whether the broker process can be stopped, paused and started again (kind "jars" only)."""
        return isinstance(self._backend, _JarsBroker)

    @property
    def log_path(self) -> Path | None:
        """The jars broker's log file; None for the other kinds."""
        return self._backend.log_path if isinstance(self._backend, _JarsBroker) else None

    def stop_broker_process(self, *, hard: bool = False) -> None:
        """Stop the broker JVM but keep its data and ports; hard=True kills it like a crash would."""
        self._jars().stop_process(hard=hard)

    def start_broker_process(self) -> None:
        """Start the broker JVM again on the same ports and data, and wait until it answers."""
        self._jars().start_process()

    def pause_broker_process(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open but nothing answers."""
        self._jars().signal_process(signal.SIGSTOP)

    def resume_broker_process(self) -> None:
        """Undo pause_broker_process (SIGCONT)."""
        self._jars().signal_process(signal.SIGCONT)

    def _started(self) -> _Backend:
        if self._backend is None:
            raise RuntimeError("the Kafka broker is not started; call start() or use it as a context manager")
        return self._backend

    def _jars(self) -> _JarsBroker:
        backend = self._started()
        if not isinstance(backend, _JarsBroker):
            raise RuntimeError(
                f"a Kafka broker of kind {backend.kind!r} cannot be stopped or paused by streampod; "
                f"only kind 'jars' can ({ENV_MODE}=jars)"
            )
        return backend

    def __enter__(self) -> LocalKafka:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        if self._backend is None:
            return "LocalKafka(not started)"
        return f"LocalKafka(kind={self._backend.kind!r}, bootstrap_servers={self._backend.bootstrap!r})"


def start_broker(*, log_dir: Path | None = None) -> LocalKafka:
    """Start a broker and return its handle; also usable as ``with start_broker() as kafka:``."""
    return LocalKafka(log_dir=log_dir).start()


# --------------------------------------------------------------------------------------------------
# python -m streampod.localkafka
# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run a broker until Ctrl-C or SIGTERM; prints ``bootstrap=HOST:PORT`` once it is ready."""
    parser = argparse.ArgumentParser(
        prog="python -m streampod.localkafka",
        description="Run a single-node Kafka broker for local development and tests.",
    )
    parser.add_argument("--log-dir", type=Path, help="keep the broker's data and log here (default: temporary)")
    parser.add_argument("--mode", choices=MODES, help=f"where the broker comes from (default: ${ENV_MODE} or auto)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    # Installed before starting, so a signal during the (up to a minute) start still cleans up.
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        with LocalKafka(log_dir=args.log_dir, mode=args.mode) as kafka:
            if not stop_requested.is_set():
                print(f"bootstrap={kafka.bootstrap_servers}", flush=True)
            while not stop_requested.wait(timeout=1.0):
                pass
            log.info("stopping the Kafka broker")
    except (RuntimeError, ValueError, TimeoutError) as exc:
        print(f"streampod: cannot run a Kafka broker: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    # Run the importable copy of this module, so that log records name streampod.localkafka, not __main__.
    from streampod.localkafka import main as _main

    raise SystemExit(_main())
