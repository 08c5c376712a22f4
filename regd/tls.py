"""The server's TLS context: built once at start, its certificate reloaded on SIGHUP.

``tls_cert`` is a PEM file that may hold the whole chain (server certificate first,
then intermediates); OpenSSL sends all of it, so clients that trust only the root CA
accept the server (Harbor issues #6774, #15137: "x509: certificate signed by unknown
authority" when the chain is missing).

Rotation: ``reload`` loads the new pair into a scratch context first, so a bad file
never reaches the live one, then into the live context. OpenSSL copies a context's
certificate into each connection at its handshake, so connections already open keep
theirs and every new handshake gets the new one; nothing is closed.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from regd.config import ServerConfig


class TLSError(Exception):
    """A certificate, key or CA file that cannot be used, in one line."""


def _describe(error: Exception) -> str:
    if isinstance(error, ssl.SSLError):
        return error.reason or str(error)
    if isinstance(error, OSError):
        return error.strerror or str(error)
    return str(error)


def _load(context: ssl.SSLContext, cert: str, key: str) -> None:
    try:
        context.load_cert_chain(cert, key, password=_no_password)
    except (OSError, ssl.SSLError, ValueError) as e:
        raise TLSError(f"cannot load TLS certificate {cert} with key {key}: {_describe(e)}") from None


def _no_password() -> str:
    # An encrypted key would make OpenSSL prompt on the terminal; refuse it instead.
    raise ValueError("the key is encrypted; regd needs an unencrypted key file")


def server_context(server: ServerConfig) -> ssl.SSLContext | None:
    """The context to serve HTTPS with, or None for plain HTTP (no tls_cert). Blocking."""
    if not server.tls_cert:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    _load(context, server.tls_cert, server.tls_key)
    return context


def check_ca_cert(path: str) -> None:
    """Fail at start, not at the first download, when ``[server] ca_cert`` is unusable."""
    if not path:
        return
    try:
        text = Path(path).read_text(encoding="ascii")
        ssl.create_default_context(cadata=text)
    except (OSError, UnicodeDecodeError, ssl.SSLError, ValueError) as e:
        raise TLSError(f"cannot load CA certificate {path}: {_describe(e)}") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise TLSError(f"cannot load CA certificate {path}: no PEM certificate in it")


def validate(server: ServerConfig) -> None:
    """Load the pair into a scratch context: raises TLSError if it cannot serve. Blocking."""
    server_context(server)
    check_ca_cert(server.ca_cert)


def reload(context: ssl.SSLContext, server: ServerConfig) -> None:
    """Put a new certificate and key into the live context (after ``validate``).

    Call it on the event loop thread: handshakes read the context there, so the swap
    never races one. It reads two small files, which is the only blocking it does.
    """
    _load(context, server.tls_cert, server.tls_key)
