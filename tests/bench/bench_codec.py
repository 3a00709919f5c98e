"""Codec benchmark (`make bench-codec`): a typical transfer frame, decoded and
encoded on one core, ours against python-qpid-proton's `proton.Data`.

The frame: transfer performative + header + properties + one 100-byte data
section.  "decode" is what the broker does per incoming transfer: read the
frame, decode the performative, locate the message sections (body untouched).
"encode" is what it does per outgoing transfer: the frame around an already
encoded message.  "full" variants also decode/encode header and properties.
Each figure is the median of several runs; rates are per second on one core.
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from collections.abc import Callable

from broker.codec.messaging import Header, Message, Properties
from broker.codec.performatives import Transfer
from broker.codec.types import Symbol, Timestamp
from broker.framing import (
    FrameReader,
    decode_frame_body,
    encode_frame,
    encode_transfer_frame,
    parse_transfer,
)

RUNS = 7
N = 20000


def median_us(fn: Callable[[], object], n: int = N, runs: int = RUNS) -> float:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(samples)


def typical_message() -> Message:
    return Message.create(
        b"x" * 100,
        header=Header(durable=True),
        properties=Properties(
            message_id=str(uuid.UUID(int=7)),
            to="/queues/orders",
            content_type=Symbol("application/octet-stream"),
            creation_time=Timestamp(1_700_000_000_000),
        ),
    )


def main() -> None:
    message = typical_message()
    payload = message.payload
    tag = b"\x00\x00\x00\x07"
    frame = bytearray()
    encode_transfer_frame(frame, 0, 1, 12345, tag, 0, False, False, payload)
    frame = bytes(frame)
    body = frame[8:]
    reader = FrameReader()  # past its protocol-header state first
    reader.feed(b"AMQP\x00\x01\x00\x00")
    reader.next()

    def ours_decode() -> object:
        reader.feed(frame)
        f = reader.next()
        transfer, rest = decode_frame_body(f.body)  # type: ignore[union-attr]
        return transfer, Message.parse(rest)

    def ours_decode_hot() -> object:
        reader.feed(frame)
        f = reader.next()
        fields, rest = parse_transfer(f.body)  # type: ignore[misc,union-attr]
        return fields, Message.parse(rest)

    def ours_decode_full() -> object:
        transfer, rest = decode_frame_body(body)
        m = Message.parse(rest)
        return transfer, m.header, m.properties

    def ours_encode() -> object:
        out = bytearray()
        encode_transfer_frame(out, 0, 1, 12345, tag, 0, False, False, payload)
        return out

    def ours_encode_generic() -> object:
        out = bytearray()
        encode_frame(out, 0, Transfer(handle=1, delivery_id=12345, delivery_tag=tag,
                                      message_format=0, settled=False), payload)
        return out

    def ours_encode_full() -> object:
        m = typical_message()
        out = bytearray()
        encode_transfer_frame(out, 0, 1, 12345, tag, 0, False, False, m.payload)
        return out

    rows = [
        ("decode: frame + transfer + locate sections", median_us(ours_decode)),
        ("decode, broker hot path (parse_transfer)", median_us(ours_decode_hot)),
        ("decode full: + header + properties", median_us(ours_decode_full)),
        ("encode: transfer frame (hot path)", median_us(ours_encode)),
        ("encode: transfer frame (generic composite)", median_us(ours_encode_generic)),
        ("encode full: + header + properties + data", median_us(ours_encode_full)),
    ]
    try:
        import proton
    except ImportError:  # pragma: no cover
        print("python-qpid-proton not installed: no comparison", file=sys.stderr)
    else:
        def proton_decode() -> object:
            data = proton.Data()
            rest = body
            while rest:  # transfer, then each message section
                n = data.decode(rest)
                rest = rest[n:]
            return data

        pm = proton.Message(body=b"x" * 100, durable=True, id=str(uuid.UUID(int=7)),
                            address="/queues/orders", content_type="application/octet-stream",
                            creation_time=1_700_000_000.0)
        encoded = pm.encode()

        def proton_message_decode() -> object:
            m = proton.Message()
            m.decode(encoded)
            return m

        def proton_encode() -> object:
            data = proton.Data()
            data.put_described()
            data.enter()
            data.put_ulong(0x14)
            data.put_list()
            data.enter()
            data.put_uint(1)
            data.put_uint(12345)
            data.put_binary(tag)
            data.put_uint(0)
            data.put_bool(False)
            data.exit()
            data.exit()
            return data.encode() + payload

        rows += [
            ("proton.Data: decode transfer + sections", median_us(proton_decode)),
            ("proton.Message.decode (full message)", median_us(proton_message_decode)),
            ("proton.Data: encode transfer performative", median_us(proton_encode)),
            ("proton.Message.encode (full message)", median_us(pm.encode)),
        ]
    print(f"typical transfer frame: {len(frame)} bytes; median of {RUNS} runs x {N}")
    # Machines of one kind differ by 2-3x from run to run here; this scales the rest.
    print(f"calibration: an empty Python loop iteration takes {median_us(lambda: None):.3f} us "
          "(a function call)")
    print(f"{'operation':48s} {'us/op':>8s} {'ops/s':>10s}")
    for name, us in rows:
        print(f"{name:48s} {us:8.2f} {1e6 / us:10,.0f}")


if __name__ == "__main__":
    main()
