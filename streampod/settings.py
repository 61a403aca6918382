"""Every environment variable streampod reads, for all three containers, in one module.

Settings are read once at start into frozen, validated models. ``load`` turns every problem
into one ConfigError naming each offending variable and what it expects, so a bad deployment
stops at once with one message instead of failing later on the first message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AnyHttpUrl, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from streampod.errors import ConfigError
from streampod.eventhubs.connection import (
    KAFKA_USERNAME,
    EventHubConnectionString,
    check_storage_connection_string,
)

PREFIX = "STREAMPOD_"

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
Encoding = Literal["json", "text", "base64"]
CommaList = Annotated[tuple[str, ...], NoDecode]


def _split(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(p.strip() for p in value.split(",") if p.strip())
    return value


_CONFIG = SettingsConfigDict(
    env_prefix=PREFIX,
    frozen=True,
    extra="ignore",
    validate_default=True,
    use_attribute_docstrings=True,
)


class _Base(BaseSettings):
    model_config = _CONFIG

    log_level: LogLevel = "INFO"
    """Least severe level logged (JSON lines on stdout)."""
    log_payloads: bool = False
    """Log payloads of failed messages (off: logs carry coordinates only)."""
    ops_host: str = "0.0.0.0"  # probes and Prometheus reach this port from outside the pod
    """Address of the operations port (/healthz, /readyz, /metrics), reachable by probes and Prometheus."""
    ops_port: int = Field(default=9090, ge=1, le=65535)
    """Port of /healthz, /readyz and /metrics."""


_AT_LEAST_ONCE = "the at-least-once rules rest on it"
#: librdkafka properties streampod sets itself, and why: extra config may not change them. Any other
#: property, streampod's own tuning defaults included, is the user's to set.
_OWNED_KAFKA_PROPERTIES = {
    "group.id": f"set by {PREFIX}CONSUMER_GROUP",
    "group.instance.id": f"set by {PREFIX}GROUP_INSTANCE_ID",
    "auto.offset.reset": f"set by {PREFIX}AUTO_OFFSET_RESET",
    "linger.ms": f"set by {PREFIX}LINGER_MS",
    "message.timeout.ms": f"set by {PREFIX}DELIVERY_TIMEOUT_MS",
    "enable.auto.commit": _AT_LEAST_ONCE,
    "enable.auto.offset.store": _AT_LEAST_ONCE,
    "enable.idempotence": _AT_LEAST_ONCE,
    "acks": _AT_LEAST_ONCE,
    "partition.assignment.strategy": "the reader's rebalance handling assumes cooperative-sticky",
    "enable.partition.eof": "the reader's poll loop assumes it off",
}


class KafkaConnection(BaseSettings):
    """How to reach the Kafka cluster; shared by the input reader and the output writer."""

    model_config = _CONFIG

    kafka_bootstrap_servers: str | None = None
    """Kafka brokers, host:port[,host:port...]."""
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    """How to talk to the brokers; SASL_* needs KAFKA_SASL_MECHANISM, _USERNAME and a password."""
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    """SASL mechanism."""
    kafka_sasl_username: str | None = None
    """SASL user name."""
    kafka_sasl_password: SecretStr | None = None
    """SASL password (secret: prefer KAFKA_SASL_PASSWORD_FILE with a mounted Secret)."""
    kafka_sasl_password_file: Path | None = None
    """A file holding the SASL password (a mounted Secret); wins over KAFKA_SASL_PASSWORD."""
    kafka_ssl_ca_location: Path | None = None
    """CA bundle file to verify the brokers' certificates."""
    kafka_extra_config: dict[str, str] = Field(default_factory=dict)
    """Extra librdkafka properties as JSON, e.g. {"fetch.max.bytes": "52428800"}; one streampod sets itself (`acks`,
    `group.id`, `enable.auto.commit`, ...) stops the container at start, naming the setting that owns it."""
    kafka_eventhub_connection_string: SecretStr | None = None
    """Event Hubs via its Kafka endpoint: <namespace>:9093 and SASL_SSL/PLAIN are derived (secret: prefer _FILE)."""
    kafka_eventhub_connection_string_file: Path | None = None
    """A file holding that connection string (a mounted Secret); wins over KAFKA_EVENTHUB_CONNECTION_STRING."""

    @field_validator("kafka_extra_config")
    @classmethod
    def _extra_not_owned(cls, v: dict[str, str]) -> dict[str, str]:
        owned = [f"{k} ({_OWNED_KAFKA_PROPERTIES[k]})" for k in sorted(v) if k in _OWNED_KAFKA_PROPERTIES]
        if owned:
            raise ValueError(f"streampod sets {', '.join(owned)}; leave them out")
        return v

    def kafka_missing(self) -> list[str]:
        """Fields a Kafka connection lacks (an Event Hubs connection string stands in for the brokers)."""
        if self.kafka_bootstrap_servers is None and not self._kafka_eventhub_given():
            return ["kafka_bootstrap_servers"]
        return []

    def kafka_problems(self) -> list[str]:
        """Cross-field problems; the container's own validator reports them with its own."""
        if self._kafka_eventhub_given():
            return self._kafka_eventhub_problems()
        if not self.kafka_security_protocol.startswith("SASL"):
            return []
        missing = [n for n in ("kafka_sasl_mechanism", "kafka_sasl_username") if getattr(self, n) is None]
        if self.kafka_sasl_password is None and self.kafka_sasl_password_file is None:
            missing.append("kafka_sasl_password")
        return [_required(missing, "kafka_security_protocol", self.kafka_security_protocol)] if missing else []

    def librdkafka_config(self) -> dict[str, str]:
        eventhub = self._kafka_eventhub()
        if eventhub is not None:
            conf = _eventhub_kafka_config(eventhub)
            if self.kafka_ssl_ca_location:
                conf["ssl.ca.location"] = str(self.kafka_ssl_ca_location)
            conf.update(self.kafka_extra_config)
            return conf
        assert self.kafka_bootstrap_servers is not None
        conf = {
            "bootstrap.servers": self.kafka_bootstrap_servers,
            "security.protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism:
            conf["sasl.mechanism"] = self.kafka_sasl_mechanism
        if self.kafka_sasl_username:
            conf["sasl.username"] = self.kafka_sasl_username
        password = self._password()
        if password is not None:
            conf["sasl.password"] = password
        if self.kafka_ssl_ca_location:
            conf["ssl.ca.location"] = str(self.kafka_ssl_ca_location)
        conf.update(self.kafka_extra_config)
        return conf

    def kafka_producer_config(self) -> dict[str, str]:
        """librdkafka_config() plus what only a producer needs."""
        conf = self.librdkafka_config()
        if self._kafka_eventhub_given() and "compression.type" not in self.kafka_extra_config:
            # Not every Event Hubs tier accepts compressed Kafka batches; uncompressed works on all.
            conf["compression.type"] = "none"
        return conf

    def _password(self) -> str | None:
        if self.kafka_sasl_password_file is not None:
            return self.kafka_sasl_password_file.read_text().strip()
        return self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None

    def _kafka_eventhub_given(self) -> bool:
        return (
            self.kafka_eventhub_connection_string is not None or self.kafka_eventhub_connection_string_file is not None
        )

    def _kafka_eventhub(self) -> EventHubConnectionString | None:
        text = _secret(self.kafka_eventhub_connection_string, self.kafka_eventhub_connection_string_file)
        return None if text is None else EventHubConnectionString.parse(text)

    def _kafka_eventhub_problems(self) -> list[str]:
        name = "kafka_eventhub_connection_string"
        problems = _connection_string_problems(name, self.kafka_eventhub_connection_string_file, self._kafka_eventhub)
        clashing = [
            f
            for f in (
                "kafka_bootstrap_servers",
                "kafka_sasl_username",
                "kafka_sasl_password",
                "kafka_sasl_password_file",
            )
            if getattr(self, f) is not None
        ]
        clashing += [f for f in ("kafka_security_protocol", "kafka_sasl_mechanism") if f in self.model_fields_set]
        if clashing:
            problems.append(
                f"{', '.join(env_name(f) for f in clashing)}: not used with {env_name(name)}, "
                "which sets the brokers and SASL itself; remove them"
            )
        return problems


class EventHubConnection(BaseSettings):
    """How to reach Event Hubs natively (AMQP); shared by the input reader and the output writer."""

    model_config = _CONFIG

    eventhub_connection_string: SecretStr | None = None
    """Event Hubs connection string, namespace-level or with EntityPath (secret: prefer the _FILE)."""
    eventhub_connection_string_file: Path | None = None
    """A file holding the Event Hubs connection string (a mounted Secret); wins over EVENTHUB_CONNECTION_STRING."""
    eventhub_namespace: str | None = None
    """Fully qualified namespace (ns.servicebus.windows.net) reached with DefaultAzureCredential (workload identity)."""

    def eventhub_connection(self) -> EventHubConnectionString | None:
        """The parsed connection string; None when the namespace and a credential are used instead."""
        text = _secret(self.eventhub_connection_string, self.eventhub_connection_string_file)
        return None if text is None else EventHubConnectionString.parse(text)

    def eventhub_problems(self, hubs: Sequence[str], because: str, value: str) -> list[str]:
        """What stops a connection to ``hubs``, asked for by setting ``because`` to ``value``."""
        name = "eventhub_connection_string"
        given = self.eventhub_connection_string is not None or self.eventhub_connection_string_file is not None
        if not given and self.eventhub_namespace is None:
            cs, ns = env_name(name), env_name("eventhub_namespace")
            return [f"{cs} (or {cs}_FILE) or {ns}: required when {env_name(because)}={value}"]
        if given and self.eventhub_namespace is not None:
            return [
                f"{env_name(name)} and {env_name('eventhub_namespace')}: give one, a connection string "
                "or a namespace for DefaultAzureCredential"
            ]
        if self.eventhub_namespace is not None:
            if not re.fullmatch(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+(:\d+)?", self.eventhub_namespace):
                return [f"{env_name('eventhub_namespace')}: expects a host name like ns.servicebus.windows.net"]
            return []
        problems = _connection_string_problems(name, self.eventhub_connection_string_file, self.eventhub_connection)
        conn = None if problems else self.eventhub_connection()
        if conn is not None and conn.entity_path is not None:
            others = sorted({h for h in hubs if h != conn.entity_path})
            if others:
                problems.append(
                    f"{env_name(name)}: scoped to event hub {conn.entity_path!r} (EntityPath) but "
                    f"{', '.join(map(repr, others))} is used too; give a namespace-level connection string"
                )
        return problems


class RetrySettings(BaseSettings):
    model_config = _CONFIG

    retry_initial_backoff_ms: int = Field(default=100, ge=1)
    """First wait before a retry; doubles per attempt (with jitter) up to RETRY_MAX_BACKOFF_MS."""
    retry_max_backoff_ms: int = Field(default=10_000, ge=1)
    """Longest wait between two retries."""
    retry_max_attempts: int = Field(default=8, ge=1)
    """Attempts for a failing batch (5xx, timeout, contract error) before it is split."""
    message_max_retries: int = Field(default=5, ge=0)
    """Times one message answered "retry" is tried again before it is dead-lettered."""


class InputReaderSettings(_Base, KafkaConnection, EventHubConnection, RetrySettings):
    input_kind: Literal["kafka", "eventhubs", "file"] = "kafka"
    """"kafka", "eventhubs" (native AMQP), or "file" to replay a JSON-lines file (INPUT_FILE) with no broker."""
    input_topics: CommaList = ()
    """Topics to consume, comma-separated (INPUT_KIND=eventhubs: the one event hub)."""
    input_file: Path | None = None
    """INPUT_KIND=file: the JSON-lines file to read."""
    consumer_group: str | None = None
    """The consumer group of this stage (Kafka group, or the event hub's consumer group, e.g. $Default)."""
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    """Where a partition with no committed offset starts."""
    group_instance_id: str | None = None
    """Kafka static membership (pod name): a restart rejoins at once; a stopped member leaves at the session timeout."""
    dead_letter_kind: Literal["kafka", "eventhubs", "file"] | None = None
    """Where dead letters go: "kafka" or "eventhubs"; default the input's kind ("file" for file input)."""
    dead_letter_topic: str | None = None
    """Where rejected and retry-exhausted messages go; default "<consumer group>.dlq" (an event hub must be named)."""
    dead_letter_file: Path | None = None
    """File input: where dead letters go; default "<input file>.deadletter.jsonl"."""
    eventhub_starting_position: str = "earliest"
    """Where a partition with no checkpoint starts: "earliest", "latest" or an ISO-8601 time with a zone."""
    checkpoint_store_connection_string: SecretStr | None = None
    """INPUT_KIND=eventhubs: Storage connection string of the checkpoint store (secret: prefer the _FILE)."""
    checkpoint_store_connection_string_file: Path | None = None
    """A file holding the Storage connection string (a mounted Secret); wins over CHECKPOINT_STORE_CONNECTION_STRING."""
    checkpoint_store_account_url: str | None = None
    """Blob account URL (https://account.blob.core.windows.net) reached with DefaultAzureCredential instead."""
    checkpoint_store_container: str | None = None
    """The blob container holding checkpoints and partition ownership (it must exist)."""
    eventhub_load_balancing_interval_s: float = Field(default=30.0, gt=0)
    """How often readers of one consumer group balance partitions through the checkpoint store."""
    eventhub_ownership_expiration_s: float | None = Field(default=None, gt=0)
    """A partition whose owner stopped renewing is taken over after this; default 6 x the balancing interval."""
    eventhub_prefetch: int = Field(default=300, ge=1)
    """Events the AMQP link may fetch ahead per partition."""

    app_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8080")
    """The app container (batch mode: its base URL; single mode: the URL posted to)."""
    delivery_mode: Literal["batch", "single"] = "batch"
    """"batch": contract v1 batches; "single": one raw payload per POST to APP_URL as given."""
    encoding: Encoding = "json"
    """How payloads travel to the app: "json" (checked and embedded; bad JSON is dead-lettered), "text" or "base64"."""
    # Two caps because they bound different costs (docs/benchmark.md): the count bounds how often each
    # request's fixed cost is paid, the bytes bound memory, since the app holds several batches parsed.
    batch_max_messages: int = Field(default=1000, ge=1)
    """Most messages in one request to the app."""
    batch_max_bytes: int = Field(default=524_288, ge=1024)
    """Most payload bytes in one request to the app; on Kafka, what the broker holds a fetch for (fetch.min.bytes)."""
    batch_wait_ms: int = Field(default=20, ge=1, le=60_000)
    """How long a read waits for a full batch before what came is sent (on Kafka, as fetch.wait.max.ms, at the broker):
    lower cuts latency at low rates, costs CPU."""
    max_message_bytes: int = Field(default=1_048_576, ge=1)
    """A message larger than this is dead-lettered before it is sent."""
    max_in_flight_batches: int = Field(default=8, ge=1)
    """Batches at the app at once, across partitions (one per partition at a time)."""
    max_buffered_per_partition: int = Field(default=5000, ge=1)
    """A partition holding more buffered messages than this is paused until half are answered."""
    max_buffered_messages: int = Field(default=10000, ge=1)
    """Most messages read and not yet answered, over all partitions; at this mark the reader stops reading."""
    request_timeout_s: float = Field(default=30.0, gt=0)
    """How long to wait for an answer before the request counts as failed."""
    commit_interval_ms: int = Field(default=1000, ge=10)
    """How often answered offsets are committed."""
    drain_timeout_s: float = Field(default=20.0, ge=0)
    """On SIGTERM or revocation: how long in-flight batches may take to finish."""
    exit_at_end: bool = True
    """File input: stop once the file is read and answered (the replay tool); else keep tailing."""

    @field_validator("input_topics", mode="before")
    @classmethod
    def _topics(cls, v: Any) -> Any:
        return _split(v)

    @field_validator("eventhub_starting_position")
    @classmethod
    def _starting_position(cls, v: str) -> str:
        if v not in ("earliest", "latest"):
            _parse_time(v)
        return v

    @field_validator("checkpoint_store_container")
    @classmethod
    def _container_name(cls, v: str | None) -> str | None:
        # Azure's rule: a bad name would otherwise fail on the first checkpoint, not at start.
        if v is not None and not re.fullmatch(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]", v):
            raise ValueError(
                f"{v!r} is not a blob container name (3-63 of a-z 0-9 -, no leading, trailing or double -)"
            )
        return v

    @model_validator(mode="after")
    def _kind_complete(self) -> InputReaderSettings:
        missing: list[str] = []
        problems = []
        kind = self.input_kind
        if kind in ("kafka", "eventhubs"):
            missing += ["consumer_group"] if self.consumer_group is None else []
            missing += [] if self.input_topics else ["input_topics"]
        if kind == "kafka":
            missing = self.kafka_missing() + missing
            problems = self.kafka_problems()
        elif kind == "eventhubs":
            problems = self._eventhub_input_problems()
        elif self.input_file is None:
            missing.append("input_file")
        if missing:
            problems.insert(0, _required(missing, "input_kind", kind))
        problems += self._dead_letter_problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _eventhub_input_problems(self) -> list[str]:
        problems = []
        if len(self.input_topics) > 1:
            problems.append(f"{env_name('input_topics')}: one event hub per input reader with INPUT_KIND=eventhubs")
        hubs = [
            *self.input_topics[:1],
            *([self.dead_letter_topic or ""] if self.dead_letter_sink == "eventhubs" else []),
        ]
        problems += self.eventhub_problems([h for h in hubs if h], "input_kind", "eventhubs")
        cs = "checkpoint_store_connection_string"
        given = (
            self.checkpoint_store_connection_string is not None
            or self.checkpoint_store_connection_string_file is not None
        )
        if not given and self.checkpoint_store_account_url is None:
            problems.append(
                f"{env_name(cs)} (or {env_name(cs)}_FILE) or {env_name('checkpoint_store_account_url')}: "
                "required when STREAMPOD_INPUT_KIND=eventhubs"
            )
        elif given and self.checkpoint_store_account_url is not None:
            problems.append(f"{env_name(cs)} and {env_name('checkpoint_store_account_url')}: give one")
        elif given:
            problems += _connection_string_problems(cs, self.checkpoint_store_connection_string_file, self._storage)
        elif not re.fullmatch(r"https?://[^/\s]+/?", self.checkpoint_store_account_url or ""):
            problems.append(
                f"{env_name('checkpoint_store_account_url')}: expects https://<account>.blob.core.windows.net"
            )
        if self.checkpoint_store_container is None:
            problems.append(f"{env_name('checkpoint_store_container')}: required when STREAMPOD_INPUT_KIND=eventhubs")
        return problems

    def _dead_letter_problems(self) -> list[str]:
        kind, dlq = self.input_kind, self.dead_letter_sink
        why = f"{env_name('dead_letter_kind')}={dlq}"
        if dlq == "file" and kind != "file":
            return [f"{why}: only for INPUT_KIND=file"]
        if dlq == "kafka" and kind != "kafka":
            missing = self.kafka_missing()
            problems = [f"{', '.join(env_name(f) for f in missing)}: required when {why}"] if missing else []
            return problems + self.kafka_problems()
        if dlq == "eventhubs":
            topic = self.dead_letter_topic
            if topic is None:
                problems = [f"{env_name('dead_letter_topic')}: required when {why} (the event hub)"]
            elif not _EVENT_HUB_NAME.fullmatch(topic):
                problems = [
                    f"{env_name('dead_letter_topic')}: {topic!r} is not an event hub name (letters, digits, . _ -)"
                ]
            else:
                problems = []
            if kind != "eventhubs":
                problems += self.eventhub_problems([self.dead_letter_topic or ""], "dead_letter_kind", dlq)
            return problems
        return []

    def _storage(self) -> str | None:
        text = _secret(self.checkpoint_store_connection_string, self.checkpoint_store_connection_string_file)
        if text is not None:
            check_storage_connection_string(text)
        return text

    def checkpoint_store_secret(self) -> str | None:
        """The Storage connection string (None: the account URL and DefaultAzureCredential are used)."""
        return self._storage()

    def starting_position(self) -> str | datetime:
        """The SDK's form: "-1" (earliest), "@latest" or an enqueued time."""
        v = self.eventhub_starting_position
        return {"earliest": "-1", "latest": "@latest"}.get(v) or _parse_time(v)

    @property
    def dead_letter_sink(self) -> Literal["kafka", "eventhubs", "file"]:
        """Where dead letters go, with the default resolved."""
        return self.dead_letter_kind or self.input_kind

    @property
    def dead_letter_destination(self) -> str:
        if self.dead_letter_sink == "file":
            return str(self.dead_letter_file or f"{self.input_file}.deadletter.jsonl")
        return self.dead_letter_topic or f"{self.consumer_group}.dlq"


class AppSettings(_Base):
    ops_port: int = Field(default=9091, ge=1, le=65535)
    """Port of /healthz, /readyz and /metrics."""
    app_host: str = "127.0.0.1"
    """Address the contract endpoint binds to (the pod is the trust boundary)."""
    app_port: int = Field(default=8080, ge=1, le=65535)
    """Port of POST /v1/messages."""
    app_module: str = "app"
    """The user's code: "package.module", "module:attribute" or a path to a .py file."""
    output_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8081")
    """The output writer container."""
    max_body_bytes: int = Field(default=16 * 1_048_576, ge=1024)
    """Largest request body accepted; larger ones get 413."""
    request_timeout_s: float = Field(default=60.0, gt=0)
    """How long to wait for an answer before the request counts as failed."""
    input_schema: Path | None = None
    """A JSON Schema file that every input value must satisfy (invalid: reject with the reason)."""
    app_concurrency: int = Field(default=1, ge=1, le=64)
    """Batches the user's code works on at once (threads for sync code); 1 is safe for any code."""
    app_inline_ms: float = Field(default=20.0, ge=0)
    """Sync code whose batches take under half this CPU runs on the event loop, not a thread; 0: always a thread."""
    model_path: Path | None = None
    """The model the app's setup(settings) loads (sklearn, pyspark templates); unset: the model/ beside app.py."""


class OutputWriterSettings(_Base, KafkaConnection, EventHubConnection):
    ops_port: int = Field(default=9092, ge=1, le=65535)
    """Port of /healthz, /readyz and /metrics."""
    writer_host: str = "127.0.0.1"
    """Address the contract endpoints bind to (the pod is the trust boundary)."""
    writer_port: int = Field(default=8081, ge=1, le=65535)
    """Port of POST /v1/messages and POST /v1/message."""
    output_kind: Literal["kafka", "eventhubs", "file"] = "kafka"
    """"kafka", "eventhubs" (native AMQP), or "file" to append JSON lines to OUTPUT_FILE."""
    output_topic: str | None = None
    """Default destination topic (OUTPUT_KIND=eventhubs: the event hub)."""
    output_allowed_topics: CommaList = ()
    """Topics a message may name in its "topic" field; any other name falls back to OUTPUT_TOPIC."""
    output_file: Path | None = None
    """OUTPUT_KIND=file: the JSON-lines file to append to."""
    max_body_bytes: int = Field(default=16 * 1_048_576, ge=1024)
    """Largest request body accepted; larger ones get 413."""
    delivery_timeout_ms: int = Field(default=30_000, ge=1000)
    """How long a send may take (librdkafka, or an Event Hubs send) before a message is answered "retry"."""
    linger_ms: int = Field(default=1, ge=0)
    """librdkafka linger.ms: whole batches arrive at once, so waiting longer only adds latency."""

    @field_validator("output_allowed_topics", mode="before")
    @classmethod
    def _topics(cls, v: Any) -> Any:
        return _split(v)

    @field_validator("output_topic", "output_allowed_topics")
    @classmethod
    def _legal_topics(cls, v: Any) -> Any:
        # Kafka's own rule: a bad name would otherwise fail every record at run time, not at start.
        for name in (v,) if isinstance(v, str) else v or ():
            if not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", name) or name in (".", ".."):
                raise ValueError(f"{name!r} is not a Kafka topic name (1-249 of A-Z a-z 0-9 . _ -)")
        return v

    @model_validator(mode="after")
    def _kind_complete(self) -> OutputWriterSettings:
        problems = []
        if self.output_kind == "kafka":
            missing = self.kafka_missing() + (["output_topic"] if self.output_topic is None else [])
            problems = self.kafka_problems()
        elif self.output_kind == "eventhubs":
            missing = ["output_topic"] if self.output_topic is None else []
            hubs = [h for h in (self.output_topic, *self.output_allowed_topics) if h]
            problems = self.eventhub_problems(hubs, "output_kind", "eventhubs")
        else:
            missing = ["output_file"] if self.output_file is None else []
        if missing:
            problems.insert(0, _required(missing, "output_kind", self.output_kind))
        if problems:
            raise ValueError("; ".join(problems))
        return self


#: Azure's rule for event hub names: 1-256 letters, digits, periods, hyphens and underscores,
#: starting and ending with a letter or digit.
_EVENT_HUB_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,254}[A-Za-z0-9])?")


