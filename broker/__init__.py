"""amqpws-broker: a small pure-Python AMQP 1.0 broker over TCP and WebSocket.

Public API: `Config`, `serve` (run the broker in your own trio nursery) and
`running` (a context manager running it on a background thread).  The
latter two are imported on first use so that `import broker.codec` stays
free of trio.
"""

from __future__ import annotations

from typing import Any

from broker.config import Config, StreamConfig

__version__ = "0.1.0"

__all__ = ["Config", "StreamConfig", "__version__", "running", "serve"]


def __getattr__(name: str) -> Any:
    if name == "serve":
        from broker.server import serve

        return serve
    if name == "running":
        from broker.embedded import running

        return running
    raise AttributeError(f"module 'broker' has no attribute {name!r}")
