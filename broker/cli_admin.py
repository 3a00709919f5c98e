"""Client-side admin commands: `rabbitmqadmin`/`rabbitmqctl` habits against a running broker.

`list`, `purge`, `delete`, `declare queue`, `peek`, `publish` and `consume`
talk to the broker as any AMQP client would: the management commands send
RabbitMQ 4's "HTTP over AMQP" requests to the `/management` node (a link
pair: one sender and one receiver with the same name and the link property
`paired: true`, the request link pre-settled), the others attach a sender or
a receiver to the address given.  So the same commands work against RabbitMQ
4, except for our extensions (the listings and peek).

The connection is python-qpid-proton's: its own blocking API for amqp:// and
amqps://, `broker.client.proton_ws` for ws:// and wss://.  Proton is not a
dependency of the broker, so it is imported when a command runs, and its
absence is one line and exit code 2.  `_Connection` hides the two APIs behind
the few calls the commands make.

Every failure is one line on stderr: exit code 1 when the broker refused or
answered with an error (or a message was not accepted), 2 for a bad argument,
3 when there is no connection (refused, TLS, authentication).  Answers and
received messages are decoded with our own codec, so they print as the
console and `/management`'s peek describe them (`services/describe.py`).
"""

from __future__ import annotations

import ast
import functools
import http
import ipaddress
import itertools
import json
import re
import ssl
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import click

from broker.codec.messaging import AmqpValue, Message
from broker.config import parse_scalar
from broker.errors import DecodeError
from broker.nodes.stream import parse_offset_spec
from broker.services.describe import describe_message, jsonable

if TYPE_CHECKING:
    import proton
    import proton.utils

    from broker.client import proton_ws

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_URL = "amqp://127.0.0.1:5672"
SCHEMES = ("amqp", "amqps", "ws", "wss")
TIMEOUT = 10.0  # seconds for the connection, an attach, a management answer
MANAGEMENT = "/management"
LINK_PAIR_NAME = "amqpws-broker-admin-/management"
CREDIT_WINDOW = 10  # messages a consumer asks for at a time
NEEDS_PROTON = "this command needs python-qpid-proton: pip install 'amqpws-broker[client]'"

EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE = 1, 2, 3


class AdminCommandError(click.ClickException):
    """A failure: one line on stderr (`Error: …`) and exit code 1."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))  # one line, whatever the broker wrote


class AdminUsageError(AdminCommandError):
    """A bad argument, or no proton: exit code 2 (still one line, without the usage)."""

    exit_code = EXIT_USAGE


class BrokerUnavailable(AdminCommandError):
    """No connection (refused, TLS, authentication): exit code 3."""

    exit_code = EXIT_UNAVAILABLE


# -- where to connect ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """The broker to talk to: a URL without credentials, and the credentials."""

    url: str
    scheme: str
    user: str | None
    password: str | None
    ca_file: str | None

    @property
    def websocket(self) -> bool:
        return self.scheme in ("ws", "wss")


def parse_target(url: str, user: str | None, password: str | None,
                 ca_file: str | None) -> Target:
    """`--url` (credentials in it allowed; `--user`/`--password` win) → Target."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES or not parts.hostname:
        raise AdminUsageError(f"--url {url!r}: expected amqp://, amqps://, ws:// or wss:// "
                              "and a host")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise AdminUsageError(f"--url {url!r}: {exc}") from None
    if user is None and parts.username is not None:
        user = unquote(parts.username)
    if password is None and parts.password is not None:
        password = unquote(parts.password)
    bare = urlunsplit((scheme, parts.netloc.rpartition("@")[2], parts.path, parts.query, ""))
    return Target(bare, scheme, user or None, password, ca_file)


# -- one connection, either API ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """The broker's word on one sent message: accepted, rejected, released, modified…"""

    state: str
    condition: str | None = None

    @property
    def accepted(self) -> bool:
        return self.state == "accepted"


class _Sender(Protocol):
    def send(self, message: proton.Message) -> Outcome: ...


class _Receiver(Protocol):
    def receive(self, timeout: float | None) -> proton.Message | None:
        """The next message, None after `timeout` seconds without one (None: wait)."""

    def accept(self) -> None:
        """Accept the message `receive` returned last."""

    def flow(self, credit: int) -> None: ...


class _Connection(Protocol):
    def sender(self, address: str, *, name: str | None = None,
               pair: bool = False) -> _Sender: ...

    def receiver(self, address: str, *, credit: int, name: str | None = None,
                 pair: bool = False, filter: dict[Any, Any] | None = None) -> _Receiver: ...

    def close(self) -> None: ...


