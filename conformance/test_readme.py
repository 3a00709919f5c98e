"""Every README code block a user would copy runs as written (client `readme`).

README.md marks the blocks that must run with an HTML comment on the line
right before the opening fence:

    <!-- runnable: KIND -->                a block of KIND
    <!-- runnable: KIND, broker -->        ... with `python -m broker serve` running
    <!-- runnable: KIND, broker: ARGS -->  ... with `python -m broker serve ARGS`
    <!-- not runnable: REASON -->          a python/html/toml/ini block that cannot run

KINDs:

- `python`: the block as a script (`sys.executable`) in a fresh directory;
  exit 0 within 60 s.
- `pytest`: the block as `test_readme_N.py` beside the README's `pytest.ini`
  block, under `python -m pytest -q -p no:cacheprovider` (the broker's plugin
  comes from the venv); it must pass.
- `pytest.ini`: that ini, with a check of our own that the plugin's fixtures
  honour it (users, queues with their arguments, streams).
- `config`: a TOML file that `python -m broker serve --config FILE --port 0
  --ws-port 0` starts with and that stops on SIGTERM with exit 0.
- `html`: a page served from 127.0.0.1 next to rhea's browser build
  (conformance/node_modules/rhea/dist/rhea.js), opened in headless Chromium
  (browser/conftest.py's driver); `#out` must read "received: ..." within 15 s.

`, broker` blocks are written against the default ports (5672, 15678), so the
broker runs on those.  When one is taken, CI (`CI=true`) fails; a developer's
machine skips the block (someone is running `make serve`).

The result table (conftest.py's `_split`) takes the case from the function
name and the client from the parameter, so each block gets a test function of
its own, `test_<kind>_line_<marker line>[readme]` (`-k python_line_263`), and
`test_every_block_marked[readme]` fails on a python/html/toml/ini block that
has neither marker.
"""

from __future__ import annotations

import configparser
import contextlib
import functools
import http.server
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "conformance"
README = ROOT / "README.md"
RHEA_JS = HERE / "node_modules" / "rhea" / "dist" / "rhea.js"
BROWSER = HERE / "browser"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

DEFAULT_PORTS = {"amqp": 5672, "ws": 15678}
PYTHON_TIMEOUT = 60.0
PYTEST_TIMEOUT = 120.0
READY_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0
HTML_TIMEOUT = 15.0
TAIL = 4000

KINDS = ("python", "pytest", "pytest.ini", "config", "html")
# fence languages a user copies and runs; other fences (sh, yaml, ...) are not checked
COUNTED = {"python": "python", "py": "python", "python3": "python", "pytest": "python",
           "html": "html", "toml": "toml", "ini": "ini"}
LANGUAGE_OF = {"python": "python", "pytest": "python", "pytest.ini": "ini",
               "config": "toml", "html": "html"}

pytestmark = pytest.mark.parametrize("client", ["readme"])


# -- the README ---------------------------------------------------------------------------

_RUNNABLE = re.compile(
    r"^\s*<!--\s*runnable:\s*(?P<kind>[^,\s]+)\s*"
    r"(?:,\s*(?P<broker>broker)\s*(?::\s*(?P<args>.*?))?)?\s*-->\s*$")
_NOT_RUNNABLE = re.compile(r"^\s*<!--\s*not runnable:\s*(?P<reason>.*?)\s*-->\s*$")
_ANY_MARKER = re.compile(r"^\s*<!--\s*(not\s+)?runnable\b")
_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass(frozen=True)
class Fence:
    line: int       # 1-based line of the opening fence
    language: str   # first word of the info string, lowercased ("" if none)
    text: str
    closed: bool


@dataclass(frozen=True)
class Block:
    line: int             # the marker's line: the test's name
    kind: str
    broker: bool
    broker_args: tuple[str, ...]
    fence: Fence

    @property
    def test_name(self) -> str:
        kind = re.sub(r"\W", "_", self.kind)
        return f"test_{kind}_line_{self.line}"


@dataclass(frozen=True)
class Readme:
    blocks: list[Block]
    problems: list[str]   # markers and fences that do not follow the rules


def _fences(lines: list[str]) -> list[Fence]:
    """CommonMark-style fenced blocks (``` or ~~~, closed by at least as many)."""
    fences: list[Fence] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None or (m["fence"][0] == "`" and "`" in m["info"]):
            i += 1
            continue
        indent, fence = len(m["indent"]), m["fence"]
        words = m["info"].strip().split()
        closing = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not closing.match(lines[j]):
            line = lines[j]
            body.append(line[min(indent, len(line) - len(line.lstrip(" "))):])
            j += 1
        fences.append(Fence(line=i + 1, language=words[0].lower() if words else "",
                            text="".join(s + "\n" for s in body), closed=j < len(lines)))
        i = j + 1
    return fences


