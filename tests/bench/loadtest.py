"""Overload load test (`make loadtest`): a real broker process on loopback, hostile
and heavy peers, and a probe client timing a round trip all along.

Phases, each bounded in count and time, one after the other:

0. idle: the probe alone (the baseline).
1. slow drip: 500 sockets send the protocol header and then an open frame one
   byte per second; the broker runs with `--handshake-timeout 10`, so each
   must get its close at ~10 s however the bytes trickle, and be dropped.
2. session/link storm on one connection: a begin on every channel up to
   the broker's channel-max, then 20,000 attach/detach pairs spread over the
   sessions, in batches of 100 attaches (answered) then their 100 detaches.
3. publisher flood: one publisher sends 16 KiB messages to a queue nobody
   reads, against `--memory-high-watermark 50000000`: the broker must stop
   granting credit (the publisher stalls) while its RSS stays bounded; then
   a consumer drains the queue, credit flows again, publishing resumes, and
   every accepted message is delivered exactly once.

Meanwhile a probe process (python-qpid-proton's BlockingConnection) sends a
message to its own queue and receives it every 50 ms; its round trips are
reported as p50/p99/max per phase.  The test prints figures and asserts
nothing about speed; it checks correctness only (every drip closed at the
handshake deadline, the publisher stalled and resumed, every accepted message
delivered exactly once): a failed check is printed as FAILED and makes the
exit status 1.  Nothing leaves 127.0.0.1 and everything stops by itself.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "conformance"))
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "tests"))  # engine.peer's frame builder
from conftest import start_broker, stop_broker
from engine.peer import frame

from broker.codec.messaging import Accepted, Message, Source, Target
from broker.codec.performatives import (
    Attach,
    Begin,
    Close,
    Detach,
    Disposition,
    End,
    Flow,
    Open,
    Role,
    Transfer,
)
from broker.framing import (
    AMQP_HEADER,
    NEED_DATA,
    FrameReader,
    ProtocolHeader,
    decode_frame_body,
)

HANDSHAKE_TIMEOUT = 10.0
WATERMARK = 50_000_000


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# -- a raw AMQP client (blocking socket, the broker's own codec) -----------------------


class RawClient:
    """Just enough of a client to pipeline frames and read what comes back."""

    def __init__(self, port: int, container_id: str, *, channel_max: int = 0xFFFF) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = FrameReader()
        self.sock.sendall(AMQP_HEADER + frame(Open(container_id=container_id,
                                                   channel_max=channel_max)))
        got = self.until(lambda p: isinstance(p, Open), 10)
        self.remote_open: Open = got[-1][1]  # type: ignore[assignment]

    def send(self, data: bytes) -> None:
        self.sock.settimeout(30)  # the broker may read slower than we write
        self.sock.sendall(data)

    def read(self, timeout: float) -> list[tuple[int, object, bytes]]:
        """Whatever arrives within `timeout` (at least one recv), decoded."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 20)
        except TimeoutError:
            return []
        if not data:
            raise ConnectionError("the broker closed the connection")
        self.reader.feed(data)
        out = []
        while True:
            item = self.reader.next()
            if item is NEED_DATA:
                return out
            if isinstance(item, ProtocolHeader) or not item.body:  # type: ignore[union-attr]
                continue
            performative, payload = decode_frame_body(item.body)  # type: ignore[union-attr]
            if isinstance(performative, Close):
                raise ConnectionError(f"the broker closed: {performative.error}")
            out.append((item.channel, performative, payload))  # type: ignore[union-attr]

    def until(self, done, timeout: float) -> list[tuple[int, object, bytes]]:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        got: list[tuple[int, object, bytes]] = []
        while time.monotonic() < deadline:
            for item in self.read(max(0.01, deadline - time.monotonic())):
                got.append(item)
                if done(item[1]):
                    return got
        raise TimeoutError(f"nothing satisfying the wait within {timeout} s; last: {got[-3:]}")

    def close(self) -> None:
        try:
            self.send(frame(Close()))
        finally:
            self.sock.close()


def begin(channel: int, window: int = 65535) -> bytes:
    return frame(Begin(next_outgoing_id=0, incoming_window=window, outgoing_window=65535),
                 channel)


# -- phase 1: slow drip ---------------------------------------------------------------


