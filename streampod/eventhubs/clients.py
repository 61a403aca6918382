"""The Azure SDK's clients, built from settings: a connection string, or a namespace and a credential.

With a namespace (or a Blob account URL) the credential is ``DefaultAzureCredential``, which on AKS
picks up workload identity from the pod's environment. One credential serves every client of a
process; whoever builds a ``Credentials`` closes it.
"""

from __future__ import annotations

from typing import Any

from azure.eventhub.aio import EventHubConsumerClient, EventHubProducerClient
from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore
from azure.identity.aio import DefaultAzureCredential

from streampod.eventhubs.connection import EventHubConnectionString

#: Sent as the AMQP user agent prefix, so a namespace's diagnostics show who connected.
USER_AGENT = "streampod"


class Credentials:
    """One ``DefaultAzureCredential`` for the process, made on first use."""

    def __init__(self) -> None:
        self._credential: DefaultAzureCredential | None = None

    def get(self) -> DefaultAzureCredential:
        if self._credential is None:
            self._credential = DefaultAzureCredential()
        return self._credential

    async def close(self) -> None:
        if self._credential is not None:
            await self._credential.close()
            self._credential = None


class EventHubAuth:
    """How to reach a namespace: its connection string, or its host name and a credential."""

    def __init__(
        self, connection: EventHubConnectionString | None, namespace: str | None, credentials: Credentials
    ) -> None:
        if connection is None and namespace is None:
            raise ValueError("a connection string or a namespace is needed")
        self.connection = connection
        self.namespace = namespace
        self.credentials = credentials

    @property
    def fully_qualified_namespace(self) -> str:
        return self.connection.fully_qualified_namespace if self.connection else str(self.namespace)

    def producer(self, hub: str, **kwargs: Any) -> EventHubProducerClient:
        if self.connection is not None:
            return EventHubProducerClient.from_connection_string(
                self.connection.secret, eventhub_name=hub, user_agent=USER_AGENT, **kwargs
            )
        return EventHubProducerClient(
            str(self.namespace), hub, credential=self.credentials.get(), user_agent=USER_AGENT, **kwargs
        )

    def consumer(self, hub: str, consumer_group: str, **kwargs: Any) -> EventHubConsumerClient:
        if self.connection is not None:
            return EventHubConsumerClient.from_connection_string(
                self.connection.secret, consumer_group, eventhub_name=hub, user_agent=USER_AGENT, **kwargs
            )
        return EventHubConsumerClient(
            str(self.namespace), hub, consumer_group, credential=self.credentials.get(), user_agent=USER_AGENT, **kwargs
        )


def checkpoint_store(
    connection_string: str | None, account_url: str | None, container: str, credentials: Credentials
) -> BlobCheckpointStore:
    """The Blob checkpoint store: ownership and checkpoints of every partition, in ``container``."""
    if connection_string is not None:
        return BlobCheckpointStore.from_connection_string(connection_string, container)
    if account_url is None:
        raise ValueError("a Storage connection string or an account URL is needed")
    return BlobCheckpointStore(account_url, container, credential=credentials.get())
