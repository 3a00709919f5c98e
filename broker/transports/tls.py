"""TLS for the amqps and wss listeners: the server context, the handshake
under a deadline, and the identity of a verified client certificate.

The crypto is the standard `ssl` module's, through trio's `SSLStream`.  The
context is built once; `reload` loads the certificate files again into the
same context (on SIGHUP), so new connections get the new certificate and
open ones are not dropped.

A client's TLS handshake is finished here, before the connection reaches the
container, because SASL EXTERNAL needs the certificate's identity when the
mechanisms are offered; the handshake has the same deadline as the rest of
the AMQP handshake, so a peer that never finishes it is dropped.

The AMQP TLS protocol header (`AMQP 2 1 0 0`, TLS negotiated inside the AMQP
connection, §5.2.1) is not offered: the engine answers it with our SASL
header and closes, as the spec allows a server that does not support it.
TLS is on its own port, as with RabbitMQ, Qpid and Azure.
"""

from __future__ import annotations

import logging
import ssl
import time

import trio

from broker.config import Config
from broker.peerlog import PeerLog

log = logging.getLogger("broker.transports.tls")
# failed handshakes: one line per peer host and kind a minute, with a count
refusals = PeerLog(time.monotonic, log)

VERIFY_MODES = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL,
                "required": ssl.CERT_REQUIRED}


def server_context(config: Config, verify_client: str = "none") -> ssl.SSLContext:
    """TLS 1.2 or later, the standard library's default ciphers, our
    certificate, and client certificates as `verify_client` says (amqps and
    wss each have their own setting: a browser cancels a wss handshake that
    asks for a certificate)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load(context, config)
    context.verify_mode = VERIFY_MODES[verify_client]
    return context


def reload(context: ssl.SSLContext, config: Config) -> None:
    """Load the certificate (and CA) files again; new handshakes use them."""
    _load(context, config)
    log.info("TLS certificate reloaded from %s", config.tls_cert)


def _load(context: ssl.SSLContext, config: Config) -> None:
    assert config.tls_cert is not None and config.tls_key is not None
    context.load_cert_chain(config.tls_cert, config.tls_key)
    if config.tls_ca is not None:
        context.load_verify_locations(config.tls_ca)


async def handshake(stream: trio.abc.Stream, context: ssl.SSLContext, *, peer: str,
                    label: str, timeout: float) -> trio.SSLStream[trio.abc.Stream] | None:
    """The server side of a TLS handshake, or None (logged once) when the
    peer sends no TLS, presents a certificate we do not trust, or is too slow."""
    tls = trio.SSLStream(stream, context, server_side=True)
    with trio.move_on_after(timeout or float("inf")) as scope:
        try:
            await tls.do_handshake()
        except trio.BrokenResourceError as exc:
            cause = exc.__cause__
            reason = getattr(cause, "reason", None) or str(cause or "connection lost")
            refusals.info(peer, label + " TLS handshake failed: %s", reason)
            return None
        return tls
    if scope.cancelled_caught:
        refusals.info(peer, label + " no TLS handshake within %g s", timeout)
    return None


SAN_TYPES = {"dns": "DNS", "email": "email", "uri": "URI"}


def client_subject(stream: trio.SSLStream[trio.abc.Stream], identity: str = "cn") -> str | None:
    """The user a verified client certificate names, for SASL EXTERNAL: its
    subject common name (`identity` "cn"), or its first subject alternative
    name of a type ("dns", "email", "uri").  None without a verified certificate."""
    try:
        cert = stream.getpeercert()
    except (ValueError, ssl.SSLError):
        return None
    if not cert:
        return None  # no certificate, or CERT_NONE (not verified: not an identity)
    if identity != "cn":
        for kind, value in cert.get("subjectAltName", ()):
            if kind == SAN_TYPES[identity] and isinstance(value, str):
                return value
        return None
    for rdn in cert.get("subject", ()):
        for name, value in rdn:
            if name == "commonName" and isinstance(value, str):
                return value
    return None