def parse_readme(text: str) -> Readme:
    """The marked blocks, and whatever breaks the marking rules."""
    lines = text.splitlines()
    fences = _fences(lines)
    by_line = {f.line: f for f in fences}
    inside = {n for f in fences for n in range(f.line, f.line + f.text.count("\n") + 2)}
    blocks: list[Block] = []
    problems: list[str] = []
    for number, line in enumerate(lines, start=1):
        if number in inside or not _ANY_MARKER.match(line):
            continue
        fence = by_line.get(number + 1)
        where = f"README.md:{number}"
        if (m := _RUNNABLE.match(line)) is not None:
            if fence is None:
                problems.append(f"{where}: {line.strip()} is not on the line right before a fence")
                continue
            if not fence.closed:
                problems.append(f"{where}: the block after it is never closed")
            blocks.append(Block(line=number, kind=m["kind"], broker=bool(m["broker"]),
                                broker_args=tuple(shlex.split(m["args"] or "")), fence=fence))
            if m["kind"] not in KINDS:
                problems.append(f"{where}: unknown kind {m['kind']!r} (one of {', '.join(KINDS)})")
            elif fence.language and LANGUAGE_OF[m["kind"]] != COUNTED.get(fence.language):
                problems.append(f"{where}: kind {m['kind']!r} on a ```{fence.language} block")
        elif (m := _NOT_RUNNABLE.match(line)) is not None:
            if fence is None:
                problems.append(f"{where}: {line.strip()} is not on the line right before a fence")
            elif not m["reason"]:
                problems.append(f"{where}: `not runnable` needs a reason")
        else:
            problems.append(f"{where}: malformed marker {line.strip()!r}")
    marked = {f.line - 1 for f in fences} & {
        n for n, line in enumerate(lines, start=1)
        if _RUNNABLE.match(line) or _NOT_RUNNABLE.match(line)}
    for fence in fences:
        if fence.language in COUNTED and fence.line - 1 not in marked:
            first = next((s for s in fence.text.splitlines() if s.strip()), "").strip()
            problems.append(f"README.md:{fence.line}: ```{fence.language} block ({first[:60]!r}) "
                            "is neither `<!-- runnable: KIND -->` nor "
                            "`<!-- not runnable: REASON -->` on the line before")
    if sum(b.kind == "pytest.ini" for b in blocks) > 1:
        problems.append("README.md: more than one `runnable: pytest.ini` block")
    def line_of(problem: str) -> int:
        m = re.match(r"README\.md:(\d+)", problem)
        return int(m[1]) if m else 0
    return Readme(blocks, sorted(problems, key=line_of))


def _readme() -> Readme:
    try:
        return parse_readme(README.read_text(encoding="utf-8"))
    except OSError as exc:  # reported by test_every_block_marked, not a collection error
        return Readme([], [f"cannot read {README}: {exc}"])


README_BLOCKS = _readme()


def _ini_block() -> Block | None:
    return next((b for b in README_BLOCKS.blocks if b.kind == "pytest.ini"), None)


def test_every_block_marked(client: str) -> None:
    """Each python/html/toml/ini block is marked runnable or not runnable (with a
    reason), each marker sits right before a fence and names a known kind."""
    problems = README_BLOCKS.problems
    assert not problems, "README.md blocks break the marking rules:\n" + "\n".join(problems)


# -- helpers --------------------------------------------------------------------------------


def _tail(text: str) -> str:
    return text if len(text) <= TAIL else "…" + text[-TAIL:]


def _outputs(proc: subprocess.CompletedProcess[str] | subprocess.TimeoutExpired) -> str:
    def text(value: str | bytes | None) -> str:
        return value.decode(errors="replace") if isinstance(value, bytes) else value or ""
    return (f"--- stdout ---\n{_tail(text(proc.stdout))}\n"
            f"--- stderr ---\n{_tail(text(proc.stderr))}")


def _fail(message: str) -> NoReturn:
    """pytest.fail without the traceback, nor the exception it was raised while
    handling (a timeout, a failed start): the message says all of it."""
    raise pytest.fail.Exception(message, pytrace=False) from None


def _missing(what: str, hint: str) -> NoReturn:
    """A prerequisite is absent: fail in CI, skip (loudly) elsewhere."""
    message = f"readme: {what}; {hint}"
    if IN_CI:
        _fail(message)
    pytest.skip(message)


