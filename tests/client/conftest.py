"""Fixtures shared by the proton_ws tests: the broker, in-process on loopback."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

import pytest
import trio

from broker.config import Config
from broker.server import ServerInfo, serve

USERS = {"guest": "guest", "alice": "secret"}


@pytest.fixture
async def server(nursery: trio.Nursery) -> AsyncIterator[ServerInfo]:
    config = Config(port=0, ws_port=0, users=USERS)
    info: ServerInfo = await nursery.start(functools.partial(serve, config, shutdown_grace=1.0))
    yield info
    info.shutdown()
