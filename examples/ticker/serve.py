"""Run the ticker demo: the broker with the last-value queue, and the page.

    .venv/bin/python examples/ticker/serve.py     # then open http://127.0.0.1:8002/ in a few tabs

1. Builds rhea's browser bundle if needed (`npm ci`, then `node build.mjs`).
2. Starts `python -m broker serve --queue 'ticker:x-last-value-key=symbol'`
   (AMQP on 5672, AMQP over WebSocket on 15678 by default): a last-value
   queue keeping the newest message per value of the application property
   `symbol`.
3. Serves the page and `/config.json` (where the page finds the WebSocket
   port and the queue's address) over HTTP.

The price feed is in the page: "Start feed" in any tab publishes random-walk
prices to the queue; every tab browses it (distribution-mode copy), so a tab
opened at any time shows the latest price of every symbol at once, then each
update, and takes nothing from the queue.  Nothing but the broker and the
page is needed.  Ctrl-C or SIGTERM stops both servers.  Ports 0 pick free
ports; `--ready-file` writes the URLs as JSON once everything listens (the
tests use it).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BUNDLE = HERE / "build" / "rhea.js"
STATIC = {
    "/": "index.html",
    "/index.html": "index.html",
    "/app.js": "app.js",
    "/app.css": "app.css",
    "/rhea.js": "build/rhea.js",
}
KEY = "symbol"  # the application property the page's feed sets, and the queue's key


def ensure_bundle() -> None:
    """npm ci + build.mjs, unless build/rhea.js is newer than the lock file."""
    lock = HERE / "package-lock.json"
    if BUNDLE.exists() and BUNDLE.stat().st_mtime >= lock.stat().st_mtime:
        return
    npm, node = shutil.which("npm"), shutil.which("node")
    if not npm or not node:
        sys.exit("serve.py: Node.js and npm are needed to build rhea's browser bundle")
    modules = HERE / "node_modules"
    if not modules.exists() or modules.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=HERE, check=True
        )
        modules.touch()
    subprocess.run([node, "build.mjs"], cwd=HERE, check=True)


def start_broker(
    args: argparse.Namespace, workdir: Path
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    ready = workdir / "broker.json"
    cmd = [
        sys.executable,
        "-m",
        "broker",
        "serve",
        "--host",
        args.host,
        "--port",
        str(args.amqp_port),
        "--ws-port",
        str(args.ws_port),
        "--queue",
        f"{args.queue}:x-last-value-key={KEY}",
        "--ready-file",
        str(ready),
        "--log-level",
        args.log_level,
    ]
    # Its own session: a terminal's Ctrl-C reaches only us, and we stop the broker in order.
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True)
    deadline = time.monotonic() + 20
    while not ready.exists():
        if proc.poll() is not None:
            sys.exit(f"serve.py: the broker exited with {proc.returncode}")
        if time.monotonic() > deadline:
            proc.kill()
            sys.exit("serve.py: the broker did not start within 20 s")
        time.sleep(0.02)
    return proc, json.loads(ready.read_text())


class Handler(http.server.SimpleHTTPRequestHandler):
    """The page's few files, plus /config.json; nothing else in the folder."""

    config: bytes = b"{}"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/config.json":
            self._send(200, "application/json", self.config)
        elif path in STATIC:
            self.path = "/" + STATIC[path]
            super().do_GET()
        else:
            self._send(404, "text/plain", b"not found\n")

    def do_HEAD(self) -> None:
        self.do_GET()

    def _send(self, status: int, ctype: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address for all listeners")
    parser.add_argument("--http-port", type=int, default=8002, help="the page (default 8002)")
    parser.add_argument("--amqp-port", type=int, default=5672, help="AMQP over TCP (default 5672)")
    parser.add_argument(
        "--ws-port", type=int, default=15678, help="AMQP over WebSocket (default 15678)"
    )
    parser.add_argument(
        "--queue", default="ticker", help="the last-value queue's name (default ticker)"
    )
    parser.add_argument(
        "--ready-file", type=Path, help="write the URLs here as JSON once listening"
    )
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--no-build", action="store_true", help="do not run npm / build.mjs")
    args = parser.parse_args()

    if not args.no_build:
        ensure_bundle()
    if not BUNDLE.exists():
        sys.exit(f"serve.py: {BUNDLE} is missing; run `npm ci && node build.mjs` in {HERE}")

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    workdir = Path(tempfile.mkdtemp(prefix="amqpws-ticker-"))
    broker, info = start_broker(args, workdir)
    config = {
        "ws_port": info["ws_port"],
        "ws_path": "/ws",
        "address": f"/queues/{args.queue}",
        "queue": args.queue,
        "key": KEY,
    }
    Handler.config = json.dumps(config).encode()
    httpd = http.server.ThreadingHTTPServer(
        (args.host, args.http_port), functools.partial(Handler, directory=str(HERE))
    )
    threading.Thread(target=httpd.serve_forever, name="http", daemon=True).start()
    http_url = f"http://{args.host}:{httpd.server_address[1]}/"
    urls = {
        "http_url": http_url,
        "ws_url": info["ws_url"],
        "ws_port": info["ws_port"],
        "amqp_url": info["amqp_url"],
        "queue": args.queue,
    }
    if args.ready_file:
        tmp = args.ready_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(urls))
        os.replace(tmp, args.ready_file)
    print(
        f"ticker: open {http_url} in a few tabs and press Start feed in one (last-value "
        f"queue {args.queue!r}, AMQP {info['amqp_url']}, WebSocket {info['ws_url']}); "
        "Ctrl-C stops",
        flush=True,
    )

    code = 0
    while not stop.wait(0.2):
        if broker.poll() is not None:
            print(f"ticker: the broker exited with {broker.returncode}", file=sys.stderr)
            code = 1
            break
    httpd.shutdown()
    httpd.server_close()
    if broker.poll() is None:
        broker.send_signal(signal.SIGTERM)
        try:
            code = broker.wait(timeout=15) or code
        except subprocess.TimeoutExpired:
            broker.kill()
            code = 1
    shutil.rmtree(workdir, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
