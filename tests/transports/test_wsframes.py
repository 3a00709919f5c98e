"""RFC 6455 framing (sans-io): every case whole, byte by byte and in odd chunks."""

from __future__ import annotations

import os

import pytest

from broker.transports.wsframes import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_TEXT,
    WsControl,
    WsFrameReader,
    WsProtocolError,
    close_frame,
    encode_frame,
    frame_head,
    unmask,
    unmask_python,
)


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True,
                 rsv: int = 0) -> bytes:
    n = len(payload)
    head = bytes(((0x80 if fin else 0) | rsv | opcode,))
    m = 0x80 if masked else 0
    if n < 126:
        head += bytes((m | n,))
    elif n < 65536:
        head += bytes((m | 126,)) + n.to_bytes(2, "big")
    else:
        head += bytes((m | 127,)) + n.to_bytes(8, "big")
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + unmask(payload, mask, 0)


def feed(data: bytes, step: int) -> list[object]:
    reader = WsFrameReader()
    events: list[object] = []
    for i in range(0, len(data), step):
        events += reader.feed(data[i : i + step])
    return events


def payload_of(events: list[object]) -> bytes:
    return b"".join(e for e in events if isinstance(e, bytes))


STEPS = [1, 3, 7, 1000, 10**7]


@pytest.mark.parametrize("step", STEPS)
def test_binary_messages_and_fragments_are_one_byte_stream(step: int) -> None:
    data = (client_frame(OP_BINARY, b"hello")
            + client_frame(OP_BINARY, b"x" * 70000, fin=False)
            + client_frame(OP_CONTINUATION, b"y" * 300, fin=False)
            + client_frame(OP_CONTINUATION, b"z"))
    events = feed(data, step)
    assert payload_of(events) == b"hello" + b"x" * 70000 + b"y" * 300 + b"z"
    assert all(isinstance(e, bytes) for e in events)


@pytest.mark.parametrize("step", STEPS)
def test_control_frames_between_fragments(step: int) -> None:
    data = (client_frame(OP_BINARY, b"ab", fin=False) + client_frame(OP_PING, b"p1")
            + client_frame(OP_CONTINUATION, b"cd") + client_frame(OP_PING, b"")
            + client_frame(OP_CLOSE, b"\x03\xe8bye"))
    events = feed(data, step)
    assert payload_of(events) == b"abcd"
    controls = [e for e in events if isinstance(e, WsControl)]
    assert controls == [WsControl(OP_PING, b"p1"), WsControl(OP_PING, b""),
                        WsControl(OP_CLOSE, b"\x03\xe8bye")]


@pytest.mark.parametrize("step", STEPS)
def test_whole_frames_of_every_length_form_in_one_read(step: int) -> None:
    # the reader's quick way takes whole final binary frames of up to 65535
    # bytes; the lengths at its edges, and the forms it leaves to the general
    # way (empty, 64-bit, fragmented), interleaved in one read
    sizes = [1, 125, 126, 0, 65535, 65536, 7, 126]
    payloads = [os.urandom(n) for n in sizes]
    data = b"".join(client_frame(OP_BINARY, p) for p in payloads[:4])
    data += client_frame(OP_PING, b"p") + client_frame(OP_BINARY, b"ab", fin=False)
    data += client_frame(OP_CONTINUATION, b"cd")
    data += b"".join(client_frame(OP_BINARY, p) for p in payloads[4:])
    events = feed(data, step)
    assert payload_of(events) == b"".join(payloads[:4]) + b"abcd" + b"".join(payloads[4:])
    assert [e for e in events if not isinstance(e, bytes)] == [WsControl(OP_PING, b"p")]


def test_text_frames_are_reported_not_delivered() -> None:
    events = feed(client_frame(OP_TEXT, b"hi"), 1)
    assert events == [OP_TEXT]


@pytest.mark.parametrize(
    ("frame", "why"),
    [
        (client_frame(OP_BINARY, b"x", masked=False), "masked"),
        (client_frame(OP_BINARY, b"x", rsv=0x40), "reserved"),
        (client_frame(OP_PING, b"x" * 126), "125"),
        (client_frame(OP_PING, b"x", fin=False), "final"),
        (client_frame(OP_CONTINUATION, b"x"), "continuation"),
        (client_frame(0x3, b"x"), "opcode"),
        (client_frame(0xB, b"x"), "opcode"),
        (client_frame(OP_BINARY, b"a", fin=False) + client_frame(OP_BINARY, b"b"), "previous"),
    ],
)
def test_protocol_errors(frame: bytes, why: str) -> None:
    with pytest.raises(WsProtocolError, match=why):
        feed(frame, 10**6)


def long_length_header(opcode: int, length: int) -> bytes:
    """A masked frame header with the 64-bit length form (127) and `length` as is."""
    return bytes((0x80 | opcode, 0x80 | 127)) + length.to_bytes(8, "big") + b"\x01\x02\x03\x04"


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("length", [1 << 63, (1 << 64) - 1, (1 << 63) | 5])
def test_64_bit_length_with_the_top_bit_set_is_a_protocol_error(step: int, length: int) -> None:
    # §5.2: "the most significant bit MUST be 0"; the server closes with 1002
    data = client_frame(OP_BINARY, b"ok") + long_length_header(OP_BINARY, length) + b"xx"
    with pytest.raises(WsProtocolError, match="most significant bit"):
        feed(data, step)


@pytest.mark.parametrize("step", STEPS)
def test_largest_legal_64_bit_length_streams(step: int) -> None:
    data = long_length_header(OP_BINARY, (1 << 63) - 1) + b"\x01\x02\x03\x04" * 3
    assert payload_of(feed(data, step)) == bytes(12)  # unmasked, and still in the frame


@pytest.mark.parametrize("n", [0, 1, 125, 126, 65535, 65536, 200000])
def test_a_frame_head_is_the_frames_bytes_before_its_payload(n: int) -> None:
    payload = b"q" * n
    assert frame_head(OP_BINARY, n) + payload == encode_frame(OP_BINARY, payload)


@pytest.mark.parametrize("n", [0, 1, 125, 126, 65535, 65536, 200000])
def test_server_frames_use_the_shortest_length_and_no_mask(n: int) -> None:
    frame = encode_frame(OP_BINARY, b"q" * n)
    assert frame[0] == 0x80 | OP_BINARY
    assert not frame[1] & 0x80
    header = 2 if n < 126 else 4 if n < 65536 else 10
    assert len(frame) == header + n


def test_close_frame_carries_code_and_reason() -> None:
    assert close_frame(1003, "text") == b"\x88\x06\x03\xebtext"


@pytest.mark.parametrize("size", [10, 1023, 1024, 5000])
@pytest.mark.parametrize("offset", [0, 1, 2, 3, 5])
def test_unmask_depends_on_the_offset_into_the_frame(offset: int, size: int) -> None:
    mask = b"\x01\x02\x03\x04"
    data = bytes(i % 256 for i in range(size))
    whole = unmask(b"\x00" * offset + data, mask, 0)[offset:]
    assert unmask(data, mask, offset) == whole
    assert unmask(unmask(data, mask, offset), mask, offset) == data
    assert whole == bytes(b ^ mask[(offset + i) % 4] for i, b in enumerate(data))
    assert unmask_python(data, mask, offset) == whole, "the fallback agrees"
    assert unmask(memoryview(b"\x00" * offset + data)[offset:], mask, offset) == whole


def test_the_c_unmasking_is_the_one_in_use() -> None:
    """websockets' C helper is a dependency: without it WebSocket costs far more."""
    from broker.transports import wsframes

    assert wsframes._apply_mask is not None
