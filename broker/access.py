"""Who a connection is and what it may do: passwords, tokens, permissions, origins.

Pure functions and small objects, asked by the SASL layer (through the
container), by `attach.py` and by the services; nothing here touches a socket
or the clock (`now` is passed in).  The crypto is not ours: passwords are
hashed with the standard library's scrypt, tokens are verified by PyJWT.

Permissions follow RabbitMQ's model: three regular expressions per user,
`configure`, `write` and `read`, matched (unanchored, as RabbitMQ does) against
queue and exchange names.  Which operation needs which permission:

- attach a receiver: read on the queue or stream;
- attach a sender, or a message through the anonymous relay: write on the
  exchange (the default exchange for a queue address);
- declare or delete a queue or exchange, dynamic nodes: configure on it;
- purge: read on the queue;
- bind: write on the destination, read on the source.

A token's scopes become permissions too, in RabbitMQ's format
`<prefix>.configure|write|read:<vhost>/<name>`, where `*` is a wildcard.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

CONFIGURE, WRITE, READ = "configure", "write", "read"
OPERATIONS = (CONFIGURE, WRITE, READ)
VHOST = "/"
DEFAULT_USER_KEY = "*"  # in `[permissions]`: users without their own entry
ANONYMOUS_USER = "anonymous"
TOKEN_LEEWAY = 60.0  # seconds of clock skew allowed on exp and nbf
MAX_TOKEN_BYTES = 16 * 1024  # a JWT larger than this is refused without parsing

# scrypt, as the stdlib offers it: 16 MiB of memory per check at these costs
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_HASH_PREFIX = "$scrypt$"


# -- permissions ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Permissions:
    """Patterns per operation; a name is allowed when any pattern matches."""

    configure: tuple[re.Pattern[str], ...] = ()
    write: tuple[re.Pattern[str], ...] = ()
    read: tuple[re.Pattern[str], ...] = ()

    @classmethod
    def from_regexes(cls, configure: str, write: str, read: str) -> Permissions:
        """RabbitMQ's three expressions; the empty one (or `^$`) grants nothing."""
        return cls(*(_regex(r) for r in (configure, write, read)))

    def allows(self, operation: str, name: str) -> bool:
        patterns: tuple[re.Pattern[str], ...] = getattr(self, operation)
        return any(p.search(name) for p in patterns)


def _regex(expression: str) -> tuple[re.Pattern[str], ...]:
    if expression in ("", "^$"):
        return ()
    try:
        return (re.compile(expression),)
    except re.error as exc:
        raise ValueError(f"bad permission pattern {expression!r}: {exc}") from None


EVERYTHING = Permissions.from_regexes(".*", ".*", ".*")
NOTHING = Permissions()


class AccessRefused(Exception):
    """An operation the user's permissions do not allow; the message names the
    operation, the resource and the user, in RabbitMQ's words."""

    def __init__(self, user: str, operation: str, kind: str, name: str) -> None:
        super().__init__(f"{operation} access to {kind} '{name}' in vhost '{VHOST}' refused "
                         f"for user '{user}'")
        self.user, self.operation, self.kind, self.name = user, operation, kind, name


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated connection's user: what it may do and until when."""

    user: str
    permissions: Permissions = EVERYTHING
    expires_at: float | None = None  # a token's `exp`; the connection ends then
    mechanism: str = "PLAIN"  # how it was established, for the log and listings

    def check(self, operation: str, kind: str, name: str) -> None:
        """Raise AccessRefused unless `operation` on the `kind` named `name` is allowed."""
        if not self.permissions.allows(operation, name):
            raise AccessRefused(self.user, operation, kind, name)


