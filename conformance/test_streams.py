"""Stream offsets (rabbitmq:stream-offset-spec): first, last, next, numeric,
timestamp and interval, each delivery annotated with x-stream-offset."""

from __future__ import annotations

import pytest
from clients import clients_for, run_case

STREAM = "/queues/conf-stream"
SPEC = "rabbitmq:stream-offset-spec"


@pytest.mark.parametrize("client", clients_for("stream_offsets"))
def test_stream_offsets(client, broker, tag):
    r = run_case(client, "stream_offsets", broker, stream=STREAM, tag=tag)
    assert set(r["outcomes"]) == {"accepted"}
    # next: a receiver attached before publishing sees exactly the new messages.
    tailed = r["tailed"]
    assert [t["body"] for t in tailed] == [f"{tag}-{i}" for i in range(5)]
    offsets = [t["offset"] for t in tailed]
    assert None not in offsets, "every stream delivery carries x-stream-offset"
    assert offsets == list(range(offsets[0], offsets[0] + 5)), "offsets are consecutive"
    if "offset_type" in tailed[0]:
        # proton decodes an AMQP long as a plain int (int32, ulong... keep
        # their own classes), so "int" here means long on the wire.
        assert tailed[0]["offset_type"] == "int", "x-stream-offset is a long"
    # numeric offset
    assert r["numeric"]["offset"] == offsets[2]
    assert r["numeric"]["body"] == f"{tag}-2"
    # first: the oldest retained message (this suite declares no retention)
    assert r["first"]["offset"] == 0
    # last: the newest message when there are no chunks (NOTES: streams)
    assert r["last"]["offset"] == offsets[4]
    assert r["last"]["body"] == f"{tag}-4"
    # interval "10m": everything from the last ten minutes, i.e. the whole suite run
    assert r["interval"]["offset"] == 0
    # timestamp: the first message that arrived at or after it
    assert r["timestamp"]["body"] == f"{tag}-5"
    assert r["timestamp"]["offset"] == offsets[4] + 1
    # next keeps tailing
    assert [t["body"] for t in r["tail_after"]] == [f"{tag}-5", f"{tag}-6"]
    assert r["next_new_attach"] is None, "a new 'next' receiver sees nothing old"
    for spec in ("numeric", "first", "last", "interval", "timestamp"):
        assert r[spec]["applied_filters"] == [SPEC], f"{spec}: the attach echoes the applied filter"


@pytest.mark.parametrize("client", ["rhea-tcp", "rhea-ws"])
def test_stream_readers_in_either_settle_mode(client, broker, tag):
    """A stream keeps its messages whatever a reader's outcome, and the broker
    does not follow the deliveries of a reader that settles first; one in
    rcv-settle-mode second still gets the broker's settlement of its accepts."""
    r = run_case(client, "stream_settle_modes", broker, stream=STREAM, tag=tag)
    assert set(r["outcomes"]) == {"accepted"}
    assert r["remote_rcv_settle_mode"] == [1, None], "the broker echoes each reader's mode"
    assert r["second_bodies"] == r["first_bodies"] == [f"{tag}-s{i}" for i in range(3)]
    assert r["second_settled_by_broker"] == 3, "mode second: each accept is settled by us"
    assert r["second_locally_settled"] == [True, True, True], "rhea settled on our settlement"
    assert r["after"] == [f"{tag}-after", f"{tag}-after"]
