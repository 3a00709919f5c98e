"""Broker configuration: one frozen dataclass, merged from defaults, a TOML
file and command-line flags (each flag is the field name in kebab-case).

Layers are plain mappings of field name → value, normalized and type-checked
by `normalize` so that a typo in a file fails loudly instead of being ignored.
`build_config` applies them in order (later wins) and `validate` checks the
result as a whole.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """Retention of one declared stream; None means unlimited."""

    name: str
    max_age: str | None = None  # e.g. "1h", "7D"
    max_length_bytes: int | None = None
    max_length_messages: int | None = None


@dataclass(frozen=True, slots=True)
class BindingConfig:
    """One binding from an exchange to a queue (or to another exchange)."""

    destination: str
    destination_kind: str = "queue"  # or "exchange"
    key: str = ""
    arguments: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ExchangeConfig:
    """An exchange declared at start, with its bindings."""

    name: str
    type: str = "direct"
    durable: bool = True
    auto_delete: bool = False
    internal: bool = False
    bindings: tuple[BindingConfig, ...] = ()


@dataclass(frozen=True, slots=True)
class AzureTopicConfig:
    """An Azure topic declared at start: its subscriptions, and for some of them
    the SQL filter of their `$Default` rule (the others take every message)."""

    name: str
    subscriptions: tuple[str, ...] = ()
    rules: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Config:
    host: str = "127.0.0.1"
    port: int | None = 5672  # 0 picks a free port; None disables the TCP listener
    ws_port: int | None = 15678  # None disables the WebSocket listener
    ws_path: str | None = None  # None accepts any path
    # the console, JSON API and /metrics are on ws_port; also here, on its own, if set
    http_port: int | None = None
    queues: tuple[str, ...] = ()
    # RabbitMQ queue arguments of declared queues, by name ({"x-max-length": 10, …})
    queue_arguments: dict[str, dict[str, object]] = field(default_factory=dict)
    exchanges: tuple[ExchangeConfig, ...] = ()
    streams: tuple[StreamConfig, ...] = ()
    users: dict[str, str] = field(default_factory=lambda: {"guest": "guest"})
    allow_anonymous: bool = True
    auto_create: bool = True
    max_frame_size: int = 1024 * 1024
    max_message_size: int = 16 * 1024 * 1024
    idle_time_out: float = 60.0  # seconds we allow the peer to stay silent; 0 disables
    # Limits against hostile or runaway peers (RabbitMQ 4's defaults where it has one)
    handshake_timeout: float = 10.0  # seconds from the first byte to the peer's open; 0: none
    channel_max: int = 63  # sessions per connection: channels 0..63
    handle_max: int = 255  # links per session: handles 0..255
    max_connections: int | None = None  # open connections in all; None: unlimited
    max_connections_per_user: int | None = None
    # what queued messages may hold before publishers get no more credit: a fraction
    # of physical memory (<= 1) or bytes (> 1); publishers resume below 0.8 of it
    memory_high_watermark: float = 0.4
    # durability: None keeps everything in memory; a directory keeps durable queues,
    # streams, exchanges and bindings across restarts (docs/storage.md)
    data_dir: str | None = None
    fsync: str = "batch"  # always | batch | never
    container_id: str = "amqpws-broker"
    default_offset: str = "next"  # stream consumers that send no offset filter
    queue_max_length: int | None = None
    queue_max_length_bytes: int | None = None
    queue_overflow: str = "reject-publish"  # or "drop-head"
    log_level: str = "info"
    trace_frames: bool = False  # log every frame, decoded (payloads cut to 64 bytes)
    rabbitmq_compat: bool = False  # advertise product "RabbitMQ" for RabbitMQ's own clients
    # -- security (see access.py) --
    # users' permissions: name → (configure, write, read) regexes; "*" for users
    # without an entry (default: everything, as for a development broker)
    permissions: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    sasl_authzid: str = "refuse"  # or "ignore": a PLAIN authorization id is not acted on
    # TLS: with a certificate and key, amqps and wss listen beside the plain ports
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None  # CA bundle for client certificates
    tls_verify_client: str = "none"  # amqps: "optional" or "required"; EXTERNAL needs one
    # wss on its own: browsers cancel a handshake that asks for a client certificate
    wss_verify_client: str = "none"
    tls_identity: str = "cn"  # the user a client certificate names: its subject CN or a SAN
    tls_port: int | None = 5671  # used only with tls_cert; None disables amqps
    wss_port: int | None = 15679  # used only with tls_cert; None disables wss
    # OAuth2 bearer tokens (JWT): one key source, then the checks on the claims
    jwt_secret: str | None = None  # HS256 for development
    jwt_public_key: str | None = None  # a PEM file (RS/PS/ES/EdDSA)
    jwks_file: str | None = None  # a JWKS file, keys chosen by `kid`
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_scope_prefix: str | None = None  # default: the audience, else "rabbitmq"
    jwt_user_claim: str = "sub"
    # WebSocket upgrades from browsers: pages allowed by their Origin header; empty:
    # loopback pages only, and only while the broker listens on loopback
    allowed_origins: tuple[str, ...] = ()
    # Azure's $cbs: SAS key name → key; empty: every token is accepted (development)
    azure_keys: dict[str, str] = field(default_factory=dict)
    azure_lock_duration: float = 60.0  # seconds a peek-locked delivery stays locked
    azure_max_delivery_count: int = 10  # lapsed locks and abandons before dead-lettering
    azure_topics: tuple[AzureTopicConfig, ...] = ()  # [azure.topics.NAME]
    # -- gateway mode (`amqpws-broker gateway`, gateway/) --
    upstreams: tuple[str, ...] = ()  # amqp[s]://user:pass@host:port[/vhost], a cluster's nodes
    upstream_connections: int = 4  # connections kept to the upstream
    upstream_ca: str | None = None  # CA bundle for amqps upstreams (default: the system's)
    upstream_auth: str = "service"  # or "passthrough": each client's credentials upstream
    # seconds a client link that asked to be re-attached (amqpws:reattach) waits for the
    # upstream after a failure (gateway/reattach.py)
    reattach_wait: float = 30.0


class ConfigError(ValueError):
    """A setting that cannot be used; the CLI reports it as a usage error (exit 2)."""


MIN_MAX_FRAME_SIZE = 512  # §2.7.1 open: a peer may not ask for less
DEFAULT_OFFSETS = ("first", "next", "last")
QUEUE_OVERFLOWS = ("reject-publish", "drop-head")
FSYNC_POLICIES = ("always", "batch", "never")  # store/durable.py's
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
SASL_AUTHZID = ("refuse", "ignore")
TLS_VERIFY_CLIENT = ("none", "optional", "required")
TLS_IDENTITIES = ("cn", "dns", "email", "uri")  # subject CN, or the first SAN of that type
_FIELDS = {f.name for f in dataclasses.fields(Config)}
_STR = {"fsync", "host", "ws_path", "container_id", "default_offset", "queue_overflow", "log_level",
        "sasl_authzid", "tls_verify_client", "wss_verify_client", "tls_identity",
        "jwt_user_claim", "upstream_auth"}
_OPTIONAL_STR = {"data_dir", "upstream_ca", "tls_cert", "tls_key", "tls_ca", "jwt_secret", "jwt_public_key", "jwks_file",
                 "jwt_audience", "jwt_issuer", "jwt_scope_prefix"}
_INT = {"max_frame_size", "max_message_size", "channel_max", "handle_max",
        "azure_max_delivery_count", "upstream_connections"}
_OPTIONAL_INT = {"port", "ws_port", "queue_max_length", "queue_max_length_bytes",
                 "max_connections", "max_connections_per_user", "tls_port", "wss_port",
                 "http_port"}
_SECONDS = {"idle_time_out", "handshake_timeout", "memory_high_watermark",
            "azure_lock_duration", "reattach_wait"}
_BOOL = {"allow_anonymous", "auto_create", "rabbitmq_compat", "trace_frames"}
_STREAM_KEYS = {"max_age", "max_length_bytes", "max_length_messages"}
_DURATION = re.compile(r"\d+[YMDhms]")  # NOTES.md: units Y M D h m s


LOOPBACK_BINDS = ("127.0.0.1", "localhost", "::1")


def listens_on_loopback(config: Config) -> bool:
    """Whether only this machine can reach the listeners (the Origin default)."""
    return config.host in LOOPBACK_BINDS or config.host.startswith("127.")


def physical_memory() -> int:
    """Bytes of RAM, for a watermark given as a fraction (0 if unknown)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 0


