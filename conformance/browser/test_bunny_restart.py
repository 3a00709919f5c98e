"""The bunny example's page (`examples/bunny/`) across a broker restart, in
headless Chromium, with the broker on `--data-dir`.

`examples/bunny/serve.py` starts its broker itself and passes it no extra
arguments (no `--data-dir`), so these tests do not run serve.py: they start
the broker as serve.py does (`serve --stream bunny`), plus `--data-dir` on a
temporary directory, and serve the page with serve.py's own request handler
(its `Handler`, imported from the file, answering `/config.json` with the
broker's WebSocket port).  The broker is then restarted on the same data
directory and the same ports, so the page's URL stays valid:

- `bunny_restart_replay`: tab A draws a red stroke and sees every chunk
  accepted; the broker is stopped (SIGTERM) and started again.  A reconnects by
  itself and resumes after the offset it had (nothing is drawn twice); tab C,
  opened after the restart, replays the red stroke from disk; A then draws a
  blue stroke that C gets live, at offsets that continue the old ones; a
  proton client reading from `first` sees both strokes at offsets 0..n-1.
- `bunny_crash_replay`: the same with SIGKILL instead of SIGTERM (every chunk
  had been accepted, so all of them must be there).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from functools import partial
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from bunny_page import BLUE, RED, SWOOSH, ZIGZAG, assert_shows, at, draw, open_bunny
from proton import Described, Message, Timeout, symbol
from proton.reactor import Filter
from proton.utils import BlockingConnection

pytestmark = pytest.mark.parametrize("client", ["rhea-browser"])

HERE = Path(__file__).resolve().parent
BUNNY = HERE.parent.parent / "examples" / "bunny"
STREAM = "bunny"
def _serve_module() -> Any:
    """examples/bunny/serve.py as a module (its main() is not run)."""
    spec = importlib.util.spec_from_file_location("bunny_serve", BUNNY / "serve.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _conftest(config: pytest.Config, directory: Path) -> Any:
    """The conftest module of `directory` as pytest loaded it (both are called
    `conftest`, so neither can simply be imported here)."""
    plugin = config.pluginmanager.get_plugin(str(directory / "conftest.py"))
    if plugin is None:
        raise RuntimeError(f"{directory / 'conftest.py'} is not loaded")
    return plugin


class BunnyOnDisk:
    """The bunny broker on a data directory, restartable on the same ports, and
    the page served by serve.py's Handler."""

    def __init__(self, suite: Any, data_dir: Path) -> None:
        self.suite = suite
        self.data_dir = data_dir
        self.logs: list[Path] = []
        self.proc: Any = None
        self.info: Any = None
        self.start()

    def start(self) -> None:
        ports = [] if self.info is None else ["--port", str(self.info.port),
                                              "--ws-port", str(self.info.ws_port)]
        # the suite's start_broker passes --port 0 --ws-port 0 first; the last one wins
        self.proc, self.info = self.suite.start_broker(
            "--stream", STREAM, "--data-dir", str(self.data_dir), *ports)
        self.logs.append(self.info.log_path)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if sig == signal.SIGTERM:
            code = self.suite.stop_broker(self.proc)
            assert code == 0, f"broker exited with {code}: {self.tail()}"
        else:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)
        self.proc = None

    def tail(self) -> str:
        return "".join(f"--- {p}\n{p.read_text(errors='replace')[-3000:]}\n" for p in self.logs)

    def close(self) -> None:
        if self.proc is not None:
            self.suite.stop_broker(self.proc)
            self.proc = None


@pytest.fixture
def bunny_on_disk(pytestconfig: pytest.Config, node: str, tmp_path: Path) -> Iterator[Any]:
    if not (BUNNY / "node_modules" / "browserify" / "package.json").exists():
        # run_example's check: a skip locally, a failure in CI
        _conftest(pytestconfig, HERE).missing("npm packages of examples/bunny are not installed")
    serve = _serve_module()
    serve.ensure_bundle()  # what serve.py does first (a no-op once built)
    broker = BunnyOnDisk(_conftest(pytestconfig, HERE.parent), tmp_path / "data")

    class Handler(serve.Handler):  # type: ignore[misc, name-defined]
        config = serve.json.dumps({"ws_port": broker.info.ws_port, "ws_path": "/ws",
                                   "address": f"/queues/{STREAM}", "stream": STREAM}).encode()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(BUNNY)))
    threading.Thread(target=httpd.serve_forever, name="bunny-http", daemon=True).start()
    broker.http_url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    try:
        yield broker
    finally:
        httpd.shutdown()
        httpd.server_close()
        broker.close()


