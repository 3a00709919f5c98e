"""Start-up benchmark: how soon the broker accepts connections.

Two figures, medians of several runs: a new process (`python -m broker serve
--port 0 --ws-port 0`, timed from spawn until a TCP connect succeeds on the
port it prints), and the in-process `broker.running()` context manager (until
it returns, i.e. listening).  Prints numbers; asserts nothing.
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import time

RUNS = 7


def process_start() -> float:
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "broker", "serve", "--port", "0", "--ws-port", "0",
         "--log-level", "warning"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().strip().rsplit(":", 1)[1])  # amqp://host:port
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return time.perf_counter() - t0
            except OSError:
                time.sleep(0.001)
    finally:
        proc.terminate()
        proc.wait()


def in_process() -> float:
    from broker.embedded import running

    t0 = time.perf_counter()
    with running():
        return time.perf_counter() - t0


def main() -> None:
    import broker.embedded  # noqa: F401  (imports are a test session's cost, paid once)

    procs = [process_start() for _ in range(RUNS)]
    embedded = [in_process() for _ in range(RUNS)]
    print(f"process start -> accepting: median {statistics.median(procs) * 1e3:.0f} ms "
          f"(min {min(procs) * 1e3:.0f}, max {max(procs) * 1e3:.0f}; {RUNS} runs)")
    print(f"in-process broker.running() -> listening: median "
          f"{statistics.median(embedded) * 1e3:.1f} ms (min {min(embedded) * 1e3:.1f})")


if __name__ == "__main__":
    main()
