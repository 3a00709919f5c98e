"""A full disk under a real broker process: the data directory is on a small
tmpfs that a filler file nearly fills.

Durable messages are published (one at a time, unsettled, `--fsync always`)
until one is rejected: the condition must be amqp:resource-limit-exceeded,
and publishing stays refused while the disk is full.  A consumer still reads
every accepted message (it accepts the first few and releases the others
back).  Then the filler goes: within a few seconds (the broker retries its
write every second) publishing is accepted again.  Last, the broker is
killed (SIGKILL: what `accepted` promised must be on disk by then, no
shutdown flush to help) and started again on the same directory: every
accepted message not consumed is there.

Mounting needs root (CAP_SYS_ADMIN); without it the test is an xfail that
says so, never a silent pass.  The tmpfs is unmounted in any case.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from proton import Delivery, Message, Timeout
from proton.utils import BlockingConnection

from store.crash_harness import BrokerProcess, free_bytes

QUEUE = "full"
TMPFS = "4m"
FILLER = 2_560 * 1024  # leaves the broker about 1.5 MB
BODY = 8 * 1024
STEP = 10.0  # seconds for any one wait
RESOURCE_LIMIT = "amqp:resource-limit-exceeded"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS}", "tmpfs",
                               str(mnt)], check=False, capture_output=True, text=True,
                              timeout=STEP)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.xfail(f"cannot mount a tmpfs for the full-disk test: {exc}")
    if done.returncode != 0:
        pytest.xfail(f"cannot mount a tmpfs for the full-disk test (root needed): "
                     f"{done.stderr.strip() or done.returncode}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False, capture_output=True,
                       timeout=STEP)


def publish(conn: BlockingConnection, sender: object, ident: str) -> tuple[int, str | None]:
    """One durable message, unsettled: its outcome and the condition's name."""
    message = Message(body=ident + " " + "x" * BODY, durable=True)
    dlv = sender.send(message, timeout=STEP, error_states=[])  # type: ignore[attr-defined]
    condition = dlv.remote.condition
    return dlv.remote_state, condition.name if condition is not None else None


def ident_of(message: Message) -> str:
    return str(message.body).split(" ", 1)[0]


def test_a_full_disk_refuses_publishes_keeps_consumers_and_recovers(
        small_disk: Path, tmp_path: Path) -> None:
    filler = small_disk / "filler"
    with open(filler, "wb") as f:
        f.write(os.urandom(FILLER))
    data = small_disk / "data"
    broker = BrokerProcess(data, tmp_path / "broker-1.log", "--fsync", "always",
                           "--queue", QUEUE)
    accepted: list[str] = []
    consumed: set[str] = set()
    try:
        conn = BlockingConnection(broker.url, timeout=STEP)
        try:
            sender = conn.create_sender(QUEUE)
            # 1. fill the disk: publish until the broker refuses
            refused = None
            for i in range(2_000):
                state, condition = publish(conn, sender, f"m{i}")
                if state == Delivery.ACCEPTED:
                    accepted.append(f"m{i}")
                else:
                    refused = (f"m{i}", state, condition)
                    break
            assert refused is not None, f"2,000 messages accepted on a {TMPFS} tmpfs " \
                f"({free_bytes(small_disk)} bytes free)"
            assert accepted, "the first publish was refused already"
            assert refused[1:] == (Delivery.REJECTED, RESOURCE_LIMIT), refused
            state, condition = publish(conn, sender, "while-full")
            assert (state, condition) == (Delivery.REJECTED, RESOURCE_LIMIT), \
                "a publish while the disk is full is refused too"

            # 2. a consumer still reads every accepted message: it accepts the
            # first few and releases the rest back to the queue
            receiver = conn.create_receiver(QUEUE, credit=len(accepted) + 10)
            read = []
            deadline = time.monotonic() + 3 * STEP
            while not set(accepted) <= set(read) and time.monotonic() < deadline:
                message = receiver.receive(timeout=STEP)
                ident = ident_of(message)
                read.append(ident)
                if len(consumed) < 10 and ident in accepted:
                    receiver.accept()
                    consumed.add(ident)
                else:
                    receiver.release()
            unread = [i for i in accepted if i not in read]
            assert not unread, f"accepted but not readable while the disk is full: {unread}"
            receiver.close()

            # 3. free the space: publishing is accepted again within a few seconds
            filler.unlink()
            deadline = time.monotonic() + 5.0
            again = None
            n = 0
            while time.monotonic() < deadline:
                state, condition = publish(conn, sender, f"after{n}")
                if state == Delivery.ACCEPTED:
                    again = f"after{n}"
                    accepted.append(again)
                    break
                assert (state, condition) == (Delivery.REJECTED, RESOURCE_LIMIT)
                n += 1
                time.sleep(0.2)
            assert again is not None, "publishing still refused 5 s after the space was freed"
            for k in range(20):
                state, condition = publish(conn, sender, f"later{k}")
                assert state == Delivery.ACCEPTED, (f"later{k}", state, condition)
                accepted.append(f"later{k}")
        finally:
            conn.close()
    finally:
        broker.kill()  # a crash: `accepted` must have meant written and synced
    kept = tmp_path / "data-at-kill"
    shutil.copytree(data, kept)

    # 4. a restart brings back every accepted message not consumed
    restarted = BrokerProcess(data, tmp_path / "broker-2.log", "--fsync", "always",
                              "--queue", QUEUE)
    try:
        conn = BlockingConnection(restarted.url, timeout=STEP)
        try:
            receiver = conn.create_receiver(QUEUE, credit=len(accepted) + 100)
            after: list[str] = []
            while True:
                try:
                    message = receiver.receive(timeout=1.0)
                except Timeout:  # a second without a message: the queue is empty
                    break
                after.append(ident_of(message))
                receiver.accept()
        finally:
            conn.close()
    finally:
        restarted.stop()
    missing = [i for i in accepted if i not in consumed and i not in after]
    assert not missing, (
        f"{len(missing)} accepted message(s) not consumed are gone after the restart: "
        f"{missing[:20]}; {len(accepted)} accepted, {len(consumed)} consumed, "
        f"{len(after)} there after the restart; data directory as the kill left it: {kept}"
        f"\nbroker log:\n{broker.log_tail()}\nafter the restart:\n{restarted.log_tail()}")
    assert len(after) == len(set(after)), "a message came back twice"
