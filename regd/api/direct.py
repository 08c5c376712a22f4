"""Upload bodies received straight into the upload's staging buffer.

Through aiohttp every byte of a body is copied three times in the process: uvloop makes
a bytes object of each socket read, the HTTP parser copies the body's part of it into
another, and the upload writer copied those into its page-aligned staging buffer
(``storage.appender``), each copy with an allocation and a Python object per piece. For
an upload's body regd takes the connection over while the body lasts: the transport is
switched to a ``DirectBody``, an ``asyncio.BufferedProtocol`` whose buffer is the
staging buffer itself, so the kernel's copy out of the socket is the only one. A chunked
body's chunk lines are squeezed out in place (``api.chunked``). After the body the
connection goes back to aiohttp with a fresh HTTP parser, ready for the next request;
when anything stands in the way (the body ended early or broke the chunked coding, or
this aiohttp's parser cannot be renewed) it is closed after the response.

Over TLS the same holds one layer up: the TLS protocol (uvloop's, like asyncio's)
decrypts straight into a buffered protocol's buffer, so the copies saved are the same.

The switch is made at the body's first read (``LazyBody``), after the upload's own checks:
a request refused before reading its body leaves it to aiohttp, which drains it after
the answer and keeps the connection.

A body is taken over only when that is safe, else it goes through aiohttp as before
(``api.http.BodyPieces``): no ``Content-Encoding``, a ``GuardedRequestHandler``
connection, and

- ``Content-Length``: at least ``MIN_DIRECT`` bytes still to come; what aiohttp buffered
  already is handed over first, and exactly the rest is read from the socket.
- ``Transfer-Encoding: chunked``: the connection recorded the raw bytes of this body
  that it fed to aiohttp's parser, and decoding them anew gives as many bytes as the
  parser gave (so both stand at the same place of the coding).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import StreamReader, web

from regd import metrics
from regd.api.chunked import ChunkDecoder, ChunkError
from regd.api.connections import GuardedRequestHandler
from regd.api.http import BODY_KEY, BYTES_KEY, CLOSE_KEY, BodyPieces
from regd.errors import ErrorCode, RegistryError

log = logging.getLogger("regd")

# A Content-Length body with less than this still to come goes through aiohttp.
MIN_DIRECT = 64 * 1024


def request_body(request: web.Request) -> LazyBody | BodyPieces:
    """The body of an upload request: one that may be taken over (at its first read, the
    caller must ``release`` it once done with it), else read through aiohttp."""
    if _takeable(request):
        return LazyBody(request)
    metrics.UPLOAD_BODIES.labels("aiohttp").inc()
    return BodyPieces(request.content)


def _takeable(request: web.Request) -> bool:
    handler = request.protocol
    transport = request.transport
    content = request.content
    if (
        not isinstance(handler, GuardedRequestHandler)
        or transport is None
        or transport.is_closing()
        or request.headers.get("Content-Encoding", "identity").lower() != "identity"
        or content.is_eof()
        or content.exception() is not None
        or handler.buffer_paused
        or handler.queued
    ):
        return False
    length = request.content_length
    if length is None:
        return request.headers.get("Transfer-Encoding", "").lower() == "chunked"
    return length - content.total_bytes >= MIN_DIRECT


class LazyBody:
    """An upload body taken over at its first read, after the upload's own checks: a
    request refused before it reads its body leaves that body to aiohttp, which drains
    it after the answer and keeps the connection (a body closed unread would make the
    kernel send a reset, which can destroy the answer before the client reads it)."""

    def __init__(self, request: web.Request) -> None:
        self._request = request
        self._body: DirectBody | BodyPieces | None = None
        self._spill: list[memoryview] = []  # aiohttp's pieces not yet copied out

    async def fill(self, view: memoryview) -> int:
        """``DirectBody.fill``; through aiohttp when it could not be taken after all."""
        if self._body is None:
            self._body = _take(self._request)
            direct = isinstance(self._body, DirectBody)
            metrics.UPLOAD_BODIES.labels("direct" if direct else "aiohttp").inc()
        if isinstance(self._body, DirectBody):
            return await self._body.fill(view)
        pos = 0
        while pos < len(view):
            if not self._spill:
                pieces = [] if pos else await self._body.read_pieces()
                if not pieces:
                    break
                self._spill = [memoryview(p) for p in pieces]
            pos = _copy_out(self._spill, view, pos)
        return pos

    def release(self) -> None:
        if isinstance(self._body, DirectBody):
            self._body.release()


def _copy_out(pieces: list[memoryview], view: memoryview, pos: int) -> int:
    """Move the front of ``pieces`` into ``view`` from ``pos`` on, as much as fits (what
    is copied leaves ``pieces``); the new end in ``view``."""
    while pieces and pos < len(view):
        piece = pieces[0]
        n = min(len(piece), len(view) - pos)
        view[pos : pos + n] = piece[:n]
        pos += n
        if n == len(piece):
            pieces.pop(0)
        else:
            pieces[0] = piece[n:]
    return pos


def _take(request: web.Request) -> DirectBody | BodyPieces:
    handler = request.protocol
    transport = request.transport
    content = request.content
    if not _takeable(request):
        return BodyPieces(content)
    assert isinstance(handler, GuardedRequestHandler) and transport is not None
    length = request.content_length
    raw: bytes | None = None
    if length is None:
        raw = handler.recorded_body()
        if raw is None:
            return BodyPieces(content)
    pieces = _drain(content, handler)
    if handler.reading_paused or content.exception() is not None or content.is_eof():
        return BodyPieces(content, pieces)
    received = sum(map(len, pieces))
    if received != content.total_bytes:  # someone read the body before: not ours to take
        return BodyPieces(content, pieces)
    if raw is None:
        assert length is not None
        body = DirectBody(request, handler, transport, length - received, None, pieces, b"")
    else:
        buf = memoryview(bytearray(raw))
        decoder = ChunkDecoder()
        try:
            dst, src = decoder.decode(buf, 0, 0, len(buf))
        except ChunkError:
            return BodyPieces(content, pieces)
        if decoder.done or dst != received:
            return BodyPieces(content, pieces)
        body = DirectBody(request, handler, transport, None, decoder, [buf[:dst]], bytes(buf[src:]))
    transport.pause_reading()
    transport.set_protocol(body)
    request[BODY_KEY] = body
    body.watch(content)
    return body


def _drain(content: StreamReader, handler: GuardedRequestHandler) -> list[bytes]:
    """What aiohttp has buffered of the body. Reading below its low-water mark resumes a
    paused parser, which may buffer more: drained until it stays empty."""
    pieces: list[bytes] = []
    for _ in range(64):
        data = content.read_nowait(-1)
        if data:
            pieces.append(data)
        elif not handler.reading_paused:
            break
    return pieces


class DirectBody(asyncio.BufferedProtocol):
    """The connection's protocol while regd reads an upload's body itself."""

    def __init__(
        self,
        request: web.Request,
        handler: GuardedRequestHandler,
        transport: asyncio.Transport,
        remaining: int | None,
        decoder: ChunkDecoder | None,
        prefix: list[Any],
        carry: bytes,
    ) -> None:
        self._request = request
        self._handler = handler
        self._transport = transport
        self._remaining = remaining  # Content-Length: raw bytes still to come
        self._decoder = decoder  # chunked: where in the coding the next byte is
        self._prefix: list[memoryview] = [memoryview(p) for p in prefix if len(p)]
        self._carry = carry  # chunked: the raw bytes of an incomplete line
        self._target: memoryview | None = None
        self._pos = 0  # end of the body bytes in the target
        self._raw = 0  # end of the raw bytes in the target: [_pos, _raw) is a line begun
        self._waiter: asyncio.Future[int] | None = None
        self._exc: BaseException | None = None
        self._leftover = b""  # bytes read past the end of a chunked body
        self._lost = False
        self._released = False
        self._watcher: asyncio.Future[None] | None = None
        self.received = sum(map(len, self._prefix))  # body bytes, for the body timeout

    def watch(self, content: StreamReader) -> None:
        """Fail with what aiohttp puts on the request's own body stream: at shutdown it
        ends a request that outlives the grace time that way (``request._cancel``)."""
        self._watcher = asyncio.ensure_future(content.wait_eof())
        self._watcher.add_done_callback(self._watched)

    def _watched(self, task: asyncio.Future[None]) -> None:
        if self._released:
            return
        # aiohttp sets a CancelledError, which ends the waiting task as cancelled.
        exc = asyncio.CancelledError() if task.cancelled() else task.exception()
        if exc is not None:
            self._fail(exc)

    @property
    def done(self) -> bool:
        """Whether the whole body has been read from the connection."""
        if self._decoder is not None:
            return self._decoder.done
        return self._remaining == 0

    @property
    def waiting(self) -> bool:
        """Whether a ``fill`` waits for the client's bytes."""
        return self._waiter is not None and not self._waiter.done()

    async def fill(self, view: memoryview) -> int:
        """Put the body's next bytes at the front of ``view``: how many (at least one,
        up to ``len(view)``), 0 at the end of the body. Raises what broke the body."""
        if self._exc is not None:
            raise self._exc
        pos = _copy_out(self._prefix, view, 0)
        if pos == len(view) or (self.done and not self._prefix):
            return pos
        if pos + len(self._carry) >= len(view):
            return pos  # the line begun does not fit behind: next time, at the front
        raw = pos + len(self._carry)
        view[pos:raw] = self._carry
        self._carry = b""
        self._target, self._pos, self._raw = view, pos, raw
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        try:
            self._transport.resume_reading()
            filled = await waiter
        finally:
            self._waiter = None
            if self._target is not None:  # cancelled
                self._end_fill()
        if self._exc is not None and not filled:
            raise self._exc
        return filled

    # asyncio.BufferedProtocol

    def get_buffer(self, sizehint: int) -> memoryview:
        target = self._target
        if target is None:
            raise RuntimeError("body bytes arrived with no buffer to take them")
        if self._remaining is not None:
            return target[self._raw : self._raw + min(len(target) - self._raw, self._remaining)]
        return target[self._raw :]

    def buffer_updated(self, nbytes: int) -> None:
        target = self._target
        assert target is not None
        end = self._raw + nbytes
        if self._decoder is None:
            assert self._remaining is not None
            self._remaining -= nbytes
            self.received += nbytes
            self._pos = self._raw = end
        else:
            try:
                dst, src = self._decoder.decode(target, self._pos, self._pos, end)
            except ChunkError as exc:
                self._fail(RegistryError(ErrorCode.BAD_REQUEST, f"malformed chunked body: {exc}"))
                return
            self.received += dst - self._pos
            if self._decoder.done:
                self._leftover = bytes(target[src:end])
                end = src = dst
            rest = end - src
            if rest and src != dst:
                target[dst : dst + rest] = target[src:end]
            self._pos, self._raw = dst, dst + rest
        if self.done or self._raw >= len(target):
            self._end_fill()

    def eof_received(self) -> bool | None:
        if self.done:
            self._request[CLOSE_KEY] = True
            return True  # a half-close after the body: the answer can still go out
        self._fail(ConnectionResetError("the client closed the connection before the end of the body"))
        return None

    def connection_lost(self, exc: BaseException | None) -> None:
        self._lost = True
        if not self.done:
            self._fail(ConnectionResetError("the connection was lost before the end of the body"))
        self._handler.connection_lost(exc)

    def pause_writing(self) -> None:
        self._handler.pause_writing()

    def resume_writing(self) -> None:
        self._handler.resume_writing()

    # giving the connection back

    def release(self) -> None:
        """Give the connection back to aiohttp: with a fresh parser after a whole body,
        else marked to close after the response."""
        if self._released:
            return
        self._released = True
        self._request.pop(BODY_KEY, None)
        self._request[BYTES_KEY] = self.received
        self._end_fill()
        try:
            self._request.content.feed_eof()  # nothing for aiohttp to drain or linger on
        except Exception:  # a StreamReader that failed already
            pass
        if self._watcher is not None and not self._watcher.done():
            self._watcher.cancel()
        transport = self._transport
        if self._lost or transport.is_closing():
            return
        transport.pause_reading()
        transport.set_protocol(self._handler)
        if not (self.done and self._exc is None and self._handler.renew_parser()):
            self._request[CLOSE_KEY] = True
            return  # reading stays paused: nothing more is read from this connection
        if self._leftover:
            self._handler.data_received(self._leftover)  # a pipelined request
        if not self._handler.reading_paused and not self._handler.buffer_paused:
            transport.resume_reading()

    def _end_fill(self) -> None:
        """Stop reading until the next ``fill``; move a line begun out of the target."""
        self._transport.pause_reading()
        target = self._target
        if target is None:
            return
        self._target = None
        if self._raw > self._pos:
            self._carry = bytes(target[self._pos : self._raw])
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(self._pos)

    def _fail(self, exc: BaseException) -> None:
        if self._exc is None:
            self._exc = exc
        self._end_fill()
