"""The client processes of the crash and full-disk tests (python-qpid-proton's
reactor, one connection each), run as `python crash_clients.py ROLE ...`.

Each client appends what it saw to a line-buffered file, one line per event,
so that everything it was told before the broker died is in the file (the
process itself is not killed: it sees the connection drop and exits):

    R                   the link is attached (the parent waits for every client's R)
    M first|second      a receiver's rcv-settle-mode as the broker's attach says
    A <id>              producer: the broker accepted <id>
    X <id> <outcome>    producer: the broker refused <id> (rejected/released/modified)
    G <id> <count>      consumer: <id> arrived (delivery-count <count>); accepted, unsettled
    S <id>              consumer: the broker settled <id>'s delivery with accepted
    N <id> <outcome>    consumer: the broker settled <id>'s delivery with something else
    D <id> <count>      drain: <id> arrived (delivery-count <count>), settled at once
    E <reason>          the end: disconnected, deadline (a hang), done, idle, error

Every role has a deadline after which it stops on its own (exit code 3), so a
client never outlives its test; the parent also kills it if it must.
"""

from __future__ import annotations

import argparse
import random
import sys
from typing import IO, Any

from proton import Delivery, Link, Message
from proton.handlers import MessagingHandler
from proton.reactor import Container, LinkOption

OUTCOMES = {Delivery.ACCEPTED: "accepted", Delivery.REJECTED: "rejected",
            Delivery.RELEASED: "released", Delivery.MODIFIED: "modified"}


class SecondMode(LinkOption):
    """rcv-settle-mode second on our receiving link: the broker settles after us."""

    def apply(self, link: Link) -> None:
        link.rcv_settle_mode = Link.RCV_SECOND

    def test(self, link: Link) -> bool:
        return bool(link.is_receiver)


