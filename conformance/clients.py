"""The clients of the conformance suite and how to run one case with each.

A client is `<library>-<transport>`:

- `proton-tcp`, `proton-ws`: python-qpid-proton, in this process
  (`proton_cases.py`; over WebSocket through `broker.client.proton_ws`);
- `rhea-tcp`, `rhea-ws`: rhea in Node, one `node node/cases.js` process per
  case, answering with one JSON line;
- `rhea-promise-tcp`, `rhea-promise-ws`: rhea-promise (the layer Azure's
  JavaScript SDKs use) for the cases in `PROMISE_CASES` only
  (`node/promise_cases.js`); rhea underneath runs them all.

`run_case` returns the case's JSON-shaped result; the tests assert on it.  A
client that is not installed is a skip on a developer's machine and a
failure in CI (`CI=true`): `make conformance` installs everything.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE / "node"
NODE_MODULES = HERE / "node_modules"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

CLIENTS = ("proton-tcp", "proton-ws", "rhea-tcp", "rhea-ws", "rhea-promise-tcp", "rhea-promise-ws")
PROMISE_CASES = frozenset(
    {
        "connect_anonymous",
        "connect_plain",
        "connect_bad_password",
        "many_in_order",
        "request_response",
        "cross_transport",
    }
)
NODE_SCRIPTS = {"rhea": "cases.js", "rhea-promise": "promise_cases.js"}
NODE_PACKAGES = {"rhea": ("rhea", "ws"), "rhea-promise": ("rhea", "rhea-promise", "ws")}
NODE_TIMEOUT = 30.0


#: Cases a client cannot do, or that fail because of a known broker bug:
#: (case, client) -> reason.  Marked xfail(strict=True), so a fix shows up as
#: an XPASS failure and the entry must then be removed.
XFAIL: dict[tuple[str, str], str] = {}


def clients_for(case: str) -> list[Any]:
    """`client` parameters for one case, with its known failures marked."""
    params = []
    for client in CLIENTS:
        if client.startswith("rhea-promise-") and case not in PROMISE_CASES:
            continue
        reason = XFAIL.get((case, client))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        params.append(pytest.param(client, marks=marks, id=client))
    return params


class CaseError(AssertionError):
    """The client reported an error while running a case."""


def _missing(client: str) -> str | None:
    """Why `client` cannot run here, or None."""
    library = client.rsplit("-", 1)[0]
    if library == "proton":
        try:
            import proton  # noqa: F401
            import trio_websocket  # noqa: F401
        except ImportError as exc:
            return f"python-qpid-proton not installed ({exc}); run `make conformance`"
        return None
    if library in NODE_PACKAGES:
        if shutil.which("node") is None:
            return "node is not installed (apt-get install nodejs npm)"
        for package in NODE_PACKAGES[library]:
            if not (NODE_MODULES / package / "package.json").exists():
                return f"npm package {package} missing in conformance/node_modules; run `make conformance`"
        return None
    return f"unknown client {client}"


def require(client: str) -> None:
    """Skip (locally) or fail (in CI) when `client` is not installed."""
    reason = _missing(client)
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"{client}: {reason}", pytrace=False)
    pytest.skip(f"{client}: {reason}")


def run_case(client: str, case: str, broker: Any, **params: Any) -> Any:
    require(client)
    library, transport = client.rsplit("-", 1)
    if library == "proton":
        import proton_cases  # conformance/ is on sys.path (rootdir conftest)

        return proton_cases.run(case, transport, broker, params)
    return _run_node(library, case, transport, broker, params)


def _run_node(library: str, case: str, transport: str, broker: Any, params: dict[str, Any]) -> Any:
    spec = {
        "case": case,
        "transport": transport,
        "host": broker.host,
        "port": broker.port,
        "ws_url": broker.ws_url,
        "params": params,
    }
    limit = float(params.get("timeout", NODE_TIMEOUT))
    try:
        proc = subprocess.run(
            ["node", str(NODE_DIR / NODE_SCRIPTS[library]), json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=limit + 10,
            cwd=HERE,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CaseError(
            f"node case {case} hung (killed after {limit + 10:.0f} s): {exc.stderr!r}"
        ) from None
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise CaseError(
            f"node case {case} printed no result (exit {proc.returncode}):\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
    answer = json.loads(lines[-1])
    if not answer.get("ok"):
        raise CaseError(f"{library}-{transport} {case}: {answer.get('error')}")
    return answer["result"]