def read_stream(amqp_url: str) -> list[Message]:
    """Everything in the stream from `first`, with proton over TCP."""
    spec = symbol("rabbitmq:stream-offset-spec")
    conn = BlockingConnection(amqp_url, timeout=20)
    got = []
    try:
        receiver = conn.create_receiver(f"/queues/{STREAM}", credit=1000,
                                        options=Filter({spec: Described(spec, "first")}))
        while True:
            try:
                got.append(receiver.receive(timeout=1.0))
            except Timeout:
                break
            receiver.accept()
    finally:
        conn.close()
    return got


def _replay_after(sig: int, bunny: BunnyOnDisk, open_page: Any, tmp_path: Path) -> None:
    url = bunny.http_url
    a = open_bunny(open_page, url)
    red, red_points = draw(a, RED, ZIGZAG)
    assert_shows(a, red, red_points, RED, at(*ZIGZAG[1]))  # its echo: the chunks are in the stream
    chunks = a.wait_for(f"bunny.strokes[{red!r}].chunks")
    a.wait_for(f"bunny.published === {chunks}")  # every chunk accepted: written to disk
    last = a.eval("bunny.lastOffset")
    assert last == chunks - 1

    bunny.stop(sig)
    a.wait_for("!bunny.ready", timeout=15)
    bunny.start()
    a.wait_for("bunny.ready", timeout=30)  # reconnected by itself (1 s retry)
    # It resumed after `last`: the red stroke is not delivered again.
    assert a.eval(f"bunny.strokes[{red!r}].points") == red_points
    assert a.eval(f"bunny.strokes[{red!r}].chunks") == chunks

    c = open_bunny(open_page, url)  # a tab opened after the restart replays from disk
    assert_shows(c, red, red_points, RED, at(*ZIGZAG[3]))
    c.wait_for(f"bunny.lastOffset === {last}")
    assert c.eval(f"bunny.strokes[{red!r}].chunks") == chunks

    blue, blue_points = draw(a, BLUE, SWOOSH)
    for page in (a, c):
        assert_shows(page, blue, blue_points, BLUE, at(*SWOOSH[2]))
    blue_chunks = c.eval(f"bunny.strokes[{blue!r}].chunks")
    a.wait_for(f"bunny.published === {chunks + blue_chunks}")
    assert c.eval("bunny.lastOffset") == last + blue_chunks, "offsets continue after the restart"
    assert c.eval("bunny.errors") == []
    # A SIGTERM closes the connection with the broker's notice; a SIGKILL just drops it.
    notice = ["connection: broker is shutting down"] if sig == signal.SIGTERM else []
    assert a.eval("bunny.errors") == notice

    stored = read_stream(bunny.info.amqp_url)
    offsets = [int(m.annotations[symbol("x-stream-offset")]) for m in stored]
    assert offsets == list(range(chunks + blue_chunks))
    assert [m.body["stroke"] for m in stored] == [red] * chunks + [blue] * blue_chunks
    x0, y0 = at(*ZIGZAG[0])
    first = stored[0].body
    assert abs(first["points"][0] - x0) <= 2 and abs(first["points"][1] - y0) <= 2

    shot = tmp_path / "bunny-restart.png"
    c.screenshot(shot)
    assert shot.stat().st_size > 10_000
    if os.environ.get("BUNNY_RESTART_SCREENSHOT"):
        shutil.copy(shot, os.environ["BUNNY_RESTART_SCREENSHOT"])


def test_bunny_restart_replay(client: str, bunny_on_disk: Any, open_page: Any,
                              tmp_path: Path) -> None:
    _replay_after(signal.SIGTERM, bunny_on_disk, open_page, tmp_path)


def test_bunny_crash_replay(client: str, bunny_on_disk: Any, open_page: Any,
                            tmp_path: Path) -> None:
    _replay_after(signal.SIGKILL, bunny_on_disk, open_page, tmp_path)
