"""RabbitMQ 3.10 beside this broker in the benchmarks (bench_broker.py, bench_scale.py).

A node of its own, started through conformance/rabbitmq310.sh (Debian's
rabbitmq-server with the AMQP 1.0 plugin, installed by apt when run as root) but on
other ports and another data directory than the conformance node, so a benchmark
never restarts or stops a node that something else started: AMQP 127.0.0.1:27690,
Erlang distribution 27691 (both below the ephemeral range, as the script explains),
data under /tmp/amqpws-rabbitmq310-bench, wiped at every start (a fresh node, no
queues left from an earlier point).  Its CPU and RSS are those of its beam.smp
process (the pid the script prints), read from /proc as the benchmarks read the
broker's.  The Erlang VM runs with its default scheduler settings, whose busy-waiting
is in that CPU figure as it is in any RabbitMQ 3.10 run from the package.

Addresses are 3.10's v1 ones: `/queue/NAME` declares the queue on attach.  3.10 has
no AMQP 1.0 over WebSocket in open source, and delivers nothing from streams over
AMQP 1.0: no figures for those.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from procstat import cpu_seconds, rss_kib

ROOT = Path(__file__).resolve().parent.parent.parent
SCRIPT = ROOT / "conformance" / "rabbitmq310.sh"
PORT = 27690
DIST_PORT = 27691
BASE = Path("/tmp/amqpws-rabbitmq310-bench")
LABEL = "RabbitMQ 3.10"


class Unavailable(RuntimeError):
    """rabbitmq-server could not be installed or started here."""


class RabbitMQ310:
    """The benchmark's own 3.10 node.  start() (re)starts it fresh; stop() stops it."""

    name = "rabbitmq310"
    address_prefix = "/queue/"

    def __init__(self) -> None:
        self.pid = 0
        self.version = ""
        self.seq = 0
        self.used = False  # traffic since the last start: fresh() restarts it
        self.env = {**os.environ, "RMQ310_PORT": str(PORT), "RMQ310_DIST_PORT": str(DIST_PORT),
                    "RMQ310_BASE": str(BASE)}

    def _script(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(SCRIPT), *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout, check=False)

    def start(self) -> RabbitMQ310:
        """Start (or restart) the node with an empty data directory; Unavailable if it can't."""
        if not SCRIPT.exists() or shutil.which("bash") is None:
            raise Unavailable(f"{SCRIPT} or bash is missing")
        if not Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists():
            if os.geteuid() != 0:
                raise Unavailable("rabbitmq-server is not installed and this is not root "
                                  "(as root: apt-get install rabbitmq-server)")
            if shutil.which("apt-get") is None:
                raise Unavailable("rabbitmq-server is not installed and there is no apt-get")
        self._script("stop", timeout=60)
        shutil.rmtree(BASE / "mnesia", ignore_errors=True)  # ours alone: see the docstring
        try:
            out = self._script("start")
        except subprocess.TimeoutExpired as e:
            raise Unavailable("rabbitmq310.sh start timed out") from e
        pid = next((line.split("=", 1)[1] for line in out.stdout.splitlines()
                    if line.startswith("pid=")), "")
        if out.returncode != 0 or not pid.isdigit():
            why = (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1]
            raise Unavailable(f"rabbitmq310.sh start failed: {why[:300]}")
        self.pid = int(pid)
        self.used = False
        if not self.version:
            v = self._script("ctl", "version", timeout=60)
            self.version = v.stdout.strip() if v.returncode == 0 else "3.10"
        return self

    def fresh(self) -> RabbitMQ310:
        """The node as just started: restarted if it has had traffic since."""
        if self.used:
            self.start()
        self.used = True
        return self

    def stop(self) -> None:
        if self.pid:
            self._script("stop", timeout=120)
            self.pid = 0

    def target(self, transport: str = "tcp") -> dict[str, object]:
        if transport != "tcp":
            raise ValueError(f"{LABEL} (open source) has no AMQP 1.0 over {transport}")
        return {"transport": "tcp", "host": "127.0.0.1", "port": PORT, "username": "guest",
                "password": "guest", "address_prefix": self.address_prefix}

    def queue_address(self, name: str) -> str:
        return self.address_prefix + name

    def name_for(self, stem: str) -> str:
        self.seq += 1
        return f"{stem}{self.seq}"

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss(self) -> int:
        return rss_kib(self.pid)


def start_or_none(log) -> RabbitMQ310 | None:  # type: ignore[no-untyped-def]
    """The node, started; or None after one line through `log` saying why not."""
    node = RabbitMQ310()
    try:
        node.start()
    except Unavailable as e:
        log(f"{LABEL}: not measured: {e}")
        if SCRIPT.exists() and shutil.which("bash"):
            node._script("stop", timeout=60)  # a half-started node of ours
        return None
    log(f"{LABEL} ({node.version}) node pid {node.pid} on 127.0.0.1:{PORT}")
    return node
