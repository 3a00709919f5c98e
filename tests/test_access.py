"""Passwords, permissions, tokens and origins as pure functions (access.py)."""

from __future__ import annotations

import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from broker.access import (
    EVERYTHING,
    Access,
    AccessRefused,
    CredentialsRefused,
    Permissions,
    TokenVerifier,
    check_password_hash,
    hash_password,
    origin_allowed,
    scope_permissions,
    verify_password,
)

NOW = 1_700_000_000.0
SECRET = "dev-secret-of-at-least-32-bytes!!"


def token(claims: dict[str, object] | None = None, key: object = SECRET,
          algorithm: str = "HS256", headers: dict[str, object] | None = None) -> str:
    base: dict[str, object] = {"sub": "alice", "aud": "amqpws", "exp": NOW + 300,
                               "scope": "amqpws.read:*/* amqpws.write:*/orders"}
    base.update(claims or {})
    return jwt.encode({k: v for k, v in base.items() if v is not None}, key,  # type: ignore[arg-type]
                      algorithm=algorithm, headers=headers)


# -- passwords ------------------------------------------------------------------------


def test_password_hash_verifies_only_its_password() -> None:
    stored = hash_password("s3cret")
    assert stored.startswith("$scrypt$")
    assert verify_password(stored, "s3cret")
    assert not verify_password(stored, "s3cret ")
    assert hash_password("s3cret") != stored, "each hash has its own salt"


def test_clear_passwords_still_work_for_development() -> None:
    assert verify_password("guest", "guest")
    assert not verify_password("guest", "Guest")


def test_a_mangled_hash_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="hash-password"):
        check_password_hash("$scrypt$n=16384$nope")


# -- permissions ----------------------------------------------------------------------


def test_permissions_are_rabbitmq_regexes() -> None:
    p = Permissions.from_regexes("^alice-.*", ".*", "")
    assert p.allows("configure", "alice-tmp")
    assert not p.allows("configure", "orders")
    assert p.allows("write", "anything")
    assert not p.allows("read", "anything"), "an empty expression grants nothing"
    assert not Permissions.from_regexes("^$", "^$", "^$").allows("read", "")


def test_a_refusal_names_operation_resource_and_user() -> None:
    from broker.access import Identity

    bob = Identity("bob", Permissions.from_regexes("", "", "^public$"))
    bob.check("read", "queue", "public")
    with pytest.raises(AccessRefused) as info:
        bob.check("write", "exchange", "amq.topic")
    assert str(info.value) == ("write access to exchange 'amq.topic' in vhost '/' refused "
                               "for user 'bob'")


def test_scopes_become_permissions() -> None:
    p = scope_permissions(["amqpws.read:*/*", "amqpws.write:%2F/orders-*",
                           "amqpws.configure:other-vhost/*", "rabbitmq.read:*/*",
                           "amqpws.tag:administrator", "openid"], "amqpws")
    assert p.allows("read", "x")
    assert p.allows("write", "orders-eu") and not p.allows("write", "xorders-eu")
    assert not p.allows("configure", "x"), "another vhost's scope grants nothing here"


# -- tokens ---------------------------------------------------------------------------


def verifier(**kwargs: object) -> TokenVerifier:
    options: dict[str, object] = {"secret": SECRET, "audience": "amqpws"}
    options.update(kwargs)
    return TokenVerifier(**options)  # type: ignore[arg-type]


def test_a_good_token_names_the_user_its_permissions_and_expiry() -> None:
    identity = verifier().verify(token(), NOW)
    assert identity.user == "alice"
    assert identity.permissions.allows("read", "q")
    assert identity.permissions.allows("write", "orders")
    assert not identity.permissions.allows("write", "q")
    assert identity.expires_at is not None and identity.expires_at >= NOW + 300


@pytest.mark.parametrize(("bad", "reason"), [
    (token({"exp": NOW - 3600}), "expired"),
    (token({"nbf": NOW + 3600}), "not valid yet"),
    (token({"aud": "someone-else"}), "(?i)audience"),
    (token(key="another-secret-of-at-least-32-bytes"), "Signature"),
    (token({"sub": None}), "'sub'"),
    ("not-a-token", "not a JWT"),
    ("x" * 65536, "larger than"),
    ("e30.e30.", "algorithm"),  # {} header: no alg
])
def test_bad_tokens_are_refused_with_a_reason(bad: str, reason: str) -> None:
    with pytest.raises(CredentialsRefused, match=reason):
        verifier().verify(bad, NOW)


