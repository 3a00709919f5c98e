"""Durability benchmark (`make bench`): what `--data-dir` costs, per `--fsync` policy.

Real broker processes (the conformance suite's `start_broker`) driven by rhea
(Node, tests/bench/node_modules), the broker's own CPU from /proc/PID/stat
(bench_broker.py's measurement).  Three parts:

1. Throughput: one producer -> one consumer on one queue over TCP,
   at-least-once (the producer waits for `accepted`, the consumer accepts),
   messages with header `durable: true`, at 100 B and 4 KiB: in memory (no
   `--data-dir`) and on disk with `--fsync always`, `batch` and `never`; msg/s
   and broker CPU us per message, each the median of `--runs` runs on one
   broker per configuration.  load.js's `throughput` mode, except that it sends
   durable messages (load.js sends transient ones, which a durable queue does
   not write): `_THROUGHPUT_JS` below.  Then the same without a consumer while
   publishing ("publish only": every message is written, none is removed
   before its batch), drained afterwards.
2. Restart: `--restart-messages` (default 100,000; 10^6 for the full figure)
   durable 100-byte messages published to one queue (no consumer), the broker
   stopped with SIGTERM and started again on the same directory: seconds from
   spawning the process until its ready file appears, and the broker's own
   "recovered ... in X s" log line, median of `--restart-runs` restarts, next to
   the start of a broker on an empty data directory; RSS after recovery and the
   data directory's size.  The same for a stream holding as many messages.
3. Stream read from disk: a stream of `--stream-mib` MiB (default 40, more
   than the 16 MiB of a durable stream's messages kept in memory) of 4 KiB
   messages, read from `first` by one consumer (load.js's `stream` mode): in
   memory (no data dir), on disk in the broker that wrote it (the older part
   evicted), and after a restart (everything read back with pread).

A benchmark, not a test: it prints a table and JSON lines and asserts only that
the runs delivered what they should.  Environment variables override the sizes:
BENCH_DURABLE_RUNS, BENCH_DURABLE_COUNT_100 (messages per 100-byte run, default
30,000), BENCH_DURABLE_COUNT_4K (default 10,000), BENCH_DURABLE_RESTART_MESSAGES
(default 100,000), BENCH_DURABLE_RESTART_RUNS (default 3), BENCH_DURABLE_STREAM_MIB
(default 40), BENCH_DURABLE_ONLY (comma-separated parts: throughput, publish,
restart, stream).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "conformance"))
sys.path.insert(0, str(HERE))
from bench_broker import _PUBLISH_JS, cpu_seconds, node, rss_kib
from conftest import start_broker, stop_broker

POLICIES = ("always", "batch", "never")
RECOVERED = re.compile(r"recovered (\d+) queue\(s\) with ([\d,]+) messages and (\d+) "
                       r"stream\(s\) with ([\d,]+) messages in ([\d.]+) s")
MIB = 1024 * 1024


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").replace("_", "").replace(",", "")
    return int(float(value)) if value else default


# load.js's `throughput` (one pair), the messages durable; and a publish-only mode.
_THROUGHPUT_JS = r"""
const rhea = require('rhea');
const opts = JSON.parse(process.argv[1]);
function connect() {
  return rhea.create_container().connect({ host: opts.host, port: opts.port, reconnect: false,
                                           idle_time_out: 0, tcp_no_delay: true });
}
function done(result) { process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(0)); }
const N = opts.count, address = `/queues/${opts.queue}`;
const message = { body: Buffer.alloc(opts.size, 120), durable: true };
let start = 0, sent = 0, accepted = 0, received = 0, last = Date.now();
setInterval(() => {
  if (Date.now() - last > (opts.stall_s || 30) * 1000) {
    done({ stalled: true, sent, accepted, received });
  }
}, 500);
function publish(then) {
  const sc = connect();
  const sender = sc.open_sender({ target: { address } });
  sender.on('sendable', () => {
    if (!start) start = Date.now();
    while (sent < N && sender.sendable()) { sender.send(message); sent++; }
  });
  sender.on('accepted', () => { last = Date.now(); if (++accepted === N) then(); });
  for (const o of ['rejected', 'released', 'modified']) {
    sender.on(o, () => done({ error: `a publish was ${o}`, sent, accepted }));
  }
}
if (opts.mode === 'throughput') {
  const rc = connect();
  const receiver = rc.open_receiver({ source: { address }, credit_window: 500, autoaccept: true });
  receiver.on('message', () => {
    last = Date.now();
    if (++received === N) done({ seconds: (Date.now() - start) / 1000, messages: N });
  });
  receiver.on('receiver_open', () => publish(() => {}));
} else if (opts.mode === 'publish') {
  publish(() => done({ seconds: (Date.now() - start) / 1000, messages: N }));
} else if (opts.mode === 'drain') {
  start = Date.now();
  const rc = connect();
  const receiver = rc.open_receiver({ source: { address }, credit_window: 1000, autoaccept: true });
  receiver.on('message', () => {
    last = Date.now();
    if (++received === N) done({ seconds: (Date.now() - start) / 1000, messages: N });
  });
}
"""


def run_js(opts: dict[str, Any], timeout: float = 1800) -> dict[str, Any]:
    out = subprocess.run(["node", "-e", _THROUGHPUT_JS, json.dumps(opts)], capture_output=True,
                         text=True, timeout=timeout, cwd=HERE, check=False)
    lines = [x for x in out.stdout.splitlines() if x.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    result = json.loads(lines[-1])
    if "seconds" not in result:
        raise RuntimeError(f"load generator: {result}")
    return result


class Broker:
    """One broker process: in memory (policy None) or on a fresh data directory."""

    def __init__(self, policy: str | None, *args: str, log_level: str = "warning",
                 data_dir: Path | None = None) -> None:
        self.policy = policy
        self.data_dir = data_dir
        if policy is not None and data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix=f"amqpws-bench-durable-{policy}-"))
        self.args = list(args)
        if policy is not None:
            self.args += ["--data-dir", str(self.data_dir), "--fsync", policy]
        self.args += ["--log-level", log_level]
        self.seq = 0
        self.proc: Any = None
        self.info: Any = None
        self.start_s = self.start()

    def start(self) -> float:
        """Start; seconds from spawning until the ready file appeared."""
        t0 = time.perf_counter()
        self.proc, self.info = start_broker(*self.args, timeout=1800)
        return time.perf_counter() - t0

    def stop(self) -> None:
        code = stop_broker(self.proc)
        if code != 0:
            raise RuntimeError(f"broker exited with {code}; log {self.info.log_path}")
        self.proc = None

    def close(self, remove: bool = True) -> None:
        if self.proc is not None:
            self.stop()
        if remove and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def queue(self) -> str:
        self.seq += 1
        return f"bench-durable-{self.seq}"

    def target(self) -> dict[str, Any]:
        return {"host": self.info.host, "port": self.info.port, "ws_url": self.info.ws_url,
                "transport": "tcp"}

    def measured(self, fn: Any) -> dict[str, float]:
        pid = self.info.pid
        cpu0 = cpu_seconds(pid)
        result = fn()
        cpu = cpu_seconds(pid) - cpu0
        return {"messages": result["messages"], "seconds": result["seconds"],
                "msgs_per_s": result["messages"] / result["seconds"],
                "cpu_us_per_msg": cpu / result["messages"] * 1e6, "rss_kib": rss_kib(pid)}

    def recovered(self) -> dict[str, float] | None:
        found = RECOVERED.search(Path(self.info.log_path).read_text(errors="replace"))
        if found is None:
            return None
        q, qm, s, sm, secs = found.groups()
        return {"queues": int(q), "messages": int(qm.replace(",", "")), "streams": int(s),
                "stream_messages": int(sm.replace(",", "")), "seconds": float(secs)}


def median(results: list[dict[str, float]]) -> dict[str, Any]:
    """The median of each figure, with every run's msg/s and CPU (the JSON lines)."""
    m: dict[str, Any] = {k: statistics.median(r[k] for r in results) for k in results[0]}
    m["each_msgs_per_s"] = [round(r["msgs_per_s"]) for r in results]
    m["each_cpu_us_per_msg"] = [round(r["cpu_us_per_msg"], 1) for r in results]
    return m


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# -- 1. throughput ---------------------------------------------------------------------


