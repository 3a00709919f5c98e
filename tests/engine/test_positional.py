"""Positional decoders (azure-servicebus's `_pyamqp` reads performative fields by
index): our open, begin and attach carry every field up to the last one we
set, including those real brokers always send (open.channel-max,
begin.handle-max, attach.max-message-size), so such a decoder never meets a
list shorter than the field it reads."""

from __future__ import annotations

import struct

from test_container import Broker

# descriptor code → the field a positional decoder must find, by index
OPEN, BEGIN, ATTACH = 0x10, 0x11, 0x12
NEEDED = {OPEN: 4, BEGIN: 5, ATTACH: 11}  # channel-max [3], handle-max [4], max-message-size [10]


def performative_lengths(raw: bytes) -> list[tuple[int, int]]:
    """(descriptor code, number of list fields) of each AMQP frame in `raw`,
    read straight from the bytes: no composite class pads what is missing."""
    found = []
    i = 0
    while i < len(raw):
        if raw[i:i + 4] == b"AMQP":
            i += 8
            continue
        size, doff = struct.unpack_from(">IB", raw, i)
        body = raw[i + doff * 4:i + size]
        i += size
        if not body or body[:2] != b"\x00\x53":
            continue
        code, constructor = body[2], body[3]
        if constructor == 0x45:
            count = 0
        elif constructor == 0xC0:
            count = body[5]
        else:
            assert constructor == 0xD0, f"performative {code:#x} is not a list"
            count = struct.unpack_from(">I", body, 8)[0]
        found.append((code, count))
    return found


def test_open_begin_and_attach_carry_the_fields_positional_decoders_read() -> None:
    broker = Broker(queues=("q1",))
    peer = broker.client()
    peer.attach_receiver(1, "q1")
    peer.attach_sender(2, "q1")
    lengths = performative_lengths(bytes(peer.raw))
    codes = [code for code, _ in lengths]
    assert codes.count(OPEN) == 1 and codes.count(BEGIN) == 1 and codes.count(ATTACH) == 2
    for code, count in lengths:
        if code in NEEDED:
            assert count >= NEEDED[code], f"performative {code:#x} has only {count} fields"
