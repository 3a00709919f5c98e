"""The broker's plain HTTP surface, decided purely: the web console's files,
its JSON API, `/metrics`, `/healthz` and `/readyz`.

`transports/http.py` parses a request and hands it here as an `HttpRequest`;
what comes back is an `HttpResponse`.  Everything the API shows or does goes
through `admin.Admin` (the same API as `/management` and the config), and
publishing goes through the ordinary publish path, so the console can do
nothing a client could not.

Who is asking: HTTP Basic credentials or a bearer token (checked by
`access`), else the anonymous user when anonymous access is allowed (401
otherwise).  Listings need no permission (as RabbitMQ's); peeking needs read,
purging read, deleting or declaring configure, publishing write (checked per
message by the publish path).  A request that changes something must carry
the header `x-amqpws-console: 1`: a page on another site cannot add a custom
header without a CORS preflight we never grant, so it cannot drive the API
from a visitor's browser.

JSON API (all answers JSON):

    GET    /api/overview                     broker, totals, memory, listeners
    GET    /api/queues                       every queue and stream with stats
    GET    /api/queues/NAME                  one of them
    PUT    /api/queues/NAME                  declare {"durable", "arguments", …}
    DELETE /api/queues/NAME                  delete → {"message_count": n}
    GET    /api/queues/NAME/messages?count=N[&offset=K]   peek without taking
    DELETE /api/queues/NAME/messages         purge → {"message_count": n}
    GET    /api/exchanges, /api/bindings, /api/connections
    POST   /api/publish  {"address", "body", "content_type"?, "subject"?,
                          "application_properties"?}  → {"outcome", "error"?}
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

from broker.access import READ, Access, AccessRefused, CredentialsRefused, Identity
from broker.admin import Admin, AdminError
from broker.codec.messaging import Accepted, Message, Properties, Rejected, Released
from broker.codec.types import Symbol
from broker.errors import EncodeError
from broker.services.describe import jsonable, peek_described

log = logging.getLogger("broker.http")

MUTATION_HEADER = "x-amqpws-console"


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    target: str  # path and query, as sent
    headers: dict[str, str]  # lower-case names; the last of repeated ones
    body: bytes = b""
    peer: str = ""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = field(default=())


class _HttpError(Exception):
    def __init__(self, status: int, message: str,
                 headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


Publish = Callable[[Identity, Message], object]  # → the outcome the publish path gives


@dataclass
class HttpApi:
    admin: Admin
    access: Access
    overview: Callable[[], dict[str, object]]
    connections: Callable[[], list[dict[str, object]]]
    publish: Publish
    metrics: Callable[[], tuple[bytes, str]]  # (body, content type)
    health: Callable[[], tuple[bool, bool]]  # (alive, ready)
    wall_clock: Callable[[], float]
    files: Mapping[str, tuple[bytes, str]] = field(default_factory=dict)  # path → (body, type)
    # may a page from this Origin use the API (the WebSocket listener's rule:
    # DNS rebinding gives a foreign page our address, not its Origin)
    origin_allowed: Callable[[str | None], bool] = lambda origin: True

    def handle(self, request: HttpRequest) -> HttpResponse:
        path, _, query = request.target.partition("?")
        try:
            if path in ("/healthz", "/readyz"):
                alive, ready = self.health()
                ok = alive if path == "/healthz" else ready
                return HttpResponse(200 if ok else 503, b"ok\n" if ok else b"unavailable\n")
            if path == "/metrics":
                body, content_type = self.metrics()
                return HttpResponse(200, body, content_type)
            if path.startswith("/api/"):
                return self._api(request, path, query)
            static = self.files.get("/index.html" if path == "/" else path)
            if static is not None and request.method in ("GET", "HEAD"):
                return HttpResponse(200, static[0], static[1],
                                    (("cache-control", "no-cache"),))
            raise _HttpError(404, f"nothing at {path}")
        except _HttpError as exc:
            return _json(exc.status, {"error": exc.message}, exc.headers)

    # -- the JSON API -------------------------------------------------------------

    def _api(self, request: HttpRequest, path: str, query: str) -> HttpResponse:
        origin = request.headers.get("origin")
        if not self.origin_allowed(origin):
            raise _HttpError(403, f"origin {origin[:200] if origin else origin} may not use "
                                  "this broker's API (--allowed-origin)")
        identity = self._identity(request)
        method = "GET" if request.method == "HEAD" else request.method
        if method not in ("GET", "HEAD") and request.headers.get(MUTATION_HEADER) != "1":
            raise _HttpError(403, f"changes need the header {MUTATION_HEADER}: 1")
        segments = [unquote(p) for p in path.split("/")[2:]]
        try:
            return self._route(method, segments, dict(parse_qsl(query)), request, identity)
        except AccessRefused as exc:
            raise _HttpError(403, str(exc)) from None
        except AdminError as exc:
            raise _HttpError(exc.status, exc.message) from None

    def _route(self, method: str, segments: list[str], query: dict[str, str],
               request: HttpRequest, identity: Identity) -> HttpResponse:
        admin = self.admin
        head, rest = segments[0], segments[1:]
        if head == "overview" and not rest and method == "GET":
            return _json(200, {**self.overview(), "user": identity.user})
        if head == "queues":
            if not rest and method == "GET":
                return _json(200, admin.list_queue_stats())
            if len(rest) == 1:
                return self._queue(method, rest[0], request, identity)
            if len(rest) == 2 and rest[1] == "messages":
                return self._messages(method, rest[0], query, identity)
        if head == "exchanges" and not rest and method == "GET":
            return _json(200, admin.list_exchanges())
        if head == "bindings" and not rest and method == "GET":
            return _json(200, admin.list_bindings())
        if head == "connections" and not rest and method == "GET":
            return _json(200, self.connections())
        if head == "publish" and not rest and method == "POST":
            return self._publish(request, identity)
        raise _HttpError(404 if method in ("GET", "PUT", "POST", "DELETE") else 405,
                         f"no such resource or method: {method} /api/{'/'.join(segments)}")

    def _queue(self, method: str, name: str, request: HttpRequest,
               identity: Identity) -> HttpResponse:
        admin = self.admin
        if method == "GET":
            return _json(200, admin.queue_stats(name))
        if method == "DELETE":
            identity.check("configure", "queue", name)
            return _json(200, {"message_count": admin.delete_queue(name)})
        if method == "PUT":
            identity.check("configure", "queue", name)
            body = _json_body(request)
            arguments = body.get("arguments", {})
            if not isinstance(arguments, dict):
                raise _HttpError(400, "'arguments' must be an object")
            _info, created = admin.declare_queue(
                name, durable=bool(body.get("durable", True)),
                auto_delete=bool(body.get("auto_delete", False)),
                arguments=arguments, now=self.wall_clock())
            return _json(201 if created else 200, admin.queue_stats(name))
        raise _HttpError(405, f"method {method} not allowed on a queue")

    def _messages(self, method: str, name: str, query: dict[str, str],
                  identity: Identity) -> HttpResponse:
        identity.check(READ, "queue", name)
        if method == "DELETE":
            return _json(200, {"message_count": self.admin.purge_queue(name)})
        if method != "GET":
            raise _HttpError(405, f"method {method} not allowed on a queue's messages")
        return _json(200, peek_described(self.admin, name, query))

    def _publish(self, request: HttpRequest, identity: Identity) -> HttpResponse:
        body = _json_body(request)
        address, text = body.get("address"), body.get("body", "")
        if not isinstance(address, str) or not address or not isinstance(text, str):
            raise _HttpError(400, "publish needs 'address' and a text 'body'")
        application_properties = body.get("application_properties") or None
        if application_properties is not None and not isinstance(application_properties, dict):
            raise _HttpError(400, "'application_properties' must be an object")
        content_type = body.get("content_type", "text/plain")
        subject = body.get("subject")
        try:
            message = self._message(text, address, subject, content_type,
                                    application_properties)
        except (EncodeError, ValueError, TypeError) as exc:
            raise _HttpError(400, f"cannot encode that message: {exc}") from None
        outcome = self.publish(identity, message)
        if isinstance(outcome, Accepted):
            return _json(200, {"outcome": "accepted"})
        if isinstance(outcome, Released):
            return _json(200, {"outcome": "released", "error": "routed to no queue"})
        error = outcome.error if isinstance(outcome, Rejected) else None
        return _json(200, {"outcome": "rejected",
                           "error": getattr(error, "description", None) or str(outcome)})

    @staticmethod
    def _message(text: str, address: str, subject: object, content_type: object,
                 application_properties: dict[object, object] | None) -> Message:
        return Message.create(
            text.encode("utf-8"),
            properties=Properties(message_id=str(uuid.uuid4()), to=address,
                                  subject=subject if isinstance(subject, str) else None,
                                  content_type=Symbol(str(content_type))),
            application_properties=application_properties)

    # -- who is asking -------------------------------------------------------------

    def _identity(self, request: HttpRequest) -> Identity:
        try:
            return identify(self.access, request, self.wall_clock())
        except CredentialsRefused as exc:
            raise _HttpError(401, str(exc), _CHALLENGE) from None


def identify(access: Access, request: HttpRequest, now: float) -> Identity:
    """Who is asking: HTTP Basic credentials, a bearer token, else anonymous
    when allowed; CredentialsRefused (the reason) otherwise.  The gateway's
    API asks the same way."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(credentials.strip()).decode(
                "utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            raise CredentialsRefused("malformed Basic credentials") from None
        return access.plain("", user, password, now)
    if scheme.lower() == "bearer":
        return access.bearer(credentials.strip(), now)
    if not access.allow_anonymous:
        raise CredentialsRefused("log in (anonymous access is off)")
    return access.anonymous()


_CHALLENGE = (("www-authenticate", 'Basic realm="amqpws-broker", charset="UTF-8"'),)


def _json(status: int, value: object,
          headers: tuple[tuple[str, str], ...] = ()) -> HttpResponse:
    return HttpResponse(status, json.dumps(value, default=jsonable).encode("utf-8"),
                        "application/json", (("cache-control", "no-store"), *headers))


def _json_body(request: HttpRequest) -> dict[str, object]:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        raise _HttpError(400, "the body must be JSON") from None
    if not isinstance(body, dict):
        raise _HttpError(400, "the body must be a JSON object")
    return body