def _ports_busy(port: int, name: str) -> NoReturn:
    message = (f"readme: the block needs the broker on the default {name} port {port}, "
               f"which is already in use on 127.0.0.1")
    if IN_CI:
        _fail(message + " (in CI nothing else may hold it)")
    pytest.skip(message + " (someone is running `make serve`?)")


def _port_taken(port: int) -> bool:
    """Would the broker's listener fail to bind 127.0.0.1:port?  SO_REUSEADDR as
    trio's listeners set it, so a socket left in TIME_WAIT does not count."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _clean_env() -> dict[str, str]:
    """The user's environment, without what the outer pytest run may have set
    for itself (PYTEST_ADDOPTS, PYTEST_CURRENT_TEST, plugin autoload switches)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}


def _stop(proc: subprocess.Popen[bytes]) -> int | None:
    """SIGTERM and wait; None if it had to be killed."""
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def _start_broker(args: list[str], workdir: Path) -> tuple[subprocess.Popen[bytes], Path, dict[str, Any]]:
    """`python -m broker serve ARGS --ready-file R`; returns once R exists."""
    ready = workdir / "broker-ready.json"
    log_path = workdir / "broker.log"
    cmd = [sys.executable, "-m", "broker", "serve", *args, "--ready-file", str(ready)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
                                env=_clean_env())
    deadline = time.monotonic() + READY_TIMEOUT
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            code = _stop(proc)
            raise _BrokerDidNotStart(shlex.join(cmd), code, log_path.read_text(errors="replace"))
        time.sleep(0.02)
    for _ in range(50):  # written atomically, but be patient with a slow disk
        with contextlib.suppress(ValueError):
            return proc, log_path, json.loads(ready.read_text())
        time.sleep(0.02)
    return proc, log_path, {}


class _BrokerDidNotStart(Exception):
    def __init__(self, cmd: str, code: int | None, log: str) -> None:
        self.cmd, self.code, self.log = cmd, code, log
        state = "still not ready" if code is None else f"exited with {code}"
        super().__init__(f"`{cmd}` did not start ({state} after at most {READY_TIMEOUT:.0f} s)"
                         f"\n--- broker output ---\n{_tail(log)}")


@contextlib.contextmanager
def _default_port_broker(args: tuple[str, ...], workdir: Path, what: str) -> Iterator[Path]:
    """The broker of a `, broker` block, on the default ports the block's text uses."""
    for name, port in DEFAULT_PORTS.items():
        if _port_taken(port):
            _ports_busy(port, name)
    try:
        proc, log_path, _ = _start_broker(list(args), workdir)
    except _BrokerDidNotStart as exc:
        # someone took a port between our check and the broker's bind
        busy = re.search(r"address already in use|errno 98", exc.log, re.IGNORECASE)
        taken = [(n, p) for n, p in DEFAULT_PORTS.items() if _port_taken(p)]
        if busy and taken:
            _ports_busy(taken[0][1], taken[0][0])
        _fail(f"{what}: {exc}")
    failure: str | None = None
    try:
        yield log_path
    except pytest.fail.Exception as exc:
        failure = exc.msg
    except Exception as exc:  # noqa: BLE001 - a harness bug, told with the broker's log
        failure = "".join(traceback.format_exception(exc))
    finally:
        code = _stop(proc)  # also on a skip or ^C
    log = log_path.read_text(errors="replace")
    if failure is not None:
        command = shlex.join(["python", "-m", "broker", "serve", *args])
        _fail(f"{failure}\n--- broker (`{command}`) output ---\n{_tail(log)}")
    if code != 0:
        state = "did not stop on SIGTERM within 15 s" if code is None else f"exited with {code}"
        _fail(f"{what}: the block ran, but its broker {state} (expected exit 0)"
              f"\n--- broker output ---\n{_tail(log)}")


# -- the kinds ------------------------------------------------------------------------------


def _run(cmd: list[str], cwd: Path, timeout: float, what: str) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=_clean_env(), capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        _fail(f"{what}: `{shlex.join(cmd)}` did not finish within {timeout:.0f} s (cwd "
                    f"{cwd})\n{_outputs(exc)}")
    if proc.returncode != 0:
        _fail(f"{what}: `{shlex.join(cmd)}` exited with {proc.returncode} (cwd {cwd})\n"
                    f"{_outputs(proc)}")
    return proc


def run_python(block: Block, workdir: Path, request: pytest.FixtureRequest) -> None:
    script = workdir / f"readme_line_{block.line}.py"
    script.write_text(block.fence.text)
    _run([sys.executable, script.name], workdir, PYTHON_TIMEOUT,
         f"README.md:{block.line} (python)")