def _pair_link(link: proton.Link) -> None:
    """One half of a `/management` link pair, as RabbitMQ 4 wants it."""
    from proton import Link, PropertyDict, symbol

    link.properties = PropertyDict({symbol("paired"): True})
    if link.is_sender:
        link.source.address = MANAGEMENT
        link.snd_settle_mode = Link.SND_SETTLED
    else:
        link.target.address = MANAGEMENT
    link.rcv_settle_mode = Link.RCV_FIRST


# proton.Delivery's outcome codes (ACCEPTED…), without importing proton here
_STATES = {36: "accepted", 37: "rejected", 38: "released", 39: "modified", 35: "received"}


def _condition_text(condition: proton.Condition | None) -> str | None:
    if condition is None:
        return None
    if str(condition.name).startswith("proton.") and condition.description:
        return str(condition.description)  # proton's own I/O: the name adds nothing
    return f"{condition.name}: {condition.description}" if condition.description \
        else str(condition.name)


class _TcpSender:
    def __init__(self, blocking: proton.utils.BlockingSender) -> None:
        self.blocking = blocking

    def send(self, message: proton.Message) -> Outcome:
        from proton import Link

        delivery = self.blocking.send(message, error_states=[])
        if self.blocking.link.snd_settle_mode == Link.SND_SETTLED:  # no outcome comes
            return Outcome("settled")
        return Outcome(_STATES.get(delivery.remote_state, "settled"),
                       _condition_text(delivery.remote.condition))


class _TcpReceiver:
    def __init__(self, conn: proton.utils.BlockingConnection,
                 blocking: proton.utils.BlockingReceiver) -> None:
        self.conn = conn
        self.blocking = blocking

    def receive(self, timeout: float | None) -> proton.Message | None:
        from proton import Timeout

        fetcher = self.blocking.fetcher
        assert fetcher is not None
        # Not BlockingReceiver.receive: it grants one more credit whenever the link
        # has none left, even with messages already waiting here.
        try:
            self.conn.wait(lambda: bool(fetcher.has_message), timeout=timeout,
                           msg=f"a message on {self.blocking.link.name}")
        except Timeout:
            return None
        return fetcher.pop()

    def accept(self) -> None:
        fetcher = self.blocking.fetcher
        if fetcher is not None and fetcher.unsettled:  # pre-settled deliveries are not there
            self.blocking.accept()

    def flow(self, credit: int) -> None:
        self.blocking.link.flow(credit)


class _TcpConnection:
    """amqp:// and amqps:// through proton's own I/O (`proton.utils`)."""

    def __init__(self, target: Target) -> None:
        from proton import ConnectionException

        options: dict[str, Any] = {
            "sasl_enabled": True,
            "allowed_mechs": "PLAIN" if target.user else "ANONYMOUS",
            "container_id": f"amqpws-broker-admin-{uuid.uuid4()}",
        }
        if target.user:
            options.update(user=target.user, password=target.password or "",
                           allow_insecure_mechs=True)
        if target.scheme == "amqps":
            options["ssl_domain"] = _ssl_domain(target.ca_file)
        try:
            self.conn = _proton_classes()[0](target.url, timeout=TIMEOUT, **options)
        except ConnectionException as exc:
            reason = getattr(exc, "reason", None) or str(exc)
            if target.scheme == "amqps" and "certificate verify failed" in reason \
                    and _is_ip_address(urlsplit(target.url).hostname or ""):
                reason += (" (proton matches a certificate by host name only: connect to a "
                           "name the certificate lists, such as localhost)")
            raise BrokerUnavailable(f"cannot connect to {target.url}: {reason}") from None

    def sender(self, address: str, *, name: str | None = None, pair: bool = False) -> _Sender:
        options = [_configure(_pair_link)] if pair else None
        return _TcpSender(self.conn.create_sender(address, name=name or _link_name("sender"),
                                                  options=options))

    def receiver(self, address: str, *, credit: int, name: str | None = None,
                 pair: bool = False, filter: dict[Any, Any] | None = None) -> _Receiver:
        from proton.reactor import Filter

        options: list[Any] = []
        if pair:
            options.append(_configure(_pair_link))
        if filter:
            options.append(Filter(filter))
        # credit None: no prefetch handler granting credit behind our back
        blocking = self.conn.create_receiver(address, credit=None,
                                             name=name or _link_name("receiver"),
                                             options=options or None)
        receiver = _TcpReceiver(self.conn, blocking)
        if credit:
            receiver.flow(credit)
        return receiver

    def close(self) -> None:
        self.conn.close()


