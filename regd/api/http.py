"""Request parsing and response helpers shared by the handlers."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import StreamReader, web

from regd.errors import ErrorCode, RegistryError
from regd.numbers import parse_uint

# ASCII digits only (``\d`` would take any script's), at most 19 (a 64-bit size).
_CONTENT_RANGE = re.compile(r"^(?:bytes[ =])?([0-9]{1,19})-([0-9]{1,19})$")
_RANGE = re.compile(r"^bytes=([0-9]{0,19})-([0-9]{0,19})$")


def json_response(
    body: Any,
    status: int = 200,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, headers=headers, content_type=content_type)


def error_response(error: RegistryError) -> web.Response:
    headers = dict(error.headers)
    return web.Response(
        body=orjson.dumps(error.envelope()),
        status=error.status,
        headers=headers,
        content_type="application/json",
        charset="utf-8",
    )


def content_range(request: web.Request) -> tuple[int, int] | None:
    """The ``Content-Range: <start>-<end>`` of a chunk (inclusive), or None."""
    value = request.headers.get("Content-Range")
    if value is None:
        return None
    match = _CONTENT_RANGE.match(value.strip())
    if match is None:
        raise RegistryError(ErrorCode.RANGE_INVALID, f"invalid Content-Range {value[:100]!r}")
    return int(match.group(1)), int(match.group(2))


def content_length(request: web.Request) -> int | None:
    value = request.headers.get("Content-Length")
    if value is None:
        return None
    length = parse_uint(value)
    if length is None:
        raise RegistryError(ErrorCode.SIZE_INVALID, f"invalid Content-Length {value[:100]!r}")
    return length


def has_body(request: web.Request) -> bool:
    length = request.content_length
    return bool(length) or (
        length is None and request.headers.get("Transfer-Encoding", "").lower() == "chunked"
    )


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """RFC 9110 §14.2: a single ``bytes=`` range as (start, end inclusive), None for the
    whole body (no header, or one we may ignore: several ranges, bad syntax), or
    RANGE_INVALID 416 when it cannot be satisfied."""
    if header is None:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if first == "" and last == "":
        return None
    if first == "":
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(size - suffix, 0), size - 1
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if last != "" and int(last) < start:
        return None  # RFC 9110: an invalid range-spec is ignored
    if start >= size:
        raise _unsatisfiable(size)
    return start, end


def _unsatisfiable(size: int) -> RegistryError:
    return RegistryError(
        ErrorCode.RANGE_INVALID,
        "requested range not satisfiable",
        headers={"Content-Range": f"bytes */{size}"},
    )


def page_args(request: web.Request) -> tuple[int | None, str]:
    """``n`` and ``last`` of a paginated list (OCI spec, "Listing Tags")."""
    raw_n = request.query.get("n")
    n: int | None = None
    if raw_n is not None:
        n = parse_uint(raw_n)
        if n is None:
            raise RegistryError(
                ErrorCode.PAGINATION_NUMBER_INVALID, f"n must be a non-negative integer, not {raw_n[:50]!r}"
            )
    return n, request.query.get("last", "")



# Request keys: the DirectBody of a request (for the body timeout), and the mark of a
# connection to close after the response.
BODY_KEY = "regd.direct_body"
CLOSE_KEY = "regd.close_after"
BYTES_KEY = "regd.body_bytes"  # the body bytes a DirectBody received (the access log's)


def received_bytes(request: web.BaseRequest) -> int:
    """The request body bytes received (by aiohttp, or around it)."""
    direct = request.get(BYTES_KEY)
    return int(direct) if direct is not None else int(getattr(request.content, "total_bytes", 0))


# Pieces taken at most from aiohttp's buffer in one call (with the upload writer's
# MAX_CHUNKS, under writev's IOV_MAX of 1024).
MAX_PIECES = 256


class BodyPieces:
    """A request body read as the pieces aiohttp buffered it, for the upload writer.

    ``StreamReader.readany`` joins every piece buffered so far into one bytes object: a
    copy of the whole body on the event loop, a fifth of the loop's busy time in a
    profiled docker-style push (a chunked body arrives as one piece per 32 KiB HTTP
    chunk, several per socket read). ``readchunk`` hands over one piece as it is, but one
    a call costs more than the copy on a chunked body. So this waits with ``readchunk``
    and takes whatever else is buffered as it is, through the StreamReader's own
    ``_read_nowait_chunk`` (the step ``readany`` joins; a private name, so looked up
    with a fallback to one piece a call)."""

    def __init__(self, content: StreamReader, prefix: list[bytes] | None = None) -> None:
        self._content = content
        self._prefix = prefix or []  # read from ``content`` already (api.direct)
        self._take: Callable[[int], bytes] | None = getattr(content, "_read_nowait_chunk", None)
        self._eof = False

    async def read_pieces(self) -> list[bytes]:
        """The next pieces, at least one; [] at the end of the body (and after it)."""
        if self._prefix:
            pieces, self._prefix = self._prefix, []
            return pieces
        while not self._eof:
            data, end_of_http_chunk = await self._content.readchunk()
            if data:
                pieces = [data]
                buffered = getattr(self._content, "_buffer", None)
                if self._take is not None and buffered:
                    for _ in range(min(len(buffered), MAX_PIECES - 1)):
                        pieces.append(self._take(-1))
                return pieces
            # (b"", True) marks the end of an HTTP chunk; (b"", False) the end of the body.
            # aiohttp's shared EMPTY_PAYLOAD (a body-less request) says (b"", False) only
            # the first time in the process, then (b"", True) for ever: at_eof ends it.
            self._eof = not end_of_http_chunk or self._content.at_eof()
        return []
