"""`amqpws-broker serve`: option parsing, file merge, errors, and a real process."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import broker.cli
from broker.config import Config, StreamConfig
from broker.server import ServerInfo

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Replace server.run: keep the Config and the on_ready callback."""
    seen: dict[str, Any] = {}

    def fake_run(config: Config, **kw: Any) -> None:
        seen["config"] = config
        seen.update(kw)

    monkeypatch.setattr(broker.cli, "run", fake_run)
    return seen


def invoke(*args: str) -> Result:
    return CliRunner().invoke(broker.cli.main, ["serve", *args])


def test_defaults(captured: dict[str, Any]) -> None:
    result = invoke()
    assert result.exit_code == 0, result.output
    assert captured["config"] == Config()


def test_flags(captured: dict[str, Any]) -> None:
    result = invoke(
        "--host", "0.0.0.0", "--port", "0", "--ws-port", "off", "--ws-path", "/amqp",
        "--queue", "q1", "--queue", "q2", "--stream", "s1",
        "--user", "alice:pw:with:colons", "--user", "bob:x",
        "--no-anonymous", "--no-auto-create",
        "--max-frame-size", "65536", "--max-message-size", "1000",
        "--idle-time-out", "2.5", "--default-offset", "first", "--log-level", "DEBUG",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    config: Config = captured["config"]
    assert (config.host, config.port, config.ws_port, config.ws_path) == (
        "0.0.0.0",
        0,
        None,
        "/amqp",
    )
    assert config.queues == ("q1", "q2")
    assert config.streams == (StreamConfig("s1"),)
    assert config.users == {"alice": "pw:with:colons", "bob": "x"}
    assert not config.allow_anonymous and not config.auto_create
    assert (config.max_frame_size, config.max_message_size) == (65536, 1000)
    assert config.idle_time_out == 2.5
    assert (config.default_offset, config.log_level) == ("first", "debug")


def test_config_file_under_flags(captured: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "broker.toml"
    path.write_text(
        'port = 1111\nws_port = 2222\nws-path = "/ws"\nqueues = ["fromfile"]\n'
        'allow-anonymous = false\n[streams.events]\nmax-age = "1h"\n'
    )
    result = invoke("--config", str(path), "--port", "3333", "--queue", "fromflag")
    assert result.exit_code == 0, result.output
    config: Config = captured["config"]
    assert (config.port, config.ws_port, config.ws_path) == (3333, 2222, "/ws")
    assert config.queues == ("fromfile", "fromflag")
    assert config.streams == (StreamConfig("events", max_age="1h"),)
    assert not config.allow_anonymous


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--user", "nopassword"], "NAME:PASSWORD"),
        (["--max-frame-size", "100"], "max_frame_size must be 512"),
        (["--port", "70000"], "not in 0-65535"),
        (["--port", "http"], "not a port number"),
        (["--default-offset", "middle"], "middle"),
        (["--ws-path", "ws"], "must start with '/'"),
        (["--port", "5000", "--ws-port", "5000"], "both 5000"),
        (["--config", "/nonexistent.toml"], "does not exist"),
    ],
)
def test_bad_options_exit_2(captured: dict[str, Any], args: list[str], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2
    assert message in result.output
    assert "config" not in captured


@pytest.mark.parametrize(
    "text", ["prot = 1\n", "port = 'x'\n", "port = \n", "[streams.s]\nmax-size = 1\n"]
)
def test_bad_config_file_exits_2(captured: dict[str, Any], tmp_path: Path, text: str) -> None:
    path = tmp_path / "broker.toml"
    path.write_text(text)
    result = invoke("--config", str(path))
    assert result.exit_code == 2, result.output
    assert "broker.toml" in result.output


def test_announce_prints_urls_and_writes_ready_file(
    captured: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ready = tmp_path / "ready.json"
    ready.write_text("stale")
    result = invoke("--port", "0", "--ready-file", str(ready))
    assert result.exit_code == 0, result.output
    assert not ready.exists()  # a stale file is removed before binding
    info = ServerInfo("127.0.0.1", 5, 6, "amqp://127.0.0.1:5", "ws://127.0.0.1:6/ws", object())  # type: ignore[arg-type]
    captured["on_ready"](info)
    assert capsys.readouterr().out == "amqp://127.0.0.1:5\nws://127.0.0.1:6/ws\n"
    assert json.loads(ready.read_text()) == {
        "amqp_url": "amqp://127.0.0.1:5",
        "ws_url": "ws://127.0.0.1:6/ws",
        "port": 5,
        "ws_port": 6,
        "amqps_url": None,
        "wss_url": None,
        "tls_port": None,
        "wss_port": None,
        "http_url": None,
        "pid": os.getpid(),
    }
    tls = ServerInfo("127.0.0.1", 5, 6, "amqp://127.0.0.1:5", "ws://127.0.0.1:6/ws", object(),  # type: ignore[arg-type]
                     tls_port=7, wss_port=8, amqps_url="amqps://127.0.0.1:7",
                     wss_url="wss://127.0.0.1:8/ws")
    captured["on_ready"](tls)
    assert capsys.readouterr().out.splitlines()[2:] == ["amqps://127.0.0.1:7",
                                                        "wss://127.0.0.1:8/ws"]
    written = json.loads(ready.read_text())
    assert (written["tls_port"], written["wss_url"]) == (7, "wss://127.0.0.1:8/ws")


def _readline(stream: Any, deadline: float) -> str:
    """One line from a pipe, failing the test at `deadline` instead of hanging."""
    line = b""
    while not line.endswith(b"\n"):
        ready, _, _ = select.select([stream], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"no output before the deadline; got {line!r}"
        chunk = os.read(stream.fileno(), 1)
        assert chunk, f"EOF after {line!r}"
        line += chunk
    return line.decode().rstrip("\n")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_real_process(tmp_path: Path, signum: int) -> None:
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "broker", "serve", "--port", "0", "--ws-port", "0",
         "--ready-file", str(ready), "--log-level", "warning"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        amqp_url, ws_url = _readline(proc.stdout, deadline), _readline(proc.stdout, deadline)
        info = json.loads(ready.read_text())
        assert info["amqp_url"] == amqp_url == f"amqp://127.0.0.1:{info['port']}"
        assert info["ws_url"] == ws_url == f"ws://127.0.0.1:{info['ws_port']}/ws"
        assert info["pid"] == proc.pid
        with socket.create_connection(("127.0.0.1", info["port"]), timeout=5) as sock:
            sock.sendall(b"AMQP\x03\x01\x00\x00")
            assert sock.recv(8) == b"AMQP\x03\x01\x00\x00"  # SASL negotiation starts
        proc.send_signal(signum)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_hash_password_prints_a_hash_that_verifies() -> None:
    from broker.access import verify_password

    result = CliRunner().invoke(broker.cli.main, ["hash-password", "--password", "hunter2"])
    assert result.exit_code == 0, result.output
    stored = result.output.strip()
    assert stored.startswith("$scrypt$") and verify_password(stored, "hunter2")


def test_a_bad_password_hash_is_a_usage_error(captured: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "b.toml"
    path.write_text('[users]\nalice = "$scrypt$broken"\n')
    result = invoke("--config", str(path))
    assert result.exit_code == 2 and "hash-password" in result.output


def test_a_port_in_use_is_one_line_naming_the_listener(tmp_path: Path) -> None:
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    ready = tmp_path / "ready.json"
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "broker", "serve", "--port", "0", "--ws-port", str(port),
             "--ready-file", str(ready)],
            capture_output=True, text=True, timeout=30, check=False)
    finally:
        taken.close()
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if "INFO" not in line]
    assert lines == [(f"amqpws-broker: cannot listen for ws on 127.0.0.1:{port}: "
                     "Address already in use")], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not ready.exists()


def test_the_ready_file_goes_with_the_broker(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen([sys.executable, "-m", "broker", "serve", "--port", "0",
                             "--ws-port", "0", "--ready-file", str(ready)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    assert not ready.exists(), "a rerun must not read the old port"