def memory_limit(config: Config, physical_memory: int) -> int:
    """The high watermark in bytes: a fraction of `physical_memory`, or bytes."""
    w = config.memory_high_watermark
    return int(w * physical_memory) if w <= 1 else int(w)


def parse_user(spec: str) -> tuple[str, str]:
    """`NAME:PASSWORD` → (name, password); the password may contain ':'."""
    name, sep, password = spec.partition(":")
    if not sep or not name:
        raise ConfigError(f"user {spec!r} is not NAME:PASSWORD")
    return name, password


def load_file(path: str | os.PathLike[str]) -> dict[str, object]:
    """Read a TOML file into a normalized layer (keys snake- or kebab-case)."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{os.fspath(path)}: {exc}") from None
    return normalize(raw, source=os.fspath(path))


def normalize(raw: Mapping[str, object], *, source: str = "config") -> dict[str, object]:
    """Check names and types of one layer and convert values to field types."""
    out: dict[str, object] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in _FIELDS and name != "azure":
            raise ConfigError(f"{source}: unknown setting {key!r}")
        if name == "azure" and isinstance(value, Mapping):
            # [azure] keys = { NAME = "KEY" }
            unknown = set(value) - {"keys", "lock_duration", "lock-duration",
                                    "max_delivery_count", "max-delivery-count", "topics"}
            if unknown:
                raise ConfigError(f"{source}: unknown setting(s) azure.{', azure.'.join(unknown)}")
            out["azure_keys"] = _azure_keys(value.get("keys", {}), f"{source}: azure.keys")
            if "topics" in value:
                out["azure_topics"] = _azure_topics(value["topics"], f"{source}: azure.topics")
            for option in ("lock_duration", "max_delivery_count"):
                for spelling in (option, option.replace("_", "-")):
                    if spelling in value:
                        out[f"azure_{option}"] = _convert(f"azure_{option}", value[spelling],
                                                          f"{source}: azure.{spelling}")
            continue
        if name == "queues":
            names, arguments = _queues(value, f"{source}: {key}")
            out["queues"] = names
            if arguments:
                out["queue_arguments"] = arguments
            continue
        out[name] = _convert(name, value, f"{source}: {key}")
    return out


def _convert(name: str, value: object, where: str) -> object:
    if name in _STR or name in _OPTIONAL_STR:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string")
        return value
    if name in _BOOL:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false")
        return value
    if name in _OPTIONAL_INT and (value is None or value is False):
        return None  # TOML has no null: `ws-port = false` disables the listener
    if name in _INT | _OPTIONAL_INT:
        return _int(value, where)
    if name in _SECONDS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number")
        return float(value)
    if name == "queue_arguments":
        return _queues(value, where)[1]
    if name == "exchanges":
        return _exchanges(value, where)
    if name == "streams":
        return _streams(value, where)
    if name == "users":
        return _users(value, where)
    if name == "permissions":
        return _permissions(value, where)
    if name in ("allowed_origins", "upstreams"):
        return tuple(_names(value, where))
    if name == "azure_keys":
        return _azure_keys(value, where)
    raise ConfigError(f"{where} cannot be set")


def _int(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where} must be an integer")
    return value


def _names(value: object, where: str) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of names")
    return list(value)


def parse_queue_spec(spec: str) -> tuple[str, dict[str, object]]:
    """`NAME` or `NAME:ARG=VALUE,...` (the `--queue` flag) → (name, arguments).
    Values that look like integers or true/false become those; others stay strings."""
    name, sep, rest = spec.partition(":")
    arguments: dict[str, object] = {}
    if sep:
        for item in rest.split(","):
            arg, eq, text = item.partition("=")
            if not eq or not arg:
                raise ConfigError(f"queue {spec!r}: {item!r} is not ARG=VALUE")
            arguments[arg.strip()] = parse_scalar(text.strip())
    return name, arguments


def parse_scalar(text: str) -> object:
    """`--queue`/`--arg` values: integers and true/false become those, the rest stay text."""
    if text in ("true", "false"):
        return text == "true"
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return text


def _queues(value: object, where: str) -> tuple[tuple[str, ...], dict[str, dict[str, object]]]:
    """A list of `NAME[:ARG=VALUE,...]`, or a table `[queues.NAME]` of arguments."""
    if isinstance(value, Mapping):
        arguments: dict[str, dict[str, object]] = {}
        for name, table in value.items():
            if not isinstance(table, Mapping):
                raise ConfigError(f"{where}.{name} must be a table of queue arguments")
            arguments[str(name)] = dict(table)
        return tuple(arguments), {n: a for n, a in arguments.items() if a}
    names: list[str] = []
    found: dict[str, dict[str, object]] = {}
    for spec in _names(value, where):
        name, args = parse_queue_spec(spec)
        names.append(name)
        if args:
            found[name] = args
    return tuple(names), found


def _exchanges(value: object, where: str) -> tuple[ExchangeConfig, ...]:
    """A table `[exchanges.NAME]` with `type`, flags and `bindings`, a list of tables
    each naming a `queue` or an `exchange`, with an optional `key` and `arguments`."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a table of exchanges")
    out = []
    for name, table in value.items():
        at = f"{where}.{name}"
        if not isinstance(table, Mapping):
            raise ConfigError(f"{at} must be a table")
        unknown = set(table) - {"type", "durable", "auto-delete", "auto_delete", "internal",
                                "bindings"}
        if unknown:
            raise ConfigError(f"{at}: unknown setting(s) {', '.join(sorted(unknown))}")
        kind = table.get("type", "direct")
        if not isinstance(kind, str):
            raise ConfigError(f"{at}.type must be a string")
        flags = {}
        for flag in ("durable", "auto_delete", "internal"):
            v = table.get(flag, table.get(flag.replace("_", "-")))
            if v is not None:
                if not isinstance(v, bool):
                    raise ConfigError(f"{at}.{flag} must be true or false")
                flags[flag] = v
        bindings = []
        raw = table.get("bindings", [])
        if not isinstance(raw, list):
            raise ConfigError(f"{at}.bindings must be a list of tables")
        for i, b in enumerate(raw):
            bat = f"{at}.bindings[{i}]"
            if not isinstance(b, Mapping) or ("queue" in b) == ("exchange" in b) or \
                    set(b) - {"queue", "exchange", "key", "arguments"}:
                raise ConfigError(f"{bat} must name one `queue` or `exchange`, with optional "
                                  "`key` and `arguments`")
            dest = b.get("queue", b.get("exchange"))
            key = b.get("key", "")
            args = b.get("arguments", {})
            if not isinstance(dest, str) or not isinstance(key, str) or \
                    not isinstance(args, Mapping):
                raise ConfigError(f"{bat}: queue/exchange and key are strings, arguments a table")
            bindings.append(BindingConfig(dest, "queue" if "queue" in b else "exchange", key,
                                          dict(args)))
        out.append(ExchangeConfig(str(name), kind, bindings=tuple(bindings), **flags))
    return tuple(out)


