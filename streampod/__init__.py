"""streampod: containerised building blocks for streaming ML pipelines.

The core package holds what the three containers share: the contract (``streampod.contract``),
settings (``streampod.settings``), errors, logging, metrics and the broker clients. Each container
lives in its own folder beside its Dockerfile and imports as ``streampod.input_reader``,
``streampod.app`` and ``streampod.output_writer``.
"""

__version__ = "0.1.0"