def warm_up(b: Broker) -> None:
    """A short unmeasured run first: a new process's first messages cost more."""
    run_js({"mode": "throughput", **b.target(), "queue": b.queue(), "count": 2000, "size": 100})


def throughput(runs: int, counts: dict[int, int], rows: list[dict[str, Any]]) -> None:
    for policy in (None, *POLICIES):
        b = Broker(policy)
        try:
            warm_up(b)
            for size, count in counts.items():
                opts = {"mode": "throughput", **b.target(), "count": count, "size": size}
                results = [b.measured(lambda o=opts, b=b: run_js({**o, "queue": b.queue()}))
                           for _ in range(runs)]
                rows.append({"part": "throughput", "store": policy or "memory", "size": size,
                             "count": count, "runs": runs, **median(results)})
                print_row(rows[-1])
        finally:
            b.close()


def publish_only(runs: int, counts: dict[int, int], rows: list[dict[str, Any]]) -> None:
    """The producer alone fills the queue (every message is written); then a
    consumer drains it (every message acked)."""
    for policy in (None, *POLICIES):
        b = Broker(policy)
        try:
            warm_up(b)
            for size, count in counts.items():
                pubs, drains = [], []
                for _ in range(runs):
                    q = b.queue()
                    opts = {**b.target(), "queue": q, "count": count, "size": size}
                    pubs.append(b.measured(lambda o=opts: run_js({"mode": "publish", **o})))
                    drains.append(b.measured(lambda o=opts: run_js({"mode": "drain", **o})))
                rows.append({"part": "publish", "store": policy or "memory", "size": size,
                             "count": count, "runs": runs, **median(pubs)})
                print_row(rows[-1])
                rows.append({"part": "drain", "store": policy or "memory", "size": size,
                             "count": count, "runs": runs, **median(drains)})
                print_row(rows[-1])
        finally:
            b.close()