@functools.cache
def _proton_classes() -> tuple[type[proton.utils.BlockingConnection], type[Any]]:
    """Two small subclasses of proton's, made on first use (proton is imported late).

    - proton's BlockingConnection, keeping why a connect failed (its exception
      only says "disconnected: Condition(...)") as the exception's `reason`;
    - a LinkOption calling a function on the link before its attach."""
    from proton import Condition, ConnectionException
    from proton.reactor import LinkOption
    from proton.utils import BlockingConnection

    class RecordingConnection(BlockingConnection):
        def __init__(self, url: str, **options: Any) -> None:
            try:
                super().__init__(url, **options)
            except ConnectionException as exc:
                why: object = self.disconnected
                reason = why if isinstance(why, str) else \
                    _condition_text(why) if isinstance(why, Condition) else None
                exc.reason = reason  # type: ignore[attr-defined]
                raise

    class Configure(LinkOption):
        def __init__(self, fn: Callable[[proton.Link], None]) -> None:
            self.fn = fn

        def apply(self, link: proton.Link) -> None:
            self.fn(link)

    return RecordingConnection, Configure


def _configure(fn: Callable[[proton.Link], None]) -> Any:
    return _proton_classes()[1](fn)


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _ssl_domain(ca_file: str | None) -> proton.SSLDomain:
    from proton import SSLDomain

    domain = SSLDomain(SSLDomain.MODE_CLIENT)
    trusted = ca_file or ssl.get_default_verify_paths().cafile
    if trusted:
        domain.set_trusted_ca_db(trusted)
    domain.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME)
    return domain


class _WsSender:
    def __init__(self, conn: proton_ws.BlockingConnection,
                 blocking: proton_ws.BlockingSender, presettled: bool) -> None:
        self.conn = conn
        self.blocking = blocking
        self.presettled = presettled

    def send(self, message: proton.Message) -> Outcome:
        outcome = self.blocking.send(message)  # returns at once on a pre-settled link
        return Outcome(outcome.state, _condition_text(outcome.condition))


class _WsReceiver:
    def __init__(self, conn: proton_ws.BlockingConnection,
                 blocking: proton_ws.BlockingReceiver, address: str) -> None:
        self.conn = conn
        self.blocking = blocking
        self.address = address
        self.last: proton_ws.BlockingReceived | None = None

    def receive(self, timeout: float | None) -> proton.Message | None:
        from proton import LinkException, Timeout

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = TIMEOUT if deadline is None else deadline - time.monotonic()
            if step <= 0:
                return None
            try:
                self.last = self.blocking.receive(max(step, 0.001))
                return self.last.message
            except Timeout:
                if deadline is not None:
                    return None
            except LinkException as exc:
                raise _link_failure(self.address, exc) from None

    def accept(self) -> None:
        if self.last is not None:
            self.last.accept()
            self.last = None

    def flow(self, credit: int) -> None:
        self.blocking.flow(credit)


class _WsConnection:
    """ws:// and wss:// through `broker.client.proton_ws`."""

    def __init__(self, target: Target) -> None:
        from proton import ConnectionException

        from broker.client import proton_ws

        try:
            self.conn = proton_ws.BlockingConnection(
                target.url, timeout=TIMEOUT, user=target.user,
                password=(target.password or "") if target.user else None,
                ca_file=target.ca_file,
                container_id=f"amqpws-broker-admin-{uuid.uuid4()}")
        except (ConnectionException, OSError) as exc:
            text = _tidy(str(exc))
            if text.startswith("cannot connect to ") and ": " in text:
                text = text.split(": ", 1)[1]  # proton_ws names the host too
            raise BrokerUnavailable(f"cannot connect to {target.url}: {text}") from None

    def sender(self, address: str, *, name: str | None = None, pair: bool = False) -> _Sender:
        from proton import LinkException

        try:
            blocking = self.conn.create_sender(address, name=name,
                                               configure=_pair_link if pair else None)
        except LinkException as exc:
            raise _link_failure(address, exc) from None
        return _WsSender(self.conn, blocking, presettled=pair)

    def receiver(self, address: str, *, credit: int, name: str | None = None,
                 pair: bool = False, filter: dict[Any, Any] | None = None) -> _Receiver:
        from proton import LinkException

        try:
            blocking = self.conn.create_receiver(address, credit=credit, auto_credit=False,
                                                 name=name, filter=filter,
                                                 configure=_pair_link if pair else None)
        except LinkException as exc:
            raise _link_failure(address, exc) from None
        return _WsReceiver(self.conn, blocking, address)

    def close(self) -> None:
        self.conn.close()


