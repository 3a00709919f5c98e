"""SASL server layer (§5.3): ANONYMOUS and PLAIN, as a small machine of its own.

It sees only SASL frames.  The connection hands over to it after the SASL
protocol header and takes back over after the outcome, as wsproto's handshake
hands over to its connection.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from broker.codec.performatives import SaslCode, SaslInit, SaslMechanisms, SaslOutcome, SaslResponse
from broker.codec.types import Symbol

ANONYMOUS = Symbol("ANONYMOUS")
PLAIN = Symbol("PLAIN")


class SaslServer:
    def __init__(self, users: Mapping[str, str], allow_anonymous: bool) -> None:
        self.users = dict(users)
        self.allow_anonymous = allow_anonymous
        self.user: str | None = None
        self.outcome: int | None = None
        self.reason = ""

    def mechanisms(self) -> SaslMechanisms:
        mechs = [PLAIN] if self.users else []
        if self.allow_anonymous:
            mechs.append(ANONYMOUS)
        return SaslMechanisms(sasl_server_mechanisms=tuple(mechs))

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
        if init.mechanism == ANONYMOUS:
            if not self.allow_anonymous:
                self.reason = "ANONYMOUS is disabled"
                return SaslCode.AUTH
            self.user = "anonymous"
            return SaslCode.OK
        if init.mechanism == PLAIN:
            parts = (init.initial_response or b"").split(b"\x00")
            if len(parts) != 3:
                self.reason = "malformed PLAIN response"
                return SaslCode.AUTH
            try:
                authzid = parts[0].decode("utf-8")
                user, password = parts[1].decode("utf-8"), parts[2].decode("utf-8")
            except UnicodeDecodeError:
                self.reason = "PLAIN credentials are not UTF-8"
                return SaslCode.AUTH
            if authzid and authzid != user:
                # acting as another identity is not something we grant (RFC 4616 §2)
                self.reason = f"user {printable(user)} may not act as {printable(authzid)}"
                return SaslCode.AUTH
            expected = self.users.get(user)
            if expected is None or not hmac.compare_digest(
                expected.encode("utf-8"), password.encode("utf-8")
            ):
                self.reason = f"bad credentials for user {printable(user)}"
                return SaslCode.AUTH
            self.user = user
            return SaslCode.OK
        self.reason = f"unsupported mechanism {printable(init.mechanism)}"
        return SaslCode.AUTH


def printable(text: object, limit: int = 100) -> str:
    """A peer-chosen name as it may appear in a log line: printable, and short."""
    s = "".join(c if c.isprintable() else "?" for c in str(text))
    return repr(s[:limit] + ("…" if len(s) > limit else ""))
