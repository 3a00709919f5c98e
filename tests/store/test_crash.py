"""SIGKILL the broker under load and check what a restart on the same data
directory brings back against what the clients were told.

Each iteration: a broker process with `--data-dir` and `--fsync batch`, 4
producer processes publishing unsettled durable messages `p<n>-<i>` to a
durable queue (noting every id whose outcome came back `accepted`) and 2
consumer processes in rcv-settle-mode second (accepting each message
unsettled and noting an id as settled only when the broker's settlement of
that delivery arrives); the broker is SIGKILLed at a random moment, started
again on the same directory, and a plain consumer drains the queue.  Then:

- every accepted id is drained, settled, or at least was taken by a consumer
  that sent its `accepted` (at least once: nothing the broker accepted is
  lost).  An id a consumer accepted whose settlement had not come back may be
  gone: the broker writes the ack and only then sends its settlement, so a
  kill between the two leaves the ack on disk and the consumer uninformed,
  and no broker can close that window;
- no settled id is drained (a confirmed settlement is final);
- no id is drained twice, each drained one's delivery-count is 0 or 1, and
  the drain gets as many messages as the restarted broker says it recovered.

CRASH_ITERATIONS sets how many iterations (default 5; `make test-slow`: 50);
iteration i uses seed CRASH_SEED + i (CRASH_SEED default 1).  A failure names
its seed (replay: CRASH_SEED=<seed> CRASH_ITERATIONS=1) and keeps the data
directory as it was at the kill, the broker logs and the clients' files.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from pathlib import Path

import pytest

from store.crash_harness import BrokerProcess, Seen, finish, start_client, wait_until

ITERATIONS = int(os.environ.get("CRASH_ITERATIONS", "5"))
BASE_SEED = int(os.environ.get("CRASH_SEED", "1"))
QUEUE = "crash"
PRODUCERS = 4
CONSUMERS = 2
STEP = 15.0  # seconds for any one wait
CLIENT_DEADLINE = 30.0  # a client stops on its own after this, whatever happens


@pytest.mark.parametrize("iteration", range(ITERATIONS))
def test_a_crash_loses_no_accepted_message_and_brings_back_no_settled_one(
        iteration: int, tmp_path: Path) -> None:
    seed = BASE_SEED + iteration
    rng = random.Random(seed)
    kill_after = rng.uniform(0.3, 1.5)
    pad = rng.choice((16, 256, 2048))
    window = rng.choice((20, 200))
    prefetch = rng.choice((5, 50))
    data = tmp_path / "data"
    at_kill = tmp_path / "data-at-kill"
    started = time.monotonic()
    where = (f"seed {seed} (replay: CRASH_SEED={seed} CRASH_ITERATIONS=1), kill after "
             f"{kill_after:.3f} s, pad {pad}, window {window}, prefetch {prefetch}; "
             f"kept in {tmp_path}")

    broker = BrokerProcess(data, tmp_path / "broker-1.log", "--fsync", "batch",
                           "--queue", QUEUE)
    clients = []
    try:
        for c in range(CONSUMERS):
            clients.append(start_client(
                "consumer", broker.url, QUEUE, tmp_path / f"consumer-{c}.txt",
                "--prefetch", str(prefetch), "--deadline", str(CLIENT_DEADLINE)))
        for p in range(PRODUCERS):
            clients.append(start_client(
                "producer", broker.url, QUEUE, tmp_path / f"producer-{p}.txt",
                "--name", f"p{p}", "--window", str(window), "--pad", str(pad),
                "--seed", str(seed * 10 + p), "--deadline", str(CLIENT_DEADLINE)))
        wait_until("every client to attach", lambda: all(c.ready() for c in clients), STEP)
        time.sleep(kill_after)
        broker.kill()
    finally:
        broker.kill()
        problems = finish(clients, STEP)
    shutil.copytree(data, at_kill)  # as the crash left it: recovery may cut a torn tail

    restarted = BrokerProcess(data, tmp_path / "broker-2.log", "--fsync", "batch",
                              "--queue", QUEUE)
    try:
        expected = restarted.recovered_messages()
        drain = start_client("drain", restarted.url, QUEUE, tmp_path / "drain.txt",
                             "--expected", str(expected or 0), "--prefetch", "500",
                             "--deadline", str(CLIENT_DEADLINE))
        problems += finish([drain], CLIENT_DEADLINE + 5)
    finally:
        code = restarted.stop()
    if code != 0:
        problems.append(f"the restarted broker exited with {code} on SIGTERM")

    seen = Seen()
    for c in [*clients, drain]:
        seen.read(c.out)
    drained = [ident for ident, _ in seen.drained]
    drained_set = set(drained)
    lost = seen.accepted - drained_set - set(seen.received)
    in_doubt = (seen.accepted & set(seen.received)) - drained_set - seen.settled
    back = seen.settled & drained_set
    twice = sorted({i for i in drained if drained.count(i) > 1}) if \
        len(drained) != len(drained_set) else []
    counts = {count for _, count in seen.drained}
    for name, end in sorted(seen.ends.items()):
        expected_end = "done" if name == "drain.txt" else "disconnected"
        if end != expected_end:
            problems.append(f"{name} ended with {end!r}, not {expected_end!r}")
    for c in [*clients, drain]:
        if c.ended() is None:
            problems.append(f"{c.out.name} has no end line (exit {c.proc.returncode}): "
                            f"{c.stderr.read_text(errors='replace')[-1000:]}")
    if len(seen.modes) != CONSUMERS:
        problems.append(f"not every consumer attached: {seen.modes}")
    if lost:
        problems.append(f"{len(lost)} accepted message(s) lost (never given to a consumer, "
                        f"not there after the restart): {sorted(lost)[:20]}")
    if back:
        problems.append(f"{len(back)} message(s) whose settlement the broker confirmed came "
                        f"back: {sorted(back)[:20]}")
    if twice:
        problems.append(f"drained more than once: {twice[:20]}")
    if not counts <= {0, 1}:
        problems.append(f"delivery-counts after one delivery at most: {sorted(counts)}")
    if expected is None:
        problems.append("the restarted broker's log does not say how many messages it recovered")
    elif expected != len(drained):
        problems.append(f"the broker recovered {expected} message(s), the drain got "
                        f"{len(drained)}")
    if seen.settled_otherwise:
        problems.append("settled with another outcome: "
                        f"{dict(list(seen.settled_otherwise.items())[:10])}")
    if not seen.accepted or not seen.settled:
        problems.append(f"nothing to check: {len(seen.accepted)} accepted, {len(seen.settled)} "
                        "settled before the kill")
    redelivered = sum(1 for ident, count in seen.drained if count == 1)
    received_back = sum(1 for ident in drained_set if ident in seen.received)
    summary = (f"{len(seen.accepted)} accepted, {len(seen.refused)} refused, "
               f"{len(seen.received)} received by consumers, {len(seen.settled)} settled, "
               f"{len(in_doubt)} accepted by a consumer, unconfirmed and gone, "
               f"{len(drained)} drained ({received_back} of them received before the kill, "
               f"{redelivered} with delivery-count 1), the broker's attach answered "
               f"rcv-settle-mode {'/'.join(sorted(set(seen.modes)))}, "
               f"{time.monotonic() - started:.1f} s")
    print(f"iteration {iteration}: {where}: {summary}")
    assert not problems, (
        f"{where}\n{summary}\n- " + "\n- ".join(problems) +
        f"\nbroker log before the kill:\n{broker.log_tail()}"
        f"\nbroker log after the restart:\n{restarted.log_tail()}")
    shutil.rmtree(data)  # passed: the logs and the clients' files are enough
    shutil.rmtree(at_kill)