_names = itertools.count(1)


def _link_name(role: str) -> str:
    return f"amqpws-broker-admin-{role}-{next(_names)}"


def _tidy(text: str) -> str:
    """proton_ws's texts end with a Condition's repr: make it `name: description`."""
    head, sep, tail = text.partition("Condition(")
    if not sep:
        return text
    args: list[object] = []
    with suppress(ValueError, SyntaxError):
        parsed = ast.literal_eval("(" + tail.rstrip(")").split(", {")[0] + ",)")
        args = list(parsed) if isinstance(parsed, tuple) else []
    if not args:
        return text
    return head + ": ".join(str(a) for a in args[:2])


# -- the management client -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: object  # plain JSON values (see `plain`)


class Admin:
    """A connection, its `/management` pair opened on first use."""

    def __init__(self, conn: _Connection) -> None:
        self.conn = conn
        self._requests: _Sender | None = None
        self._replies: _Receiver | None = None

    def request(self, method: str, path: str, body: object = None) -> Answer:
        from proton import Message as ProtonMessage

        if self._requests is None or self._replies is None:
            self._requests = self.conn.sender(MANAGEMENT, name=LINK_PAIR_NAME, pair=True)
            self._replies = self.conn.receiver(MANAGEMENT, credit=CREDIT_WINDOW,
                                               name=LINK_PAIR_NAME, pair=True)
        request_id = str(uuid.uuid4())
        self._requests.send(ProtonMessage(id=request_id, address=path, subject=method,
                                          reply_to="$me", body=body,  # type: ignore[arg-type]
                                          inferred=False))
        while True:
            reply = self._replies.receive(TIMEOUT)
            if reply is None:
                raise AdminCommandError(f"no answer to {method} {path} from {MANAGEMENT} "
                                        f"within {TIMEOUT:g} s")
            self._replies.flow(1)
            if str(reply.correlation_id) == request_id:
                break
        try:
            answer = Message.parse(reply.encode())
            status = int(answer.properties.subject)  # type: ignore[union-attr, arg-type]
            sections = answer.body
        except (DecodeError, TypeError, ValueError, AttributeError):
            raise AdminCommandError(f"malformed answer to {method} {path}") from None
        value = sections[0].value if sections and isinstance(sections[0], AmqpValue) else None
        return Answer(status, plain(value))

    def call(self, method: str, path: str, body: object = None,
             expect: Sequence[int] = (200,)) -> Answer:
        """`request`, with an error answer turned into AdminCommandError."""
        answer = self.request(method, path, body)
        if answer.status not in expect:
            raise AdminCommandError(f"{_status_line(answer.status)}: {_error_text(answer.body)}")
        return answer


def _status_line(status: int) -> str:
    try:
        return f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _error_text(body: object) -> str:
    if isinstance(body, str):
        return body
    return json.dumps(body) if body is not None else "(no text)"


def _queue_path(name: str, *rest: str) -> str:
    return "/".join(["", "queues", quote(name, safe=""), *rest])


# -- connecting, with one line for every failure -----------------------------------------


def _require_proton() -> None:
    try:
        import proton  # noqa: F401
    except ImportError:
        raise AdminUsageError(NEEDS_PROTON) from None


@contextmanager
def connect(target: Target) -> Iterator[Admin]:
    """An Admin over a new connection; any proton failure is an AdminCommandError
    (worded while the failed link still exists: closing frees it)."""
    _require_proton()
    from proton import ProtonException

    try:
        conn: _Connection = _WsConnection(target) if target.websocket \
            else _TcpConnection(target)
    except OSError as exc:
        raise BrokerUnavailable(f"cannot connect to {target.url}: {exc}") from None
    try:
        yield Admin(conn)
    except (ProtonException, OSError) as exc:
        error = AdminCommandError(_failure_text(exc))
        with suppress(Exception):
            conn.close()
        raise error from None
    except BaseException:
        with suppress(Exception):
            conn.close()
        raise
    try:
        conn.close()
    except (ProtonException, OSError) as exc:
        raise AdminCommandError(_failure_text(exc)) from None