def _streams(value: object, where: str) -> tuple[StreamConfig, ...]:
    """A list of names, or a table `[streams.NAME]` of retention settings."""
    if isinstance(value, list | tuple):
        return tuple(StreamConfig(n) for n in _names(value, where))
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a list of names or a table of streams")
    streams = []
    for name, table in value.items():
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where}.{name} must be a table")
        settings: dict[str, object] = {}
        for key, item in table.items():
            attr = key.replace("-", "_")
            if attr not in _STREAM_KEYS:
                raise ConfigError(f"{where}.{name}: unknown setting {key!r}")
            if attr == "max_age":
                if not isinstance(item, str):
                    raise ConfigError(f"{where}.{name}.{key} must be a string like '7D'")
                settings[attr] = item
            else:
                settings[attr] = _int(item, f"{where}.{name}.{key}")
        streams.append(StreamConfig(str(name), **settings))  # type: ignore[arg-type]
    return tuple(streams)


def _users(value: object, where: str) -> dict[str, str]:
    """A table `name = "password"`, or a list of `NAME:PASSWORD` strings."""
    if isinstance(value, Mapping):
        if not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(f"{where}: passwords must be strings")
        return {str(k): str(v) for k, v in value.items()}
    return dict(parse_user(spec) for spec in _names(value, where))