def slow_drip(port: int, count: int, limit: float) -> dict[str, object]:
    """`count` sockets trickling header + open one byte per second."""
    payload = AMQP_HEADER + frame(Open(container_id="drip"))
    sel = selectors.DefaultSelector()
    socks: dict[socket.socket, dict[str, float | int]] = {}
    start = time.monotonic()
    refused = 0
    for _ in range(count):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            refused += 1
            continue
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks[s] = {"t0": time.monotonic(), "sent": 0, "got": 0}
        sel.register(s, selectors.EVENT_READ)
    next_drip = time.monotonic()
    open_ = set(socks)
    while open_ and time.monotonic() - start < limit:
        now = time.monotonic()
        if now >= next_drip:
            for s in list(open_):
                st = socks[s]
                if st["sent"] < len(payload):
                    try:
                        s.send(payload[int(st["sent"]) : int(st["sent"]) + 1])
                        st["sent"] += 1
                    except OSError:
                        pass
            next_drip += 1.0
        for key, _ in sel.select(timeout=max(0.0, min(0.2, next_drip - time.monotonic()))):
            s = key.fileobj  # type: ignore[assignment]
            st = socks[s]
            try:
                data = s.recv(65536)  # type: ignore[attr-defined]
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            t = time.monotonic() - st["t0"]
            if data:
                st["got"] += len(data)
                if b"\x00\x53\x18" in data and "close_at" not in st:  # a close performative
                    st["close_at"] = t
                continue
            st["eof_at"] = t
            sel.unregister(s)
            s.close()  # type: ignore[attr-defined]
            open_.discard(s)  # type: ignore[arg-type]
    for s in open_:
        sel.unregister(s)
        s.close()
    close_at = [st["close_at"] for st in socks.values() if "close_at" in st]
    eof_at = [st["eof_at"] for st in socks.values() if "eof_at" in st]
    bytes_sent = [st["sent"] for st in socks.values()]
    # correctness, not speed: trickling bytes must not extend the deadline
    late = [t for t in close_at if not HANDSHAKE_TIMEOUT - 0.5 <= t <= HANDSHAKE_TIMEOUT + 3]
    failed = []
    if len(close_at) != len(socks):
        failed.append(f"{len(socks) - len(close_at)} drips got no close")
    if late:
        failed.append(f"{len(late)} drips closed outside {HANDSHAKE_TIMEOUT:g} s (+3 s)")
    return {
        **({"FAILED": failed} if failed else {}),
        "sockets": len(socks), "refused": refused,
        "got_close": len(close_at), "dropped": len(eof_at), "still_open": len(open_),
        "close_at_s": _spread(close_at), "dropped_at_s": _spread(eof_at),
        "bytes_each": f"{min(bytes_sent, default=0)}-{max(bytes_sent, default=0)} of "
                      f"{len(payload)}",
        "seconds": time.monotonic() - start,
    }


def _spread(xs: list[float]) -> str:
    if not xs:
        return "-"
    xs = sorted(xs)
    return f"min {xs[0]:.2f} / median {statistics.median(xs):.2f} / max {xs[-1]:.2f}"


# -- phase 2: session and link storm ---------------------------------------------------------


