"""TLS benchmark (`make bench-tls`): what TLS costs next to the plain listeners.

One broker process with a certificate from a throwaway CA (trustme), driven
by rhea (load.js) over tcp, amqps, ws and wss: msgs/s and the broker's own
CPU per at-least-once message at 100 B and 4 KiB, each the median of several
runs, with TLS/plain ratios from the same run; then the cost of opening 1,000
amqps connections (each with a session and a receiver): seconds until all
are open and the broker's CPU per connection, against 1,000 plain ones.  A
benchmark, not a test: it prints numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench_broker import Bench, idle_connections


def make_pki() -> tuple[str, str, str]:
    """(ca, cert, key) files for localhost/127.0.0.1."""
    import trustme

    d = Path(tempfile.mkdtemp(prefix="amqpws-bench-tls-"))
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    leaf.private_key_pem.write_to_path(str(d / "key.pem"))
    for i, pem in enumerate(leaf.cert_chain_pems):
        pem.write_to_path(str(d / "cert.pem"), append=i > 0)
    return str(d / "ca.pem"), str(d / "cert.pem"), str(d / "key.pem")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply message counts")
    parser.add_argument("--connections", type=int, default=1000)
    args = parser.parse_args()
    ca, cert, key = make_pki()
    bench = Bench(args.runs, args.scale, "--tls-cert", cert, "--tls-key", key,
                  "--tls-port", "0", "--wss-port", "0", ca=ca)
    n = lambda k: max(100, int(k * args.scale))
    rows: dict[str, dict[str, float]] = {}
    try:
        for size in (100, 4096):
            for transport in ("tcp", "tls", "ws", "wss"):
                count = n(30000 if size == 100 else 10000)
                rows[f"{transport} {size}B"] = bench.median(
                    lambda t=transport, c=count, s=size: {
                        "mode": "throughput", **bench.target(t), "pairs": 1, "count": c,
                        "size": s, "presettled": False, "prefix": bench.prefix()})
        opened = {t: idle_connections(bench, args.connections, t) for t in ("tcp", "tls")}
    finally:
        bench.close()
    print(f"\nTLS benchmark: median of {args.runs} runs, 1 producer -> 1 consumer, "
          "at-least-once; CPU is the broker process's own")
    for name, r in rows.items():
        print(f"  {name:12s} {r['msgs_per_s']:9,.0f} msg/s {r['cpu_us_per_msg']:7.1f} us CPU/msg")
    for size in (100, 4096):
        for plain, secure in (("tcp", "tls"), ("ws", "wss")):
            p, s = rows[f"{plain} {size}B"], rows[f"{secure} {size}B"]
            print(f"  {secure}/{plain} {size}B: {s['msgs_per_s'] / p['msgs_per_s']:.2f}x msg/s, "
                  f"{s['cpu_us_per_msg'] / p['cpu_us_per_msg']:.2f}x CPU per message")
    for transport, r in opened.items():
        print(f"  {args.connections} {transport} connections opened in {r['open_seconds']:.2f} s, "
              f"{r['open_cpu_ms_per_connection']:.2f} ms broker CPU each, "
              f"{r['kib_per_connection']:.1f} KiB RSS each")


if __name__ == "__main__":
    main()