def _write_ini(workdir: Path) -> None:
    ini = _ini_block()
    # without an ini of its own the run would pick up any pytest.ini above the temp dir
    workdir.joinpath("pytest.ini").write_text(ini.fence.text if ini else "[pytest]\n")


def _pytest(workdir: Path, what: str) -> subprocess.CompletedProcess[str]:
    proc = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], workdir,
                PYTEST_TIMEOUT, what)
    # a misspelt ini key is only a warning to pytest, and would make the run test nothing
    if "Unknown config option" in proc.stdout + proc.stderr:
        _fail(f"{what}: pytest does not know an option of the pytest.ini block\n"
                    f"{_outputs(proc)}")
    return proc


def run_pytest(block: Block, workdir: Path, request: pytest.FixtureRequest) -> None:
    _write_ini(workdir)
    workdir.joinpath(f"test_readme_{block.line}.py").write_text(block.fence.text)
    ini = _ini_block()
    _pytest(workdir, f"README.md:{block.line} (pytest"
                     + (f", with the pytest.ini of line {ini.line})" if ini else ")"))


def _ini_expectations(text: str) -> dict[str, Any]:
    """What the pytest.ini block asks the plugin for, read as pytest reads it."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    section = parser["pytest"] if parser.has_section("pytest") else {}

    def linelist(key: str) -> list[str]:
        return [s.strip() for s in section.get(key, "").splitlines() if s.strip()]

    queues: dict[str, dict[str, str]] = {}
    for spec in linelist("amqp_broker_queues"):
        name, _, rest = spec.partition(":")
        items = (item.partition("=") for item in rest.split(","))
        queues[name] = {a.strip(): v.strip() for a, _, v in items if a.strip()}
    return {
        "users": [u.partition(":")[::2] for u in linelist("amqp_broker_users")],
        "queues": queues,
        "streams": linelist("amqp_broker_streams"),
        "no_anonymous": section.get("amqp_broker_no_anonymous", "").strip().lower()
        in ("1", "true", "yes", "on"),
    }


_INI_CHECK = '''\
"""Written by conformance/test_readme.py: the README's pytest.ini took effect."""

import json

import pytest
from proton import ConnectionException
from proton.utils import BlockingConnection

EXPECTED = json.loads(%r)


@pytest.fixture(params=["amqp_broker_session", "amqp_broker"])
def b(request):
    return request.getfixturevalue(request.param)


def test_queues_declared_with_their_arguments(b):
    for name, arguments in EXPECTED["queues"].items():
        assert name in b.queues(), f"queue {name!r} not declared: {b.queues()}"
        info = b._call(lambda: b.admin.queue_info(name))
        assert info["type"] != "stream", info
        for arg, value in arguments.items():
            assert str(info["arguments"].get(arg)).lower() == value.lower(), (arg, info)


def test_streams_declared(b):
    for name in EXPECTED["streams"]:
        assert name in b.queues(), f"stream {name!r} not declared: {b.queues()}"
        assert b._call(lambda: b.admin.queue_info(name))["type"] == "stream"


def test_users_log_in_with_plain(b):
    for user, password in EXPECTED["users"]:
        conn = BlockingConnection(b.amqp_url, timeout=10, sasl_enabled=True,
                                  allowed_mechs="PLAIN", user=user, password=password)
        conn.close()
        with pytest.raises(ConnectionException):  # the list is used, not any password
            BlockingConnection(b.amqp_url, timeout=10, sasl_enabled=True,
                               allowed_mechs="PLAIN", user=user, password=password + "-wrong")


def test_anonymous_as_configured(b):
    if EXPECTED["no_anonymous"]:
        with pytest.raises(ConnectionException):
            BlockingConnection(b.amqp_url, timeout=10, allowed_mechs="ANONYMOUS")
    else:
        BlockingConnection(b.amqp_url, timeout=10, allowed_mechs="ANONYMOUS").close()
