"""Every exception streampod raises on purpose, in one tree.

::

    StreampodError
    ├── ConfigError            a setting is missing or malformed; raised once, at start
    ├── ContractError          a request or reply breaks HTTP contract v1 (the server answers 400)
    └── DeliveryError          a batch could not be handed to the next hop
        ├── PeerUnavailable    refused or reset connection, 503, 429: the peer is down or shedding
        │                      load, so the sender waits and retries without limit
        ├── PeerFailed         another 5xx or a timeout: retried up to the attempt budget, then the
        │                      batch is split and a lone message that still fails is dead-lettered
        ├── PeerRejectedBatch  another 4xx, or a 200 whose body breaks the contract: logged with the
        │                      reply body and handled like PeerFailed
        └── BatchTooLarge      413: the sender splits the batch at once; a lone message is dead-lettered

Errors are classes, never booleans: ``DeliveryError.retriable`` and ``DeliveryError.bounded`` tell the
caller what to do, so each connector does not decide it again.
"""

from __future__ import annotations


class StreampodError(Exception):
    """Base of every streampod error."""


class ConfigError(StreampodError):
    """Raised at start when one or more settings are missing or malformed.

    The message names every offending environment variable and what it expects.
    """


class ContractError(StreampodError):
    """Raised when a body does not follow HTTP contract v1; the text is the reason sent back."""


class DeliveryError(StreampodError):
    """Raised when a batch could not be handed to the next hop."""

    #: Worth trying again later.
    retriable: bool = True
    #: Counts against the attempt budget (False: retried for as long as it takes).
    bounded: bool = True

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class PeerUnavailable(DeliveryError):
    """Raised on a refused or reset connection, 503 or 429: retried without limit."""

    bounded = False


class PeerFailed(DeliveryError):
    """Raised on another 5xx or a timeout: retried within the attempt budget."""


class PeerRejectedBatch(DeliveryError):
    """Raised on another 4xx or a malformed 200 reply: a contract error, retried within the budget."""


class BatchTooLarge(DeliveryError):
    """Raised on 413: the sender splits the batch instead of retrying it whole."""
