"""Bearer tokens (Docker registry token specification, as Harbor issues them).

A token is an RS256 JWT signed with a key pair regd generates on first start and keeps
in ``<data_dir>/auth/token.key`` (0600). Claims, as Harbor's ``MakeToken``:
``iss``, ``sub`` (the account, "" for anonymous), ``aud`` (the service), ``exp``,
``nbf``, ``iat``, ``jti`` and ``access``: ``[{"type", "name", "actions"}]`` holding
exactly what the account may do on each requested resource; and regd's own ``cred``:
the fingerprint of the account's stored password or secret when the token was issued
(``accounts.credential_mark``), so that a new password or secret ends its tokens. The
header's ``kid`` is the libtrust key id of the public key, as distribution expects.

A token is a claim of what was allowed when it was issued, never more: the authorizer
re-checks at each use that its account still exists, is enabled, has the same
credential and still holds each action on the project as it is now.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from regd.auth import Access

ALGORITHM = "RS256"
# Clock skew tolerated between issuing and checking (the two may be different workers).
LEEWAY = 30
VERIFIED_CACHE_SIZE = 10_000


class InvalidTokenError(Exception):
    """Expired, not yet valid, tampered, foreign-signed or malformed."""


def libtrust_kid(public_key: rsa.RSAPublicKey) -> str:
    """The libtrust key id: SHA-256 of the DER public key, 240 bits, base32 in 4s."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


def load_or_create_key(path: Path) -> rsa.RSAPrivateKey:
    """The signing key at ``path``, generated (2048-bit RSA, 0600) when absent. Blocking."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # first writer wins when two workers start together
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        data = path.read_bytes()
    loaded = serialization.load_pem_private_key(data, password=None)
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise ValueError(f"{path} does not hold an RSA private key")
    return loaded


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_in: int
    issued_at: str  # RFC 3339

    def body(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "access_token": self.token,
            "expires_in": self.expires_in,
            "issued_at": self.issued_at,
        }


@dataclass(frozen=True)
class TokenClaims:
    subject: str
    access: dict[tuple[str, str], frozenset[str]]
    mark: str = ""

    def allows(self, need: Access) -> bool:
        held = self.access.get((need.type, need.name), frozenset())
        return "*" in held or all(action in held for action in need.actions)


class TokenIssuer:
    def __init__(self, key: rsa.RSAPrivateKey, issuer: str, service: str, expiration: int) -> None:
        self._key = key
        self._public = key.public_key()
        self.kid = libtrust_kid(self._public)
        self.issuer = issuer
        self.service = service
        self.expiration = expiration  # seconds
        # Tokens already verified, by their exact text (signature included, so a
        # tampered token is never found here), with their expiry: a client presents the
        # same token on every request, and a signature check per request would cost most
        # of a small request's time.
        self._verified: dict[str, tuple[float, TokenClaims]] = {}

    def issue(
        self, subject: str, access: list[Access], now: float | None = None, mark: str = ""
    ) -> IssuedToken:
        issued = int(time.time() if now is None else now)
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": [self.service],
            "exp": issued + self.expiration,
            "nbf": issued - LEEWAY,
            "iat": issued,
            "jti": secrets.token_urlsafe(12),
            "access": [{"type": a.type, "name": a.name, "actions": list(a.actions)} for a in access],
            "cred": mark,
        }
        token = jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self.kid})
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(issued))
        return IssuedToken(token, self.expiration, stamp)

    def verify(self, token: str) -> TokenClaims:
        """The claims of a token this issuer signed, still valid; else InvalidTokenError."""
        cached = self._verified.get(token)
        if cached is not None:
            if time.time() <= cached[0] + LEEWAY:  # as jwt.decode checks exp, with leeway
                return cached[1]
            del self._verified[token]
        try:
            claims = jwt.decode(
                token,
                self._public,
                algorithms=[ALGORITHM],
                audience=self.service,
                issuer=self.issuer,
                leeway=LEEWAY,
                options={"require": ["exp", "iat", "aud", "iss", "sub"]},
            )
        except jwt.PyJWTError as e:
            raise InvalidTokenError(str(e)) from None
        verified = TokenClaims(str(claims["sub"]), _access(claims.get("access")), str(claims.get("cred", "")))
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (float(claims["exp"]), verified)
        return verified


def _access(raw: Any) -> dict[tuple[str, str], frozenset[str]]:
    if not isinstance(raw, list):
        raise InvalidTokenError("access claim is not a list")
    granted: dict[tuple[str, str], frozenset[str]] = {}
    for entry in raw:
        if not isinstance(entry, dict) or not isinstance(entry.get("actions"), list):
            raise InvalidTokenError("malformed access entry")
        key = (str(entry.get("type")), str(entry.get("name")))
        granted[key] = granted.get(key, frozenset()) | frozenset(str(a) for a in entry["actions"])
    return granted
