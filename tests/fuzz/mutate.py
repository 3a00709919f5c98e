"""Mutations of a fuzz input, seeded: the same `random.Random` state gives the same bytes.

A fuzz input is `mode byte, variant byte, stream bytes` (see harness.py).  The
stream is split back into frames by their size fields wherever it still
parses, so that most mutations stay *inside valid frame headers*: a
performative swapped for a generated one with wrong-typed fields, a field
re-encoded, random bytes in a body whose frame size is then corrected.  A
few mutations break the framing itself (sizes, data offsets, frame types,
truncation), and plain byte-level ones (bit flips, interesting bytes and
integers, insertions, deletions, splices) act on the whole stream.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable

from . import wire

INTERESTING_BYTES = (0x00, 0x01, 0x02, 0x40, 0x41, 0x42, 0x43, 0x45, 0x52, 0x53, 0x56, 0x70,
                     0x7F, 0x80, 0xA0, 0xA1, 0xA3, 0xB0, 0xC0, 0xC1, 0xD0, 0xE0, 0xF0, 0xFF)
INTERESTING_U32 = (0, 1, 2, 7, 8, 255, 256, 512, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF,
                   0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)
MAX_INPUT = 64 * 1024


def split_frames(stream: bytes) -> list[bytes]:
    """Frames by their size fields; whatever does not parse stays as one last chunk."""
    frames = []
    pos = 0
    n = len(stream)
    while pos + 8 <= n:
        (size,) = struct.unpack_from(">I", stream, pos)
        if size < 8 or pos + size > n:
            break
        frames.append(stream[pos : pos + size])
        pos += size
    if pos < n:
        frames.append(stream[pos:])
    return frames


def _rewrap(frame: bytes, body: bytes) -> bytes:
    """The same frame header (doff, type, channel) around a new body, size corrected."""
    if len(frame) < 8:
        return wire.frame(body)
    doff = max(frame[4], 2)
    ext = frame[8 : doff * 4] if doff * 4 <= len(frame) else b"\x00" * (doff * 4 - 8)
    return struct.pack(">I", 8 + len(ext) + len(body)) + frame[4:8] + ext + body


def _body(frame: bytes) -> bytes:
    if len(frame) < 8:
        return b""
    doff = max(frame[4], 2) * 4
    return frame[doff:]


class Mutator:
    def __init__(self, rng: random.Random, pool: list[list[bytes]]) -> None:
        self.rng = rng
        self.pool = pool  # seeds (and kept inputs) to splice frames from
        self.gen = wire.Gen(rng, wrong=0.15)
        self.frame_ops: list[tuple[int, Callable[[list[bytes]], list[bytes]]]] = [
            (10, self.replace_performative),
            (8, self.insert_generated),
            (6, self.mutate_body_bytes),
            (5, self.change_channel),
            (5, self.drop_frame),
            (4, self.duplicate_frame),
            (3, self.swap_frames),
            (5, self.splice_from_pool),
            (4, self.rewrite_int_field),
            (2, self.break_header),
            (2, self.truncate),
            (2, self.replace_payload),
            (1, self.insert_heartbeats),
            (1, self.repeat_frames),
        ]
        self._weights = [w for w, _ in self.frame_ops]

    # -- the entry points --------------------------------------------------------

    def mutate_input(self, data: bytes, byte_mutate: Callable[[bytes], bytes] | None = None,
                     rounds: int | None = None) -> bytes:
        """One mutated input from another (mode and variant bytes included).
        `byte_mutate` is libFuzzer's own byte mutator under atheris."""
        rng = self.rng
        mode, variant, stream = (data[0], data[1], data[2:]) if len(data) >= 2 else \
            (rng.randrange(256), rng.randrange(256), b"")
        if rng.random() < 0.1:
            mode = rng.randrange(256)
        if rng.random() < 0.05:
            variant = rng.randrange(256)
        frames = split_frames(stream)
        for _ in range(rounds or rng.choice((1, 1, 2, 3, 4, 8))):
            r = rng.random()
            if r < 0.7 or not frames:
                (op,) = rng.choices([op for _, op in self.frame_ops], self._weights)
                frames = op(frames)
            elif r < 0.85 and byte_mutate is not None:
                frames = split_frames(byte_mutate(b"".join(frames)))
            else:
                frames = split_frames(self.byte_level(b"".join(frames)))
        stream = b"".join(frames)[:MAX_INPUT]
        return bytes((mode, variant)) + stream

    def fresh_input(self) -> bytes:
        """A mutated seed from the pool."""
        seed = self.rng.choice(self.pool)
        data = bytes((self.rng.randrange(256), self.rng.randrange(256))) + b"".join(seed)
        return self.mutate_input(data)

    # -- frame-level mutations ------------------------------------------------------

    def _index(self, frames: list[bytes]) -> int:
        return self.rng.randrange(len(frames)) if frames else 0

    def replace_performative(self, frames: list[bytes]) -> list[bytes]:
        """A frame's performative regenerated (same kind, fields maybe of wrong types);
        a transfer keeps its message payload."""
        if not frames:
            return [self.gen.performative_frame()]
        i = self._index(frames)
        body = _body(frames[i])
        code = body[2] if len(body) > 2 and body[:2] == b"\x00\x53" else None
        new = self.gen.performative(code)
        if code == wire.TRANSFER:
            new += self._payload_of(body)
        frames[i] = _rewrap(frames[i], new)
        return frames

    def _payload_of(self, body: bytes) -> bytes:
        """What follows the performative list in a body (a transfer's message), best effort."""
        if len(body) > 5 and body[3] == 0xC0:
            return body[5 + body[4] - 1 :] if 5 + body[4] - 1 <= len(body) else b""
        if len(body) > 12 and body[3] == 0xD0:
            (size,) = struct.unpack_from(">I", body, 4)
            return body[8 + size :]
        return b""

    def insert_generated(self, frames: list[bytes]) -> list[bytes]:
        rng = self.rng
        if rng.random() < 0.2:
            frame = wire.frame(self.gen.performative(wire.TRANSFER) +
                               self.gen.management_request(), rng.choice((0, 0, 1)))
        else:
            frame = self.gen.performative_frame()
        frames.insert(rng.randint(0, len(frames)), frame)
        return frames

    def mutate_body_bytes(self, frames: list[bytes]) -> list[bytes]:
        """Random bytes inside a valid frame header: the body mutated, the size fixed."""
        if not frames:
            return frames
        i = self._index(frames)
        frames[i] = _rewrap(frames[i], self.byte_level(_body(frames[i])))
        return frames

    def change_channel(self, frames: list[bytes]) -> list[bytes]:
        if not frames:
            return frames
        i = self._index(frames)
        f = frames[i]
        if len(f) >= 8:
            frames[i] = f[:6] + struct.pack(">H", self.rng.choice(wire.CHANNELS)) + f[8:]
        return frames

    def drop_frame(self, frames: list[bytes]) -> list[bytes]:
        if frames:
            del frames[self._index(frames)]
        return frames

    def duplicate_frame(self, frames: list[bytes]) -> list[bytes]:
        if frames:
            i = self._index(frames)
            frames.insert(self.rng.randint(0, len(frames)), frames[i])
        return frames

    def swap_frames(self, frames: list[bytes]) -> list[bytes]:
        if len(frames) >= 2:
            i, j = self.rng.sample(range(len(frames)), 2)
            frames[i], frames[j] = frames[j], frames[i]
        return frames

    def splice_from_pool(self, frames: list[bytes]) -> list[bytes]:
        rng = self.rng
        other = rng.choice(self.pool)
        if not other:
            return frames
        a = rng.randrange(len(other))
        b = rng.randint(a + 1, min(len(other), a + 6))
        at = rng.randint(0, len(frames))
        return frames[:at] + list(other[a:b]) + frames[at:]

    def rewrite_int_field(self, frames: list[bytes]) -> list[bytes]:
        """An encoded integer in a body set to an edge value (handles, ids, windows,
        credit), in the same width, so the frame still parses."""
        rng = self.rng
        if not frames:
            return frames
        i = self._index(frames)
        body = bytearray(_body(frames[i]))
        spots = [p for p in range(3, len(body) - 1) if body[p] in (0x52, 0x70, 0x60, 0x50, 0x43)]
        if not spots:
            return frames
        p = rng.choice(spots)
        code = body[p]
        if code == 0x52 or code == 0x50:
            body[p + 1] = rng.choice((0, 1, 2, 3, 7, 8, 127, 128, 254, 255))
        elif code == 0x70 and p + 5 <= len(body):
            body[p + 1 : p + 5] = struct.pack(">I", rng.choice(INTERESTING_U32))
        elif code == 0x60 and p + 3 <= len(body):
            body[p + 1 : p + 3] = struct.pack(">H", rng.choice((0, 1, 63, 64, 0xFFFF)))
        elif code == 0x43:
            body[p] = 0x40  # uint0 → null
        frames[i] = _rewrap(frames[i], bytes(body))
        return frames

    def break_header(self, frames: list[bytes]) -> list[bytes]:
        """The frame header itself wrong: size, data offset or type."""
        rng = self.rng
        if not frames:
            return frames
        i = self._index(frames)
        f = bytearray(frames[i].ljust(8, b"\x00"))
        k = rng.randrange(4)
        if k == 0:
            f[0:4] = struct.pack(">I", rng.choice(INTERESTING_U32))
        elif k == 1:
            f[0:4] = struct.pack(">I", max(0, len(f) + rng.randint(-9, 9)))
        elif k == 2:
            f[4] = rng.choice((0, 1, 3, 4, 255))
        else:
            f[5] = rng.choice((1, 2, 0x41, 0xFF))
        frames[i] = bytes(f)
        return frames

    def truncate(self, frames: list[bytes]) -> list[bytes]:
        stream = b"".join(frames)
        if not stream:
            return frames
        return split_frames(stream[: self.rng.randrange(len(stream))])

    def replace_payload(self, frames: list[bytes]) -> list[bytes]:
        """A transfer's message replaced by generated sections (nearly valid)."""
        for i in self.rng.sample(range(len(frames)), len(frames)):
            body = _body(frames[i])
            if body[:3] == b"\x00\x53\x14":
                performative = body[: len(body) - len(self._payload_of(body))]
                payload = self.gen.message() if self.rng.random() < 0.7 else \
                    self.gen.management_request()
                frames[i] = _rewrap(frames[i], performative + payload)
                break
        return frames

    def insert_heartbeats(self, frames: list[bytes]) -> list[bytes]:
        frames.insert(self.rng.randint(0, len(frames)), wire.frame(b"", self.rng.choice((0, 7))))
        return frames

    def repeat_frames(self, frames: list[bytes]) -> list[bytes]:
        """A short run of frames repeated many times (storms of attaches, flows, begins)."""
        if not frames:
            return frames
        rng = self.rng
        a = self._index(frames)
        b = rng.randint(a + 1, min(len(frames), a + 3))
        times = rng.choice((10, 64, 300))
        run = frames[a:b] * times
        if sum(map(len, run)) > MAX_INPUT // 2:
            return frames
        return frames[:a] + run + frames[b:]

    # -- byte-level mutations ----------------------------------------------------------

    def byte_level(self, data: bytes) -> bytes:
        rng = self.rng
        buf = bytearray(data)
        for _ in range(rng.choice((1, 1, 2, 4))):
            k = rng.randrange(8)
            n = len(buf)
            if k == 0 and n:
                p = rng.randrange(n)
                buf[p] ^= 1 << rng.randrange(8)
            elif k == 1 and n:
                buf[rng.randrange(n)] = rng.choice(INTERESTING_BYTES)
            elif k == 2 and n >= 4:
                p = rng.randrange(n - 3)
                buf[p : p + 4] = struct.pack(">I", rng.choice(INTERESTING_U32))
            elif k == 3:
                p = rng.randint(0, n)
                buf[p:p] = rng.randbytes(rng.choice((1, 2, 4, 16)))
            elif k == 4 and n:
                p = rng.randrange(n)
                del buf[p : p + rng.choice((1, 2, 4, 16))]
            elif k == 5 and n >= 2:
                p = rng.randrange(n)
                q = rng.randrange(n)
                chunk = buf[p : p + rng.randint(1, 32)]
                buf[q:q] = chunk
            elif k == 6 and n:
                p = rng.randrange(n)
                buf[p] = rng.randrange(256)
            elif k == 7 and n >= 2:
                p = rng.randrange(n - 1)
                buf[p : p + 2] = struct.pack(">H", rng.choice((0, 1, 0xFF, 0x100, 0xFFFF)))
        return bytes(buf)