class Client(MessagingHandler):  # type: ignore[misc]
    def __init__(self, args: argparse.Namespace, out: IO[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.args = args
        self.out = out
        self.exit_code = 0
        self.ended = False

    def line(self, text: str) -> None:
        self.out.write(text + "\n")  # line-buffered: in the kernel at once

    def end(self, event: Any, reason: str, code: int = 0) -> None:
        if not self.ended:
            self.ended = True
            self.exit_code = code
            self.line(f"E {reason}")
        event.container.stop()

    def on_start(self, event: Any) -> None:
        event.container.schedule(self.args.deadline, self)
        self.conn = event.container.connect(self.args.url, reconnect=False,
                                            idle_timeout=0)
        self.started(event)

    def started(self, event: Any) -> None:
        raise NotImplementedError

    def on_timer_task(self, event: Any) -> None:
        self.end(event, "deadline", 3)

    def on_disconnected(self, event: Any) -> None:
        self.end(event, "disconnected")

    def on_transport_error(self, event: Any) -> None:
        self.end(event, "disconnected")

    def on_connection_error(self, event: Any) -> None:
        self.end(event, f"error connection {event.connection.remote_condition}", 4)

    def on_link_error(self, event: Any) -> None:
        self.end(event, f"error link {event.link.remote_condition}", 4)


class Producer(Client):
    """Durable, unsettled messages `p<n>-<i>` to the address, up to `window`
    of them awaiting their outcome."""

    def __init__(self, args: argparse.Namespace, out: IO[str]) -> None:
        super().__init__(args, out)
        self.rng = random.Random(args.seed)
        self.next = 0
        self.in_flight = 0
        self.ids: dict[Any, str] = {}

    def started(self, event: Any) -> None:
        self.sender = event.container.create_sender(self.conn, self.args.address)

    def on_link_opened(self, event: Any) -> None:
        self.line("R")

    def on_sendable(self, event: Any) -> None:
        self.pump()

    def pump(self) -> None:
        sender = self.sender
        while sender.credit > 0 and self.in_flight < self.args.window and \
                (not self.args.count or self.next < self.args.count):
            ident = f"{self.args.name}-{self.next}"
            pad = "x" * self.rng.randrange(self.args.pad + 1)
            dlv = sender.send(Message(body=ident, durable=True, properties={"pad": pad}))
            self.ids[dlv] = ident
            self.next += 1
            self.in_flight += 1

    def on_accepted(self, event: Any) -> None:
        self.line(f"A {self.ident(event.delivery)}")
        self.in_flight -= 1
        self.pump()
        if self.args.count and self.next >= self.args.count and not self.in_flight:
            self.end(event, "done")

    def on_rejected(self, event: Any) -> None:
        self.refused(event, "rejected")

    def on_released(self, event: Any) -> None:
        self.refused(event, OUTCOMES.get(event.delivery.remote_state, "released"))

    def refused(self, event: Any, outcome: str) -> None:
        dlv = event.delivery
        condition = dlv.remote.condition
        name = condition.name if condition is not None else "-"
        self.line(f"X {self.ident(dlv)} {outcome} {name}")
        self.in_flight -= 1
        self.pump()

    def ident(self, dlv: Delivery) -> str:
        return self.ids.pop(dlv, "?")


class Consumer(Client):
    """rcv-settle-mode second: accept each message unsettled and note it as
    settled only when the broker's settlement arrives."""

    def __init__(self, args: argparse.Namespace, out: IO[str]) -> None:
        super().__init__(args, out, prefetch=args.prefetch, auto_accept=False)
        self.ids: dict[Any, str] = {}

    def started(self, event: Any) -> None:
        event.container.create_receiver(self.conn, self.args.address, options=SecondMode())

    def on_link_opened(self, event: Any) -> None:
        mode = event.link.remote_rcv_settle_mode
        self.line("M " + ("second" if mode == Link.RCV_SECOND else "first"))
        self.line("R")

    def on_message(self, event: Any) -> None:
        dlv = event.delivery
        ident = str(event.message.body)
        self.ids[dlv] = ident
        self.line(f"G {ident} {event.message.delivery_count}")
        dlv.update(Delivery.ACCEPTED)  # not settled: the broker settles first

    def on_settled(self, event: Any) -> None:
        dlv = event.delivery
        ident = self.ids.pop(dlv, None)
        if ident is None:
            self.line("E error a settlement of a delivery never received")
            return
        if dlv.remote_state == Delivery.ACCEPTED:
            self.line(f"S {ident}")
        else:
            self.line(f"N {ident} {OUTCOMES.get(dlv.remote_state, dlv.remote_state)}")
        dlv.settle()


class Drain(Client):
    """A plain consumer (settled at once): ends `idle` seconds after the
    `expected`-th message ("done", so more than expected are seen too), or
    when `idle_short` seconds pass without a message before that ("idle")."""

    def __init__(self, args: argparse.Namespace, out: IO[str]) -> None:
        super().__init__(args, out, prefetch=args.prefetch, auto_accept=True)
        self.count = 0
        self.checked = -1

    def started(self, event: Any) -> None:
        event.container.create_receiver(self.conn, self.args.address)

    def on_link_opened(self, event: Any) -> None:
        self.line("R")
        if self.args.expected == 0:
            self.done(event)
        self.quiet(event)

    def done(self, event: Any) -> None:
        drain = self

        class Done:
            def on_timer_task(self, ev: Any) -> None:
                drain.end(ev, "done")

        event.container.schedule(self.args.idle, Done())

    def quiet(self, event: Any) -> None:
        drain = self

        class Quiet:
            def on_timer_task(self, ev: Any) -> None:
                if drain.count == drain.checked:
                    drain.end(ev, "idle")
                else:
                    drain.checked = drain.count
                    drain.quiet(ev)

        event.container.schedule(self.args.idle_short, Quiet())

    def on_message(self, event: Any) -> None:
        self.count += 1
        self.line(f"D {event.message.body} {event.message.delivery_count}")
        if self.count == self.args.expected:
            self.done(event)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["producer", "consumer", "drain"])
    parser.add_argument("url", help="amqp://host:port")
    parser.add_argument("address")
    parser.add_argument("out")
    parser.add_argument("--name", default="p0")
    parser.add_argument("--deadline", type=float, default=20.0)
    parser.add_argument("--window", type=int, default=200)
    parser.add_argument("--count", type=int, default=0, help="producer: stop after (0: no end)")
    parser.add_argument("--pad", type=int, default=0, help="producer: up to this many bytes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prefetch", type=int, default=50)
    parser.add_argument("--expected", type=int, default=0, help="drain: messages to expect")
    parser.add_argument("--idle", type=float, default=0.3,
                        help="drain: quiet seconds that end it once `expected` came")
    parser.add_argument("--idle-short", type=float, default=3.0,
                        help="drain: quiet seconds that end it before that")
    args = parser.parse_args(argv)
    role = {"producer": Producer, "consumer": Consumer, "drain": Drain}[args.role]
    with open(args.out, "a", buffering=1, encoding="utf-8") as out:
        handler = role(args, out)
        try:
            Container(handler).run()
        except Exception as exc:  # noqa: BLE001 - recorded for the parent
            out.write(f"E error {type(exc).__name__}: {exc}\n")
            return 5
        if not handler.ended:
            out.write("E stopped\n")
        return handler.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
