"""Routing benchmark: what exchanges cost per message, against a queue target.

One broker process, its queues, exchanges and bindings declared by a TOML
config generated into a temporary file, driven by rhea (load.js `route` mode):
100-byte messages, at-least-once (unsettled, consumers accept), one producer.

- `queue`: publish straight to `/queues/q`, one consumer on q: the baseline;
- `direct`: publish to `/exchanges/bench-direct/k`, bound to the same q;
- `topic N`: an exchange with N distinct bindings, one of which matches the
  published key and leads to the consumed queue; the other N-1 lead to a few
  dummy queues that are watched and must receive nothing.  The topic trie
  should keep the cost per message nearly flat in N (a fixed key: after the
  first message the broker's route cache answers);
- `relay`: the anonymous relay, each message's `to` naming its target: to
  `/queues/q`, and to the 10,000-binding topic exchange with a new routing key
  per message, so the cache never answers and every publish walks the trie;
- `fanout Q`: an exchange bound to Q queues, one consumer (and connection)
  per queue; each published message is delivered Q times.

Each round runs every scenario once, so that each ratio compares a scenario
with the baseline measured minutes, not hours, apart; the table shows the
median over rounds.  CPU is the broker process's own utime+stime over the
sending window (first credit to last delivery and outcome).  This is a
benchmark, not a test: it asserts only that every message reached exactly
the queues it should, with an `accepted` outcome.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "conformance"))
from conftest import BrokerProcess, start_broker, stop_broker

CLK_TCK = os.sysconf("SC_CLK_TCK")
SIZE = 100
TOPIC_SIZES = (10, 1_000, 10_000)
FANOUT_SIZES = (1, 10, 100)
DUMMY_QUEUES = 16
TOPIC_KEY = "orders.eu.bench.created"
TOPIC_MATCH = "orders.eu.bench.*"  # the one binding the key matches
REGIONS = ("eu", "us", "apac", "latam", "mea", "cn", "in", "au")


@dataclass
class Scenario:
    name: str
    target: str  # the producer's target address
    queues: list[str]  # consumed: each must get every message
    count: int  # messages published per run
    watch: list[str] = field(default_factory=list)  # must get nothing
    bindings: int = 0
    to: str | None = None  # anonymous relay: each message's `to` ({i}: its index)


def exchange_target(exchange: str, key: str) -> str:
    return f"/exchanges/{quote(exchange, safe='')}/{quote(key, safe='')}"


def topic_patterns(n: int) -> list[str]:
    """`n - 1` distinct binding keys that do not match TOPIC_KEY.  They share
    prefixes, wildcards and the `#` root with the matching one, so that the
    publish walks branches with many siblings rather than a lone path."""
    forms: list[Callable[[str, int], str]] = [
        lambda r, i: f"orders.{r}.{i}.*",
        lambda r, i: f"orders.{r}.*.{i}",  # orders.eu.* is entered; `created` != i
        lambda r, i: f"*.{r}.{i}.#",  # *.eu is entered; `bench` != i
        lambda r, i: f"shipments.{r}.{i}",
        lambda r, i: f"#.audit.{i}",  # the root `#` is entered at every word
    ]
    patterns = [forms[i % len(forms)](REGIONS[i % len(REGIONS)], i) for i in range(n - 1)]
    assert len(set(patterns)) == n - 1 and TOPIC_MATCH not in patterns
    return patterns


def toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string of printable ASCII is a TOML basic string


def build_config(count: Callable[[int], int]) -> tuple[str, list[Scenario]]:
    """The broker's TOML config and the scenarios it serves."""
    dummies = [f"dummy-{i}" for i in range(DUMMY_QUEUES)]
    queues = ["q", *dummies]
    exchanges: list[tuple[str, str, list[tuple[str, str]]]] = [
        ("bench-direct", "direct", [("q", "k")])]
    scenarios = [
        Scenario("queue /queues/q", "/queues/q", ["q"], count(100_000)),
        Scenario("direct exchange", exchange_target("bench-direct", "k"), ["q"], count(100_000),
                 bindings=1),
    ]
    for n in TOPIC_SIZES:
        consumed = f"topic-{n}"
        queues.append(consumed)
        bindings = [(consumed, TOPIC_MATCH)]
        bindings += [(dummies[i % len(dummies)], p) for i, p in enumerate(topic_patterns(n))]
        exchanges.append((f"bench-topic-{n}", "topic", bindings))
        scenarios.append(Scenario(f"topic {n:,} bindings", exchange_target(f"bench-topic-{n}",
                                  TOPIC_KEY), [consumed], count(100_000),
                                  watch=dummies[: n - 1], bindings=n))
    # Through the anonymous relay with a new routing key per message, so that the
    # broker's route cache never answers: the trie walk itself, against the same
    # relay publishing to a queue.
    scenarios.append(Scenario("relay to /queues/q", "", ["q"], count(100_000), to="/queues/q"))
    n = TOPIC_SIZES[-1]
    scenarios.append(Scenario(
        f"relay topic {n // 1000}k new keys", "", [f"topic-{n}"], count(100_000),
        watch=dummies, bindings=n,
        to=exchange_target(f"bench-topic-{n}", TOPIC_MATCH.replace("*", "k")) + "{i}"))
    for q, total in zip(FANOUT_SIZES, (100_000, 200_000, 300_000), strict=True):
        names = [f"fanout-{q}-{i}" for i in range(q)]
        queues += names
        exchanges.append((f"bench-fanout-{q}", "fanout", [(name, "") for name in names]))
        scenarios.append(Scenario(f"fanout to {q} queue{'s' if q > 1 else ''}",
                                  exchange_target(f"bench-fanout-{q}", ""), names,
                                  count(total // q), bindings=q))
    lines = [f"queues = [{', '.join(toml_str(q) for q in queues)}]", ""]
    for name, kind, bindings in exchanges:
        lines += [f"[exchanges.{toml_str(name)}]", f"type = {toml_str(kind)}", "bindings = ["]
        lines += [f"  {{ queue = {toml_str(q)}, key = {toml_str(k)} }}," for q, k in bindings]
        lines += ["]", ""]
    return "\n".join(lines), scenarios


class Failure(Exception):
    pass


def run_once(broker: BrokerProcess, s: Scenario) -> dict[str, float]:
    opts = {"mode": "route", "host": broker.host, "port": broker.port, "target": s.target,
            "queues": s.queues, "watch": s.watch, "count": s.count, "size": SIZE,
            "cpu_pid": broker.pid, "stall_s": 10, "to": s.to}
    out = subprocess.run(["node", str(HERE / "load.js"), json.dumps(opts)], capture_output=True,
                         text=True, timeout=600, cwd=HERE, check=False)
    if out.returncode != 0 or not out.stdout.strip():
        raise Failure(f"{s.name}: load generator failed: {out.stderr[-2000:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    expected = s.count * len(s.queues)
    if (r.get("stalled") or r.get("error") or r["delivered"] != expected
            or r["per_queue_min"] != s.count or r["per_queue_max"] != s.count
            or r["strays"] or r["accepted"] != s.count):
        raise Failure(f"{s.name}: expected {s.count} messages on each of {len(s.queues)} "
                      f"queue(s), each accepted, none on the {len(s.watch)} watched; got {r}")
    cpu_us = r["cpu_ticks"] / CLK_TCK * 1e6
    return {
        "msgs_per_s": s.count / r["seconds"],
        "delivered_per_s": expected / r["seconds"],
        "cpu_us_per_msg": cpu_us / s.count,
        "cpu_us_per_delivered": cpu_us / expected,
        "seconds": r["seconds"],
    }


def broker_log_problems(path: Path) -> list[str]:
    words = ("Traceback", "ERROR", "CRITICAL", "internal-error")
    return [line for line in path.read_text(errors="replace").splitlines()
            if any(w in line for w in words)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="rounds over every scenario")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply message counts")
    args = parser.parse_args()
    config_text, scenarios = build_config(lambda k: max(100, int(k * args.scale)))
    with tempfile.NamedTemporaryFile("w", prefix="bench-routing-", suffix=".toml",
                                     delete=False) as f:
        f.write(config_text)
    t0 = time.perf_counter()
    proc, broker = start_broker("--config", f.name, "--log-level", "warning", timeout=120)
    startup = time.perf_counter() - t0
    results: dict[str, list[dict[str, float]]] = {s.name: [] for s in scenarios}
    failure: Failure | None = None
    try:
        for _ in range(args.runs):
            base = None
            for s in scenarios:
                r = run_once(broker, s)
                base = base or r  # the first scenario is the baseline
                r["cpu_ratio"] = r["cpu_us_per_msg"] / base["cpu_us_per_msg"]
                r["rate_ratio"] = r["msgs_per_s"] / base["msgs_per_s"]
                results[s.name].append(r)
    except Failure as exc:
        failure = exc
    finally:
        code = stop_broker(proc)
        os.unlink(f.name)
    problems = broker_log_problems(broker.log_path)
    if failure is not None or code != 0 or problems:
        sys.exit(f"FAILED: {failure or ''}\nbroker exit code {code}; log {broker.log_path}"
                 + "".join(f"\n  {line}" for line in problems[:20]))

    bindings = sum(s.bindings for s in scenarios if s.to is None)  # relays reuse exchanges
    print(f"\nrouting benchmark: median of {args.runs} rounds, {SIZE}-byte messages, "
          f"at-least-once, 1 producer, tcp; broker started with {bindings:,} bindings "
          f"in {startup:.1f} s")
    print("CPU is the broker process's own; x base compares with `queue` in the same round; "
          "fanout rows count published (pub) and delivered (dlv) messages\n")
    head = (f"{'scenario':24s} {'msgs':>8s} {'pub msg/s':>10s} {'dlv msg/s':>10s} "
            f"{'us CPU/pub':>10s} {'us CPU/dlv':>10s} {'CPU x base':>10s} {'msg/s x base':>12s}")
    print(head)
    print("-" * len(head))
    lines = []
    for s in scenarios:
        m = {k: statistics.median(r[k] for r in results[s.name]) for k in results[s.name][0]}
        print(f"{s.name:24s} {s.count:8,d} {m['msgs_per_s']:10,.0f} {m['delivered_per_s']:10,.0f} "
              f"{m['cpu_us_per_msg']:10.1f} {m['cpu_us_per_delivered']:10.1f} "
              f"{m['cpu_ratio']:10.2f} {m['rate_ratio']:12.2f}")
        lines.append(json.dumps({
            "scenario": s.name, "target": s.target, "bindings": s.bindings,
            "queues": len(s.queues), "published": s.count, "delivered": s.count * len(s.queues),
            "runs": args.runs, **{k: round(v, 3) for k, v in m.items()}}))
    print()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
