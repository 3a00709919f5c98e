"""Bearer tokens for clients: a provider protocol, a cache, and OAuth2's
client-credentials grant (what SAP Event Mesh's service keys describe).

Used by `proton_ws.connect(token_provider=...)`; nothing here knows about
AMQP or WebSockets.  HTTP goes through the standard library only.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit


class TokenLike(Protocol):
    """What a token provider may return instead of a bare string: the token
    and when it expires (seconds since the epoch; None: unknown)."""

    @property
    def token(self) -> str: ...

    @property
    def expires_at(self) -> float | None: ...


#: A callable giving the bearer token for the next connect: a str, or a
#: `TokenLike` such as `AccessToken`.  It may block (connect runs it in a
#: worker thread), so plain HTTP code is fine.
TokenProvider = Callable[[], "str | TokenLike"]


@dataclass(frozen=True)
class AccessToken:
    """A bearer token and its expiry (seconds since the epoch, or None)."""

    token: str = field(repr=False)  # a credential: keep it out of logs and tracebacks
    expires_at: float | None = None


class CachedTokenProvider:
    """Wraps a token provider so that repeated connects reuse one token.

    A token is reused until `refresh_margin` seconds before its `expires_at`;
    a provider that returns a bare string (no expiry known) is asked every
    time.  Calls are serialised by a lock, so connections opened at the same
    moment (from several threads, too) share one fetch instead of racing to
    the token endpoint.  `clock` gives seconds since the epoch; tests pass a
    fake one."""

    def __init__(
        self,
        provider: TokenProvider,
        *,
        refresh_margin: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.provider = provider
        self.refresh_margin = refresh_margin
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: AccessToken | None = None

    def __call__(self) -> AccessToken:
        with self._lock:
            cached = self._cached
            if (
                cached is not None
                and cached.expires_at is not None
                and self._clock() < cached.expires_at - self.refresh_margin
            ):
                return cached
            fresh = as_access_token(self.provider())
            self._cached = fresh if fresh.expires_at is not None else None
            return fresh

    def invalidate(self) -> None:
        """Forget the cached token, so the next call fetches a new one.
        `connect()` does this when the broker refuses the upgrade with 401."""
        with self._lock:
            self._cached = None


def as_access_token(result: str | TokenLike) -> AccessToken:
    if isinstance(result, str):
        return AccessToken(result)
    token = getattr(result, "token", None)
    if not isinstance(token, str):
        raise TypeError(
            f"token provider returned {type(result).__name__}: "
            "expected a str or an object with .token (str) and .expires_at"
        )
    expires_at = getattr(result, "expires_at", None)
    return AccessToken(token, None if expires_at is None else float(expires_at))


class TokenRequestError(Exception):
    """The token endpoint did not give us a token.

    `token_url` is the endpoint (without any query string) and `status` the
    HTTP status, None when there was no HTTP answer at all.  Messages never
    contain the client secret."""

    def __init__(self, message: str, *, token_url: str, status: int | None = None) -> None:
        super().__init__(message)
        self.token_url = token_url
        self.status = status


def oauth2_client_credentials(
    token_url: str,
    client_id: str,
    client_secret: str,
    scope: str | None = None,
    *,
    ssl_context: ssl.SSLContext | None = None,
    timeout: float = 10,
    refresh_margin: float = 30.0,
    clock: Callable[[], float] = time.time,
) -> CachedTokenProvider:
    """A token provider using the OAuth2 client credentials grant (RFC 6749 §4.4).

    Each fetch POSTs `grant_type=client_credentials` (and `scope`, a
    space-separated list, when given) to `token_url`, with the client
    credentials in HTTP Basic auth.  Servers differ on how they want the
    client authenticated (§2.3.1 allows both ways), so when the endpoint
    answers 401, or 400 with `invalid_client`, the request is sent once more
    with `client_id` and `client_secret` as form fields instead.  The token is
    `access_token` of the JSON answer, kept until `refresh_margin` seconds
    before `expires_in` runs out (without `expires_in`: fetched at every
    connect).

    `ssl_context` verifies an https endpoint (default: the system's trust
    store); `timeout` bounds each HTTP request.  Failures raise
    `TokenRequestError` naming the endpoint and the HTTP status."""
    grant = _ClientCredentialsGrant(
        token_url, client_id, client_secret, scope, ssl_context, timeout, clock
    )
    return CachedTokenProvider(grant, refresh_margin=refresh_margin, clock=clock)


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    # urllib would follow a redirect carrying our Authorization header (the
    # client secret) to wherever it points; a token endpoint has no business
    # redirecting, so a 3xx is reported as the failure it is.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _ClientCredentialsGrant:
    """One token request (Basic auth, then form fields); blocking, stdlib only."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        scope: str | None,
        ssl_context: ssl.SSLContext | None,
        timeout: float,
        clock: Callable[[], float],
    ) -> None:
        parts = urlsplit(token_url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"token_url must be an http(s) URL, not {safe_url(token_url)!r}")
        self.token_url = token_url
        self.safe_url = safe_url(token_url)
        self.client_id = client_id
        self._client_secret = client_secret
        self.scope = scope
        self.timeout = timeout
        self._clock = clock
        self._opener = urllib.request.build_opener(
            _RefuseRedirects(), urllib.request.HTTPSHandler(context=ssl_context)
        )

    def __repr__(self) -> str:
        return f"<client credentials for {self.client_id!r} at {self.safe_url}>"

    def __call__(self) -> AccessToken:
        started = self._clock()  # expires_in counts from the server's answer, near enough
        status, body = self._post(basic=True)
        if _client_authentication_refused(status, body):
            status, body = self._post(basic=False)
        if not 200 <= status < 300:
            raise TokenRequestError(
                f"token request to {self.safe_url} failed: HTTP {status}{self._oauth_error(body)}",
                token_url=self.safe_url,
                status=status,
            )
        return self._parse(body, status, started)

    def _post(self, *, basic: bool) -> tuple[int, bytes]:
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        if basic:
            # Sent as given, not form-encoded first as §2.3.1 says: that is what
            # curl, requests and SAP's own clients do, and a server that wants
            # the encoded form refuses this with 401 and gets the form fields.
            pair = f"{self.client_id}:{self._client_secret}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        else:
            form["client_id"] = self.client_id
            form["client_secret"] = self._client_secret
        request = urllib.request.Request(
            self.token_url,
            data=urllib.parse.urlencode(form).encode("ascii"),
            headers=headers,
            method="POST",
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as exc:
            try:
                return int(exc.code), bytes(exc.read())
            finally:
                exc.close()
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise TokenRequestError(
                f"token request to {self.safe_url} failed: {self._redact(str(reason))}",
                token_url=self.safe_url,
            ) from None

    def _parse(self, body: bytes, status: int, started: float) -> AccessToken:
        answer = _json_object(body)
        token = answer.get("access_token") if answer is not None else None
        if not isinstance(token, str) or not token:
            raise TokenRequestError(
                f"token endpoint {self.safe_url} answered HTTP {status} without an access_token",
                token_url=self.safe_url,
                status=status,
            )
        expires_in = answer.get("expires_in") if answer is not None else None
        try:
            lifetime = None if expires_in is None else float(expires_in)
        except (TypeError, ValueError):
            lifetime = None  # unreadable: treat as unknown, fetch at every connect
        return AccessToken(token, None if lifetime is None else started + lifetime)

    def _oauth_error(self, body: bytes) -> str:
        # The RFC 6749 §5.2 error code and description, when the server sent
        # them; other bodies (HTML error pages) would only add noise.
        answer = _json_object(body)
        if answer is None or not isinstance(answer.get("error"), str):
            return ""
        error = str(answer["error"])
        description = answer.get("error_description")
        if isinstance(description, str) and description:
            error = f"{error}: {description}"
        return f" ({self._redact(error)})"

    def _redact(self, text: str) -> str:
        return text.replace(self._client_secret, "***") if self._client_secret else text


def _client_authentication_refused(status: int, body: bytes) -> bool:
    if status == 401:
        return True
    answer = _json_object(body) if status == 400 else None
    return answer is not None and answer.get("error") == "invalid_client"


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def safe_url(url: str) -> str:
    """`url` for messages: no user info, query or fragment (where secrets hide)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}"


