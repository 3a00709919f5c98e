"""SASL (§5.3): the server layer (ANONYMOUS, PLAIN and EXTERNAL) as a small machine
of its own, and the client side the gateway speaks to its upstream broker.

It sees only SASL frames.  The connection hands over to it after the SASL
protocol header and takes back over after the outcome, as wsproto's handshake
hands over to its connection.  Whether credentials are good is not decided
here: a `CredentialChecker` (injected; the container's wraps `access.Access`)
is asked, and the engine keeps only the user name it returns.  Parsing a
mechanism's response is ours, since it is protocol.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Protocol

from broker.codec.performatives import SaslCode, SaslInit, SaslMechanisms, SaslOutcome, SaslResponse
from broker.codec.types import Symbol

ANONYMOUS = Symbol("ANONYMOUS")
PLAIN = Symbol("PLAIN")
EXTERNAL = Symbol("EXTERNAL")


class Refused(Exception):
    """Credentials the checker does not accept; the message is the reason we log."""


class CredentialChecker(Protocol):
    """What the SASL layer asks; each method returns the user name or raises Refused."""

    def mechanisms(self) -> tuple[Symbol, ...]: ...
    def plain(self, authzid: str, user: str, password: str) -> str: ...
    def anonymous(self) -> str: ...
    def external(self, authzid: str) -> str: ...


class PasswordTable:
    """The simplest checker: clear passwords by user, and ANONYMOUS if allowed
    (engine tests and embedders that need nothing more)."""

    def __init__(self, users: Mapping[str, str], allow_anonymous: bool) -> None:
        self.users = dict(users)
        self.allow_anonymous = allow_anonymous

    def mechanisms(self) -> tuple[Symbol, ...]:
        return ((PLAIN,) if self.users else ()) + ((ANONYMOUS,) if self.allow_anonymous else ())

    def plain(self, authzid: str, user: str, password: str) -> str:
        if authzid and authzid != user:
            # acting as another identity is not something we grant (RFC 4616 §2)
            raise Refused(f"user {printable(user)} may not act as {printable(authzid)}")
        expected = self.users.get(user)
        if expected is None or not hmac.compare_digest(expected.encode("utf-8"),
                                                       password.encode("utf-8")):
            raise Refused(f"bad credentials for user {printable(user)}")
        return user

    def anonymous(self) -> str:
        return "anonymous"

    def external(self, authzid: str) -> str:
        raise Refused("EXTERNAL needs a verified client certificate")


class SaslServer:
    def __init__(self, checker: CredentialChecker) -> None:
        self.checker = checker
        self.offered = checker.mechanisms()
        self.user: str | None = None
        self.outcome: int | None = None
        self.reason = ""

    def mechanisms(self) -> SaslMechanisms:
        return SaslMechanisms(sasl_server_mechanisms=self.offered)

    def receive(self, frame: object) -> SaslOutcome:
        """Answer sasl-init (or a stray response) with the outcome."""
        if isinstance(frame, SaslInit):
            code = self._authenticate(frame)
        elif isinstance(frame, SaslResponse):
            code, self.reason = SaslCode.AUTH, "no challenge was issued"
        else:
            code, self.reason = SaslCode.SYS_PERM, f"unexpected SASL frame {type(frame).__name__}"
        self.outcome = code
        return SaslOutcome(code=code)

    def _authenticate(self, init: SaslInit) -> int:
        mechanism = init.mechanism
        if mechanism not in self.offered:
            self.reason = f"mechanism {printable(mechanism)} is not offered"
            return SaslCode.AUTH
        response = init.initial_response or b""
        try:
            if mechanism == ANONYMOUS:
                self.user = self.checker.anonymous()
            elif mechanism == PLAIN:
                authzid, user, password = _plain(response)
                self.user = self.checker.plain(authzid, user, password)
            else:  # EXTERNAL: the response is an optional authorization id (RFC 4422 App. A)
                self.user = self.checker.external(_utf8(response))
        except Refused as exc:
            self.reason = str(exc)
            return SaslCode.AUTH
        return SaslCode.OK


class SaslClient:
    """Our side when we connect out (the gateway's upstream connections): PLAIN
    with the credentials we were given, ANONYMOUS without; nothing else, since
    those are what RabbitMQ, Qpid and Artemis offer a service account."""

    def __init__(self, user: str | None = None, password: str | None = None,
                 hostname: str | None = None) -> None:
        self.user = user
        self.password = password
        self.hostname = hostname
        self.reason = ""

    def init(self, mechanisms: SaslMechanisms) -> SaslInit | None:
        """The sasl-init for the server's offer, or None (and `reason`) when
        nothing we can do is offered."""
        offered = set(mechanisms.sasl_server_mechanisms)
        if self.user is not None:
            if PLAIN in offered:
                response = b"\x00" + self.user.encode() + b"\x00" + (self.password or "").encode()
                return SaslInit(mechanism=PLAIN, initial_response=response,
                                hostname=self.hostname)
            self.reason = f"the server does not offer PLAIN (it offers {sorted(offered)})"
            return None
        if ANONYMOUS in offered:
            return SaslInit(mechanism=ANONYMOUS, initial_response=b"", hostname=self.hostname)
        self.reason = f"the server does not offer ANONYMOUS (it offers {sorted(offered)})"
        return None

    def outcome(self, outcome: SaslOutcome) -> bool:
        """True when authenticated; otherwise `reason` says why not."""
        if outcome.code == SaslCode.OK:
            return True
        self.reason = (f"the server refused our credentials for "
                       f"{'user ' + repr(self.user) if self.user else 'ANONYMOUS'} "
                       f"(sasl-outcome code {outcome.code})")
        return False


def _plain(response: bytes) -> tuple[str, str, str]:
    """RFC 4616: authzid NUL authcid NUL passwd."""
    parts = response.split(b"\x00")
    if len(parts) != 3:
        raise Refused("malformed PLAIN response")
    authzid, user, password = (_utf8(p) for p in parts)
    return authzid, user, password


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("SASL credentials are not UTF-8") from None


def printable(text: object, limit: int = 100) -> str:
    """A peer-chosen name as it may appear in a log line: printable, and short."""
    s = "".join(c if c.isprintable() else "?" for c in str(text))
    return repr(s[:limit] + ("…" if len(s) > limit else ""))
