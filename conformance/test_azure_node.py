"""Microsoft's Node SDK `@azure/service-bus` 7.9.5 (`azure-node-wss`) against
our broker over WebSocket (`node/azure_cases.js`, one node process per case).

The SDK dials `wss://` only: core-amqp's ConnectionContextBase builds
`wss://HOST:PORT/$servicebus/websocket` with subprotocol `AMQPWSB10` from the
connection string's Endpoint (its port is kept) and hands it to rhea's
`websocket_connect` with the `ws` package given as `webSocketOptions.webSocket`.
So the Endpoint is `sb://localhost:WSS_PORT` and no `customEndpointAddress` is
needed (that option only swaps host and port and keeps the old host as the
AMQP `hostname`).  `UseDevelopmentEmulator=true` would switch only the plain
TCP transport (TLS off, default port 5672); over WebSocket it changes nothing,
so the connection string goes without it.

The broker runs with TLS on the test CA's certificate (conftest's `pki`, for
127.0.0.1 and localhost); node gets the CA as `NODE_EXTRA_CA_CERTS` and keeps
verification on.  No Azure keys: `$cbs` accepts every token.  Each SDK step
has the SDK's timeout (no retries) and the script's, the case 30 s in all.
Every case logs `DEBUG=azure*,rhea*` to a file named in a failure's message;
the broker runs with `--trace-frames`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clients import IN_CI, CaseError

HERE = Path(__file__).resolve().parent
NODE_SCRIPT = HERE / "node" / "azure_cases.js"
AZURE_PACKAGE = HERE / "node_modules" / "@azure" / "service-bus" / "package.json"
NODE_TIMEOUT = 30.0

AZURE_NODE = pytest.param("azure-node-wss", id="azure-node-wss")


# -- the client and the broker -------------------------------------------------------------


def require_azure_node() -> None:
    """Skip (locally) or fail (in CI) when node or the SDK is missing."""
    if shutil.which("node") is None:
        reason = "node is not installed (apt-get install nodejs npm)"
    elif not AZURE_PACKAGE.exists():
        reason = ("npm package @azure/service-bus missing in conformance/node_modules; "
                  "run `make conformance`")
    else:
        return
    if IN_CI:
        pytest.fail(f"azure-node-wss: {reason}", pytrace=False)
    pytest.skip(f"azure-node-wss: {reason}")


def _suite(config: pytest.Config) -> Any:
    """conformance/conftest.py as pytest loaded it (a plain `import conftest`
    may find browser/conftest.py instead)."""
    plugin = config.pluginmanager.get_plugin(str(HERE / "conftest.py"))
    if plugin is None:
        raise RuntimeError(f"{HERE / 'conftest.py'} is not loaded")
    return plugin


@pytest.fixture(scope="module")
def wss_broker(pytestconfig: pytest.Config, pki: Any) -> Iterator[Any]:
    """A broker with wss:// on the test CA's certificate, frames traced."""
    suite = _suite(pytestconfig)
    proc, info = suite.start_broker(
        "--trace-frames", "--tls-cert", str(pki.cert_file), "--tls-key", str(pki.key_file),
        "--tls-port", "0", "--wss-port", "0")
    yield info
    code = suite.stop_broker(proc)
    assert code == 0, f"broker exited with {code}; log: {info.log_path}"


@pytest.fixture
def entity(tag: str) -> str:
    """A fresh entity name for this test."""
    return f"az-{tag}"