'''


def run_pytest_ini(block: Block, workdir: Path, request: pytest.FixtureRequest) -> None:
    expected = _ini_expectations(block.fence.text)
    assert expected["users"] or expected["queues"] or expected["streams"] or \
        expected["no_anonymous"], "the pytest.ini block sets no amqp_broker_* option:\n" + \
        block.fence.text
    _write_ini(workdir)
    workdir.joinpath("test_readme_ini_check.py").write_text(_INI_CHECK % json.dumps(expected))
    _pytest(workdir, f"README.md:{block.line} (pytest.ini, with a check of what the "
                     f"fixtures declared: {json.dumps(expected)})")


def run_config(block: Block, workdir: Path, request: pytest.FixtureRequest) -> None:
    config = workdir / "broker.toml"
    config.write_text(block.fence.text)
    try:
        proc, log_path, ready = _start_broker(
            ["--config", str(config), "--port", "0", "--ws-port", "0"], workdir)
    except _BrokerDidNotStart as exc:
        _fail(f"README.md:{block.line} (config): {exc}")
    code = _stop(proc)
    log = log_path.read_text(errors="replace")
    assert code == 0, (f"README.md:{block.line} (config): the broker "
                       f"{'did not stop' if code is None else f'exited with {code}'} on SIGTERM"
                       f"\n--- broker output ---\n{_tail(log)}")
    assert ready.get("amqp_url"), f"ready file without amqp_url: {ready}"


def _browser_conftest(config: pytest.Config) -> Any:
    """conformance/browser/conftest.py (its Driver and Page): the module pytest
    loaded when the run includes browser/, else a private import of it (both
    conftest modules are named `conftest`, so neither can simply be imported)."""
    path = BROWSER / "conftest.py"
    module = config.pluginmanager.get_plugin(str(path))
    if module is not None:
        return module
    spec = importlib.util.spec_from_file_location("readme_browser_conftest", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def readme_chromium(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Headless Chromium through browser/driver.mjs, as the browser cases drive it."""
    hint = "run `bash conformance/browser/setup.sh`"
    browser = _browser_conftest(request.config)
    node = shutil.which("node")
    if node is None:
        _missing("node is not installed", hint)
    if not (BROWSER / "node_modules" / "playwright-core" / "package.json").exists():
        _missing("playwright-core is not installed (conformance/browser/node_modules)", hint)
    if not os.access(browser.CHROMIUM, os.X_OK):
        _missing(f"Chromium not found at {browser.CHROMIUM}", hint)
    log_path = Path(tempfile.mkdtemp(prefix="amqpws-readme-chromium-")) / "driver.log"
    driver = browser.Driver(node, log_path)
    yield driver
    driver.close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _serve_dir(directory: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="readme-page", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run_html(block: Block, workdir: Path, request: pytest.FixtureRequest) -> None:
    driver = request.getfixturevalue("readme_chromium")
    browser = _browser_conftest(request.config)
    site = workdir / "site"
    site.mkdir()
    shutil.copy(RHEA_JS, site / "rhea.js")
    site.joinpath("index.html").write_text(block.fence.text)
    with _serve_dir(site) as url:
        page = browser.Page(driver, f"{url}/index.html")
        try:
            text = page.wait_for(
                "(t => t.startsWith('received:') && t)"
                "((document.getElementById('out') || {}).textContent || '')",
                timeout=HTML_TIMEOUT)
        except AssertionError as exc:
            out = page.eval("(document.getElementById('out') || {}).textContent")
            _fail(f"README.md:{block.line} (html): #out never read 'received: …' "
                        f"within {HTML_TIMEOUT:.0f} s; it reads {out!r}\n{exc}")
        finally:
            with contextlib.suppress(Exception):
                page.close()
    print(f"README.md:{block.line}: #out = {text!r}")


RUNNERS: dict[str, Callable[[Block, Path, pytest.FixtureRequest], None]] = {
    "python": run_python, "pytest": run_pytest, "pytest.ini": run_pytest_ini,
    "config": run_config, "html": run_html,
}


def run_block(block: Block, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    runner = RUNNERS.get(block.kind)
    if runner is None:
        _fail(f"README.md:{block.line}: unknown kind {block.kind!r} "
                    f"(one of {', '.join(KINDS)})")
    if block.kind == "html":
        if not RHEA_JS.exists():
            _missing(f"{RHEA_JS.relative_to(ROOT)} is missing", "run `npm ci` in conformance/")
        request.getfixturevalue("readme_chromium")  # before the broker takes the ports
    workdir = tmp_path / "block"
    workdir.mkdir()
    if not block.broker:
        runner(block, workdir, request)
        return
    with _default_port_broker(block.broker_args, tmp_path, f"README.md:{block.line} ({block.kind})"):
        runner(block, workdir, request)


# -- one test function per marked block ------------------------------------------------------


def _test_for(block: Block) -> Callable[..., None]:
    def test(client: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        run_block(block, request, tmp_path)

    broker = ""
    if block.broker:
        broker = " with `python -m broker serve" + (
            f" {shlex.join(block.broker_args)}`" if block.broker_args else "`")
    test.__name__ = test.__qualname__ = block.test_name
    test.__doc__ = f"README.md line {block.line}: the {block.kind} block{broker}."
    return test


for _block in README_BLOCKS.blocks:
    globals()[_block.test_name] = _test_for(_block)
