"""Command-line interface: `amqpws-broker serve`.

Settings come from defaults, then `--config FILE` (TOML), then flags; the
merge and the checks live in `broker.config`, so the file and the flags are
validated by the same code. Any bad setting is a usage error (exit code 2).
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import sys
from pathlib import Path

import click

from broker import __version__
from broker.access import hash_password, load_access
from broker.admin import AdminError, check_config
from broker.cli_admin import register
from broker.config import (
    DEFAULT_OFFSETS,
    LOG_LEVELS,
    SASL_AUTHZID,
    TLS_IDENTITIES,
    TLS_VERIFY_CLIENT,
    Config,
    ConfigError,
    build_config,
    load_file,
    normalize,
    parse_user,
)
from broker.server import ContainerFactory, ServerInfo, run


def _port(ctx: click.Context, param: click.Parameter, value: str | None) -> int | bool | None:
    """0-65535, or `off` (False, as `false` in the TOML file) to disable that listener."""
    if value is None:
        return None
    if value.lower() in ("off", "none"):
        return False
    try:
        port = int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a port number or 'off'", ctx, param) from None
    if not 0 <= port <= 65535:
        raise click.BadParameter(f"{port} is not in 0-65535", ctx, param)
    return port


def _user(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    for spec in values:
        try:
            parse_user(spec)
        except ConfigError as exc:
            raise click.BadParameter(str(exc), ctx, param) from None
    return values


@click.group()
@click.version_option(__version__, prog_name="amqpws-broker")
def main() -> None:
    """A small AMQP 1.0 broker over TCP and WebSocket."""


_D = Config()


@main.command()
@click.option("--host", help=f"Address to bind.  [default: {_D.host}]")
@click.option(
    "--port",
    metavar="PORT",
    callback=_port,
    help=f"AMQP/TCP port; 0 = free port, 'off'.  [default: {_D.port}]",
)
@click.option(
    "--ws-port",
    metavar="PORT",
    callback=_port,
    help=f"WebSocket port; 0 = free port, 'off'.  [default: {_D.ws_port}]",
)
@click.option("--ws-path", help="Only accept WebSocket upgrades on this path.  [default: any]")
@click.option(
    "--http-port",
    metavar="PORT",
    callback=_port,
    help="The console, JSON API and /metrics on a port of their own too (they are always on "
    "the WebSocket port).  [default: none]",
)
@click.option(
    "--queue",
    "queues",
    multiple=True,
    metavar="NAME[:ARG=VALUE,...]",
    help="Declare a queue, with RabbitMQ arguments (x-max-length=10,x-queue-type=quorum).",
)
@click.option("--stream", "streams", multiple=True, metavar="NAME", help="Declare a stream.")
@click.option(
    "--user",
    "users",
    multiple=True,
    metavar="NAME:PASSWORD",
    callback=_user,
    help="SASL PLAIN user (repeatable); replaces the default guest:guest.",
)
@click.option("--no-anonymous", is_flag=True, default=None, help="Refuse SASL ANONYMOUS.")
@click.option("--no-auto-create", is_flag=True, default=None, help="Do not create unknown queues.")
@click.option("--max-frame-size", type=int, help=f"Bytes, >= 512.  [default: {_D.max_frame_size}]")
@click.option("--max-message-size", type=int, help=f"Bytes.  [default: {_D.max_message_size}]")
@click.option(
    "--idle-time-out", type=float, help=f"Seconds; 0 disables.  [default: {_D.idle_time_out:g}]"
)
@click.option(
    "--handshake-timeout",
    type=float,
    help=f"Seconds from connect to the peer's open; 0: none.  [default: {_D.handshake_timeout:g}]",
)
@click.option("--channel-max", type=int, help=f"Highest channel (sessions - 1).  [default: "
                                                f"{_D.channel_max}]")
@click.option("--handle-max", type=int, help=f"Highest link handle per session.  [default: "
                                               f"{_D.handle_max}]")
@click.option("--max-connections", type=int, help="Open connections in all.  [default: no limit]")
@click.option("--max-connections-per-user", type=int, help="Per user.  [default: no limit]")
@click.option(
    "--memory-high-watermark",
    type=float,
    help="Queued messages may hold this much before publishers stall: a fraction of RAM "
    f"(<= 1) or bytes.  [default: {_D.memory_high_watermark:g}]",
)
@click.option(
    "--default-offset",
    type=click.Choice(DEFAULT_OFFSETS),
    help=f"Stream start without an offset filter.  [default: {_D.default_offset}]",
)
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False),
              help="PEM certificate (chain): turns on amqps and wss.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False),
              help="PEM private key of --tls-cert.")
@click.option("--tls-ca", type=click.Path(exists=True, dir_okay=False),
              help="PEM CA bundle that client certificates must chain to.")
@click.option("--tls-verify-client", type=click.Choice(TLS_VERIFY_CLIENT),
              help="Ask amqps clients for certificates (SASL EXTERNAL).  [default: none]")
@click.option("--wss-verify-client", type=click.Choice(TLS_VERIFY_CLIENT),
              help="The same for wss (browsers cancel a handshake that asks for a "
                   "certificate).  [default: none]")
@click.option("--tls-identity", type=click.Choice(TLS_IDENTITIES),
              help="The user a client certificate names: subject CN, or its first SAN of "
                   "that type.  [default: cn]")
@click.option("--tls-port", metavar="PORT", callback=_port,
              help=f"amqps port (with --tls-cert); 0 = free port, 'off'.  [default: "
                   f"{_D.tls_port}]")
@click.option("--wss-port", metavar="PORT", callback=_port,
              help=f"wss port (with --tls-cert); 0 = free port, 'off'.  [default: "
                   f"{_D.wss_port}]")
@click.option("--sasl-authzid", type=click.Choice(SASL_AUTHZID),
              help="A SASL PLAIN authorization id other than the user: refuse the login, or "
                   f"ignore the id.  [default: {_D.sasl_authzid}]")
@click.option("--jwt-secret", help="Verify OAuth2 bearer tokens (JWT) with this HS256 secret "
                                   "(development).")
@click.option("--jwt-public-key", type=click.Path(exists=True, dir_okay=False),
              help="Verify tokens with this PEM public key (RS/PS/ES/EdDSA).")
@click.option("--jwks-file", type=click.Path(exists=True, dir_okay=False),
              help="Verify tokens with the keys of this JWKS file, chosen by `kid`.")
@click.option("--jwt-audience", help="Tokens must name this audience (`aud`).")
@click.option("--jwt-issuer", help="Tokens must come from this issuer (`iss`).")
@click.option("--jwt-scope-prefix", help="Scopes PREFIX.read:VHOST/NAME and so on grant "
                                         "permissions.  [default: the audience]")
@click.option("--jwt-user-claim", help=f"The claim naming the user.  [default: "
                                       f"{_D.jwt_user_claim}]")
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="Keep durable queues, streams, exchanges and bindings here, across "
                   "restarts.  [default: everything in memory]")
@click.option("--fsync", type=click.Choice(["always", "batch", "never"]),
              help="When a message is synced to disk before 'accepted': every batch at "
                   "once, batches gathered for 2 ms, or never (written, not synced).  "
                   f"[default: {_D.fsync}]")
@click.option("--azure-key", "azure_keys", multiple=True, metavar="NAME=KEY",
              help="A SAS key Azure clients' $cbs tokens must be signed with (repeatable).  "
                   "[default: any token is accepted]")
@click.option("--allowed-origin", "allowed_origins", multiple=True, metavar="ORIGIN",
              help="A web page origin that may open WebSockets (repeatable; '*': any).  "
                   "[default: pages from localhost, while listening on loopback only]")
@click.option(
    "--rabbitmq-compat",
    is_flag=True,
    default=None,
    help="Advertise product 'RabbitMQ' so RabbitMQ's own clients connect.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False),
    help="TOML file with the same settings (snake_case or kebab-case keys).",
)
@click.option(
    "--ready-file", type=click.Path(dir_okay=False), help="Write URLs as JSON here once listening."
)
@click.option("--trace-frames", is_flag=True, default=None,
              help="Log every frame each connection sends and receives, decoded.")
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    help=f"[default: {_D.log_level}]",
)
def serve(
    config_file: str | None,
    ready_file: str | None,
    users: tuple[str, ...],
    no_anonymous: bool | None,
    no_auto_create: bool | None,
    **flags: object,
) -> None:
    """Run the broker until SIGINT or SIGTERM."""
    config = _build(config_file, users, no_anonymous, no_auto_create, flags)
    _run(config, ready_file)


def _run(config: Config, ready_file: str | None,
         factory: ContainerFactory | None = None) -> None:
    """Log to stderr, run until a signal, and turn a failure to start into one line."""
    logging.basicConfig(
        level=config.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if ready_file:
        Path(ready_file).unlink(missing_ok=True)  # a stale file must not look ready
    try:
        run(config, container_factory=factory,
            on_ready=lambda info: _announce(info, ready_file))
    except (OSError, ValueError, BaseExceptionGroup) as exc:
        cause = _start_failure(exc)
        if cause is None or config.log_level == "debug":
            raise
        # one line a user can act on (a port in use names its listener), not a traceback
        click.echo(f"amqpws-broker: {cause}", err=True)
        sys.exit(2)
    finally:
        if ready_file:
            Path(ready_file).unlink(missing_ok=True)  # gone with the broker: reruns wait


# `serve`'s options that name local nodes or their storage: a gateway has none
_NOT_FOR_GATEWAY = {"queues", "streams", "no_auto_create", "data_dir", "fsync",
                    "memory_high_watermark", "default_offset", "azure_keys", "rabbitmq_compat"}


def gateway(config_file: str | None, ready_file: str | None, users: tuple[str, ...],
            no_anonymous: bool | None, **flags: object) -> None:
    """Serve WebSocket (and TCP) clients in front of an upstream AMQP 1.0 broker
    (a RabbitMQ cluster: one --upstream per node); every link is routed there,
    nothing is stored here."""
    from broker.gateway.upstream import parse_upstream
    from broker.gateway_server import gateway_factory

    config = _build(config_file, users, no_anonymous, None, flags)
    try:
        nodes = [parse_upstream(url) for url in config.upstreams]
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if not nodes:
        raise click.UsageError("give the upstream broker: --upstream amqp://user:pass@host:5672")
    _run(config, ready_file, gateway_factory(nodes, connections=config.upstream_connections,
                                             upstream_ca=config.upstream_ca))


main.add_command(click.Command(
    "gateway",
    callback=gateway,
    help=gateway.__doc__,
    params=[
        click.Option(["--upstream", "upstreams"], multiple=True,
                     metavar="amqp[s]://USER:PASS@HOST[:PORT][/VHOST]",
                     help="An upstream node (repeatable: the nodes of one cluster, tried in "
                          "turn)."),
        click.Option(["--upstream-connections"], type=int,
                     help=f"Connections kept to the upstream; client sessions are spread over "
                          f"them.  [default: {_D.upstream_connections}]"),
        click.Option(["--upstream-ca"], type=click.Path(exists=True, dir_okay=False),
                     help="CA bundle for amqps:// upstreams.  [default: the system's]"),
        click.Option(["--upstream-auth"], type=click.Choice(["service", "passthrough"]),
                     help="Who the gateway is upstream: the --upstream URL's service account "
                          "(the edge's permissions decide), or each client's own PLAIN "
                          "credentials or bearer token on a connection of its own (the "
                          "upstream decides).  [default: service]"),
        click.Option(["--reattach-wait"], type=float, metavar="SECONDS",
                     help=f"How long a client link that asked to be re-attached "
                          f"(amqpws:reattach) waits for the upstream after a failure.  "
                          f"[default: {_D.reattach_wait:g}]"),
        *[p for p in serve.params if p.name not in _NOT_FOR_GATEWAY],
    ],
))


def _start_failure(exc: BaseException) -> BaseException | None:
    """The one error that stopped the broker from starting (a port in use, an
    unreadable certificate), out of trio's exception groups; None for anything
    else, which keeps its traceback."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc if isinstance(exc, (OSError, ssl.SSLError, ValueError)) else None


