"""Your pipeline stage: edit process() below. Everything else (HTTP, validation, forwarding) is ours.

Each input record arrives as a Message: ``message.value`` is already an ``Order`` (the InputModel
below), ``message.key`` its key. Return what to write downstream: a dict here (one output, same
key). Raise ``Reject("why")`` for a record that can never succeed (it is dead-lettered with the
reason), ``Retry("why")`` for one that may succeed later. Any other exception rejects that record
only, with the exception as the reason. See README.md to test and replay it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from streampod.app import Message


class Order(BaseModel):
    """The input record. An invalid one is rejected with a reason naming the field."""

    user: str = Field(min_length=1)
    amount: float = Field(ge=0)
    currency: str = Field(min_length=3, max_length=3)


InputModel = Order

RATES_TO_USD = {"USD": 1.0, "EUR": 1.08, "GBP": 1.27, "CHF": 1.13}
FLAG_ABOVE_USD = 1000.0


def process(message: Message) -> dict[str, Any]:
    order: Order = message.value
    # An unknown currency raises KeyError: that record is rejected ("KeyError: 'JPY'").
    amount_usd = round(order.amount * RATES_TO_USD[order.currency], 2)
    return {**order.model_dump(), "amount_usd": amount_usd, "flagged": amount_usd > FLAG_ABOVE_USD}