@pytest.fixture
def run(wss_broker: Any, pki: Any, entity: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """run(case) -> the case's JSON result, or CaseError (with the SDK's log)."""

    def run_case(case: str, **params: Any) -> Any:
        require_azure_node()
        assert wss_broker.wss_port, "the broker reports no wss port"
        params = {"port": wss_broker.wss_port, "entity": entity, "timeout": NODE_TIMEOUT,
                  **params}
        log = tmp_path / f"{case}.sdk.log"
        env = {**os.environ, "NODE_EXTRA_CA_CERTS": str(pki.ca_file),
               "DEBUG": "azure*,rhea*"}
        try:
            with open(log, "w") as stderr:
                proc = subprocess.run(
                    ["node", str(NODE_SCRIPT), json.dumps({"case": case, "params": params})],
                    stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, cwd=HERE,
                    timeout=NODE_TIMEOUT + 15, check=False)
        except subprocess.TimeoutExpired:
            raise CaseError(f"node case {case} hung; SDK log {log}, broker log "
                            f"{wss_broker.log_path}") from None
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if not lines:
            raise CaseError(f"node case {case} printed no result (exit {proc.returncode}):\n"
                            f"{proc.stdout[-2000:]}\nSDK log {log}")
        answer = json.loads(lines[-1])
        if not answer.get("ok"):
            raise CaseError(f"azure-node-wss {case}: {answer.get('error')}\nSDK log {log}, "
                            f"broker log {wss_broker.log_path}")
        return answer["result"]

    return run_case


def _bodies(messages: list[dict[str, Any]]) -> list[Any]:
    return [m["body"] for m in messages]


# -- the cases ---------------------------------------------------------------------------------


@pytest.mark.parametrize("client", [AZURE_NODE])
def test_azure_send_receive(client: str, run: Any) -> None:
    """Connect (SASL ANONYMOUS over wss, put-token on $cbs), send one message,
    receive it in receiveAndDelete mode with its properties."""
    got = run("send_receive")["messages"]
    assert _bodies(got) == ["hello"]
    m = got[0]
    assert m["message_id"] == "m-1"
    assert m["subject"] == "greeting"
    assert m["content_type"] == "text/plain"
    assert m["application_properties"] == {"colour": "blue", "n": 7}
    assert m["lock_token"] is None, "receiveAndDelete: settled on arrival, no lock"
    assert isinstance(m["sequence_number"], int)
    assert m["enqueued_time"] is not None


@pytest.mark.parametrize("client", [AZURE_NODE])
def test_azure_send_batch(client: str, run: Any) -> None:
    """createMessageBatch + tryAddMessage x100, sent as one transfer (the
    0x80013700 envelope): 100 messages arrive, in order."""
    result = run("send_batch")
    assert result["added"] == [True] * 100
    got = result["messages"]
    assert _bodies(got) == [f"b{i}" for i in range(100)]
    assert [m["message_id"] for m in got] == [f"b-{i}" for i in range(100)]
    seqs = [m["sequence_number"] for m in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == 100


@pytest.mark.parametrize("client", [AZURE_NODE])
def test_azure_peek_lock_complete(client: str, run: Any) -> None:
    """peekLock (rcv-settle-mode second) and complete (accepted): gone afterwards."""
    result = run("peek_lock_complete")
    got = result["messages"]
    assert _bodies(got) == ["to complete"]
    assert got[0]["lock_token"] is not None, "the lock token is the 16-byte delivery tag"
    assert got[0]["locked_until"] is not None
    assert result["left"] == []


@pytest.mark.parametrize("client", [AZURE_NODE])
def test_azure_abandon(client: str, run: Any) -> None:
    """Abandon puts the message back; received again with deliveryCount 1, then
    completed."""
    result = run("abandon")
    assert [m["message_id"] for m in result["first"]] == ["a-1"]
    assert (result["first"][0]["delivery_count"] or 0) == 0
    assert [m["message_id"] for m in result["second"]] == ["a-1"]
    assert result["left"] == []
    assert result["second"][0]["delivery_count"] == 1


@pytest.mark.parametrize("client", [AZURE_NODE])
def test_azure_dead_letter(client: str, run: Any) -> None:
    """deadLetterMessage (rejected, com.microsoft:dead-letter with reason and
    description) moves the message to ENTITY/$DeadLetterQueue, read with
    subQueueType "deadLetter"."""
    result = run("dead_letter")
    assert [m["message_id"] for m in result["messages"]] == ["d-1"]
    dead = result["dead"]
    assert [m["message_id"] for m in dead] == ["d-1"]
    assert _bodies(dead) == ["poison"]
    assert dead[0]["dead_letter_reason"] == "bad-input"
    assert dead[0]["dead_letter_error_description"] == "cannot parse"
    assert result["left"] == []


@pytest.mark.parametrize("client", [AZURE_NODE])
def test_azure_peek(client: str, run: Any) -> None:
    """peekMessages (ENTITY/$management) shows the messages in order, with
    sequence numbers, without taking them."""
    result = run("peek")
    assert _bodies(result["peeked"]) == ["p0", "p1", "p2"]
    seqs = [m["sequence_number"] for m in result["peeked"]]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert _bodies(result["left"]) == ["p0", "p1", "p2"]


@pytest.mark.parametrize("client", [AZURE_NODE])
def test_azure_renew_lock(client: str, run: Any) -> None:
    """renewMessageLock (ENTITY/$management) returns a later expiry; then complete."""
    result = run("renew_lock")
    assert _bodies(result["messages"]) == ["keep"]
    assert result["locked"] is not None and result["renewed"] is not None
    assert result["renewed"] > result["locked"]
    assert result["left"] == []


@pytest.mark.parametrize("client", [AZURE_NODE])
def test_azure_schedule(client: str, run: Any) -> None:
    """scheduleMessages 2 s ahead returns a sequence number; the message is not
    there at once and arrives after its time."""
    result = run("schedule")
    assert len(result["sequence_numbers"]) == 1
    assert isinstance(result["sequence_numbers"][0], int)
    assert result["early"] == []
    assert _bodies(result["messages"]) == ["later"]
    assert result["arrived"] >= result["scheduled_for"] - 500


@pytest.mark.parametrize("client", [AZURE_NODE])
def test_azure_topic_subscriptions(client: str, run: Any) -> None:
    """Each of a topic's two subscriptions (TOPIC/Subscriptions/SUB) gets its
    own copy of a message."""
    result = run("topic_subscriptions")
    assert result["before"] == 0
    assert _bodies(result["s1"]) == ["fan-out"]
    assert _bodies(result["s2"]) == ["fan-out"]


@pytest.mark.parametrize("client", [AZURE_NODE])
def test_azure_peek_lock_no_message_id(client: str, run: Any) -> None:
    """A message sent without a message-id, received in peekLock, completed,
    and the receiver closed."""
    result = run("peek_lock_no_message_id")
    assert _bodies(result["messages"]) == ["anonymous"]
    assert result["messages"][0]["message_id"] is not None
    assert result["left"] == []


@pytest.mark.parametrize("client", [AZURE_NODE])
def test_azure_defer(client: str, run: Any) -> None:
    """deferMessage, peekMessages shows it deferred, receiveDeferredMessages
    (receive-by-sequence-number) gives it back locked with a higher
    deliveryCount; renewMessageLock and completeMessage on it go through
    ENTITY/$management; asked for again it is MessageNotFound."""
    result = run("defer")
    first = result["first"]
    assert [m["message_id"] for m in first] == ["df-1"]
    assert result["after"] == [], "deferred: out of the queue"
    assert [(m["body"], m["state"]) for m in result["peeked"]] == [("set aside", "deferred")]
    assert result["peeked"][0]["sequence_number"] == first[0]["sequence_number"]
    deferred = result["deferred"]
    assert [(m["body"], m["message_id"]) for m in deferred] == [("set aside", "df-1")]
    assert deferred[0]["sequence_number"] == first[0]["sequence_number"]
    assert deferred[0]["lock_token"] is not None
    assert (deferred[0]["delivery_count"] or 0) > (first[0]["delivery_count"] or 0)
    assert result["locked"] is not None and result["renewed"] > result["locked"]
    assert result["again"]["rejected"], "completed: no longer deferred"
    assert result["again"]["code"] == "MessageNotFound", result["again"]
    assert result["left"] == []


@pytest.mark.parametrize("client", [AZURE_NODE])
def test_azure_rules(client: str, run: Any) -> None:
    """createRuleManager (TOPIC/Subscriptions/SUB/$management): listRules shows
    $Default (true filter, 1=1); createRule with SQL filters (sys.label, an
    application property) and a correlation filter; a duplicate name is
    MessagingEntityAlreadyExists (409), a rule with an action is refused (400)
    and leaves nothing behind; after deleteRule $Default the
    subscription gets only matching messages, once each, while another
    subscription of the topic still gets everything."""
    result = run("rules")
    assert result["before"] == 0
    assert result["initial"] == [{"name": "$Default", "filter": {"sqlExpression": "1=1"},
                                  "action": None}]
    dup = result["duplicate"]
    assert dup["rejected"], "a second rule named 'red' was accepted"
    assert dup["code"] == "MessagingEntityAlreadyExists", dup
    assert result["withAction"]["rejected"], "a rule with a SqlRuleAction was accepted"
    rules = {r["name"]: r for r in result["rules"]}
    assert sorted(rules) == ["bulk", "gold", "red"]
    assert rules["red"]["filter"] == {"sqlExpression": "sys.label = 'red'"}
    assert rules["bulk"]["filter"] == {"sqlExpression": "quantity > 10"}
    assert rules["gold"]["filter"] == {"correlationId": "order-7",
                                       "applicationProperties": {"tier": "gold"}}
    assert _bodies(result["filtered"]) == ["red", "bulk", "gold", "red-gold"]
    assert _bodies(result["all"]) == ["red", "blue", "bulk", "few", "gold", "silver",
                                      "other-order", "red-gold"]


@pytest.mark.parametrize("client", [AZURE_NODE])
def test_azure_delete_unknown_rule(client: str, run: Any) -> None:
    """deleteRule of a rule that is not there is MessagingEntityNotFound (the
    404 remove-rule answer, recognised by core-amqp from amqp:not-found and a
    description "The messaging entity '...' could not be found", as Service
    Bus words it); the subscription keeps its $Default."""
    result = run("delete_unknown_rule")
    unknown = result["unknown"]
    assert unknown["rejected"], "deleting an unknown rule succeeded"
    assert unknown["code"] == "MessagingEntityNotFound", unknown
    assert [r["name"] for r in result["rules"]] == ["$Default"]
