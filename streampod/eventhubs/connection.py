"""Event Hubs and Storage connection strings, parsed without the Azure SDK.

Settings validate them at start (a malformed string stops the container with one message) and the
Kafka connectors derive their bootstrap address from them, in containers that never install the
Azure SDK. The rules follow the SDK's own parser (``azure.eventhub.parse_connection_string``), which a
test compares against. Error messages never include the secret itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

#: The port of the Event Hubs Kafka endpoint.
KAFKA_PORT = 9093
#: The user name of the Event Hubs Kafka endpoint; the password is the connection string itself.
KAFKA_USERNAME = "$ConnectionString"


def _pairs(text: str, what: str) -> dict[str, str]:
    """``Key=Value;...`` into a dict with lower-case keys; values keep their '=' (base64 keys end with it)."""
    out: dict[str, str] = {}
    for part in text.strip().split(";"):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or not key:
            raise ValueError(f"malformed {what}: expected Key=Value pairs separated by ';'")
        if key in out:
            raise ValueError(f"malformed {what}: {key!r} appears twice")
        out[key] = value.strip()
    if not out:
        raise ValueError(f"malformed {what}: it is empty")
    return out


@dataclass(frozen=True)
class EventHubConnectionString:
    """The parts of an Event Hubs connection string that streampod needs."""

    host: str
    """The namespace's fully qualified host name, e.g. ns.servicebus.windows.net."""
    port: int | None
    """An explicit port in Endpoint (sb://host:port/): local endpoints and tests only."""
    entity_path: str | None
    """EntityPath: the one event hub this string is scoped to, if any."""
    emulator: bool
    """UseDevelopmentEmulator=true: the local Event Hubs emulator (plain AMQP, no TLS)."""
    secret: str = field(repr=False)
    """The whole string, as given: the SDK and the Kafka endpoint take it verbatim."""

    @property
    def fully_qualified_namespace(self) -> str:
        return f"{self.host}:{self.port}" if self.port else self.host

    @property
    def kafka_bootstrap(self) -> str:
        """The Kafka endpoint: the namespace on port 9093, or the Endpoint's own port when it names one."""
        return f"{self.host}:{self.port or KAFKA_PORT}"

    @classmethod
    def parse(cls, text: str) -> EventHubConnectionString:
        what = "Event Hubs connection string"
        pairs = _pairs(text, what)
        endpoint = pairs.get("endpoint")
        if not endpoint:
            raise ValueError(f"malformed {what}: no Endpoint=sb://<namespace>/")
        parts = urlsplit(endpoint)
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"malformed {what}: the Endpoint's port is not a number") from None
        if parts.scheme.lower() != "sb" or not parts.hostname:
            raise ValueError(f"malformed {what}: Endpoint must look like sb://<namespace>.servicebus.windows.net/")
        key_name, key, signature = (
            pairs.get(k) for k in ("sharedaccesskeyname", "sharedaccesskey", "sharedaccesssignature")
        )
        if bool(key_name) != bool(key):
            raise ValueError(f"malformed {what}: SharedAccessKeyName and SharedAccessKey go together")
        if key and signature:
            raise ValueError(f"malformed {what}: give SharedAccessKey or SharedAccessSignature, not both")
        if not key and not signature:
            raise ValueError(f"malformed {what}: no SharedAccessKey or SharedAccessSignature")
        return cls(
            host=parts.hostname,
            port=port,
            entity_path=pairs.get("entitypath") or None,
            emulator=pairs.get("usedevelopmentemulator", "").lower() == "true",
            secret=text.strip(),
        )


def check_storage_connection_string(text: str) -> None:
    """Raise ValueError when ``text`` cannot name a Blob endpoint and a way to authenticate to it."""
    what = "Storage connection string"
    pairs = _pairs(text, what)
    if pairs.get("usedevelopmentstorage", "").lower() == "true":
        return
    if "blobendpoint" not in pairs and "accountname" not in pairs:
        raise ValueError(f"malformed {what}: no AccountName or BlobEndpoint")
    if "accountname" in pairs and "accountkey" not in pairs and "sharedaccesssignature" not in pairs:
        raise ValueError(f"malformed {what}: AccountName needs an AccountKey or a SharedAccessSignature")
    if "blobendpoint" in pairs and not urlsplit(pairs["blobendpoint"]).hostname:
        raise ValueError(f"malformed {what}: BlobEndpoint is not a URL")
