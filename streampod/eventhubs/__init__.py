"""Azure Event Hubs: the native (AMQP) input and output, and the names both share.

``connection`` parses connection strings without the Azure SDK, so settings can validate them in a
Kafka-only container. ``clients`` builds the SDK's clients and is imported only where Event Hubs is used.
"""