# -- 2. restart ------------------------------------------------------------------------


def restart(messages: int, restart_runs: int, rows: list[dict[str, Any]]) -> None:
    # the start of a broker on an empty data directory, for comparison
    baseline = []
    for _ in range(restart_runs):
        b = Broker("batch", log_level="info")
        baseline.append(b.start_s)
        b.close()
    rows.append({"part": "restart", "what": "empty data dir", "messages": 0,
                 "ready_s": statistics.median(baseline), "runs": restart_runs})
    print_row(rows[-1])

    for kind in ("queue", "stream"):
        args = ("--stream", "bench-durable-stream") if kind == "stream" else ()
        b = Broker("batch", *args, log_level="info")
        try:
            t0 = time.perf_counter()
            if kind == "queue":
                q = b.queue()
                run_js({"mode": "publish", **b.target(), "queue": q, "count": messages,
                        "size": 100, "stall_s": 60}, timeout=7200)
            else:
                subprocess.run(["node", "-e", _PUBLISH_JS, json.dumps(
                    {**b.target(), "count": messages, "size": 100,
                     "stream": "bench-durable-stream"})],
                    check=True, cwd=HERE, timeout=7200, capture_output=True)
            publish_s = time.perf_counter() - t0
            rss_before = rss_kib(b.info.pid)
            b.stop()
            size = du(b.data_dir)
            ready, logged, rss = [], [], []
            for _ in range(restart_runs):
                ready.append(b.start())
                rec = b.recovered()
                if rec is None:
                    raise RuntimeError(f"no 'recovered' line in {b.info.log_path}")
                got = rec["messages"] if kind == "queue" else rec["stream_messages"]
                if got != messages:
                    raise RuntimeError(f"recovered {got:,} of {messages:,} {kind} messages: "
                                       f"{b.info.log_path}")
                logged.append(rec["seconds"])
                rss.append(rss_kib(b.info.pid))
                b.stop()
            rows.append({"part": "restart", "what": f"{kind} of 100 B messages",
                         "messages": messages, "ready_s": statistics.median(ready),
                         "recovered_s": statistics.median(logged),
                         "ready_runs": [round(x, 3) for x in ready], "recovered_runs": logged,
                         "rss_after_restart_kib": statistics.median(rss),
                         "rss_before_stop_kib": rss_before, "data_dir_bytes": size,
                         "publish_s": publish_s, "runs": restart_runs})
            print_row(rows[-1])
        finally:
            b.close()


# -- 3. stream read from disk ---------------------------------------------------------------