def _failure_text(exc: BaseException) -> str:
    """One line for a proton exception: the broker's condition when it sent one."""
    link = getattr(exc, "link", None)
    if link is not None and link.remote_condition is not None:
        address = link.target.address if link.is_sender else link.source.address
        return f"{address}: {_condition_text(link.remote_condition)}"
    connection = getattr(exc, "connection", None)
    if connection is not None and connection.remote_condition is not None:
        return f"connection closed by the broker: {_condition_text(connection.remote_condition)}"
    return _tidy(str(exc)) or type(exc).__name__


def _link_failure(address: str, exc: BaseException) -> AdminCommandError:
    """proton_ws's link errors ("link NAME refused: Condition(...)") → `ADDRESS: why`."""
    text = _tidy(str(exc))
    for marker in ("refused: ", "by the broker: "):
        if marker in text:
            text = text.split(marker, 1)[1]
            break
    return AdminCommandError(f"{address}: {text}")


# -- common options ------------------------------------------------------------------------

_HELP_ERRORS: tuple[type[BaseException], ...] = tuple(
    e for e in (getattr(click.exceptions, "NoArgsIsHelpError", None),) if e is not None)


def _one_line(error: click.UsageError, fallback: str | None) -> AdminUsageError:
    """click prints a usage error with the usage and a hint: here it is one line too."""
    where = error.ctx.command_path if error.ctx is not None else fallback
    return AdminUsageError(f"{error.format_message().rstrip('.')} (see '{where} --help')")


class AdminCommand(click.Command):
    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            if isinstance(exc, _HELP_ERRORS):
                raise
            raise _one_line(exc, info_name) from None


class AdminGroup(click.Group):
    command_class = AdminCommand

    def resolve_command(self, ctx: click.Context, args: list[str]
                        ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            raise _one_line(exc, ctx.command_path) from None



def connection_options(fn: F) -> F:
    """--url, --user, --password, --ca-file → a `target` argument."""

    @click.option("--url", metavar="URL", default=DEFAULT_URL, show_default=True,
                  envvar="AMQPWS_BROKER_URL",
                  help="Broker: amqp://, amqps://, ws:// or wss:// (user:password@ allowed); "
                       "env AMQPWS_BROKER_URL.")
    @click.option("--user", metavar="NAME", envvar="AMQPWS_BROKER_USER",
                  help="SASL PLAIN user (default: ANONYMOUS); env AMQPWS_BROKER_USER.")
    @click.option("--password", metavar="PASSWORD", envvar="AMQPWS_BROKER_PASSWORD",
                  help="Its password; env AMQPWS_BROKER_PASSWORD.")
    @click.option("--ca-file", type=click.Path(exists=True, dir_okay=False),
                  help="PEM CA bundle to check an amqps/wss broker's certificate "
                       "[default: the system's].")
    @functools.wraps(fn)
    def wrapper(url: str, user: str | None, password: str | None, ca_file: str | None,
                **kwargs: Any) -> Any:
        return fn(target=parse_target(url, user, password, ca_file), **kwargs)

    return wrapper  # type: ignore[return-value]


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")


def _echo_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


# -- output ------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Aligned columns, numbers to the right."""
    cells = [[_cell(v) for v in row] for row in rows]
    numeric = [bool(rows) and all(isinstance(r[i], int) and not isinstance(r[i], bool)
                                  for r in rows) for i in range(len(headers))]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric, strict=True)).rstrip()

    return "\n".join([line(headers), *(line(r) for r in cells)])


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return ",".join(f"{k}={_cell(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ",".join(_cell(v) for v in value)
    return str(value)


def _shown(value: object) -> str:
    """A value in a `key=value` line: plain strings as they are, the rest as JSON."""
    if isinstance(value, str) and value and not any(c.isspace() for c in value) \
            and "=" not in value and not value.startswith(('"', "{", "[")):
        return value
    return json.dumps(value, ensure_ascii=False)


def _pairs(fields: object) -> str:
    if not isinstance(fields, dict):
        return ""
    return " ".join(f"{k}={_shown(v)}" for k, v in fields.items())


_HEADER_DEFAULTS: dict[str, object] = {"durable": False, "priority": 4, "delivery_count": 0}


def format_message(described: dict[str, Any], number: int) -> str:
    """A described message (`describe_message`) for people, one section a line."""
    annotations = described.get("message_annotations") or {}
    offset = described.get("offset", annotations.get("x-stream-offset"))
    title = f"message {number}" + (f" (offset {offset})" if offset is not None else "")
    lines = [title]
    if described.get("error"):
        lines.append(f"  error: {described['error']}")
    header = {k: v for k, v in (described.get("header") or {}).items()
              if k != "first_acquirer" and _HEADER_DEFAULTS.get(k, object()) != v}
    if header:
        lines.append(f"  header: {_pairs(header)}")
    for label, key in (("annotations", "message_annotations"), ("properties", "properties"),
                       ("application properties", "application_properties")):
        if described.get(key):
            lines.append(f"  {label}: {_pairs(described[key])}")
    lines.append(f"  body: {_body_text(described.get('body'))}")
    return "\n".join(lines)


def _body_text(body: object) -> str:
    if not isinstance(body, dict):
        return "(none)"
    kind = body.get("kind")
    if kind == "data":
        cut = " (truncated)" if body.get("truncated") else ""
        if "text" in body:
            return f"{body['text']}{cut}"
        return f"(hex, {body.get('size')} bytes) {body.get('hex')}{cut}"
    if kind in ("value", "sequence"):
        return f"({kind}) {json.dumps(body.get('value'), ensure_ascii=False)}"
    return f"({kind})"


def plain(value: object) -> Any:
    """An AMQP value as plain JSON values (`ULong(3)` → `3`), for printing too."""
    return json.loads(json.dumps(jsonable(value)))


def _described(message: proton.Message) -> dict[str, Any]:
    """A received proton message as the broker's peek describes one."""
    described: dict[str, Any] = plain(describe_message(Message(message.encode())))
    return described


# -- the commands ------------------------------------------------------------------------

LISTINGS = ("queues", "exchanges", "bindings", "connections")


def _queue_rows(items: list[Any]) -> tuple[list[str], list[list[object]]]:
    headers = ["name", "type", "messages", "consumers", "durable", "arguments"]
    rows: list[list[object]] = []
    for q in items:
        arguments = {k: v for k, v in (q.get("arguments") or {}).items() if k != "x-queue-type"}
        rows.append([q.get("name"), q.get("type"), q.get("message_count"),
                     q.get("consumer_count"), q.get("durable"), arguments])
    return headers, rows


def _exchange_rows(items: list[Any]) -> tuple[list[str], list[list[object]]]:
    headers = ["name", "type", "durable", "auto_delete", "internal", "arguments"]
    return headers, [[x.get("name") or "(AMQP default)", x.get("type"), x.get("durable"),
                      x.get("auto_delete"), x.get("internal"), x.get("arguments")]
                     for x in items]


def _binding_rows(items: list[Any]) -> tuple[list[str], list[list[object]]]:
    headers = ["source", "destination", "destination_type", "routing_key", "arguments"]
    rows: list[list[object]] = []
    for b in items:
        queue = b.get("destination_queue")
        rows.append([b.get("source") or "(AMQP default)",
                     queue if queue is not None else b.get("destination_exchange"),
                     "queue" if queue is not None else "exchange", b.get("binding_key"),
                     b.get("arguments")])
    return headers, rows


def _connection_rows(items: list[Any]) -> tuple[list[str], list[list[object]]]:
    headers = ["name", "user", "transport", "mechanism", "sessions", "links", "bytes_in",
               "bytes_out", "connected_at", "container_id"]
    rows: list[list[object]] = []
    for c in items:
        opened = c.get("opened_at")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(opened)) \
            if isinstance(opened, (int, float)) else ""
        rows.append([c.get("name"), c.get("user"), c.get("transport"), c.get("mechanism"),
                     c.get("sessions"), c.get("links"), c.get("bytes_in"), c.get("bytes_out"),
                     when, c.get("container_id")])
    return headers, rows


_ROWS = {"queues": _queue_rows, "exchanges": _exchange_rows, "bindings": _binding_rows,
         "connections": _connection_rows}


@click.command("list", cls=AdminCommand)
@click.argument("kind", type=click.Choice(LISTINGS), metavar="|".join(LISTINGS))
@json_option
@connection_options
def list_command(kind: str, as_json: bool, target: Target) -> None:
    """List queues, exchanges, bindings or connections."""
    with connect(target) as admin:
        body = admin.call("GET", f"/{kind}").body
    if not isinstance(body, list):
        raise AdminCommandError(f"GET /{kind}: expected a list, got {_error_text(body)}")
    if as_json:
        _echo_json(body)
        return
    click.echo(table(*_ROWS[kind]([item for item in body if isinstance(item, dict)])))


