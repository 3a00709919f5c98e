"""Accept loops at the open-files limit: back off, one line per interval, no traceback, recover."""

from __future__ import annotations

import errno
import functools
import logging
import os

import pytest
import trio
import trio.testing
from fakes import FakeContainer, read_to_eof

from broker.transports.accept import (
    ACCEPT_BACKOFF,
    ACCEPT_BACKOFF_MAX,
    ACCEPT_LOG_INTERVAL,
    AcceptGuard,
    serve_listeners,
)
from broker.transports.tcp import serve_tcp


class ShortOfDescriptors(trio.abc.Listener[trio.abc.Stream]):
    """Refuses `failures` accepts (an errno each), then hands out queued streams."""

    def __init__(self, failures: list[int]) -> None:
        self.failures = failures
        self.send, self.incoming = trio.open_memory_channel[trio.abc.Stream](10)
        self.attempts: list[float] = []
        self.closed = False

    def connect(self) -> trio.abc.Stream:
        client, server = trio.testing.memory_stream_pair()
        self.send.send_nowait(server)
        return client

    async def accept(self) -> trio.abc.Stream:
        await trio.lowlevel.checkpoint()
        self.attempts.append(trio.current_time())
        if self.failures:
            code = self.failures.pop(0)
            raise OSError(code, os.strerror(code))
        return await self.incoming.receive()

    async def aclose(self) -> None:
        self.closed = True
        await trio.lowlevel.checkpoint()


def refused_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "cannot accept connections" in r.getMessage()]


@pytest.fixture(autouse=True)
def _logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)


async def test_a_short_shortage_is_one_line_and_then_served(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    listener = ShortOfDescriptors([errno.EMFILE] * 5)
    guard = AcceptGuard()
    container = FakeContainer()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(serve_tcp, [listener], container, guard=guard))
            client = listener.connect()  # waits "in the backlog" meanwhile
            await client.send_all(b"BYE")
            assert await read_to_eof(client) == b"BYE"  # served once accept works again
            nursery.cancel_scope.cancel()
    assert guard.refused == 5
    # backing off: 0.1, 0.2, 0.4, 0.8 s between the failed attempts
    gaps = [b - a for a, b in zip(listener.attempts, listener.attempts[1:], strict=False)]
    assert gaps[:4] == pytest.approx([0.1, 0.2, 0.4, 0.8])
    lines = refused_lines(caplog)
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert "EMFILE" in lines[0].getMessage()
    assert "accepting connections again (5 accept(s) refused in all)" in caplog.text
    assert not [r for r in caplog.records if r.exc_info]  # never a traceback
    assert not [r for r in caplog.records if r.name.startswith("trio")]
    assert listener.closed


async def test_a_long_shortage_is_one_line_per_interval_with_counts(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    failures = 70  # 0.1+0.2+0.4+0.8, then 1 s apart: about 66 s of refusing
    listener = ShortOfDescriptors([errno.ENFILE] * failures)
    guard = AcceptGuard()

    async def handler(stream: trio.abc.Stream) -> None:
        pass

    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            await nursery.start(
                functools.partial(serve_listeners, handler, [listener], guard=guard)
            )
            while listener.failures:
                await trio.sleep(1)
            nursery.cancel_scope.cancel()
    assert guard.refused == failures
    lines = refused_lines(caplog)
    span = listener.attempts[-1] - listener.attempts[0]
    assert len(lines) == int(span // ACCEPT_LOG_INTERVAL) + 1
    assert max(b - a for a, b in zip(listener.attempts, listener.attempts[1:], strict=False)) \
        == pytest.approx(ACCEPT_BACKOFF_MAX)
    # each line counts the refusals since the one before (those after the last
    # line would be in the next one)
    counts = [int(r.getMessage().split("; ")[1].split()[0]) for r in lines]
    # at t=0; then 0.1, 0.3, 0.7, 1.5 and 2.5 .. 10.5 s; then 1 s apart
    assert counts[:3] == [1, 13, 10]
    assert failures - 10 <= sum(counts) <= failures
    assert not [r for r in caplog.records if r.exc_info]


async def test_listeners_share_the_guard_and_its_log_budget(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    a = ShortOfDescriptors([errno.EMFILE] * 3)
    b = ShortOfDescriptors([errno.ENOBUFS] * 3)
    guard = AcceptGuard()

    async def handler(stream: trio.abc.Stream) -> None:
        pass

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(serve_listeners, handler, [a, b], guard=guard))
            await trio.sleep(5)
            nursery.cancel_scope.cancel()
    assert guard.refused == 6
    assert len(refused_lines(caplog)) == 1


async def test_other_accept_errors_propagate() -> None:
    listener = ShortOfDescriptors([errno.EBADF])

    async def handler(stream: trio.abc.Stream) -> None:
        pass

    with pytest.raises(BaseExceptionGroup) as info:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_listeners, handler, [listener])
    matched, _ = info.value.split(lambda e: isinstance(e, OSError) and e.errno == errno.EBADF)
    assert matched is not None
    assert len(listener.attempts) == 1  # no retry: only capacity errors are waited out


def test_backoff_constants_are_sane() -> None:
    assert 0 < ACCEPT_BACKOFF <= ACCEPT_BACKOFF_MAX < ACCEPT_LOG_INTERVAL
