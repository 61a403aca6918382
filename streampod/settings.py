"""Every environment variable streampod reads, for all three containers, in one module.

Settings are read once at start into frozen, validated models. ``load`` turns every problem
into one ConfigError naming each offending variable and what it expects, so a bad deployment
stops at once with one message instead of failing later on the first message.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AnyHttpUrl, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from streampod.errors import ConfigError

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
    """Extra librdkafka properties as JSON, e.g. {"fetch.max.bytes": "52428800"}."""

    def kafka_problems(self) -> list[str]:
        """Cross-field problems; the container's own validator reports them with its own."""
        if not self.kafka_security_protocol.startswith("SASL"):
            return []
        missing = [n for n in ("kafka_sasl_mechanism", "kafka_sasl_username") if getattr(self, n) is None]
        if self.kafka_sasl_password is None and self.kafka_sasl_password_file is None:
            missing.append("kafka_sasl_password")
        return [_required(missing, "kafka_security_protocol", self.kafka_security_protocol)] if missing else []

    def librdkafka_config(self) -> dict[str, str]:
        assert self.kafka_bootstrap_servers is not None
        conf: dict[str, str] = {
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

    def _password(self) -> str | None:
        if self.kafka_sasl_password_file is not None:
            return self.kafka_sasl_password_file.read_text().strip()
        return self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None


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


class InputReaderSettings(_Base, KafkaConnection, RetrySettings):
    input_kind: Literal["kafka", "file"] = "kafka"
    """"kafka", or "file" to replay a JSON-lines file (INPUT_FILE) with no broker."""
    input_topics: CommaList = ()
    """Topics to consume, comma-separated."""
    input_file: Path | None = None
    """INPUT_KIND=file: the JSON-lines file to read."""
    consumer_group: str | None = None
    """The Kafka consumer group of this stage."""
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    """Where a partition with no committed offset starts."""
    dead_letter_topic: str | None = None
    """Where rejected and retry-exhausted messages go; default "<consumer group>.dlq"."""
    dead_letter_file: Path | None = None
    """File input: where dead letters go; default "<input file>.deadletter.jsonl"."""

    app_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8080")
    """The app container (batch mode: its base URL; single mode: the URL posted to)."""
    delivery_mode: Literal["batch", "single"] = "batch"
    """"batch": contract v1 batches; "single": one raw payload per POST to APP_URL as given."""
    encoding: Encoding = "json"
    """How payloads travel to the app: "json" (checked and embedded; bad JSON is dead-lettered), "text" or "base64"."""
    batch_max_messages: int = Field(default=500, ge=1)
    """Most messages in one request to the app."""
    batch_max_bytes: int = Field(default=1_048_576, ge=1024)
    """Most payload bytes in one request to the app."""
    max_message_bytes: int = Field(default=1_048_576, ge=1)
    """A message larger than this is dead-lettered before it is sent."""
    max_in_flight_batches: int = Field(default=8, ge=1)
    """Batches at the app at once, across partitions (one per partition at a time)."""
    max_buffered_per_partition: int = Field(default=2000, ge=1)
    """A partition holding more buffered messages than this is paused until half are answered."""
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

    @model_validator(mode="after")
    def _kind_complete(self) -> InputReaderSettings:
        missing: list[str] = []
        problems = []
        if self.input_kind == "kafka":
            missing += [n for n in ("kafka_bootstrap_servers", "consumer_group") if getattr(self, n) is None]
            if not self.input_topics:
                missing.append("input_topics")
            problems = self.kafka_problems()
        elif self.input_file is None:
            missing.append("input_file")
        if missing:
            problems.insert(0, _required(missing, "input_kind", self.input_kind))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def dead_letter_destination(self) -> str:
        if self.input_kind == "file":
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


class OutputWriterSettings(_Base, KafkaConnection):
    ops_port: int = Field(default=9092, ge=1, le=65535)
    """Port of /healthz, /readyz and /metrics."""
    writer_host: str = "127.0.0.1"
    """Address the contract endpoints bind to (the pod is the trust boundary)."""
    writer_port: int = Field(default=8081, ge=1, le=65535)
    """Port of POST /v1/messages and POST /v1/message."""
    output_kind: Literal["kafka", "file"] = "kafka"
    """"kafka", or "file" to append JSON lines to OUTPUT_FILE."""
    output_topic: str | None = None
    """Default destination topic."""
    output_allowed_topics: CommaList = ()
    """Topics a message may name in its "topic" field; any other name falls back to OUTPUT_TOPIC."""
    output_file: Path | None = None
    """OUTPUT_KIND=file: the JSON-lines file to append to."""
    max_body_bytes: int = Field(default=16 * 1_048_576, ge=1024)
    """Largest request body accepted; larger ones get 413."""
    delivery_timeout_ms: int = Field(default=30_000, ge=1000)
    """How long librdkafka may try to deliver before a message is answered "retry"."""
    linger_ms: int = Field(default=5, ge=0)
    """How long the producer waits to fill a batch (librdkafka linger.ms)."""

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
            missing = [n for n in ("kafka_bootstrap_servers", "output_topic") if getattr(self, n) is None]
            problems = self.kafka_problems()
        else:
            missing = ["output_file"] if self.output_file is None else []
        if missing:
            problems.insert(0, _required(missing, "output_kind", self.output_kind))
        if problems:
            raise ValueError("; ".join(problems))
        return self


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