@click.command(cls=AdminCommand)
@click.argument("queue")
@json_option
@connection_options
def purge(queue: str, as_json: bool, target: Target) -> None:
    """Remove a queue's ready messages; prints how many."""
    with connect(target) as admin:
        body = admin.call("DELETE", _queue_path(queue, "messages")).body
    count = body.get("message_count") if isinstance(body, dict) else None
    if as_json:
        _echo_json({"queue": queue, "message_count": count})
    else:
        click.echo(f"purged {count} message{'' if count == 1 else 's'} from queue '{queue}'")


@click.command(cls=AdminCommand)
@click.argument("queue")
@click.option("--if-exists", is_flag=True, help="A queue that does not exist is no error.")
@json_option
@connection_options
def delete(queue: str, if_exists: bool, as_json: bool, target: Target) -> None:
    """Delete a queue or stream; prints how many messages it had."""
    with connect(target) as admin:
        if not if_exists:
            admin.call("GET", _queue_path(queue))  # RabbitMQ's DELETE is idempotent
        body = admin.call("DELETE", _queue_path(queue)).body
    count = body.get("message_count") if isinstance(body, dict) else None
    if as_json:
        _echo_json({"queue": queue, "message_count": count})
    else:
        click.echo(f"deleted queue '{queue}' ({count} message{'' if count == 1 else 's'})")


def _key_values(what: str) -> Callable[[click.Context, click.Parameter, tuple[str, ...]],
                                       dict[str, object]]:
    """NAME=VALUE options → a dict; integers and true/false become those (as `--queue`
    in `serve` and the config file do)."""

    def parse(ctx: click.Context, param: click.Parameter,
              values: tuple[str, ...]) -> dict[str, object]:
        out: dict[str, object] = {}
        for item in values:
            name, eq, text = item.partition("=")
            if not eq or not name.strip():
                raise AdminUsageError(f"{param.opts[0]} {item!r}: expected {what}=VALUE")
            out[name.strip()] = parse_scalar(text.strip())
        return out

    return parse


@click.group(cls=AdminGroup)
def declare() -> None:
    """Declare a queue."""


@declare.command("queue")
@click.argument("name")
@click.option("--type", "queue_type", type=click.Choice(("classic", "quorum", "stream")),
              help="x-queue-type.  [default: classic]")
@click.option("--arg", "arguments", multiple=True, metavar="NAME=VALUE",
              callback=_key_values("NAME"),
              help="A queue argument (repeatable): x-max-length=10, x-overflow=drop-head…; "
                   "integers and true/false become those.")
@click.option("--durable/--no-durable", default=True, show_default=True)
@json_option
@connection_options
def declare_queue(name: str, queue_type: str | None, arguments: dict[str, object],
                  durable: bool, as_json: bool, target: Target) -> None:
    """Declare queue NAME.

    Declaring an existing queue again is no error when the arguments are the
    same (409 Conflict otherwise)."""
    if queue_type is not None:
        arguments = {**arguments, "x-queue-type": queue_type}
    body: dict[str, object] = {"durable": durable, "arguments": arguments}
    with connect(target) as admin:
        answer = admin.call("PUT", _queue_path(name), body, expect=(200, 201))
    info = answer.body if isinstance(answer.body, dict) else {}
    if as_json:
        _echo_json(info)
    elif answer.status == 201:
        click.echo(f"declared queue '{name}' ({info.get('type')})")
    else:
        click.echo(f"queue '{name}' already exists ({info.get('type')}, "
                   f"{info.get('message_count')} messages)")


@click.command(cls=AdminCommand)
@click.argument("queue")
@click.option("-n", "--count", default=5, show_default=True, type=click.IntRange(1),
              help="Messages to show.")
@click.option("--offset", type=click.IntRange(0), help="Streams: the first offset shown.  "
                                                       "[default: the first retained]")
@json_option
@connection_options
def peek(queue: str, count: int, offset: int | None, as_json: bool, target: Target) -> None:
    """Show a queue's next messages without taking them.

    For a stream: its messages from --offset (default: the first retained)."""
    query = f"count={count}" + (f"&offset={offset}" if offset is not None else "")
    with connect(target) as admin:
        body = admin.call("GET", _queue_path(queue, "messages") + "?" + query).body
    messages = [m for m in body if isinstance(m, dict)] if isinstance(body, list) else []
    if as_json:
        _echo_json(messages)
        return
    if not messages:
        click.echo(f"queue '{queue}' has no messages to show", err=True)
    for number, described in enumerate(messages, 1):
        click.echo(format_message(described, number))


