"""A small OAuth2 token endpoint for tests (client credentials grant only).

`http.server` on 127.0.0.1, port 0, served from a thread, so that the code
under test talks real HTTP through urllib.  It checks the client's
credentials the way the test asks (`accept`), records every request, and
hands out numbered tokens (`token-1`, `token-2`, ...) with `expires_in`.
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Literal, Self

#: How the endpoint wants the client authenticated:
#: "basic"     HTTP Basic auth only (form-field credentials get 401);
#: "form"      form fields only, Basic auth answered with 401 (as some servers do);
#: "form-400"  form fields only, Basic auth answered with 400 invalid_client
#:             (RFC 6749 §5.2 allows either status).
Accept = Literal["basic", "form", "form-400"]


@dataclass(frozen=True)
class TokenRequest:
    """One request as the endpoint saw it."""

    path: str
    content_type: str | None
    authorization: str | None
    form: dict[str, str]


@dataclass
class CannedAnswer:
    """An answer to give instead of checking credentials (failure tests)."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class TokenEndpoint:
    """The endpoint; use as a context manager (starts and stops the thread)."""

    def __init__(
        self,
        client_id: str = "app-client",
        client_secret: str = "s3cret!",
        *,
        accept: Accept = "basic",
        expires_in: int | str | None = 3600,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.accept = accept
        self.expires_in = expires_in
        #: set to answer every request with this instead
        self.canned: CannedAnswer | None = None
        #: put the secret the client sent into error descriptions, to check
        #: that the client redacts what a careless server echoes back
        self.echo_secret_in_errors = False
        self.requests: list[TokenRequest] = []
        self.issued: list[str] = []
        self._lock = threading.Lock()
        self._server = HTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(
            # A short poll interval: shutdown() waits for one poll to end.
            target=lambda: self._server.serve_forever(poll_interval=0.02),
            name="token-endpoint",
            daemon=True,
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/oauth/token"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    # -- the HTTP side -------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode("ascii")
                form = {k: v[0] for k, v in urllib.parse.parse_qs(raw).items()}
                request = TokenRequest(
                    path=self.path,
                    content_type=self.headers.get("Content-Type"),
                    authorization=self.headers.get("Authorization"),
                    form=form,
                )
                status, body, headers = endpoint._answer(request)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output quiet

        return Handler

    def _answer(self, request: TokenRequest) -> tuple[int, bytes, dict[str, str]]:
        with self._lock:
            self.requests.append(request)
            if self.canned is not None:
                return self.canned.status, self.canned.body, self.canned.headers
            if request.form.get("grant_type") != "client_credentials":
                return _error(400, "unsupported_grant_type")
            basic = _basic_credentials(request.authorization)
            in_form = (request.form.get("client_id"), request.form.get("client_secret"))
            offered: tuple[str | None, str | None] | None
            if self.accept == "basic":
                offered = basic
            elif basic is not None:
                status = 401 if self.accept == "form" else 400
                return _error(status, "invalid_client", "use client_secret_post")
            else:
                offered = in_form if in_form[0] is not None else None
            if offered != (self.client_id, self.client_secret):
                sent = basic[1] if basic is not None else in_form[1]
                detail = f"bad client secret {sent}" if self.echo_secret_in_errors else "bad client"
                return _error(401, "invalid_client", detail)
            token = f"token-{len(self.issued) + 1}"
            self.issued.append(token)
            answer: dict[str, Any] = {"access_token": token, "token_type": "bearer"}
            if self.expires_in is not None:
                answer["expires_in"] = self.expires_in
            if "scope" in request.form:
                answer["scope"] = request.form["scope"]
            return 200, json.dumps(answer).encode(), {"Content-Type": "application/json"}


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    if not authorization or not authorization.startswith("Basic "):
        return None
    user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
    return user, password


def _error(
    status: int, error: str, description: str | None = None
) -> tuple[int, bytes, dict[str, str]]:
    answer = {"error": error}
    if description:
        answer["error_description"] = description
    headers = {"Content-Type": "application/json"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="oauth"'
    return status, json.dumps(answer).encode(), headers
