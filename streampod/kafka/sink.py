"""Records to Kafka through the shared AsyncProducer (idempotent, ``acks=all``)."""

from __future__ import annotations

from collections.abc import Sequence

from streampod.kafka.producer import AsyncProducer
from streampod.sink import Delivery, OutRecord, Sink


class KafkaSink(Sink):
    def __init__(
        self,
        config: dict[str, str],
        *,
        delivery_timeout_ms: int = 30_000,
        linger_ms: int = 5,
        name: str = "output-writer",
    ) -> None:
        self.producer = AsyncProducer(config, delivery_timeout_ms=delivery_timeout_ms, linger_ms=linger_ms, name=name)

    async def start(self) -> None:
        await self.producer.start()

    async def write(self, records: Sequence[OutRecord]) -> list[Delivery]:
        return await self.producer.send(records)

    def ready(self) -> tuple[bool, str]:
        return self.producer.ready()

    async def close(self) -> None:
        await self.producer.close()
