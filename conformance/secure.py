"""What the security cases share: the test PKI (a trustme CA and the broker's
certificate as files), the token secret, the users and permissions of the
secure broker (conftest's `secure_broker`), and a token maker."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JWT_SECRET = "conformance-jwt-secret-0123456789abcdef"  # HS256; >= 32 bytes
JWT_AUDIENCE = "amqpws"
# bob may use only queues named conf-bob-*; carol may only read them
SECURE_CONFIG = """
[users]
guest = "guest"
bob = "bob"
carol = "carol"
[permissions.bob]
configure = "^conf-bob-"
write = "^conf-bob-"
read = "^conf-bob-"
[permissions.carol]
read = "^conf-bob-"
"""


@dataclass(frozen=True)
class Pki:
    """A test CA (trustme) and the broker's certificate for 127.0.0.1/localhost,
    as files; `ca` issues client certificates too."""

    ca: Any
    ca_file: Path
    cert_file: Path
    key_file: Path
    workdir: Path

    @classmethod
    def create(cls, workdir: Path) -> Pki:
        import trustme

        ca = trustme.CA()
        server = ca.issue_cert("127.0.0.1", "localhost")
        files = cls(ca, workdir / "ca.pem", workdir / "cert.pem", workdir / "key.pem", workdir)
        ca.cert_pem.write_to_path(str(files.ca_file))
        server.private_key_pem.write_to_path(str(files.key_file))
        for i, pem in enumerate(server.cert_chain_pems):
            pem.write_to_path(str(files.cert_file), append=i > 0)
        return files

    def client_cert(self, common_name: str, ca: Any = None) -> tuple[Path, Path]:
        """(certificate, key) files of a client certificate for `common_name`
        (from another CA when `ca` is given)."""
        leaf = (ca or self.ca).issue_cert(f"{common_name}@example.com", common_name=common_name)
        cert, key = self.workdir / f"{common_name}.crt", self.workdir / f"{common_name}.key"
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        leaf.private_key_pem.write_to_path(str(key))
        return cert, key


def make_token(user: str = "token-user", *, secret: str = JWT_SECRET, lifetime: float = 300,
               scope: str = f"{JWT_AUDIENCE}.configure:*/* {JWT_AUDIENCE}.write:*/* "
                            f"{JWT_AUDIENCE}.read:*/*") -> str:
    import jwt

    claims = {"sub": user, "aud": JWT_AUDIENCE, "exp": int(time.time() + lifetime),
              "scope": scope}
    return jwt.encode(claims, secret, algorithm="HS256")