def _secret(value: SecretStr | None, file: Path | None) -> str | None:
    """A secret from its mounted file (which wins) or from the environment."""
    if file is not None:
        return file.read_text().strip()
    return value.get_secret_value() if value is not None else None


def _connection_string_problems(name: str, file: Path | None, parse: Callable[[], object]) -> list[str]:
    """Why the connection string ``name`` (or its _FILE) cannot be used; the secret never appears."""
    try:
        parse()
    except OSError as exc:
        return [f"{env_name(name)}_FILE: cannot read {file}: {exc.strerror}"]
    except ValueError as exc:
        return [f"{env_name(name)}{'_FILE' if file is not None else ''}: {exc}"]
    return []


def _eventhub_kafka_config(eventhub: EventHubConnectionString) -> dict[str, str]:
    return {
        "bootstrap.servers": eventhub.kafka_bootstrap,
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
        "sasl.username": KAFKA_USERNAME,
        "sasl.password": eventhub.secret,
        # Event Hubs closes idle connections after 240 s; keep-alives and fresher metadata stay ahead of it.
        "socket.keepalive.enable": "true",
        "metadata.max.age.ms": "180000",
    }


def _parse_time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"expects earliest, latest or an ISO-8601 time; got {text!r}") from None
    if when.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone; add one, e.g. {text}Z")
    return when


