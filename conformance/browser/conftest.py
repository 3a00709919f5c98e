"""rhea in a real browser: fixtures for headless Chromium.

`driver.mjs` (Node, playwright-core) launches Debian's Chromium and takes
JSON-line requests on stdin; `Driver` below is its Python end.  A small HTTP
server in a thread serves `page/` and the rhea bundle that `bundle.mjs` copies
out of the npm package into `build/rhea.js` (`setup.sh` installs all of it).

Without Chromium, Node or the npm packages the browser cases skip with the
setup command to run, except in CI (`CI=true`), where they fail.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, NoReturn

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BUNNY = ROOT / "examples" / "bunny"
PAGE_DIR = HERE / "page"
BUNDLE = HERE / "build" / "rhea.js"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SETUP_HINT = "run `bash conformance/browser/setup.sh`"


def missing(what: str) -> NoReturn:
    """A prerequisite is absent: fail in CI, skip (loudly) elsewhere."""
    message = f"rhea-browser: {what}; {SETUP_HINT}"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


class DriverError(RuntimeError):
    pass


class Driver:
    """The Python end of driver.mjs: one request per line, replies matched by id."""

    def __init__(self, node: str, log_path: Path, extra_args: Sequence[str] = ()) -> None:
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in close()
        env = dict(os.environ, CHROMIUM=CHROMIUM, CHROMIUM_EXTRA_ARGS=json.dumps(list(extra_args)))
        self.proc = subprocess.Popen(
            [node, str(HERE / "driver.mjs")],
            cwd=HERE,
            env=env,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        self._ids = itertools.count(1)
        self._pending: dict[int, Future[Any]] = {0: Future()}
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="chromium-driver", daemon=True)
        self._reader.start()
        self.version = self._wait(self._pending[0], 60, "start Chromium")["version"]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                reply = json.loads(line)
            except ValueError:
                continue
            with self._lock:
                future = self._pending.pop(reply.get("id"), None)
            if future is None:
                continue
            if reply.get("ok"):
                future.set_result(reply.get("result"))
            else:
                future.set_exception(DriverError(reply.get("error")))
        with self._lock:
            pending, self._pending = self._pending, {}
        for future in pending.values():
            future.set_exception(DriverError(f"driver exited; log:\n{self.stderr_tail()}"))

    def stderr_tail(self) -> str:
        self._log.flush()
        return self.log_path.read_text()[-3000:]

    def _wait(self, future: Future[Any], timeout: float, what: str) -> Any:
        try:
            return future.result(timeout=timeout)
        except TimeoutError:
            raise DriverError(
                f"{what}: no reply in {timeout} s; driver log:\n{self.stderr_tail()}"
            ) from None

    def submit(self, cmd: str, **args: Any) -> Future[Any]:
        """Send a request; the future resolves with its reply (requests run concurrently)."""
        assert self.proc.stdin is not None
        future: Future[Any] = Future()
        with self._lock:
            if self.proc.poll() is not None:
                raise DriverError(f"driver is gone; log:\n{self.stderr_tail()}")
            rid = next(self._ids)
            self._pending[rid] = future
            self.proc.stdin.write(json.dumps({"id": rid, "cmd": cmd, **args}) + "\n")
            self.proc.stdin.flush()
        return future

    def call(self, cmd: str, timeout: float = 60, **args: Any) -> Any:
        return self._wait(self.submit(cmd, **args), timeout, cmd)

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.call("quit", timeout=15)
            self.proc.wait(timeout=15)
        except (DriverError, subprocess.TimeoutExpired, OSError, ValueError):
            self.proc.kill()
            self.proc.wait()
        finally:
            self._log.close()


class Page:
    """One browser tab."""

    def __init__(self, driver: Driver, url: str) -> None:
        self.driver = driver
        self.id = driver.call("open", url=url)["page"]

    def eval(self, expr: str, timeout: float = 60) -> Any:
        return self.driver.call("eval", page=self.id, expr=expr, timeout=timeout)

    def call(self, function: str, args: dict[str, Any], timeout: float = 90) -> Any:
        """`await function(args)` in the page, args passed as JSON."""
        return self.eval(f"{function}({json.dumps(args)})", timeout=timeout)

    def wait_for(self, expr: str, timeout: float = 20, interval: float = 0.05) -> Any:
        """Poll a JS expression until it is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.eval(expr)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out waiting for `{expr}`; page log:\n" + "\n".join(self.log()[-40:])
                )
            time.sleep(interval)

    def click(self, selector: str) -> None:
        self.driver.call("click", page=self.id, selector=selector)

    def drag(self, selector: str, points: list[tuple[float, float]]) -> None:
        self.driver.call("drag", page=self.id, selector=selector, points=points)

    def screenshot(self, path: Path) -> None:
        self.driver.call("screenshot", page=self.id, path=str(path))

    def log(self) -> list[str]:
        return list(self.driver.call("log", page=self.id))

    def close(self) -> None:
        self.driver.call("close", page=self.id)


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves page/, and /rhea.js from the build directory; no caching."""

    def translate_path(self, path: str) -> str:
        if path.split("?", 1)[0] == "/rhea.js":
            return str(BUNDLE)
        return super().translate_path(path)

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _ensure_bundle(node: str) -> None:
    """Build build/rhea.js if it is missing or older than the installed rhea."""
    rhea = HERE / "node_modules" / "rhea" / "package.json"
    if not rhea.exists() or not (HERE / "node_modules" / "browserify").exists():
        missing("npm packages not installed (conformance/browser/node_modules)")
    if not BUNDLE.exists() or BUNDLE.stat().st_mtime < rhea.stat().st_mtime:
        subprocess.run(
            [node, "bundle.mjs", str(BUNDLE)], cwd=HERE, check=True, capture_output=True, timeout=60
        )


@pytest.fixture(scope="session")
def node() -> str:
    path = shutil.which("node")
    if path is None:
        missing("node is not installed")
    return path


@pytest.fixture(scope="session")
def page_server(node: str) -> Iterator[str]:
    """http://127.0.0.1:PORT serving the harness page and the rhea bundle."""
    _ensure_bundle(node)
    handler = functools.partial(_Handler, directory=str(PAGE_DIR))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="page-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def chromium(node: str) -> Iterator[Driver]:
    """One headless Chromium for the session, driven through playwright-core."""
    if not (HERE / "node_modules" / "playwright-core" / "package.json").exists():
        missing("playwright-core is not installed (conformance/browser/node_modules)")
    if not os.access(CHROMIUM, os.X_OK):
        missing(f"Chromium not found at {CHROMIUM}")
    log_path = Path(tempfile.mkdtemp(prefix="amqpws-chromium-")) / "driver.log"
    driver = Driver(node, log_path)
    yield driver
    driver.close()


