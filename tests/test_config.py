"""Config layers: normalization, precedence, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.config import (
    Config,
    ConfigError,
    StreamConfig,
    build_config,
    load_file,
    normalize,
    parse_user,
    validate,
)


def test_defaults_are_valid() -> None:
    assert validate(Config()) == Config()
    assert build_config() == Config()


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [("alice:secret", ("alice", "secret")), ("bob:a:b", ("bob", "a:b")), ("eve:", ("eve", ""))],
)
def test_parse_user(spec: str, parsed: tuple[str, str]) -> None:
    assert parse_user(spec) == parsed


@pytest.mark.parametrize("spec", ["alice", ":pw", ""])
def test_parse_user_rejects(spec: str) -> None:
    with pytest.raises(ConfigError):
        parse_user(spec)


def test_normalize_accepts_kebab_and_snake_case() -> None:
    layer = normalize({"ws-port": 1, "max_frame_size": 4096, "idle-time-out": 5,
                       "reattach-wait": 45})
    assert layer == {"ws_port": 1, "max_frame_size": 4096, "idle_time_out": 5.0,
                     "reattach_wait": 45.0}


@pytest.mark.parametrize(
    "raw",
    [
        {"prot": 1},
        {"port": "5672"},
        {"port": True},
        {"max-frame-size": 1.5},
        {"allow-anonymous": "yes"},
        {"queues": "q1"},
        {"users": {"a": 1}},
        {"streams": {"s": {"max-size": 1}}},
        {"idle-time-out": "10"},
    ],
)
def test_normalize_rejects(raw: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        normalize(raw)


def test_false_port_disables_a_listener() -> None:
    assert build_config(normalize({"ws-port": False})).ws_port is None


def test_load_file_with_streams_table(tmp_path: Path) -> None:
    path = tmp_path / "broker.toml"
    path.write_text(
        """
port = 5673
queues = ["q1", "q2"]
users = { alice = "pw" }
[streams.events]
max-age = "7D"
max-length-bytes = 1000000
[streams.audit]
max_length_messages = 10
"""
    )
    config = build_config(load_file(path))
    assert config.port == 5673
    assert config.queues == ("q1", "q2")
    assert config.users == {"alice": "pw"}
    assert config.streams == (
        StreamConfig("events", max_age="7D", max_length_bytes=1000000),
        StreamConfig("audit", max_length_messages=10),
    )


def test_load_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("port = \n")
    with pytest.raises(ConfigError, match="bad.toml"):
        load_file(path)
    with pytest.raises(ConfigError, match="missing.toml"):
        load_file(tmp_path / "missing.toml")


def test_later_layers_win_and_nodes_accumulate() -> None:
    file = normalize(
        {"port": 1, "host": "0.0.0.0", "queues": ["a"], "streams": {"s": {"max-age": "1h"}}}
    )
    flags = normalize({"port": 2, "queues": ["b", "a"], "streams": ["s", "t"], "users": ["x:y"]})
    config = build_config(file, flags)
    assert config.port == 2 and config.host == "0.0.0.0"
    assert config.queues == ("a", "b")
    assert config.streams == (StreamConfig("s", max_age="1h"), StreamConfig("t"))
    assert config.users == {"x": "y"}  # replaces guest:guest


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"port": 70000}, "port must be 0-65535"),
        ({"port": None, "ws_port": None}, "every AMQP listener is disabled"),
        ({"port": 5000, "http_port": 5000}, "port and http_port are both 5000"),
        ({"port": 5000, "ws_port": 5000}, "both 5000"),
        ({"ws_path": "ws"}, "must start with '/'"),
        ({"max_frame_size": 511}, "max_frame_size must be 512"),
        ({"max_message_size": 0}, "max_message_size"),
        ({"idle_time_out": -1.0}, "idle_time_out"),
        ({"reattach_wait": 0.0}, "reattach_wait must be > 0"),
        ({"default_offset": "middle"}, "default_offset must be one of first, next, last"),
        ({"queue_overflow": "drop-tail"}, "queue_overflow"),
        ({"log_level": "loud"}, "log_level"),
        ({"queues": ("",)}, "must not be empty"),
        ({"queues": ("x",), "streams": (StreamConfig("x"),)}, "both as queue and stream: x"),
        ({"streams": (StreamConfig("s", max_age="7 days"),)}, "max_age"),
        ({"streams": (StreamConfig("s", max_length_bytes=0),)}, "max_length_bytes"),
        ({"users": {"a:b": "c"}}, "bad user name"),
    ],
)
def test_validate_rejects(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config(settings)


def test_port_zero_twice_is_fine() -> None:
    assert build_config({"port": 0, "ws_port": 0}).ws_port == 0


def test_security_settings_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "broker.toml"
    path.write_text(
        'jwt-secret = "s"\njwt-audience = "amqpws"\nallowed-origins = ["https://app.example"]\n'
        'sasl-authzid = "ignore"\n'
        '[users]\nalice = "$scrypt$n=16384,r=8,p=1$c2FsdA==$aGFzaA=="\n'
        '[permissions.alice]\nconfigure = "^alice-"\nwrite = ".*"\nread = ".*"\n'
        '[permissions."*"]\nread = "^public$"\n')
    config = build_config(load_file(path))
    assert config.jwt_secret == "s" and config.jwt_audience == "amqpws"
    assert config.allowed_origins == ("https://app.example",)
    assert config.sasl_authzid == "ignore"
    assert config.permissions == {"alice": ("^alice-", ".*", ".*"), "*": ("", "", "^public$")}


@pytest.mark.parametrize(("settings", "message"), [
    ({"tls_cert": "c.pem"}, "tls_cert and tls_key go together"),
    ({"tls_verify_client": "required", "tls_cert": "c", "tls_key": "k"}, "needs"),
    ({"jwt_secret": "s", "jwks_file": "k.json"}, "one token key source"),
    ({"permissions": {"bob": ("(", "", "")}}, "bad regular expression"),
    ({"sasl_authzid": "maybe"}, "sasl_authzid must be one of"),
])
def test_security_settings_are_validated(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config(settings)


def test_permissions_table_rejects_unknown_keys() -> None:
    with pytest.raises(ConfigError, match="configure"):
        normalize({"permissions": {"bob": {"admin": ".*"}}})
