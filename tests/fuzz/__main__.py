"""`make fuzz`: the engine and container fed mutated frames (see harness.py).

    PYTHONPATH=tests python -m fuzz [--engine auto|atheris|random]
        [--iterations N] [--seconds S] [--seed N] [--findings DIR]
    PYTHONPATH=tests python -m fuzz --replay FILE...

Two engines share the inputs, the mutators and the checks:

- `atheris` (coverage-guided libFuzzer over the instrumented `broker`
  package), seeded with corpus.py's frame sequences; its custom mutator
  mixes our structure-aware mutations with libFuzzer's byte-level ones.
- `random`: a plain loop with a fixed seed, so the same command finds the
  same things in the same order (what CI runs).  Inputs whose coarse
  outcome (the kinds of frames and conditions the broker answered) was new
  join the pool that later inputs are mutated from: a little guidance
  without coverage.

`auto` takes atheris when it imports, else random.  Every finding is saved as
`<findings>/<signature-hash>-<n>.bin` (the input) with a `.txt` beside it
(the traceback or broken expectation, whether it reproduces on a fresh world,
a listing of the frames); a few examples per signature are kept, all are
counted.  The exit status is 1 when anything was found.
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
EXAMPLES_PER_SIGNATURE = 3
POOL_LIMIT = 3000
REPORT_EVERY = 15.0  # seconds between progress lines


class Recorder:
    """Counts iterations and findings, saves the inputs, prints progress."""

    def __init__(self, findings_dir: Path, engine: str, harness: Any) -> None:
        self.dir = findings_dir
        self.engine = engine
        self.replay = harness.replay_fresh
        self.describe = harness.describe
        self.minimize = harness.minimize
        self.iterations = 0
        self.start = time.monotonic()
        self.last_report = self.start
        self.by_signature: Counter[str] = Counter()
        self.first: dict[str, tuple[int, str]] = {}
        self.outcomes: set[tuple[object, ...]] = set()
        self.summary_file: Path | None = None

    def record(self, data: bytes, result: Any) -> bool:
        """Count one iteration; True when its outcome was never seen before."""
        self.iterations += 1
        new = result.outcome not in self.outcomes
        if new:
            self.outcomes.add(result.outcome)
        seen: set[str] = set()
        for problem in result.problems:
            sig = f"{problem.kind}: {problem.signature}"
            if sig in seen:
                continue
            seen.add(sig)
            self.by_signature[sig] += 1
            n = self.by_signature[sig]
            if n <= EXAMPLES_PER_SIGNATURE:
                self._save(sig, n, data, problem)
        now = time.monotonic()
        if now - self.last_report >= REPORT_EVERY:
            self.last_report = now
            self.progress()
        return new

    def _save(self, sig: str, n: int, data: bytes, problem: Any) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha1(sig.encode()).hexdigest()[:10]
        base = self.dir / f"{h}-{n}"
        base.with_suffix(".bin").write_bytes(data)
        fresh = self.replay(data)
        again = any(f"{p.kind}: {p.signature}" == sig for p in fresh.problems)
        text = (f"{sig}\n\nfound by the {self.engine} engine at iteration {self.iterations}\n"
                f"reproduces on a fresh world: {'yes' if again else 'no (needs earlier state)'}"
                f"\nreplay: PYTHONPATH=tests python -m fuzz --replay {base.with_suffix('.bin')}\n\n"
                f"{problem.detail}\n\ninput ({len(data)} bytes):\n{self.describe(data)}\n")
        if n == 1 and again:
            small = self.minimize(data, sig)
            base.with_name(base.name + "-min.bin").write_bytes(small)
            text += (f"\nminimized ({len(small)} bytes, {base.name}-min.bin):\n"
                     f"{self.describe(small)}\n")
        base.with_suffix(".txt").write_text(text)
        if n == 1:
            self.first[sig] = (self.iterations, str(base.with_suffix(".txt")))
            print(f"FINDING #{len(self.first)} at iteration {self.iterations}: {sig}\n"
                  f"  saved {base.with_suffix('.txt')} (fresh world: "
                  f"{'reproduces' if again else 'does not reproduce'})", flush=True)

    def progress(self) -> None:
        elapsed = time.monotonic() - self.start
        rate = self.iterations / elapsed if elapsed else 0.0
        print(f"[{self.engine}] {self.iterations} iterations in {elapsed:.0f} s "
              f"({rate:.0f}/s), {len(self.outcomes)} distinct outcomes, "
              f"{len(self.by_signature)} distinct findings "
              f"({sum(self.by_signature.values())} in all)", flush=True)

    def summary(self) -> int:
        print("-" * 72)
        self.progress()
        if self.summary_file is not None:
            self.summary_file.write_text(json.dumps({
                "iterations": self.iterations, "seconds": time.monotonic() - self.start,
                "findings": dict(self.by_signature),
                "first": {k: list(v) for k, v in self.first.items()}}))
        if not self.by_signature:
            print("no findings")
            return 0
        print("findings (signature: count, first iteration, report):")
        for sig, count in self.by_signature.most_common():
            it, path = self.first.get(sig, (0, "?"))
            print(f"  {sig}: {count}, first at {it}, {path}")
        return 1


def run_random(harness: Any, rec: Recorder, seeds: list[list[bytes]], args: argparse.Namespace,
               mutator_cls: Any) -> None:
    rng = random.Random(args.seed)
    pool = [list(s) for s in seeds]
    mut = mutator_cls(rng, pool)
    deadline = time.monotonic() + args.seconds if args.seconds else None
    # every seed once, unmutated, in each prelude and world variant
    for seed in seeds:
        for mode, variant in ((0, 0), (2, 1), (0x24, 2), (0x8C, 0), (3, 0)):
            data = bytes((mode, variant)) + b"".join(seed)
            rec.record(data, harness.run(data))
    while rec.iterations < args.iterations:
        if deadline is not None and time.monotonic() > deadline:
            break
        data = mut.fresh_input()
        if rec.record(data, harness.run(data)) and len(pool) < POOL_LIMIT:
            pool.append(_frames_of(data))


def _frames_of(data: bytes) -> list[bytes]:
    from fuzz.mutate import split_frames

    return split_frames(data[2:])


def run_atheris(atheris: Any, harness: Any, rec: Recorder, seeds: list[list[bytes]],
                args: argparse.Namespace, mutator_cls: Any, finish: Any) -> None:
    work = Path(tempfile.mkdtemp(prefix="fuzz-corpus-", dir=_work_dir()))
    for i, seed in enumerate(seeds):
        for mode, variant in ((0, 0), (2, 1), (0x24, 2), (0x8C, 0)):
            (work / f"seed-{i:03d}-{mode:02x}-{variant}").write_bytes(
                bytes((mode, variant)) + b"".join(seed))
    mut = mutator_cls(random.Random(args.seed), [list(s) for s in seeds])

    deadline = time.monotonic() + args.seconds if args.seconds else None

    def one_input(data: bytes) -> None:
        rec.record(data, harness.run(data))
        # our own budget: libFuzzer's -max_total_time exits from C, past Python's atexit
        if rec.iterations >= args.iterations or \
                (deadline is not None and time.monotonic() > deadline):
            shutil.rmtree(work, True)
            finish()

    def mutator(data: bytes, max_size: int, seed: int) -> bytes:
        mut.rng.seed(seed)
        out = mut.mutate_input(data, lambda b: atheris.Mutate(b, max(len(b) * 2, 64)))
        return out[:max_size]

    flags = [sys.argv[0], f"-seed={args.seed}", "-max_len=32768", "-rss_limit_mb=4096",
             str(work)]
    log = _work_dir() / f"libfuzzer-{os.getpid()}.log"
    print(f"libFuzzer's own output: {log}", flush=True)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 2)
    atheris.Setup(flags, one_input, custom_mutator=mutator)
    atheris.Fuzz()  # never returns: one_input ends the process when the budget is spent


def run_jobs(args: argparse.Namespace) -> int:
    """`--jobs N`: N processes of this module with seeds seed*1000+k, findings in
    job<k>/ under the findings folder, one combined summary at the end."""
    work = _work_dir()
    procs = []
    start = time.monotonic()
    for k in range(args.jobs):
        share = args.iterations // args.jobs + (1 if k < args.iterations % args.jobs else 0)
        cmd = [sys.executable, "-m", "fuzz", "--engine", args.engine, "--iterations",
               str(share), "--seconds", str(args.seconds), "--seed", str(args.seed * 1000 + k),
               "--findings", str(args.findings / f"job{k}"),
               "--summary", str(work / f"summary-{k}.json")]
        (work / f"summary-{k}.json").unlink(missing_ok=True)
        procs.append(subprocess.Popen(cmd))
    codes = [p.wait() for p in procs]
    total = 0
    found: Counter[str] = Counter()
    first: dict[str, str] = {}
    for k in range(args.jobs):
        path = work / f"summary-{k}.json"
        if not path.exists():
            print(f"job {k} left no summary (exit {codes[k]})")
            continue
        data = json.loads(path.read_text())
        total += data["iterations"]
        found.update(data["findings"])
        for sig, (_, report) in data["first"].items():
            first.setdefault(sig, report)
    elapsed = time.monotonic() - start
    print("=" * 72)
    print(f"{args.jobs} jobs: {total} iterations in {elapsed:.0f} s ({total / elapsed:.0f}/s "
          f"in all), {len(found)} distinct findings ({sum(found.values())} in all)")
    for sig, count in found.most_common():
        print(f"  {sig}: {count}, {first.get(sig, '?')}")
    return 1 if found or any(c not in (0, 1) for c in codes) else 0


def _work_dir() -> Path:
    d = HERE / "work"
    d.mkdir(exist_ok=True)
    return d


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.split("\n")[0])
    parser.add_argument("--engine", choices=("auto", "atheris", "random"), default="auto")
    parser.add_argument("--iterations", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=0.0, help="time budget; 0: none")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--findings", type=Path, default=HERE / "findings")
    parser.add_argument("--replay", nargs="+", type=Path, help="re-run saved inputs and report")
    parser.add_argument("--jobs", type=int, default=1,
                        help="processes, each with its own seed and share of the iterations")
    parser.add_argument("--summary", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.jobs > 1 and not args.replay:
        sys.exit(run_jobs(args))

    engine = args.engine
    atheris = None
    if engine in ("auto", "atheris") and not args.replay:
        try:
            import atheris  # type: ignore[import-not-found,no-redef]
        except ImportError:
            if engine == "atheris":
                raise
            print("atheris is not installed: the random engine runs instead", flush=True)
        engine = "atheris" if atheris is not None else "random"

    if atheris is not None:
        with atheris.instrument_imports(include=["broker"]):
            from fuzz import corpus, harness, mutate
    else:
        from fuzz import corpus, harness, mutate

    if args.replay:  # exit 1 if any still fails: usable as a regression check
        failing = 0
        for path in args.replay:
            data = path.read_bytes()
            result = harness.replay_fresh(data)
            failing += bool(result.problems)
            print(f"== {path}: {len(result.problems)} problem(s)")
            print(harness.describe(data))
            for p in result.problems:
                print(f"-- {p.kind}: {p.signature}\n{p.detail}")
        sys.exit(1 if failing else 0)

    seeds = corpus.seeds()
    h = harness.Harness()
    rec = Recorder(args.findings, engine, harness)
    print(f"fuzzing with the {engine} engine: {len(seeds)} seeds, seed {args.seed}, "
          f"up to {args.iterations} iterations"
          + (f" or {args.seconds:g} s" if args.seconds else ""), flush=True)

    def finish() -> None:
        sys.stdout.flush()
        code = rec.summary()
        sys.stdout.flush()
        os._exit(code)

    rec.summary_file = args.summary
    atexit.register(finish)
    if engine == "atheris":
        run_atheris(atheris, h, rec, seeds, args, mutate.Mutator, finish)
    else:
        run_random(h, rec, seeds, args, mutate.Mutator)


if __name__ == "__main__":
    main()