def test_alg_none_is_refused() -> None:
    unsigned = jwt.encode({"sub": "alice", "aud": "amqpws"}, None, algorithm="none")  # type: ignore[arg-type]
    with pytest.raises(CredentialsRefused, match="algorithm 'none'"):
        verifier().verify(unsigned, NOW)


def test_issuer_is_checked_when_configured() -> None:
    v = verifier(issuer="https://idp.example")
    assert v.verify(token({"iss": "https://idp.example"}), NOW).user == "alice"
    with pytest.raises(CredentialsRefused, match="issuer"):
        v.verify(token({"iss": "https://evil.example"}), NOW)


def _pem(public_key: object) -> str:
    return public_key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def test_rs256_with_a_public_key_and_no_hmac_confusion() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = _pem(private.public_key())
    v = TokenVerifier(public_key_pem=pem, audience="amqpws")
    assert v.verify(token(key=private, algorithm="RS256"), NOW).user == "alice"
    # the classic attack is HS256 "signed" with the public key as the secret; the
    # algorithm alone must refuse it, whatever the secret (PyJWT will not sign with a PEM)
    forged = jwt.api_jws.PyJWS().encode(
        json.dumps({"sub": "mallory", "aud": "amqpws"}).encode(), b"k" * 32, algorithm="HS256")
    with pytest.raises(CredentialsRefused, match="HS256"):
        v.verify(forged, NOW)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(CredentialsRefused, match="Signature"):
        v.verify(token(key=other, algorithm="RS256"), NOW)


def test_jwks_chooses_the_key_by_kid() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    jwk.update(kid="k1", alg="ES256", use="sig")
    v = TokenVerifier(jwks={"keys": [jwk]}, audience="amqpws")
    good = token(key=private, algorithm="ES256", headers={"kid": "k1"})
    assert v.verify(good, NOW).user == "alice"
    with pytest.raises(CredentialsRefused, match="kid 'k2'"):
        v.verify(token(key=private, algorithm="ES256", headers={"kid": "k2"}), NOW)


# -- the policy -----------------------------------------------------------------------


def test_plain_accepts_passwords_and_tokens_as_passwords() -> None:
    access = Access(users={"guest": hash_password("guest")}, tokens=verifier())
    assert access.plain("", "guest", "guest", NOW).user == "guest"
    assert access.plain("", "any-name", token(), NOW).user == "alice", "RabbitMQ's way"
    with pytest.raises(CredentialsRefused, match="bad credentials"):
        access.plain("", "guest", "wrong", NOW)


def test_plain_authzid_is_refused_or_ignored_as_configured() -> None:
    strict = Access(users={"guest": "guest"})
    with pytest.raises(CredentialsRefused, match="may not act as"):
        strict.plain("admin", "guest", "guest", NOW)
    assert strict.plain("guest", "guest", "guest", NOW).user == "guest"
    lenient = Access(users={"guest": "guest"}, authzid="ignore")
    assert lenient.plain("admin", "guest", "guest", NOW).user == "guest", "never admin"


def test_permissions_by_user_with_a_default() -> None:
    only = Permissions.from_regexes("", "", "^q$")
    access = Access(permissions={"bob": only, "*": Permissions()})
    assert access.permissions_of("bob") is only
    assert not access.permissions_of("carol").allows("read", "q")
    assert Access().permissions_of("anyone") is EVERYTHING


# -- origins --------------------------------------------------------------------------


@pytest.mark.parametrize(("origin", "allowed", "loopback", "ok"), [
    (None, (), False, True),  # not a browser
    ("http://localhost:3000", (), True, True),
    ("https://127.0.0.1", (), True, True),
    ("http://[::1]:8080", (), True, True),
    ("http://localhost.evil.example", (), True, False),
    ("https://evil.example", (), True, False),
    ("null", (), True, False),  # file:// pages and sandboxed frames
    ("http://localhost:3000", (), False, False),  # listening beyond loopback: configure it
    ("https://app.example", ("https://app.example",), False, True),
    ("https://APP.example/", ("https://app.example",), False, True),
    ("https://other.example", ("https://app.example",), False, False),
    ("https://other.example", ("*",), False, True),
])
def test_origins(origin: str | None, allowed: tuple[str, ...], loopback: bool, ok: bool) -> None:
    assert origin_allowed(origin, allowed, loopback_listener=loopback) is ok
