"""Who the gateway is upstream (`--upstream-auth`).

- `service` (the default): one service account, the `--upstream` URL's
  credentials, for every client; the edge's permissions (access.py,
  edge_access.py) decide who may do what, exactly as in `serve`.
- `passthrough`: each client's own credentials go upstream, on a connection
  of that client's own (shared by that user's connections with the same
  credentials), and the upstream decides: its users, or RabbitMQ's OAuth2
  plugin for a bearer token (presented as the PLAIN password, as RabbitMQ
  takes tokens).  The gateway cannot check a password it does not know, so
  it accepts any PLAIN login at SASL time and the upstream's verdict comes
  with the first attach: a refused login closes the client's connection with
  amqp:unauthorized-access.  A bearer token from the WebSocket upgrade is
  still verified at the edge when token keys are configured.  Pure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from broker.access import EVERYTHING, Access, Identity
from broker.codec.types import Symbol
from broker.container import Credentials
from broker.engine.sasl import ANONYMOUS, PLAIN, Refused

SERVICE, PASSTHROUGH = "service", "passthrough"
UPSTREAM_AUTH = (SERVICE, PASSTHROUGH)


@dataclass(frozen=True, slots=True)
class Login:
    """Credentials to present upstream; both None: SASL ANONYMOUS."""

    user: str | None
    password: str | None

    def __repr__(self) -> str:  # never the password, not even in a traceback
        return f"Login({self.user!r})"


ANONYMOUS_LOGIN = Login(None, None)


@dataclass(frozen=True, slots=True)
class Bearer:
    """A WebSocket upgrade's token and the identity it was given at the edge
    (what `Gateway.verify_bearer` hands the transport in passthrough mode)."""

    identity: Identity
    token: str


def verify_bearer(access: Access, token: str, now: float) -> Bearer:
    """The edge's check of an upgrade's token in passthrough mode: verified
    when token keys are configured, else taken as it is (the upstream checks)."""
    if access.tokens is not None:
        return Bearer(access.bearer(token, now), token)
    return Bearer(Identity("bearer", EVERYTHING, mechanism="bearer"), token)


class PassthroughCredentials(Credentials):
    """SASL at the edge in passthrough mode: PLAIN logins are kept for the
    upstream, not checked here; ANONYMOUS (or a bearer token) likewise."""

    def __init__(self, access: Access, wall_clock: Callable[[], float], *,
                 tls_subject: str | None, bearer: Bearer | None) -> None:
        super().__init__(access, wall_clock, tls_subject=tls_subject,
                         bearer=bearer.identity if bearer is not None else None)
        self.token = bearer.token if bearer is not None else None

    def mechanisms(self) -> tuple[Symbol, ...]:
        if self.token is not None:
            return (ANONYMOUS,)
        return (PLAIN, ANONYMOUS) if self.access.allow_anonymous else (PLAIN,)

    def _keep(self, login: Login, identity: Identity) -> str:
        handle: Any = self.handle
        if handle is not None:
            handle.login = login
        return self._accept(identity)

    def plain(self, authzid: str, user: str, password: str) -> str:
        if authzid and authzid != user:
            raise Refused(f"user {user!r} may not act as {authzid!r}")
        return self._keep(Login(user, password), Identity(user, EVERYTHING))

    def anonymous(self) -> str:
        if self.token is not None and self.bearer is not None:
            return self._keep(Login(self.bearer.user, self.token), self.bearer)
        return self._keep(ANONYMOUS_LOGIN, Identity("anonymous", EVERYTHING,
                                                    mechanism="ANONYMOUS"))
