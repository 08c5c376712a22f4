"""Bearer tokens for the "auth on" workloads.

Both registries are measured with the same token flow (the Docker registry token spec):
the client holds a JWT and sends it as `Authorization: Bearer`, and the registry verifies
its signature and scope on every request. Basic auth with htpasswd would not be a fair
stand-in: distribution runs bcrypt on every request with it.

- distribution 2.8.2 has no token server of its own. It is configured with `auth: token`
  and a root certificate bundle; the suite is the issuer and mints an RS256 JWT whose
  `x5c` header carries the signing certificate (distribution's `registry/auth/token`
  checks the chain against the bundle, then `iss`, `aud`, `exp`/`nbf` and `access`).
- regd is its own issuer: the token comes from `GET /service/token` with Basic
  credentials, once per run, outside the timed part.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import urllib.request
from dataclasses import dataclass
from pathlib import Path

SERVICE = "regd-bench"
ISSUER = "regd-bench-issuer"


@dataclass(frozen=True)
class Issuer:
    key_pem: bytes
    cert_der: bytes
    bundle: Path


def make_issuer(workdir: Path) -> Issuer:
    """A fresh RSA key and self-signed certificate, written as distribution's root bundle."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    bundle = workdir / "token-root.pem"
    bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return Issuer(key_pem, cert.public_bytes(serialization.Encoding.DER), bundle)


def mint_token(issuer: Issuer, repositories: list[str], hours: float = 12) -> str:
    """A JWT granting pull and push on `repositories`, valid for `hours`."""
    import jwt

    now = dt.datetime.now(dt.UTC)
    claims = {
        "iss": ISSUER,
        "sub": "bench",
        "aud": SERVICE,
        "iat": now,
        "nbf": now - dt.timedelta(minutes=5),
        "exp": now + dt.timedelta(hours=hours),
        "jti": secrets.token_hex(16),
        "access": [
            {"type": "repository", "name": repo, "actions": ["pull", "push"]}
            for repo in repositories
        ],
    }
    headers = {"x5c": [base64.b64encode(issuer.cert_der).decode()]}
    return jwt.encode(claims, issuer.key_pem, algorithm="RS256", headers=headers)


def fetch_token(base_url: str, user: str, password: str, repositories: list[str]) -> str:
    """A token from a registry's own token endpoint (regd: GET /service/token)."""
    scopes = "&".join(f"scope=repository:{repo}:pull,push" for repo in repositories)
    # regd grants what the project roles allow: bench repositories live in `library`,
    # the project regd creates at its first start, of which admin is the owner.
    request = urllib.request.Request(f"{base_url}/service/token?service={SERVICE}&{scopes}")
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    request.add_header("Authorization", f"Basic {basic}")
    with urllib.request.urlopen(request, timeout=10) as response:
        body = json.load(response)
    return str(body.get("token") or body["access_token"])