def _azure_topics(value: object, where: str) -> tuple[AzureTopicConfig, ...]:
    """`[azure.topics.NAME]` tables: `subscriptions = [...]`, `rules = { SUB = "SQL" }`."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a table of topics")
    topics = []
    for name, table in value.items():
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where}.{name} must be a table")
        if unknown := set(table) - {"subscriptions", "rules"}:
            raise ConfigError(f"{where}.{name}: unknown setting(s) {', '.join(sorted(unknown))}")
        subscriptions = _names(table.get("subscriptions", []), f"{where}.{name}.subscriptions")
        rules = table.get("rules", {})
        if not isinstance(rules, Mapping) or not all(isinstance(v, str) for v in rules.values()):
            raise ConfigError(f"{where}.{name}.rules must be a table SUBSCRIPTION = \"SQL\"")
        if stray := set(rules) - set(subscriptions):
            raise ConfigError(f"{where}.{name}.rules: no subscription named "
                              f"{', '.join(sorted(map(str, stray)))}")
        topics.append(AzureTopicConfig(str(name), tuple(subscriptions),
                                       {str(k): str(v) for k, v in rules.items()}))
    return tuple(topics)


def _azure_keys(value: object, where: str) -> dict[str, str]:
    """A table `NAME = "KEY"`, or a list of `NAME=KEY` (the --azure-key flag)."""
    if isinstance(value, Mapping):
        if not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(f"{where}: keys must be strings")
        return {str(k): str(v) for k, v in value.items()}
    out = {}
    for spec in _names(value, where):
        name, sep, key = spec.partition("=")
        if not sep or not name or not key:
            raise ConfigError(f"{where}: {spec!r} is not NAME=KEY")
        out[name] = key
    return out


def _permissions(value: object, where: str) -> dict[str, tuple[str, str, str]]:
    """A table `[permissions.NAME]` of `configure`, `write` and `read` regexes
    (missing ones grant nothing, as `^$` does)."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a table of users")
    out = {}
    for user, table in value.items():
        at = f"{where}.{user}"
        if not isinstance(table, Mapping) or set(table) - {"configure", "write", "read"} or \
                not all(isinstance(v, str) for v in table.values()):
            raise ConfigError(f"{at} must be a table of `configure`, `write` and `read` "
                              "regular expressions")
        out[str(user)] = (table.get("configure", ""), table.get("write", ""),
                          table.get("read", ""))
    return out


