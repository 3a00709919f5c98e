"""amqpws-broker: a small pure-Python AMQP 1.0 broker over TCP and WebSocket."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
