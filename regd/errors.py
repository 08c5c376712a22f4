"""The one table of error codes.

Every error regd answers is a ``RegistryError`` carrying an ``ErrorCode``. The table
below is the only place that pairs a code with its HTTP status and default message
(OCI Distribution Spec v1.1, "Error Codes", plus the codes Harbor and distribution
add). One middleware turns any ``RegistryError`` into the JSON envelope
``{"errors": [{"code", "message", "detail"}]}``; nothing else writes error bodies.
"""

from __future__ import annotations

import enum
import errno
import sqlite3
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class _Code:
    status: int
    message: str


class ErrorCode(enum.Enum):
    # OCI Distribution Spec v1.1, code-1 .. code-14
    BLOB_UNKNOWN = _Code(404, "blob unknown to registry")
    BLOB_UPLOAD_INVALID = _Code(400, "blob upload invalid")
    BLOB_UPLOAD_UNKNOWN = _Code(404, "blob upload unknown to registry")
    DIGEST_INVALID = _Code(400, "provided digest did not match uploaded content")
    MANIFEST_BLOB_UNKNOWN = _Code(400, "manifest references a manifest or blob unknown to registry")
    MANIFEST_INVALID = _Code(400, "manifest invalid")
    MANIFEST_UNKNOWN = _Code(404, "manifest unknown to registry")
    NAME_INVALID = _Code(400, "invalid repository name")
    NAME_UNKNOWN = _Code(404, "repository name not known to registry")
    SIZE_INVALID = _Code(400, "provided length did not match content length")
    UNAUTHORIZED = _Code(401, "authentication required")
    DENIED = _Code(403, "requested access to the resource is denied")
    UNSUPPORTED = _Code(405, "the operation is unsupported")
    TOOMANYREQUESTS = _Code(429, "too many requests")
    # Docker Registry V2 / distribution additions
    RANGE_INVALID = _Code(416, "invalid content range")
    PAGINATION_NUMBER_INVALID = _Code(400, "invalid number of results requested")
    TAG_INVALID = _Code(400, "manifest tag did not match URI")
    UNAVAILABLE = _Code(503, "service unavailable")
    # Harbor-style codes for the management API and policy refusals
    BAD_REQUEST = _Code(400, "bad request")
    NOT_FOUND = _Code(404, "not found")
    FORBIDDEN = _Code(403, "forbidden")
    CONFLICT = _Code(409, "conflict")
    METHOD_NOT_ALLOWED = _Code(405, "method not allowed")
    PRECONDITION = _Code(412, "precondition failed")
    # Content trust (Harbor's code): a project's policy refuses an unsigned image
    PROJECTPOLICYVIOLATION = _Code(412, "the image violates the project's content trust policy")
    TOO_MANY_REQUEST = _Code(429, "too many requests to upstream registry")  # proxy cache
    VIOLATE_FOREIGN_KEY_CONSTRAINT = _Code(412, "the deleting artifact is referenced by others")
    REQUEST_ENTITY_TOO_LARGE = _Code(413, "request entity too large")
    EXPECTATION_FAILED = _Code(417, "expectation failed")
    HEADERS_TOO_LARGE = _Code(431, "request header fields too large")  # RFC 6585 section 5
    # RFC 4918 section 11.5: the server cannot store what the request needs stored.
    INSUFFICIENT_STORAGE = _Code(
        507,
        "the registry is out of storage space; nothing of this request was stored, "
        "retry when space is freed",
    )
    UNKNOWN = _Code(500, "internal server error")

    @property
    def status(self) -> int:
        return self.value.status

    @property
    def default_message(self) -> str:
        return self.value.message


class RegistryError(Exception):
    """An error with a code from the table; the message defaults to the code's."""

    def __init__(
        self,
        code: ErrorCode,
        message: str | None = None,
        detail: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.code = code
        self.message = message or code.default_message
        self.detail = detail
        self.headers = headers or {}
        super().__init__(f"{code.name}: {self.message}")

    @property
    def status(self) -> int:
        return self.code.status

    def envelope(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"code": self.code.name, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        return {"errors": [entry]}


# SQLite's primary result code for "database or disk is full" (extended codes share it).
_SQLITE_FULL = 13
_OUT_OF_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class StartupError(Exception):
    """Stops the daemon at start with one line and exit status 1 (no traceback). Never
    answered over HTTP: ``regd serve``, its workers and the CLI raise and catch it."""


def causes(exc: BaseException, limit: int = 5) -> list[BaseException]:
    """``exc`` and what it was raised from or while handling, as Python's traceback
    shows them (``raise ... from None`` hides the rest): a failed write, then the
    bookkeeping after it that failed too."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < limit:
        chain.append(seen)
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
    return chain


def is_out_of_space(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) is the file system or SQLite saying
    the disk or the quota is full: the domain error behind INSUFFICIENT_STORAGE."""
    for seen in causes(exc):
        if isinstance(seen, OSError) and seen.errno in _OUT_OF_SPACE_ERRNOS:
            return True
        code = getattr(seen, "sqlite_errorcode", None)
        if isinstance(seen, sqlite3.Error) and isinstance(code, int) and code & 0xFF == _SQLITE_FULL:
            return True
    return False


def proxy_push_denied(project: str) -> RegistryError:
    """Harbor's refusal of a push, a tag creation or a copy into a proxy-cache project."""
    return RegistryError(ErrorCode.DENIED, f"denied: can not push artifact to a proxy project: {project}")


# HTTP statuses that aiohttp raises on its own (unknown route, wrong method, body too
# large, malformed request) and the code that answers them in the envelope.
HTTP_STATUS_CODES: dict[int, ErrorCode] = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.DENIED,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.UNSUPPORTED,
    413: ErrorCode.REQUEST_ENTITY_TOO_LARGE,
    429: ErrorCode.TOOMANYREQUESTS,
    503: ErrorCode.UNAVAILABLE,
}


def code_for_status(status: int) -> ErrorCode:
    return HTTP_STATUS_CODES.get(status, ErrorCode.UNKNOWN if status >= 500 else ErrorCode.BAD_REQUEST)