# -- passwords ------------------------------------------------------------------------


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """`$scrypt$n=…,r=…,p=…$SALT$HASH` (base64): what the config's users hold."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R,
                            p=_SCRYPT_P, dklen=32)
    return (f"{_HASH_PREFIX}n={_SCRYPT_N},r={_SCRYPT_R},p={_SCRYPT_P}$"
            f"{_b64(salt)}${_b64(digest)}")


def is_password_hash(stored: str) -> bool:
    return stored.startswith(_HASH_PREFIX)


def verify_password(stored: str, password: str) -> bool:
    """Check a password against what the config holds: a hash from
    `hash_password`, or (for `--user NAME:PASSWORD` in development) the clear
    password.  Both comparisons take constant time."""
    if not is_password_hash(stored):
        return hmac.compare_digest(stored.encode("utf-8"), password.encode("utf-8"))
    params, salt, digest = _parse_hash(stored)
    n, r, p = params
    try:
        computed = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                                  dklen=len(digest), maxmem=256 * 1024 * 1024)
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(computed, digest)


def check_password_hash(stored: str) -> None:
    """Raise ValueError when a configured hash cannot be used (checked at start)."""
    _parse_hash(stored)


def _parse_hash(stored: str) -> tuple[tuple[int, int, int], bytes, bytes]:
    try:
        _, _, params, salt, digest = stored.split("$")
        values = dict(item.split("=", 1) for item in params.split(","))
        n, r, p = int(values["n"]), int(values["r"]), int(values["p"])
        return (n, r, p), base64.b64decode(salt, validate=True), \
            base64.b64decode(digest, validate=True)
    except (ValueError, KeyError, binascii.Error):
        raise ValueError("not a password hash from `amqpws-broker hash-password`") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- tokens ---------------------------------------------------------------------------


class CredentialsRefused(ValueError):
    """Credentials (a password, a token, a certificate's user) we do not
    accept; the message says why, for the log and the peer."""


_HMAC_ALGORITHMS = ["HS256", "HS384", "HS512"]
_PUBLIC_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                      "ES256", "ES384", "ES512", "EdDSA"]


@dataclass(frozen=True)
class TokenVerifier:
    """Checks a JWT's signature, audience, issuer, expiry and not-before, and
    turns its subject and scopes into an `Identity`.

    Exactly one key source: an HMAC `secret` (development), a PEM public key,
    or a JWKS (keys chosen by the token's `kid`).  The accepted algorithms
    follow from the key, never from the token's header (so `alg: none` and
    HMAC-with-the-public-key tricks fail)."""

    secret: str | None = None
    public_key_pem: str | None = None
    jwks: Mapping[str, Any] | None = None
    audience: str | None = None
    issuer: str | None = None
    scope_prefix: str | None = None  # default: the audience, else "rabbitmq"
    user_claim: str = "sub"
    leeway: float = TOKEN_LEEWAY
    _keys: dict[str | None, tuple[Any, list[str]]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        sources = [s for s in (self.secret, self.public_key_pem, self.jwks) if s is not None]
        if len(sources) != 1:
            raise ValueError("a token verifier needs exactly one of a secret, a public key "
                             "and a JWKS")
        jwt = _jwt()
        if self.secret is not None:
            self._keys[None] = (self.secret, _HMAC_ALGORITHMS)
        elif self.public_key_pem is not None:
            self._keys[None] = _public_key(self.public_key_pem)
        else:
            try:
                jwk_set = jwt.PyJWKSet.from_dict(dict(self.jwks or {}))
            except jwt.PyJWTError as exc:
                raise ValueError(f"cannot read the JWKS: {exc}") from None
            for jwk in jwk_set.keys:
                algorithms = [jwk.algorithm_name] if jwk.algorithm_name else _PUBLIC_ALGORITHMS
                self._keys[jwk.key_id] = (jwk.key, algorithms)

    @property
    def prefix(self) -> str:
        return self.scope_prefix or self.audience or "rabbitmq"

    def verify(self, token: str, now: float) -> Identity:
        if len(token) > MAX_TOKEN_BYTES:
            raise CredentialsRefused(f"token of {len(token)} bytes is larger than {MAX_TOKEN_BYTES}")
        if token.count(".") != 2:
            raise CredentialsRefused("not a JWT (it needs three dot-separated parts)")
        jwt = _jwt()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise CredentialsRefused(f"malformed JWT: {exc}") from None
        key, algorithms = self._key_for(header)
        if header.get("alg") not in algorithms:
            raise CredentialsRefused(f"algorithm {header.get('alg')!r} is not accepted for this key")
        try:
            claims = jwt.decode(
                token, key, algorithms=algorithms, audience=self.audience, issuer=self.issuer,
                # the clock is ours to pass in: exp and nbf are checked below against `now`
                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                         "verify_aud": self.audience is not None,
                         "verify_iss": self.issuer is not None},
            )
        except jwt.PyJWTError as exc:
            raise CredentialsRefused(f"token refused: {exc}") from None
        expires_at = _number_claim(claims, "exp")
        if expires_at is not None and now > expires_at + self.leeway:
            raise CredentialsRefused("token expired")
        not_before = _number_claim(claims, "nbf")
        if not_before is not None and now + self.leeway < not_before:
            raise CredentialsRefused("token not valid yet (nbf)")
        user = claims.get(self.user_claim)
        if not isinstance(user, str) or not user:
            raise CredentialsRefused(f"token has no {self.user_claim!r} claim to name its user")
        return Identity(user, scope_permissions(_scopes(claims), self.prefix),
                        expires_at=None if expires_at is None else expires_at + self.leeway,
                        mechanism="token")

    def _key_for(self, header: Mapping[str, Any]) -> tuple[Any, list[str]]:
        if None in self._keys:
            return self._keys[None]
        kid = header.get("kid")
        if kid not in self._keys:
            raise CredentialsRefused(f"no key with kid {kid!r} in the JWKS")
        return self._keys[kid]


def _jwt() -> Any:
    """PyJWT, imported on first use: it brings `cryptography`, which a broker
    that verifies no tokens need not load."""
    import jwt

    return jwt


def _public_key(pem: str) -> tuple[Any, list[str]]:
    """A PEM public key and the algorithms of its family."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(pem.encode("ascii"))
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise ValueError(f"cannot read the JWT public key: {exc}") from None
    if isinstance(key, rsa.RSAPublicKey):
        return key, ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key, ["ES256", "ES384", "ES512"]
    if isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        return key, ["EdDSA"]
    raise ValueError(f"JWT public keys must be RSA, EC or EdDSA, not {type(key).__name__}")


def _number_claim(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CredentialsRefused(f"claim {name!r} must be a number")
    return float(value)


def _scopes(claims: Mapping[str, Any]) -> list[str]:
    scope = claims.get("scope", claims.get("scp", ()))
    if isinstance(scope, str):
        return scope.split()
    if isinstance(scope, list):
        return [s for s in scope if isinstance(s, str)]
    return []


def scope_permissions(scopes: Iterable[str], prefix: str) -> Permissions:
    """RabbitMQ's scopes (`PREFIX.read:VHOST/NAME`, `*` a wildcard) → permissions.
    Scopes for other vhosts, other prefixes or other purposes (tags) are ignored."""
    found: dict[str, list[re.Pattern[str]]] = {op: [] for op in OPERATIONS}
    for scope in scopes:
        head, sep, pattern = scope.partition(":")
        if not sep or not head.startswith(prefix + "."):
            continue
        operation = head[len(prefix) + 1:]
        vhost, slash, name = pattern.partition("/")
        if operation not in found or not slash:
            continue
        if not _wildcard(vhost.replace("%2F", "/").replace("%2f", "/")).fullmatch(VHOST):
            continue
        found[operation].append(_wildcard(name))
    return Permissions(*(tuple(found[op]) for op in OPERATIONS))


def _wildcard(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + ".*".join(re.escape(p) for p in pattern.split("*")) + "$")


def load_jwks(text: str) -> dict[str, Any]:
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError("a JWKS is a JSON object with a 'keys' list")  # noqa: TRY004
    return data


def looks_like_jwt(text: str) -> bool:
    return text.count(".") == 2 and len(text) > 20


# -- the policy a container applies ---------------------------------------------------


@dataclass(frozen=True)
class Access:
    """Users (clear or hashed passwords), permissions by user, the token
    verifier if one is configured, and the SASL PLAIN authzid rule."""

    users: Mapping[str, str] = field(default_factory=dict)  # name → clear password or hash
    permissions: Mapping[str, Permissions] = field(default_factory=dict)  # "*": the default
    allow_anonymous: bool = True
    tokens: TokenVerifier | None = None
    authzid: str = "refuse"  # or "ignore": PLAIN's authorization id is not acted on

    def permissions_of(self, user: str) -> Permissions:
        found = self.permissions.get(user)
        if found is None:
            found = self.permissions.get(DEFAULT_USER_KEY, EVERYTHING)
        return found

    def plain(self, authzid: str, user: str, password: str, now: float) -> Identity:
        """SASL PLAIN: a configured user's password, or (RabbitMQ's way, any
        user name) a token as the password.  Raises CredentialsRefused with the reason."""
        if authzid and authzid != user and self.authzid == "refuse":
            # acting as another identity is not something we grant (RFC 4616 §2)
            raise CredentialsRefused(f"user {user!r} may not act as {authzid!r}")
        stored = self.users.get(user)
        if stored is not None and verify_password(stored, password):
            return Identity(user, self.permissions_of(user))
        if self.tokens is not None and looks_like_jwt(password):
            return self.tokens.verify(password, now)
        raise CredentialsRefused(f"bad credentials for user {user!r}")

    def anonymous(self) -> Identity:
        return Identity(ANONYMOUS_USER, self.permissions_of(ANONYMOUS_USER),
                        mechanism="ANONYMOUS")

    def external(self, subject: str) -> Identity:
        """SASL EXTERNAL over TLS: the client certificate's identity, with the
        permissions of the configured user of that name.  As with RabbitMQ, the
        user must be configured (in `users` or `permissions`): a CA may sign
        certificates for names nobody meant to let in."""
        if subject not in self.users and subject not in self.permissions:
            raise CredentialsRefused(f"certificate user {subject!r} is not a configured user")
        return Identity(subject, self.permissions_of(subject), mechanism="EXTERNAL")

    def bearer(self, token: str, now: float) -> Identity:
        """A token from the WebSocket upgrade's `Authorization: Bearer`."""
        if self.tokens is None:
            raise CredentialsRefused("no token verification is configured (--jwt-secret, "
                             "--jwt-public-key or --jwks-file)")
        return self.tokens.verify(token, now)


# -- browser origins ------------------------------------------------------------------

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def origin_allowed(origin: str | None, allowed: Iterable[str], *,
                   loopback_listener: bool) -> bool:
    """May a page from `origin` open a WebSocket to us?

    No Origin header: not a browser, allowed.  Configured origins (`*` for any)
    win.  Without configuration, pages served from a loopback host (any port,
    http or https) are allowed when we listen on loopback only; a broker that
    listens beyond loopback allows no page until origins are configured."""
    if origin is None:
        return True
    allowed = tuple(allowed)
    if allowed:
        return "*" in allowed or origin.rstrip("/").lower() in \
            (a.rstrip("/").lower() for a in allowed)
    if not loopback_listener:
        return False
    scheme, sep, rest = origin.lower().partition("://")
    if not sep or scheme not in ("http", "https"):
        return False
    host = rest.split("/", 1)[0]
    if host.startswith("["):
        host = host[: host.find("]") + 1]
    else:
        host = host.split(":", 1)[0]
    return host in LOOPBACK_HOSTS


def load_access(config: Any) -> Access:
    """The `Access` a config describes (a `broker.config.Config`; typed loosely
    so this module needs nothing from config).  Reads the token key files, so
    call it once at start; a bad setting raises ValueError."""
    permissions = {user: Permissions.from_regexes(*regexes)
                   for user, regexes in config.permissions.items()}
    for user, stored in config.users.items():
        if is_password_hash(stored):
            try:
                check_password_hash(stored)
            except ValueError as exc:
                raise ValueError(f"user {user!r}: {exc}") from None
    tokens = None
    key_source: dict[str, Any] = {}
    if config.jwt_secret:
        key_source["secret"] = config.jwt_secret
    if config.jwt_public_key:
        key_source["public_key_pem"] = _read(config.jwt_public_key, "jwt_public_key")
    if config.jwks_file:
        key_source["jwks"] = load_jwks(_read(config.jwks_file, "jwks_file"))
    if key_source:
        tokens = TokenVerifier(audience=config.jwt_audience, issuer=config.jwt_issuer,
                               scope_prefix=config.jwt_scope_prefix,
                               user_claim=config.jwt_user_claim, **key_source)
    return Access(users=dict(config.users), permissions=permissions,
                  allow_anonymous=config.allow_anonymous, tokens=tokens,
                  authzid=config.sasl_authzid)


def _read(path: str, setting: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{setting}: cannot read {path}: {exc}") from None


# -- Azure's shared access signatures -------------------------------------------------


def verify_sas(token: str, keys: Mapping[str, str], now: float) -> tuple[str, float]:
    """An Azure SAS token (`SharedAccessSignature sr=…&sig=…&se=…&skn=…`): the
    signature must be HMAC-SHA256, under the named key, of the URL-encoded
    resource, a newline and the expiry; the expiry must be ahead.  Returns
    (resource, expiry); raises CredentialsRefused with the reason."""
    from urllib.parse import parse_qs, quote_plus

    scheme, _, rest = token.strip().partition(" ")
    if scheme != "SharedAccessSignature" or not rest:
        raise CredentialsRefused("not a SharedAccessSignature token")
    fields = {k: v[0] for k, v in parse_qs(rest, keep_blank_values=True).items()}
    missing = {"sr", "sig", "se", "skn"} - set(fields)
    if missing:
        raise CredentialsRefused(f"SAS token without {', '.join(sorted(missing))}")
    key = keys.get(fields["skn"])
    if key is None:
        raise CredentialsRefused(f"no key named {fields['skn']!r}")
    try:
        expiry = float(fields["se"])
    except ValueError:
        raise CredentialsRefused("SAS expiry is not a number") from None
    if not math.isfinite(expiry):
        raise CredentialsRefused("SAS expiry is not a time")
    resource = fields["sr"]  # parse_qs has decoded it once, as the signer encoded it
    signed = f"{quote_plus(resource)}\n{fields['se']}".encode()
    expected = base64.b64encode(hmac.new(key.encode("utf-8"), signed, hashlib.sha256).digest())
    if not hmac.compare_digest(expected, fields["sig"].encode("ascii", "replace")):
        raise CredentialsRefused(f"SAS signature does not match key {fields['skn']!r}")
    if expiry < now:
        raise CredentialsRefused("SAS token expired")
    return resource, expiry
