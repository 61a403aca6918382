"""The streampod variant's app module: the shared transform on streampod's app runtime.

The runtime has parsed the JSON value already (contract v1, encoding json) and serialises the
output, so the transform's own parse and serialise steps are the runtime's here.
"""

from __future__ import annotations

from typing import Any

from streampod.app import Message
from streampod.bench.transform import enrich


def process(message: Message) -> dict[str, Any]:
    return enrich(message.value)
