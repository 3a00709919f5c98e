"""Plumbing for the crash and full-disk tests: broker processes on free ports
over a data directory, the client processes of crash_clients.py, and reading
what those clients wrote.  Every wait here is bounded."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = Path(__file__).resolve().parent / "crash_clients.py"
RECOVERED = re.compile(r"recovered (\d+) queue\(s\) with ([\d,]+) messages")


class BrokerProcess:
    """`python -m broker serve` on free ports with `--data-dir`."""

    def __init__(self, data_dir: Path, log_path: Path, *args: str,
                 timeout: float = 20.0) -> None:
        self.log_path = log_path
        ready = log_path.with_suffix(".ready.json")
        ready.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "broker", "serve", "--port", "0", "--ws-port", "0",
               "--ready-file", str(ready), "--data-dir", str(data_dir), *args]
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + timeout
        while not ready.exists() or not ready.read_text().strip():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"the broker did not start (exit {self.proc.returncode}):\n"
                                   f"{self.log_tail()}")
            time.sleep(0.02)
        info = json.loads(ready.read_text())
        self.url = f"amqp://127.0.0.1:{info['port']}"

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def recovered_messages(self) -> int | None:
        found = RECOVERED.search(self.log_path.read_text(errors="replace"))
        return int(found.group(2).replace(",", "")) if found else None

    def kill(self) -> None:
        """SIGKILL: the crash."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.wait(10.0)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, as an operator stops it; SIGKILL if it does not stop in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(timeout=10)
        self._log.close()
        return code


@dataclass
class ClientProcess:
    role: str
    out: Path
    proc: subprocess.Popen[bytes]
    stderr: Path

    def lines(self) -> list[str]:
        return self.out.read_text().splitlines() if self.out.exists() else []

    def ready(self) -> bool:
        return "R" in self.lines()

    def ended(self) -> str | None:
        for line in self.lines():
            if line.startswith("E "):
                return line[2:]
        return None


def start_client(role: str, url: str, address: str, out: Path, *args: str) -> ClientProcess:
    stderr = out.with_suffix(".stderr")
    with open(stderr, "wb") as err:
        proc = subprocess.Popen([sys.executable, str(CLIENTS), role, url, address, str(out),
                                 *args], stdout=err, stderr=subprocess.STDOUT, cwd=ROOT)
    return ClientProcess(role, out, proc, stderr)


def wait_until(what: str, condition: object, timeout: float, step: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def finish(clients: Iterable[ClientProcess], timeout: float) -> list[str]:
    """Wait for the clients to exit; kill the ones that do not.  Problems, in words."""
    problems = []
    deadline = time.monotonic() + timeout
    for c in clients:
        try:
            c.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            c.proc.kill()
            c.proc.wait(timeout=10)
            problems.append(f"{c.out.name}: still running {timeout} s after the crash (hung)")
    return problems


@dataclass
class Seen:
    """What the clients' files say."""

    accepted: set[str] = field(default_factory=set)
    refused: dict[str, str] = field(default_factory=dict)
    received: dict[str, int] = field(default_factory=dict)  # consumer: id → delivery-count
    settled: set[str] = field(default_factory=set)  # the broker confirmed the settlement
    settled_otherwise: dict[str, str] = field(default_factory=dict)
    drained: list[tuple[str, int]] = field(default_factory=list)
    modes: list[str] = field(default_factory=list)
    ends: dict[str, str] = field(default_factory=dict)

    def read(self, path: Path) -> None:
        for line in path.read_text().splitlines():
            kind, _, rest = line.partition(" ")
            words = rest.split(" ")
            if kind == "A":
                self.accepted.add(words[0])
            elif kind == "X":
                self.refused[words[0]] = " ".join(words[1:])
            elif kind == "G":
                self.received[words[0]] = int(words[1])
            elif kind == "S":
                self.settled.add(words[0])
            elif kind == "N":
                self.settled_otherwise[words[0]] = words[1]
            elif kind == "D":
                self.drained.append((words[0], int(words[1])))
            elif kind == "M":
                self.modes.append(words[0])
            elif kind == "E":
                self.ends[path.name] = rest


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize
