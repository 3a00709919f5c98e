"""TLS (amqps, wss, client certificates, reload) and the WebSocket upgrade's
checks (Origin, Authorization: Bearer) on loopback sockets."""

from __future__ import annotations

import logging
import ssl
import time
from pathlib import Path

import jwt
import pytest
import trio
import trustme
from trio_websocket import open_websocket

from broker.codec.performatives import Open, SaslMechanisms, SaslOutcome
from broker.config import Config
from broker.framing import NEED_DATA, SASL_HEADER, Frame, FrameReader, decode_frame_body
from broker.peerlog import PeerLog
from broker.server import ServerInfo, serve
from broker.transports import tls as tls_module
from broker.transports import websocket as websocket_module

SECRET = "a-development-secret-of-32-bytes!"
AMQP_HEADER = b"AMQP\x00\x01\x00\x00"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def pki(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.private_key_pem.write_to_path(str(d / "key.pem"))
    server.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    return {"cert": d / "cert.pem", "key": d / "key.pem", "ca": d / "ca.pem"}


def tls_config(pki: dict[str, Path], **kw: object) -> Config:
    options: dict[str, object] = {"port": 0, "ws_port": 0, "tls_port": 0, "wss_port": 0,
                                  "tls_cert": str(pki["cert"]), "tls_key": str(pki["key"])}
    options.update(kw)
    return Config(**options)  # type: ignore[arg-type]


def client_context(ca: trustme.CA, cert: trustme.LeafCert | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    if cert is not None:
        cert.configure_cert(ctx)
    return ctx


async def start(nursery: trio.Nursery, config: Config) -> ServerInfo:
    info: ServerInfo = await nursery.start(
        lambda task_status: serve(config, task_status=task_status))
    return info


class Wire:
    """Header, SASL frames and performatives off a byte stream."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.reader = FrameReader()

    async def next(self) -> object:
        while (item := self.reader.next()) is NEED_DATA:
            data = await self.stream.receive_some()
            assert data, "unexpected EOF"
            self.reader.feed(data)
        if isinstance(item, Frame):
            body = decode_frame_body(item.body)[0]
            if isinstance(body, SaslOutcome):
                self.reader.expect_header()  # the AMQP header follows
            return body
        return item.raw  # type: ignore[union-attr]


def sasl_init(mechanism: str, response: bytes = b"") -> bytes:
    from broker.codec.performatives import SaslInit
    from broker.codec.types import Symbol
    from broker.framing import encode_frame

    out = bytearray()
    encode_frame(out, 0, SaslInit(mechanism=Symbol(mechanism), initial_response=response),
                 ftype=1)
    return bytes(out)


def open_frame() -> bytes:
    from broker.framing import encode_frame

    out = bytearray()
    encode_frame(out, 0, Open(container_id="tls-test"))
    return bytes(out)


async def amqp_open(stream: trio.abc.Stream) -> Open:
    await stream.send_all(AMQP_HEADER + open_frame())
    wire = Wire(stream)
    assert await wire.next() == AMQP_HEADER
    opened = await wire.next()
    assert isinstance(opened, Open)
    return opened


# -- amqps ----------------------------------------------------------------------------


async def test_amqps_serves_amqp_over_tls(pki: dict[str, Path], ca: trustme.CA) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            info = await start(nursery, tls_config(pki))
            assert info.amqps_url == f"amqps://127.0.0.1:{info.tls_port}"
            assert info.wss_url == f"wss://127.0.0.1:{info.wss_port}/ws"
            tcp = await trio.open_tcp_stream("127.0.0.1", info.tls_port)  # type: ignore[arg-type]
            tls = trio.SSLStream(tcp, client_context(ca), server_hostname="127.0.0.1")
            assert (await amqp_open(tls)).container_id == "amqpws-broker"
            assert [c["transport"] for c in info.container.list_connections()] == ["tls"]  # type: ignore[attr-defined]
            await tls.aclose()
            info.shutdown()


async def test_garbage_or_silence_instead_of_tls_is_dropped(
        pki: dict[str, Path], ca: trustme.CA, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.INFO, logger="broker.transports.tls")
    monkeypatch.setattr(tls_module, "refusals", PeerLog(time.monotonic, tls_module.log))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            info = await start(nursery, tls_config(pki, handshake_timeout=0.5))
            garbage = await trio.open_tcp_stream("127.0.0.1", info.tls_port)  # type: ignore[arg-type]
            await garbage.send_all(AMQP_HEADER)  # plain AMQP on the TLS port
            with trio.fail_after(3):
                while await garbage.receive_some():
                    pass  # the server closes (perhaps after a TLS alert)
            silent = await trio.open_tcp_stream("127.0.0.1", info.tls_port)  # type: ignore[arg-type]
            with trio.fail_after(3):
                assert await silent.receive_some() == b"", "dropped after the deadline"
            tcp = await trio.open_tcp_stream("127.0.0.1", info.tls_port)  # type: ignore[arg-type]
            good = trio.SSLStream(tcp, client_context(ca), server_hostname="127.0.0.1")
            await amqp_open(good)  # others are served all along
            info.shutdown()
    assert any("TLS handshake failed" in r.getMessage() for r in caplog.records)
    assert any("no TLS handshake within" in r.getMessage() for r in caplog.records)


async def test_client_certificates_and_sasl_external(pki: dict[str, Path],
                                                     ca: trustme.CA) -> None:
    config = tls_config(pki, tls_ca=str(pki["ca"]), tls_verify_client="required",
                        users={"guest": "guest"}, permissions={"alice": (".*", ".*", ".*")},
                        allow_anonymous=False)
    alice = ca.issue_cert("alice@example.com", common_name="alice")
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            info = await start(nursery, config)
            tcp = await trio.open_tcp_stream("127.0.0.1", info.tls_port)  # type: ignore[arg-type]
            tls = trio.SSLStream(tcp, client_context(ca, alice), server_hostname="127.0.0.1")
            await tls.send_all(SASL_HEADER)
            wire = Wire(tls)
            assert await wire.next() == SASL_HEADER
            mechs = await wire.next()
            assert isinstance(mechs, SaslMechanisms)
            assert "EXTERNAL" in mechs.sasl_server_mechanisms
            await tls.send_all(sasl_init("EXTERNAL"))
            outcome = await wire.next()
            assert isinstance(outcome, SaslOutcome) and outcome.code == 0
            await tls.send_all(AMQP_HEADER + open_frame())
            assert await wire.next() == AMQP_HEADER
            assert isinstance(await wire.next(), Open)
            users = [c["user"] for c in info.container.list_connections()]  # type: ignore[attr-defined]
            assert users == [client_subject_of(alice)]
            await tls.aclose()
            # a certificate from another CA: no TLS at all
            stranger = trustme.CA().issue_cert("mallory")
            tcp = await trio.open_tcp_stream("127.0.0.1", info.tls_port)  # type: ignore[arg-type]
            bad = trio.SSLStream(tcp, client_context(ca, stranger), server_hostname="127.0.0.1")
            with pytest.raises(trio.BrokenResourceError):
                await bad.send_all(SASL_HEADER)
                await bad.receive_some()
            info.shutdown()


def client_subject_of(cert: trustme.LeafCert) -> str:
    """The CN trustme gives a leaf (what EXTERNAL must report)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    parsed = x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes())
    (cn,) = parsed.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cn.value)


async def test_sighup_reload_serves_the_new_certificate(pki: dict[str, Path], tmp_path: Path,
                                                        ca: trustme.CA) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(pki["cert"].read_bytes())
    key.write_bytes(pki["key"].read_bytes())
    config = tls_config(pki, tls_cert=str(cert), tls_key=str(key))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            info = await start(nursery, config)
            tcp = await trio.open_tcp_stream("127.0.0.1", info.tls_port)  # type: ignore[arg-type]
            old = trio.SSLStream(tcp, client_context(ca), server_hostname="127.0.0.1")
            await old.send_all(AMQP_HEADER + open_frame())
            old_wire = Wire(old)
            assert await old_wire.next() == AMQP_HEADER
            assert isinstance(await old_wire.next(), Open)
            new_ca = trustme.CA()
            leaf = new_ca.issue_cert("127.0.0.1")
            leaf.private_key_pem.write_to_path(str(key))
            leaf.cert_chain_pems[0].write_to_path(str(cert))
            info.reload_tls(config)
            tcp = await trio.open_tcp_stream("127.0.0.1", info.tls_port)  # type: ignore[arg-type]
            fresh = trio.SSLStream(tcp, client_context(new_ca), server_hostname="127.0.0.1")
            await amqp_open(fresh)
            # the connection opened before the reload carries on
            from broker.codec.performatives import Close
            from broker.framing import encode_frame

            out = bytearray()
            encode_frame(out, 0, Close())
            await old.send_all(bytes(out))
            assert isinstance(await old_wire.next(), Close)
            info.shutdown()


async def test_wss(pki: dict[str, Path], ca: trustme.CA) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            info = await start(nursery, tls_config(pki))
            async with open_websocket("127.0.0.1", info.wss_port, "/ws",  # type: ignore[arg-type]
                                      use_ssl=client_context(ca), subprotocols=["amqp"]) as ws:
                await ws.send_message(AMQP_HEADER + open_frame())
                data = b""
                while len(data) < 8 + 8:
                    data += await ws.get_message()  # type: ignore[operator]
                assert data.startswith(AMQP_HEADER)
            info.shutdown()


# -- the WebSocket upgrade: Origin and Bearer -------------------------------------------


async def upgrade(port: int, *headers: str) -> tuple[int, str]:
    """Send an upgrade request by hand; (status, the whole answer head)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    lines = ["GET /ws HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
             "Sec-WebSocket-Version: 13", "Sec-WebSocket-Protocol: amqp", *headers]
    await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        data = await stream.receive_some()
        if not data:
            break
        answer += data
    await stream.aclose()
    head = answer.decode("latin-1")
    return int(head.split(" ", 2)[1]), head


def token(key: str = SECRET, **claims: object) -> str:
    import time

    body: dict[str, object] = {"sub": "alice", "aud": "amqpws", "exp": time.time() + 300}
    body.update(claims)
    return jwt.encode(body, key, algorithm="HS256")


async def test_origins_are_checked_on_the_upgrade() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            info = await start(nursery, Config(port=None, ws_port=0))
            port = info.ws_port
            assert port is not None
            assert (await upgrade(port))[0] == 101, "no Origin: not a browser"
            assert (await upgrade(port, "Origin: http://localhost:5173"))[0] == 101
            status, head = await upgrade(port, "Origin: https://evil.example")
            assert status == 403 and "HTTP/1.1 403" in head
            info.shutdown()
        async with trio.open_nursery() as nursery:
            info = await start(nursery, Config(port=None, ws_port=0,
                                               allowed_origins=("https://app.example",)))
            port = info.ws_port
            assert port is not None
            assert (await upgrade(port, "Origin: https://app.example"))[0] == 101
            assert (await upgrade(port, "Origin: http://localhost:5173"))[0] == 403
            info.shutdown()


async def test_bearer_tokens_on_the_upgrade(caplog: pytest.LogCaptureFixture,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.INFO, logger="broker.transport")
    monkeypatch.setattr(websocket_module, "refusals", PeerLog(time.monotonic,
                                                              websocket_module.log))
    config = Config(port=None, ws_port=0, jwt_secret=SECRET, jwt_audience="amqpws")
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            info = await start(nursery, config)
            port = info.ws_port
            assert port is not None
            assert (await upgrade(port, f"Authorization: Bearer {token()}"))[0] == 101
            for bad in (token(key="another-secret-of-at-least-32-bytes"),
                        token(exp=1), token(aud="other"), "not-a-jwt"):
                status, head = await upgrade(port, f"Authorization: Bearer {bad}")
                assert status == 401, head
                assert 'www-authenticate: Bearer error="invalid_token"' in head.lower() \
                    .replace("bearer", "Bearer")
            status, _ = await upgrade(port, "Authorization: Bearer " + "x" * 65536)
            assert status >= 400, "64 KB of junk is refused"
            # the broker carries on
            assert (await upgrade(port, f"Authorization: Bearer {token()}"))[0] == 101
            info.shutdown()
    bearer_lines = [r.getMessage() for r in caplog.records if "bearer token" in r.getMessage()]
    assert len(bearer_lines) == 1, "four bad tokens from one host: one line"


async def test_a_bearer_upgrade_makes_the_connection_the_tokens_user() -> None:
    config = Config(port=None, ws_port=0, jwt_secret=SECRET, jwt_audience="amqpws",
                    allow_anonymous=False)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            info = await start(nursery, config)
            async with open_websocket("127.0.0.1", info.ws_port, "/ws", use_ssl=False,  # type: ignore[arg-type]
                                      subprotocols=["amqp"],
                                      extra_headers=[(b"authorization",
                                                      f"Bearer {token()}".encode())]) as ws:
                await ws.send_message(SASL_HEADER)
                reader = FrameReader()
                items: list[object] = []

                async def more() -> object:
                    while (item := reader.next()) is NEED_DATA:
                        reader.feed(await ws.get_message())  # type: ignore[arg-type]
                    if not isinstance(item, Frame):
                        return item.raw  # type: ignore[union-attr]
                    body = decode_frame_body(item.body)[0]
                    if isinstance(body, SaslOutcome):
                        reader.expect_header()
                    return body

                assert await more() == SASL_HEADER
                mechs = await more()
                assert isinstance(mechs, SaslMechanisms)
                assert mechs.sasl_server_mechanisms == ("ANONYMOUS",)
                await ws.send_message(sasl_init("ANONYMOUS"))
                outcome = await more()
                assert isinstance(outcome, SaslOutcome) and outcome.code == 0
                await ws.send_message(AMQP_HEADER + open_frame())
                items.append(await more())
                items.append(await more())
                assert isinstance(items[1], Open)
                users = [c["user"] for c in info.container.list_connections()]  # type: ignore[attr-defined]
                assert users == ["alice"]
            info.shutdown()


async def test_the_user_may_come_from_a_subject_alternative_name(pki: dict[str, Path],
                                                                ca: trustme.CA) -> None:
    config = tls_config(pki, tls_ca=str(pki["ca"]), tls_verify_client="optional",
                        tls_identity="email", users={"bob@example.com": "unused"})
    bob = ca.issue_cert("bob@example.com", common_name="not-this-one")
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            info = await start(nursery, config)
            tcp = await trio.open_tcp_stream("127.0.0.1", info.tls_port)  # type: ignore[arg-type]
            tls = trio.SSLStream(tcp, client_context(ca, bob), server_hostname="127.0.0.1")
            await tls.send_all(SASL_HEADER + sasl_init("EXTERNAL") + AMQP_HEADER + open_frame())
            wire = Wire(tls)
            assert await wire.next() == SASL_HEADER
            assert isinstance(await wire.next(), SaslMechanisms)
            outcome = await wire.next()
            assert isinstance(outcome, SaslOutcome) and outcome.code == 0
            assert await wire.next() == AMQP_HEADER
            assert isinstance(await wire.next(), Open)
            users = [c["user"] for c in info.container.list_connections()]  # type: ignore[attr-defined]
            assert users == ["bob@example.com"]
            await tls.aclose()
            # optional: a client without a certificate is served, without EXTERNAL
            tcp = await trio.open_tcp_stream("127.0.0.1", info.tls_port)  # type: ignore[arg-type]
            plain = trio.SSLStream(tcp, client_context(ca), server_hostname="127.0.0.1")
            await plain.send_all(SASL_HEADER)
            wire = Wire(plain)
            assert await wire.next() == SASL_HEADER
            mechs = await wire.next()
            assert isinstance(mechs, SaslMechanisms)
            assert "EXTERNAL" not in mechs.sasl_server_mechanisms
            info.shutdown()


async def test_wss_asks_for_client_certificates_only_when_told(pki: dict[str, Path],
                                                               ca: trustme.CA) -> None:
    """amqps asking for certificates does not make wss ask (browsers cancel such
    handshakes); --wss-verify-client does, and then EXTERNAL is offered on wss."""
    alice = ca.issue_cert("alice@example.com", common_name="alice")
    for wss_verify, offered in (("none", False), ("optional", True)):
        config = tls_config(pki, tls_ca=str(pki["ca"]), tls_verify_client="required",
                            wss_verify_client=wss_verify, users={"alice": "unused"})
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                info = await start(nursery, config)
                async with open_websocket("127.0.0.1", info.wss_port, "/ws",  # type: ignore[arg-type]
                                          use_ssl=client_context(ca, alice),
                                          subprotocols=["amqp"]) as ws:
                    await ws.send_message(SASL_HEADER)
                    data = b""
                    reader = FrameReader()
                    while (item := reader.next()) is NEED_DATA or not isinstance(item, Frame):
                        if item is NEED_DATA:
                            data = await ws.get_message()  # type: ignore[assignment]
                            reader.feed(data)
                    mechs = decode_frame_body(item.body)[0]
                    assert isinstance(mechs, SaslMechanisms)
                    assert ("EXTERNAL" in mechs.sasl_server_mechanisms) is offered
                info.shutdown()