def stream_read(runs: int, mib: int, rows: list[dict[str, Any]], size: int = 4096) -> None:
    count = mib * MIB // size
    for policy in (None, "batch"):
        b = Broker(policy, "--stream", "bench-durable-stream")
        try:
            subprocess.run(["node", "-e", _PUBLISH_JS, json.dumps(
                {**b.target(), "count": count, "size": size, "stream": "bench-durable-stream"})],
                check=True, cwd=HERE, timeout=3600, capture_output=True)
            phases = ["memory"] if policy is None else ["disk, same broker", "disk, restarted"]
            for phase in phases:
                if phase == "disk, restarted":
                    b.stop()
                    b.start()
                rss0 = rss_kib(b.info.pid)
                opts = {"mode": "stream", **b.target(), "count": count,
                        "stream": "bench-durable-stream"}
                results = [b.measured(lambda o=opts: node(o, timeout=3600))
                           for _ in range(runs)]
                m = median(results)
                rows.append({"part": "stream", "store": phase, "size": size, "count": count,
                             "stream_mib": count * size / MIB, "runs": runs,
                             "mib_per_s": m["msgs_per_s"] * size / MIB,
                             "rss_before_read_kib": rss0, **m})
                print_row(rows[-1])
        finally:
            b.close()


# -- output ---------------------------------------------------------------------------------


def label(r: dict[str, Any]) -> str:
    if r["part"] == "restart":
        return f"restart: {r['what']}"
    if r["part"] == "stream":
        return f"stream read {r['stream_mib']:.0f} MiB of {r['size']} B: {r['store']}"
    size = "4 KiB" if r["size"] == 4096 else f"{r['size']} B"
    name = {"throughput": "1->1", "publish": "publish only", "drain": "drain"}[r["part"]]
    return f"{name} {size} {r['store']}"


def print_row(r: dict[str, Any]) -> None:
    parts = [f"{label(r):44s}"]
    if "msgs_per_s" in r:
        parts.append(f"{r['msgs_per_s']:9,.0f} msg/s")
    if "cpu_us_per_msg" in r:
        parts.append(f"{r['cpu_us_per_msg']:7.1f} us CPU/msg")
    if "mib_per_s" in r:
        parts.append(f"{r['mib_per_s']:7.1f} MiB/s  RSS {r['rss_kib'] / 1024:.0f} MiB")
    if r["part"] == "restart":
        parts.append(f"{r['messages']:>9,} msgs: ready after {r['ready_s']:.2f} s")
        if "recovered_s" in r:
            parts.append(f"(log: recovered in {r['recovered_s']:.2f} s), RSS "
                         f"{r['rss_after_restart_kib'] / 1024:.0f} MiB, on disk "
                         f"{r['data_dir_bytes'] / MIB:.0f} MiB")
    print("  ".join(parts), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=env_int("BENCH_DURABLE_RUNS", 3))
    parser.add_argument("--count-100", type=int, default=env_int("BENCH_DURABLE_COUNT_100", 30000))
    parser.add_argument("--count-4k", type=int, default=env_int("BENCH_DURABLE_COUNT_4K", 10000))
    parser.add_argument("--restart-messages", type=int,
                        default=env_int("BENCH_DURABLE_RESTART_MESSAGES", 100_000))
    parser.add_argument("--restart-runs", type=int,
                        default=env_int("BENCH_DURABLE_RESTART_RUNS", 3))
    parser.add_argument("--stream-mib", type=int, default=env_int("BENCH_DURABLE_STREAM_MIB", 40))
    parser.add_argument("--only", default=os.environ.get("BENCH_DURABLE_ONLY", ""),
                        help="comma-separated parts: throughput, publish, restart, stream")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(",")))
    counts = {100: args.count_100, 4096: args.count_4k}
    rows: list[dict[str, Any]] = []
    print(f"durability benchmark: 1 producer -> 1 consumer over tcp, at-least-once, durable "
          f"messages; medians of {args.runs} runs; CPU is the broker process's own", flush=True)
    if not only or "throughput" in only:
        throughput(args.runs, counts, rows)
    if not only or "publish" in only:
        publish_only(args.runs, counts, rows)
    if not only or "restart" in only:
        restart(args.restart_messages, args.restart_runs, rows)
    if not only or "stream" in only:
        stream_read(args.runs, args.stream_mib, rows)
    print()
    for r in rows:
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}))


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main()
