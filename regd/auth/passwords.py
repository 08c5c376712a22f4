"""Passwords and secrets: Harbor's password rule, scrypt hashes, constant-time checks.

Passwords are stored as ``scrypt$<n>$<r>$<p>$<salt>$<hash>`` (RFC 7914, base64 fields).
scrypt with n=2^14 takes tens of milliseconds and 16 MiB, which is the point; callers
run it in an executor, never on the event loop. Robot secrets are 32 random characters,
so a salted SHA-256 (``sha256$<salt>$<hash>``) is as strong and checks in microseconds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import string

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_KEY_LENGTH = 32

MAX_LENGTH = 128
# Harbor's rule (handler/user.go): 8 to 128 characters, with an upper-case letter, a
# lower-case letter and a digit.
PASSWORD_RULE = (
    "the password must be 8 to 128 characters long and contain at least "
    "one uppercase letter, one lowercase letter and one digit"
)


def password_problem(password: str) -> str | None:
    """None when ``password`` follows the rule, else the rule to show the user."""
    ok = (
        8 <= len(password) <= MAX_LENGTH
        and any(c.isupper() for c in password)
        and any(c.islower() for c in password)
        and any(c.isdigit() for c in password)
    )
    return None if ok else PASSWORD_RULE


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=_KEY_LENGTH
    )


def hash_password(password: str) -> str:
    """A new salted scrypt hash of ``password`` (blocking: tens of milliseconds)."""
    salt = secrets.token_bytes(16)
    key = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches ``encoded``, compared in constant time (blocking)."""
    try:
        scheme, n, r, p, salt, key = encoded.split("$")
        if scheme != "scrypt":
            return False
        actual = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, base64.b64decode(key))


# A hash of no real password: checking against it when the user does not exist takes
# as long as a real check, so the answer's timing does not tell who has an account.
_DUMMY = f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(b'regd-no-such-user')}${_b64(bytes(_KEY_LENGTH))}"


def burn_time(password: str) -> None:
    verify_password(password, _DUMMY)


_SECRET_ALPHABET = string.ascii_letters + string.digits


def generate_secret(length: int = 32) -> str:
    """A random secret that also satisfies the password rule (for robots and admin)."""
    while True:
        secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(length))
        if password_problem(secret) is None:
            return secret


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    return f"sha256${_b64(salt)}${_b64(hashlib.sha256(salt + secret.encode()).digest())}"


def verify_secret(secret: str, encoded: str) -> bool:
    try:
        scheme, salt, digest = encoded.split("$")
        if scheme != "sha256":
            return False
        actual = hashlib.sha256(base64.b64decode(salt) + secret.encode()).digest()
    except ValueError:
        return False
    return hmac.compare_digest(actual, base64.b64decode(digest))