def build_config(*layers: Mapping[str, object], base: Config | None = None) -> Config:
    """Apply normalized layers over `base` (defaults), later layers winning.

    Queues, their arguments, exchanges and streams accumulate across layers (declaring a node twice is
    harmless; a stream's retention merges setting by setting); every other
    setting, users included, is replaced.
    """
    values: dict[str, Any] = {f: getattr(base or Config(), f) for f in _FIELDS}
    for layer in layers:
        for name, value in layer.items():
            if name == "queues":
                values[name] = tuple(dict.fromkeys((*values[name], *cast(Iterable[str], value))))
            elif name == "queue_arguments":
                values[name] = {**values[name], **cast(dict[str, dict[str, object]], value)}
            elif name == "exchanges":
                merged = {x.name: x for x in values[name]}
                merged.update((x.name, x) for x in cast(Iterable[ExchangeConfig], value))
                values[name] = tuple(merged.values())
            elif name == "streams":
                values[name] = _merge_streams(values[name], cast(Iterable[StreamConfig], value))
            else:
                values[name] = value
    return validate(Config(**values))


def _merge_streams(
    old: Iterable[StreamConfig], new: Iterable[StreamConfig]
) -> tuple[StreamConfig, ...]:
    merged = {s.name: s for s in old}
    for s in new:
        prev = merged.get(s.name)
        if prev is not None:
            s = StreamConfig(
                s.name,
                *(
                    getattr(s, k) if getattr(s, k) is not None else getattr(prev, k)
                    for k in ("max_age", "max_length_bytes", "max_length_messages")
                ),
            )
        merged[s.name] = s
    return tuple(merged.values())


