"""The pub/sub and RPC example (`examples/pubsub-rpc/`) in headless Chromium tabs.

`serve.py` runs as a user would start it.  Topics: tabs subscribe with
wildcard patterns (temporary queues bound to amq.topic through /management)
and see exactly the publications that match.  Calls: one tab registers
`rpc.add`, another calls it; a second callee is refused; with the callee's tab
closed a call fails at once with "no callee" (the broker releases a message
that routes nowhere).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from proton import Message
from proton.utils import BlockingConnection

HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.parametrize("client", ["rhea-browser"])


@pytest.fixture(scope="module")
def pubsub_server(request: pytest.FixtureRequest, node: str) -> Iterator[dict[str, Any]]:
    """`examples/pubsub-rpc/serve.py` on free ports (conftest's `run_example`)."""
    browser = request.config.pluginmanager.get_plugin(str(HERE / "conftest.py"))
    with browser.run_example("pubsub-rpc") as urls:
        yield urls


def open_tab(open_page: Any, url: str) -> Any:
    page = open_page(url)
    page.wait_for("window.pubsub && pubsub.ready")
    return page


def fill(page: Any, values: dict[str, str]) -> None:
    """Type into the page's inputs (by id)."""
    for field, value in values.items():
        page.eval(f"document.getElementById({field!r}).value = {json.dumps(value)}")


def press(page: Any, selector: str) -> None:
    """Click a button of the page through the DOM (`element.click()`: the same
    click and submit events as a user's).  Not Playwright's click: it waits for
    animation frames, which Chromium gives a tab that is not the front one
    about once a second, and these tests time calls from click to answer."""
    found = page.eval(
        f"(b => b && !b.disabled && (b.click(), true))(document.querySelector({selector!r}))"
    )
    assert found, f"no enabled {selector} on the page"


def subscribe(page: Any, pattern: str) -> str:
    """Subscribe with the form; return the temporary queue once the binding is made."""
    fill(page, {"sub-pattern": pattern})
    press(page, "#subscribe")
    p = json.dumps(pattern)
    page.wait_for(f"(pubsub.subscriptions[{p}] || {{}}).state === 'active'")
    return str(page.eval(f"pubsub.subscriptions[{p}].queue"))


def publish(page: Any, key: str, payload: str) -> str:
    """Publish with the form; return the outcome the broker gave."""
    before = page.eval("pubsub.published.length")
    fill(page, {"pub-key": key, "pub-body": payload})
    press(page, "#publish")
    return str(
        page.wait_for(
            f"pubsub.published.length > {before} && pubsub.published[{before}].outcome !== 'sending'"
            f" && pubsub.published[{before}].outcome"
        )
    )


def received(page: Any, pattern: str) -> list[list[Any]]:
    return list(
        page.eval(
            f"pubsub.subscriptions[{json.dumps(pattern)}].messages.map(m => [m.key, m.payload, m.from])"
        )
    )


def wait_received(page: Any, pattern: str, count: int) -> list[list[Any]]:
    page.wait_for(f"pubsub.subscriptions[{json.dumps(pattern)}].received >= {count}")
    return received(page, pattern)


def call(page: Any, a: object, b: object, procedure: str = "rpc.add") -> dict[str, Any]:
    """Call with the form; return the call's entry once it has a result or an error,
    with `wall` the seconds from the click to the answer as seen from here."""
    before = page.eval("pubsub.calls.length")
    fill(page, {"call-proc": procedure, "call-a": str(a), "call-b": str(b)})
    started = time.monotonic()
    press(page, "#call")
    page.wait_for(
        f"pubsub.calls.length > {before} && pubsub.calls[{before}].state !== 'pending'",
        interval=0.01,
    )
    entry = dict(page.eval(f"pubsub.calls[{before}]"))
    entry["wall"] = time.monotonic() - started
    return entry


def test_pubsub_rpc_topics(client: str, pubsub_server: dict[str, Any], open_page: Any) -> None:
    url = pubsub_server["http_url"]
    a, b, c = (open_tab(open_page, url) for _ in range(3))
    a_tab = a.eval("pubsub.tab")

    queue_b = subscribe(b, "sensors.*.temp")
    queue_c = subscribe(c, "sensors.#")
    assert queue_b != queue_c and queue_b.startswith("amq.gen-")

    # A's publications reach the patterns they match, and only those.
    assert publish(a, "sensors.kitchen.temp", "21.5") == "accepted"  # B and C
    assert publish(a, "sensors.kitchen.humidity", "40") == "accepted"  # C
    assert publish(a, "sensors.garden.shed.temp", "12") == "accepted"  # C: `*` is one word
    assert publish(a, "weather.temp", "9") == "released"  # nobody's pattern
    assert publish(a, "sensors.end.temp", "last") == "accepted"  # both: the end marker
    # Queues are FIFO: once the marker is in, anything routed before it is too.
    assert wait_received(b, "sensors.*.temp", 2) == [
        ["sensors.kitchen.temp", "21.5", a_tab],
        ["sensors.end.temp", "last", a_tab],
    ]
    assert wait_received(c, "sensors.#", 4) == [
        ["sensors.kitchen.temp", "21.5", a_tab],
        ["sensors.kitchen.humidity", "40", a_tab],
        ["sensors.garden.shed.temp", "12", a_tab],
        ["sensors.end.temp", "last", a_tab],
    ]

    # Any AMQP client can publish to the same topics: python-qpid-proton over TCP.
    conn = BlockingConnection(pubsub_server["amqp_url"], timeout=20)
    try:
        sender = conn.create_sender("/exchanges/amq.topic/sensors.lab.temp")
        sender.send(Message(body="19", subject="sensors.lab.temp"))
    finally:
        conn.close()
    assert wait_received(b, "sensors.*.temp", 3)[-1] == ["sensors.lab.temp", "19", None]

    # A second pattern in the same tab gets its own queue; C then unsubscribes
    # from `sensors.#`: its queue and binding go with the link.
    subscribe(c, "*.kitchen.*")
    press(c, '.unsubscribe[data-pattern="sensors.#"]')
    c.wait_for("!pubsub.subscriptions['sensors.#']")
    assert publish(a, "sensors.garden.humidity", "55") == "released"
    assert publish(a, "sensors.kitchen.temp", "22") == "accepted"
    assert wait_received(b, "sensors.*.temp", 4)[-1] == ["sensors.kitchen.temp", "22", a_tab]
    assert wait_received(c, "*.kitchen.*", 1) == [["sensors.kitchen.temp", "22", a_tab]]

    # The page shows it: the published outcomes and each pattern's messages.
    assert "weather.temp ← 9: released (no subscriber)" in a.eval(
        "document.getElementById('pub-log').textContent"
    )
    assert "sensors.garden.shed.temp" not in b.eval("document.getElementById('subs').textContent")
    bindings = b.eval("pubsub.manage('GET', '/bindings?src=amq.topic').then(r => r.status)")
    assert bindings == 200
    for page in (a, b, c):
        assert page.eval("pubsub.errors") == []


def test_pubsub_rpc_calls(client: str, pubsub_server: dict[str, Any], open_page: Any) -> None:
    url = pubsub_server["http_url"]
    callee, caller, other = (open_tab(open_page, url) for _ in range(3))

    # Nothing registered yet: the call fails at once.
    first = call(caller, 2, 3)
    assert first["state"] == "error" and first["code"] == "no_callee", first
    assert first["ms"] < 2000 and first["wall"] < 2

    press(callee, "#register")
    callee.wait_for("pubsub.registration && pubsub.registration.state === 'registered'")

    answer = call(caller, 2, 3)
    assert answer["state"] == "ok" and answer["result"] == 5, answer
    assert call(caller, 0.5, 0.25)["result"] == 0.75
    assert call(other, -7, 10)["result"] == 3
    # The callee's own error comes back as the call's error.
    bad = call(caller, "two", 3)
    assert bad["state"] == "error" and bad["code"] == "invalid_argument", bad
    assert "a and b must be numbers" in bad["error"]
    invocations = callee.eval("pubsub.registration.invocations.map(i => [i.from, i.result])")
    assert invocations[:3] == [
        [caller.eval("pubsub.tab"), 5],
        [caller.eval("pubsub.tab"), 0.75],
        [other.eval("pubsub.tab"), 3],
    ]
    assert "rpc.add(2, 3) = 5" in caller.eval("document.getElementById('call-log').textContent")

    # One callee per procedure: the other tab's registration is refused.
    press(other, "#register")
    other.wait_for("pubsub.registration && pubsub.registration.state === 'error'")
    assert "already registered" in other.eval("pubsub.registration.error")
    assert call(caller, 1, 1)["result"] == 2  # still answered by the first callee

    # The callee's tab goes away; the broker deletes its exclusive queue with
    # the connection, so the call routes nowhere and is released: no waiting.
    callee.close()
    caller.wait_for(
        "pubsub.manage('GET', '/queues/rpc.add').then(r => r.status === 404)", timeout=10
    )
    gone = call(caller, 4, 5)
    assert gone["state"] == "error" and gone["code"] == "no_callee", gone
    assert gone["ms"] < 2000 and gone["wall"] < 2, gone
    assert "no callee" in gone["error"]
    assert "failed: no callee" in caller.eval("document.getElementById('call-log').textContent")

    # Another tab can now take the procedure over.
    press(other, "#register")
    other.wait_for("pubsub.registration && pubsub.registration.state === 'registered'")
    assert call(caller, 4, 5)["result"] == 9
    # Unregistering deletes the queue first: calls are released straight away.
    press(other, "#unregister")
    other.wait_for("pubsub.registration === null")
    assert call(caller, 4, 5)["code"] == "no_callee"

    for page in (caller, other):
        assert page.eval("pubsub.errors") == []