@pytest.fixture
def open_page(chromium: Driver, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Factory: open_page(url) -> Page.  Pages close at the end of the test; a
    failing test gets their console output in its report."""
    pages: list[Page] = []
    request.node.browser_pages = pages

    def _open(url: str) -> Page:
        page = Page(chromium, url)
        pages.append(page)
        return page

    yield _open
    for page in pages:
        try:
            page.close()
        except DriverError:
            pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for page in getattr(item, "browser_pages", []):
            try:
                report.sections.append((f"browser page {page.id} console", "\n".join(page.log())))
            except DriverError:
                pass


@pytest.fixture
def harness(open_page: Any, page_server: str) -> Any:
    """A tab with the conformance harness loaded (`harness.*` ready)."""
    page = open_page(f"{page_server}/index.html")
    page.wait_for(
        "window.harness !== undefined && document.getElementById('status').textContent === 'ready'"
    )
    return page


@contextlib.contextmanager
def run_example(name: str, *args: str, log_level: str = "warning") -> Iterator[dict[str, Any]]:
    """`examples/NAME/serve.py` on free ports, as a user would run it (its broker
    included), with `args` besides; yields the URLs of its ready file, with
    `log_path` (its output) added.  Its npm packages must be installed
    (setup.sh): otherwise `missing`."""
    example = ROOT / "examples" / name
    if not (example / "node_modules" / "browserify" / "package.json").exists():
        missing(f"npm packages of examples/{name} are not installed")
    workdir = Path(tempfile.mkdtemp(prefix=f"amqpws-{name}-test-"))
    ready, log_path = workdir / "ready.json", workdir / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(example / "serve.py"), "--http-port", "0", "--amqp-port", "0",
             "--ws-port", "0", *args, "--ready-file", str(ready), "--log-level", log_level],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120  # may build the bundle first
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"serve.py did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.05)
    yield {**json.loads(ready.read_text()), "log_path": log_path}
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    assert code == 0, f"serve.py exited with {code}:\n{log_path.read_text()[-3000:]}"


@pytest.fixture(scope="module")
def bunny_server(node: str) -> Iterator[dict[str, Any]]:
    """The bunny example (`run_example`), for the module's tests."""
    with run_example("bunny") as urls:
        yield urls