def storm(port: int, pairs: int, batch: int, limit: float) -> dict[str, object]:
    c = RawClient(port, "storm")
    channel_max = c.remote_open.channel_max
    start = time.monotonic()
    c.send(b"".join(begin(ch) for ch in range(channel_max + 1)))
    begun = 0
    handle_max = 0
    t0 = time.monotonic()
    while begun < channel_max + 1:
        for _, p, _ in c.read(10):
            if isinstance(p, Begin):
                begun += 1
                handle_max = p.handle_max
    sessions_s = time.monotonic() - t0
    sessions = channel_max + 1
    handles = min(handle_max + 1, 256)
    done = 0
    attached = detached = refused = 0
    ended_early: list[End] = []
    t1 = time.monotonic()
    i = 0
    while done < pairs and time.monotonic() - start < limit:
        # a batch of attaches, their answers, then the batch's detaches and theirs
        n = min(batch, pairs - done)
        spots = [((i + k) % sessions, ((i + k) // sessions) % handles) for k in range(n)]
        c.send(b"".join(frame(Attach(
            name=f"storm-{i + k}", handle=h, role=Role.RECEIVER,
            source=Source(address=f"/queues/storm-{(i + k) % 10}"), target=Target()), ch)
            for k, (ch, h) in enumerate(spots)))
        want = n
        while want and time.monotonic() - start < limit:
            for _, p, _ in c.read(10):
                if isinstance(p, Attach):
                    attached += 1
                    want -= 1
                    refused += p.source is None
                elif isinstance(p, End):
                    ended_early.append(p)
            if ended_early:
                raise RuntimeError(f"a session ended: {ended_early[0].error}")
        c.send(b"".join(frame(Detach(handle=h, closed=True), ch) for ch, h in spots))
        want = n
        while want and time.monotonic() - start < limit:
            for _, p, _ in c.read(10):
                if isinstance(p, Detach):
                    detached += 1
                    want -= 1
        done += n
        i += n
    links_s = time.monotonic() - t1
    c.send(b"".join(frame(End(), ch) for ch in range(sessions)))
    ended = 0
    while ended < sessions:
        ended += sum(1 for _, p, _ in c.read(10) if isinstance(p, End))
    c.close()
    return {
        "sessions": sessions, "sessions_per_s": sessions / sessions_s if sessions_s else 0.0,
        "pairs": done, "attached": attached, "refused": refused, "detached": detached,
        "pairs_per_s": done / links_s if links_s else 0.0, "seconds": time.monotonic() - start,
    }


# -- phase 3: publisher flood ------------------------------------------------------------


class Publisher:
    """One sending link; tracks credit, the session window and the outcomes."""

    def __init__(self, c: RawClient, address: str, size: int) -> None:
        self.c = c
        self.size = size
        self.credit = 0
        self.delivery_count = 0
        self.next_outgoing_id = 0
        self.remote_window = 0  # the broker's incoming window as of its last flow
        self.remote_next_incoming = 0
        self.seq = 0
        self.accepted: set[int] = set()
        self.other_outcomes = 0
        self.last_credit_at = time.monotonic()
        c.send(begin(0) + frame(Attach(name="flood-pub", handle=0, role=Role.SENDER,
                                       source=Source(), target=Target(address=address),
                                       initial_delivery_count=0), 0))
        self.pump(5, lambda: self.credit > 0)

    def handle(self, items: list[tuple[int, object, bytes]]) -> None:
        for ch, p, _ in items:
            if ch != 0:
                continue
            if isinstance(p, Flow):
                if p.next_incoming_id is not None:
                    self.remote_next_incoming = p.next_incoming_id
                self.remote_window = p.incoming_window
                if p.handle == 0 and p.link_credit is not None:
                    new = (p.delivery_count or 0) + p.link_credit - self.delivery_count
                    if new > self.credit:
                        self.last_credit_at = time.monotonic()
                    self.credit = new
            elif isinstance(p, Begin):
                self.remote_window = p.incoming_window
                self.remote_next_incoming = 0
            elif isinstance(p, Disposition):
                last = p.last if p.last is not None else p.first
                for d in range(p.first, last + 1):
                    if isinstance(p.state, Accepted):
                        self.accepted.add(d)
                    else:
                        self.other_outcomes += 1

    def pump(self, timeout: float, until=None) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.handle(self.c.read(min(0.05, max(0.001, deadline - time.monotonic()))))
            if until is not None and until():
                return

    def window(self) -> int:
        return self.remote_next_incoming + self.remote_window - self.next_outgoing_id

    def send_some(self, most: int) -> int:
        n = min(most, self.credit, self.window())
        if n <= 0:
            return 0
        out = bytearray()
        for _ in range(n):
            body = struct.pack(">Q", self.seq) + b"x" * (self.size - 8)
            payload = Message.create(body).payload
            out += frame(Transfer(handle=0, delivery_id=self.seq, delivery_tag=struct.pack(
                ">Q", self.seq), message_format=0, settled=False), 0, payload)
            self.seq += 1
            self.next_outgoing_id += 1
            self.delivery_count += 1
            self.credit -= 1
        self.c.send(bytes(out))
        return n


def drain(port: int, address: str, expect: int, limit: float) -> tuple[list[int], float]:
    """A consumer reads `expect` messages from the queue (or until the time is up),
    granting no more credit than that, and accepts them; returns their sequence
    numbers."""
    c = RawClient(port, "flood-consumer")
    c.send(begin(0, window=0x7FFFFFFF) + frame(Attach(
        name="flood-sub", handle=0, role=Role.RECEIVER, source=Source(address=address),
        target=Target()), 0))
    got = c.until(lambda p: isinstance(p, Attach), 10)
    broker_next_outgoing = next(p.next_outgoing_id for _, p, _ in got if isinstance(p, Begin))
    seqs: list[int] = []
    pending: list[int] = []  # delivery ids received, not yet settled
    start = time.monotonic()
    granted = delivered = 0
    while len(seqs) < expect and time.monotonic() - start < limit:
        if granted - delivered < 250 and granted < expect:
            credit = min(500, expect - delivered)
            granted = delivered + credit
            c.send(frame(Flow(next_incoming_id=(broker_next_outgoing + delivered) & 0xFFFFFFFF,
                              incoming_window=0x7FFFFFFF, next_outgoing_id=0,
                              outgoing_window=65535, handle=0, delivery_count=delivered,
                              link_credit=credit), 0))
        for _, p, payload in c.read(1.0):
            if isinstance(p, Transfer):
                delivered += 1
                pending.append(p.delivery_id)
                body = Message.parse(payload).body[0].value  # type: ignore[attr-defined]
                seqs.append(struct.unpack(">Q", body[:8])[0])
        if pending and (len(pending) >= 200 or len(seqs) >= expect):
            c.send(frame(Disposition(role=Role.RECEIVER, first=pending[0], last=pending[-1],
                                     settled=True, state=Accepted()), 0))
            pending.clear()
    if pending:
        c.send(frame(Disposition(role=Role.RECEIVER, first=pending[0], last=pending[-1],
                                 settled=True, state=Accepted()), 0))
    took = time.monotonic() - start
    c.close()
    return seqs, took


def flood(port: int, pid: int, size: int, limit: float) -> dict[str, object]:
    c = RawClient(port, "flood")
    pub = Publisher(c, "/queues/flood", size)
    start = time.monotonic()
    rss0 = rss_kib(pid)
    peak = rss0
    stalled_at = None
    # publish until the credit stops: no credit and no new credit for 3 s
    while time.monotonic() - start < limit:
        pub.send_some(200)
        pub.pump(0.02)
        peak = max(peak, rss_kib(pid))
        if pub.credit <= 0 and time.monotonic() - pub.last_credit_at > 3.0:
            stalled_at = pub.last_credit_at - start  # the last credit the broker gave
            break
    pub.pump(1.0)
    sent_before = pub.seq
    held_mb = sent_before * size / 1e6
    rss_stalled = rss_kib(pid)
    # the publisher stays stalled while nobody reads: a few more seconds, no credit
    pub.pump(2.0)
    still_stalled = pub.credit <= 0
    # a consumer drains; the alarm clears; credit comes back; publish more
    seqs, drain_s = drain(port, "/queues/flood", len(pub.accepted), limit)
    t_drained = time.monotonic()
    pub.pump(10.0, lambda: pub.credit > 0)
    resumed_after = time.monotonic() - t_drained if pub.credit > 0 else None
    more = 0
    t_more = time.monotonic()
    while more < 1000 and time.monotonic() - t_more < 30:
        more += pub.send_some(1000 - more)
        pub.pump(0.05)
    pub.pump(5.0, lambda: len(pub.accepted) >= pub.seq)
    seqs2, _ = drain(port, "/queues/flood", len(pub.accepted) - len(seqs), limit)
    c.close()
    everything = seqs + seqs2
    accepted = sorted(pub.accepted)
    lost = set(accepted) - set(everything)
    dup = len(everything) - len(set(everything))
    failed = []
    if stalled_at is None:
        failed.append("the publisher never stalled: no memory alarm?")
    if lost:
        failed.append(f"{len(lost)} accepted messages never delivered: {sorted(lost)[:10]}")
    if dup:
        failed.append(f"{dup} messages delivered twice")
    if resumed_after is None:
        failed.append("credit never came back after the drain")
    return {
        **({"FAILED": failed} if failed else {}),
        "message_size": size, "sent_before_stall": sent_before,
        "queued_mb_at_stall": round(held_mb, 1),
        "last_credit_granted_at_s": round(stalled_at, 2) if stalled_at is not None else None,
        "no_credit_for_5s_after": still_stalled,
        "rss_mb_start": round(rss0 / 1024, 1), "rss_mb_peak": round(peak / 1024, 1),
        "rss_mb_stalled": round(rss_stalled / 1024, 1),
        "drained": len(seqs), "drain_s": round(drain_s, 2),
        "credit_back_after_drain_s": round(resumed_after, 2) if resumed_after is not None
        else None, "sent_after": more,
        "accepted": len(accepted), "delivered": len(everything), "lost": len(lost),
        "duplicates": dup, "other_outcomes": pub.other_outcomes,
        "rss_mb_end": round(rss_kib(pid) / 1024, 1),
        "seconds": round(time.monotonic() - start, 1),
    }


# -- the probe -------------------------------------------------------------------------


PROBE = r"""
import json, sys, time
from proton import Message
from proton.utils import BlockingConnection
url, out, stop = sys.argv[1], sys.argv[2], sys.argv[3]
import os
conn = BlockingConnection(url, timeout=30)
snd = conn.create_sender("/queues/probe")
rcv = conn.create_receiver("/queues/probe", credit=10)
with open(out, "w") as f:
    while not os.path.exists(stop):
        t0 = time.monotonic()
        try:
            snd.send(Message(body=str(t0)), timeout=10)
            m = rcv.receive(timeout=10)
            rcv.accept()
            f.write(json.dumps([t0, time.monotonic() - t0]) + "\n")
        except Exception as exc:
            f.write(json.dumps([t0, None, repr(exc)]) + "\n")
        f.flush()
        time.sleep(max(0.0, 0.05 - (time.monotonic() - t0)))
conn.close()
"""


def percentiles(xs: list[float]) -> str:
    if not xs:
        return "no samples"
    xs = sorted(xs)

    def q(p: float) -> float:
        return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000

    return f"n={len(xs):4d}  p50 {q(0.5):7.1f} ms  p99 {q(0.99):7.1f} ms  max {xs[-1] * 1000:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--drips", type=int, default=500)
    parser.add_argument("--pairs", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--message-size", type=int, default=16384)
    parser.add_argument("--watermark", type=int, default=WATERMARK)
    parser.add_argument("--phase-limit", type=float, default=120.0, help="seconds per phase")
    args = parser.parse_args()

    proc, b = start_broker("--handshake-timeout", f"{HANDSHAKE_TIMEOUT:g}",
                           "--memory-high-watermark", str(args.watermark),
                           "--log-level", "warning")
    work = Path(tempfile.mkdtemp(prefix="loadtest-"))
    samples_path, stop_path = work / "probe.jsonl", work / "stop"
    probe = subprocess.Popen([sys.executable, "-c", PROBE, b.amqp_url, str(samples_path),
                              str(stop_path)])
    phases: list[tuple[str, float, float]] = []
    results: dict[str, dict[str, object]] = {}
    code = 0
    try:
        time.sleep(1.0)  # the probe connects
        t = time.monotonic()
        time.sleep(3.0)
        phases.append(("0 idle", t, time.monotonic()))
        for name, run in (
            ("1 slow drip", lambda: slow_drip(b.port, args.drips, args.phase_limit)),
            ("2 session/link storm", lambda: storm(b.port, args.pairs, args.batch,
                                                   args.phase_limit)),
            ("3 publisher flood", lambda: flood(b.port, b.pid, args.message_size,
                                                args.phase_limit)),
        ):
            t = time.monotonic()
            try:
                results[name] = run()
                code |= "FAILED" in results[name]
            except Exception as exc:  # noqa: BLE001 - report it with the other figures
                results[name] = {"ERROR": f"{type(exc).__name__}: {exc}"}
                code = 1
            phases.append((name, t, time.monotonic()))
            time.sleep(1.0)
    finally:
        stop_path.touch()
        try:
            probe.wait(timeout=30)
        except subprocess.TimeoutExpired:
            probe.kill()
        broker_rc = stop_broker(proc)

    samples = [json.loads(line) for line in samples_path.read_text().splitlines() if line]
    print(f"broker {b.amqp_url} (pid {b.pid}), --handshake-timeout {HANDSHAKE_TIMEOUT:g}, "
          f"--memory-high-watermark {args.watermark}; broker exit status {broker_rc}")
    for name, t0, t1 in phases:
        rtts = [s[1] for s in samples if t0 <= s[0] < t1 and s[1] is not None]
        failed = [s for s in samples if t0 <= s[0] < t1 and s[1] is None]
        print(f"\n== {name} ({t1 - t0:.1f} s)")
        print(f"   probe round trip: {percentiles(rtts)}"
              + (f", {len(failed)} failed ({failed[0][2]})" if failed else ""))
        for k, v in results.get(name, {}).items():
            print(f"   {k}: {v:.1f}" if isinstance(v, float) else f"   {k}: {v}")
    sys.exit(code)


if __name__ == "__main__":
    main()