def _build(
    config_file: str | None,
    users: tuple[str, ...],
    no_anonymous: bool | None,
    no_auto_create: bool | None,
    flags: dict[str, object],
) -> Config:
    """Defaults < file < flags; every error becomes a usage error."""
    layer = {k: v for k, v in flags.items() if v not in (None, ())}
    if users:
        layer["users"] = list(users)
    if no_anonymous:
        layer["allow_anonymous"] = False
    if no_auto_create:
        layer["auto_create"] = False
    if isinstance(layer.get("log_level"), str):
        layer["log_level"] = str(layer["log_level"]).lower()
    for key in ("queues", "streams", "allowed_origins", "azure_keys", "upstreams"):
        if key in layer:
            layer[key] = list(layer[key])  # type: ignore[call-overload]
    try:
        from_file = load_file(config_file) if config_file else {}
        config = build_config(from_file, normalize(layer, source="options"))
        check_config(config)
        load_access(config)  # reads the token key files: a bad one is a usage error too
        return config
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    except AdminError as exc:
        raise click.UsageError(exc.message) from None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


@main.command("hash-password")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="The password (prompted for when not given).")
def hash_password_command(password: str) -> None:
    """Print a password hash for a user in the config file:

    \b
    [users]
    alice = "$scrypt$..."
    """
    click.echo(hash_password(password))


def _announce(info: ServerInfo, ready_file: str | None) -> None:
    """Ready file first, then one line per listener on stdout, flushed: a
    script that saw the URLs can rely on the file being there."""
    if ready_file:
        ready = {
            "http_url": info.http_url,
            "amqp_url": info.amqp_url,
            "ws_url": info.ws_url,
            "port": info.port,
            "ws_port": info.ws_port,
            "amqps_url": info.amqps_url,
            "wss_url": info.wss_url,
            "tls_port": info.tls_port,
            "wss_port": info.wss_port,
            "pid": os.getpid(),
        }
        tmp = Path(f"{ready_file}.tmp")
        tmp.write_text(json.dumps(ready) + "\n")
        tmp.replace(ready_file)  # atomic: readers never see half a file
    for url in info.urls:
        click.echo(url)
    sys.stdout.flush()


register(main)  # the client-side commands: list, purge, delete, declare, peek, publish, consume