@click.command(cls=AdminCommand)
@click.argument("address")
@click.argument("body")
@click.option("--property", "properties", multiple=True, metavar="KEY=VALUE",
              callback=_key_values("KEY"),
              help="An application property (repeatable); integers and true/false become "
                   "those.")
@click.option("--subject", help="The message's subject.")
@click.option("--content-type", help="Its content-type (e.g. text/plain, application/json).")
@click.option("--message-id", help="Its message-id.")
@click.option("--transient", is_flag=True,
              help="Send it with header durable: false (a broker with a data directory "
                   "then keeps it in memory only).  [default: durable]")
@json_option
@connection_options
def publish(address: str, body: str, properties: dict[str, object], subject: str | None,
            content_type: str | None, message_id: str | None, transient: bool,
            as_json: bool, target: Target) -> None:
    """Send a message; print the broker's outcome.

    BODY goes in a data section ('-': read it from standard input); ADDRESS is
    /queues/NAME or /exchanges/NAME[/ROUTING-KEY].  The exit code is 1 unless
    the outcome is accepted."""
    payload = sys.stdin.buffer.read() if body == "-" else body.encode("utf-8")
    with connect(target) as admin:
        from proton import Message as ProtonMessage

        message = ProtonMessage(body=payload, inferred=True, subject=subject,
                                content_type=content_type, id=message_id,
                                properties=properties or None, durable=not transient)
        outcome = admin.conn.sender(address).send(message)
    if as_json:
        _echo_json({"outcome": outcome.state, "condition": outcome.condition})
    else:
        click.echo(outcome.state + (f": {outcome.condition}" if outcome.condition else ""))
    if not outcome.accepted:
        sys.exit(EXIT_FAILED)


def _offset_spec(ctx: click.Context, param: click.Parameter,
                 value: str | None) -> str | int | None:
    """first, last, next, an offset (a long on the wire) or an interval such as 1h,
    checked by the rules the broker's streams use."""
    if value is None:
        return None
    spec: str | int = int(value) if re.fullmatch(r"-?\d+", value) else value
    if parse_offset_spec(spec, 0.0) is None:
        raise AdminUsageError(f"--offset {value!r}: expected first, last, next, an offset "
                              "(0, 1, …) or an interval such as 10m, 1h, 7D")
    return spec


@click.command(cls=AdminCommand)
@click.argument("address")
@click.option("--offset", callback=_offset_spec, metavar="first|last|next|N|INTERVAL",
              help="Streams: where to start (rabbitmq:stream-offset-spec), e.g. first, 42, 1h.")
@click.option("-n", "--count", type=click.IntRange(1), help="Stop after this many messages.")
@click.option("--timeout", type=click.FloatRange(0, min_open=True),
              help="Stop when no message came for this many seconds.  [default: wait]")
@click.option("--json", "as_json", is_flag=True, help="Print each message as a JSON line.")
@connection_options
def consume(address: str, offset: str | int | None, count: int | None, timeout: float | None,
            as_json: bool, target: Target) -> None:
    """Print (and accept) the messages arriving at ADDRESS.

    ADDRESS is a queue or stream (/queues/q); a stream starts where --offset
    says (the rabbitmq:stream-offset-spec filter)."""
    with connect(target) as admin:
        from broker.client.proton_ws import stream_offset_filter

        window = min(CREDIT_WINDOW, count) if count else CREDIT_WINDOW
        receiver = admin.conn.receiver(address, credit=window, filter=stream_offset_filter(
            offset) if offset is not None else None)
        granted, got = window, 0
        try:
            while count is None or got < count:
                message = receiver.receive(timeout)
                if message is None:
                    break
                got += 1
                described = _described(message)
                if as_json:
                    click.echo(json.dumps(described, ensure_ascii=False))
                else:
                    click.echo(format_message(described, got))
                receiver.accept()
                outstanding = granted - got
                if outstanding <= window // 2:
                    more = window - outstanding
                    if count is not None:
                        more = min(more, count - granted)
                    if more > 0:
                        receiver.flow(more)
                        granted += more
        except KeyboardInterrupt:
            sys.exit(130)  # leaving the block closes the connection
    if count is not None and got < count and timeout is not None:
        click.echo(f"{got} message{'' if got == 1 else 's'} (no more in {timeout:g} s)",
                   err=True)


COMMANDS: tuple[click.Command, ...] = (list_command, purge, delete, declare, peek, publish,
                                       consume)


def register(group: click.Group) -> None:
    """Add the admin commands to `group` (the `amqpws-broker` CLI)."""
    for command in COMMANDS:
        group.add_command(command)