S = TypeVar("S", bound=BaseSettings)


def env_name(field: str) -> str:
    return PREFIX + field.upper()


def load(model: type[S], **overrides: Any) -> S:
    """Read the environment into ``model``; raise one ConfigError naming every bad variable."""
    try:
        return model(**overrides)
    except ValidationError as exc:
        problems = _problems(exc)
        # Cross-field checks run only once every field parsed; run them again with the bad fields
        # at their defaults so that one message names everything there is to fix.
        fixed = {
            f: model.model_fields[f].get_default(call_default_factory=True)
            for f in _bad_fields(exc)
            if f in model.model_fields and not model.model_fields[f].is_required()
        }
        if fixed:
            try:
                model(**{**overrides, **fixed})
            except ValidationError as again:
                problems += [p for p in _problems(again) if p not in problems]
        raise ConfigError(f"invalid configuration: {'; '.join(problems)}") from None


def _bad_fields(exc: ValidationError) -> set[str]:
    return {str(e["loc"][0]) for e in exc.errors() if e["loc"]}


def _problems(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors(include_url=False):
        field = str(err["loc"][0]) if err["loc"] else ""
        msg = err["msg"].removeprefix("Value error, ")
        out.append(f"{env_name(field)}: {msg}" if field else msg)
    return out


def _required(fields: list[str], because: str, value: str) -> str:
    return f"{', '.join(env_name(f) for f in fields)}: required when {env_name(because)}={value}"


def describe(model: type[BaseSettings]) -> list[tuple[str, str, str, str]]:
    """(variable, type, default, description) for each field: the README's config reference."""
    rows = []
    for name, field in model.model_fields.items():
        default = "required" if field.is_required() else repr(field.get_default(call_default_factory=True))
        rows.append((env_name(name), _type_name(field.annotation), default, field.description or ""))
    return rows


def _type_name(ann: Any) -> str:
    if ann == tuple[str, ...]:
        return "comma-separated list"
    if isinstance(ann, type):
        return ann.__name__
    text = str(ann)
    for noise in ("typing.", "pathlib.", "pydantic.types.", "pydantic.networks."):
        text = text.replace(noise, "")
    return text.replace("Optional[", "None | ").replace("]]", "]") if "Optional[" in text else text
