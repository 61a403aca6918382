"""What a data scientist's code imports: ``from streampod.app import Message, Output, Reject, Retry``.

Write one module that defines ``process(message)`` (or ``process_batch(messages)``)::

    from streampod.app import Message, Output, Reject

    def process(message: Message) -> dict:
        order = message.value                    # parsed JSON
        if order["amount"] < 0:
            raise Reject("negative amount")      # dead-lettered with this reason
        return {**order, "flagged": order["amount"] > 1000}

``process`` returns a value (one output, key and headers as the input's), an ``Output`` (to set
key, headers, topic or encoding), a list of them (0..n outputs), or None (no output). Raise
``Reject`` for a message that can never succeed, ``Retry`` for one that may succeed later; any
other exception rejects that message only. ``process_batch(messages)`` returns one such entry per
message (an exception instance counts as raised). Optional: ``setup()`` (run once before serving;
may be async; ``setup(settings)`` gets the AppSettings, e.g. ``settings.model_path``),
``INPUT_SCHEMA`` (a JSON Schema dict) or ``InputModel`` (a pydantic model: your code then gets
the instance as ``message.value``). Test it with ``streampod.testing.AppHarness``.
"""

from ._message import Message, Output, Reject, Retry

__all__ = ["Message", "Output", "Reject", "Retry"]