def validate(config: Config) -> Config:
    """Reject combinations the broker cannot run with; returns `config`."""
    c = config
    listeners = {"port": c.port, "ws_port": c.ws_port, "http_port": c.http_port}
    if c.tls_cert is not None:
        listeners.update(tls_port=c.tls_port, wss_port=c.wss_port)
    used: dict[int, str] = {}
    for name, port in listeners.items():
        if port is not None and not 0 <= port <= 65535:
            raise ConfigError(f"{name} must be 0-65535, got {port}")
        if port:
            if port in used:
                raise ConfigError(f"{used[port]} and {name} are both {port}")
            used[port] = name
    if all(listeners[name] is None for name in listeners if name != "http_port"):
        raise ConfigError("every AMQP listener is disabled")
    if c.ws_path is not None and not c.ws_path.startswith("/"):
        raise ConfigError(f"ws_path must start with '/', got {c.ws_path!r}")
    if not MIN_MAX_FRAME_SIZE <= c.max_frame_size <= 0xFFFFFFFF:
        raise ConfigError(
            f"max_frame_size must be {MIN_MAX_FRAME_SIZE}..4294967295, got {c.max_frame_size}"
        )
    if c.max_message_size < 1:
        raise ConfigError(f"max_message_size must be positive, got {c.max_message_size}")
    if c.idle_time_out < 0:
        raise ConfigError(f"idle_time_out must be >= 0, got {c.idle_time_out}")
    if c.handshake_timeout < 0:
        raise ConfigError(f"handshake_timeout must be >= 0, got {c.handshake_timeout}")
    if not 0 <= c.channel_max <= 0xFFFF:
        raise ConfigError(f"channel_max must be 0..65535, got {c.channel_max}")
    if not 0 <= c.handle_max <= 0xFFFFFFFF:
        raise ConfigError(f"handle_max must be 0..4294967295, got {c.handle_max}")
    for name in ("max_connections", "max_connections_per_user"):
        if (value := getattr(c, name)) is not None and value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}")
    if c.memory_high_watermark <= 0:
        raise ConfigError(f"memory_high_watermark must be positive (a fraction of memory "
                          f"or bytes), got {c.memory_high_watermark:g}")
    _choice("default_offset", c.default_offset, DEFAULT_OFFSETS)
    _choice("fsync", c.fsync, FSYNC_POLICIES)
    _choice("queue_overflow", c.queue_overflow, QUEUE_OVERFLOWS)
    _choice("log_level", c.log_level, LOG_LEVELS)
    _choice("sasl_authzid", c.sasl_authzid, SASL_AUTHZID)
    _choice("tls_verify_client", c.tls_verify_client, TLS_VERIFY_CLIENT)
    _choice("wss_verify_client", c.wss_verify_client, TLS_VERIFY_CLIENT)
    _choice("tls_identity", c.tls_identity, TLS_IDENTITIES)
    _choice("upstream_auth", c.upstream_auth, ("service", "passthrough"))
    _validate_security(c)
    for name in ("queue_max_length", "queue_max_length_bytes"):
        if (value := getattr(c, name)) is not None and value < 0:
            raise ConfigError(f"{name} must be >= 0, got {value}")
    if not c.container_id:
        raise ConfigError("container_id must not be empty")
    for user in c.users:
        if not user or ":" in user:
            raise ConfigError(f"bad user name {user!r}")
    _validate_nodes(c)
    if c.reattach_wait <= 0:
        raise ConfigError(f"reattach_wait must be > 0, got {c.reattach_wait}")
    if c.upstream_connections < 1:
        raise ConfigError(f"upstream_connections must be >= 1, got {c.upstream_connections}")
    return config


def _validate_security(c: Config) -> None:
    if (c.tls_cert is None) != (c.tls_key is None):
        raise ConfigError("tls_cert and tls_key go together")
    for name in ("tls_verify_client", "wss_verify_client"):
        if getattr(c, name) != "none" and (c.tls_cert is None or c.tls_ca is None):
            raise ConfigError(f"{name} needs tls_cert, tls_key and tls_ca")
    keys = [k for k in ("jwt_secret", "jwt_public_key", "jwks_file") if getattr(c, k)]
    if len(keys) > 1:
        raise ConfigError(f"give one token key source, not {' and '.join(keys)}")
    for user, regexes in c.permissions.items():
        for regex in regexes:
            try:
                re.compile(regex)
            except re.error as exc:
                raise ConfigError(f"permissions.{user}: bad regular expression {regex!r}: "
                                  f"{exc}") from None


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _validate_nodes(c: Config) -> None:
    names = [*c.queues, *(s.name for s in c.streams)]
    if not all(names):
        raise ConfigError("queue and stream names must not be empty")
    if both := set(c.queues) & {s.name for s in c.streams}:
        raise ConfigError(f"declared both as queue and stream: {', '.join(sorted(both))}")
    for s in c.streams:
        if s.max_age is not None and not _DURATION.fullmatch(s.max_age):
            raise ConfigError(f"stream {s.name}: max_age {s.max_age!r} is not like '7D' or '1h'")
        for name in ("max_length_bytes", "max_length_messages"):
            if (value := getattr(s, name)) is not None and value < 1:
                raise ConfigError(f"stream {s.name}: {name} must be positive, got {value}")
