"""Limits on connections, against clients that hold them without sending a request.

- Request head: a connection must deliver a complete request line and headers within
  ``[server] header_timeout`` seconds of opening, or of the end of its previous
  response (which makes it the keep-alive idle limit too); else it is closed. This is
  aiohttp's keep-alive timer, which runs from the connection's start and is not reset
  by partial data.
- Request body: a handler waiting for body bytes that do not come for
  ``[server] body_timeout`` seconds (checked every ``body_timeout``, so cut between one
  and two of them) has its connection closed. An upload keeps what reached the disk and
  can resume. A handler that is busy (writing to disk, waiting for the database) is
  never cut: only a client that stops sending is.
- Per address: at most ``[server] max_connections_per_address`` open connections from
  one client address (per worker process); one more is answered 429 ``TOOMANYREQUESTS``
  and closed at once.

aiohttp has no hook for a per-connection check, so ``GuardedRunner`` makes its server
build ``GuardedRequestHandler`` protocols (the server keeps aiohttp's own settings).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import orjson
from aiohttp import web, web_protocol
from aiohttp.http import HttpRequestParser
from aiohttp.http_exceptions import LineTooLong
from aiohttp.typedefs import Handler
from aiohttp.web_protocol import RequestHandler, RequestPayloadError
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from regd.api.http import BODY_KEY, CLOSE_KEY
from regd.config import ServerConfig
from regd.errors import ErrorCode, RegistryError
from regd.services import SERVICES

log = logging.getLogger("regd")

REFUSAL_LINGER = 1.0  # seconds a refused connection stays open to drain the request
# aiohttp's parser limits (its defaults), named in the errors that refuse a request.
MAX_LINE = 8190
MAX_HEADERS = 128


def _refusal(limit: int) -> bytes:
    error = RegistryError(
        ErrorCode.TOOMANYREQUESTS, f"too many connections from this address (at most {limit})"
    )
    body = orjson.dumps(error.envelope())
    head = (
        f"HTTP/1.1 {error.status} Too Many Requests\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


class GuardedServer(Server):
    """aiohttp's ``Server``, counting connections per client address."""

    def __init__(self, *args: Any, max_per_address: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_per_address = max_per_address
        self.per_address: dict[str, int] = {}

    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(self, loop=self._loop, **self._kwargs)

    def admit(self, address: str) -> bool:
        count = self.per_address.get(address, 0)
        if self.max_per_address and count >= self.max_per_address:
            return False
        self.per_address[address] = count + 1
        return True

    def release(self, address: str) -> None:
        count = self.per_address.get(address, 0) - 1
        if count > 0:
            self.per_address[address] = count
        else:
            self.per_address.pop(address, None)


# The raw bytes of a chunked request body recorded for ``api.direct``, at most.
MAX_RECORDED = 2 << 20


class GuardedRequestHandler(RequestHandler):
    _address: str | None = None  # set once admitted, released when the connection ends
    _refused = False
    # The raw bytes of the current request's chunked body fed to the parser so far (the
    # pieces as they came, not copied), or None when there is none or too much.
    _recorded: list[Any] | None = None
    _recorded_size = 0

    def __init__(self, manager: Server, *, loop: asyncio.AbstractEventLoop, **kwargs: Any) -> None:
        super().__init__(manager, loop=loop, **kwargs)
        self._auto_decompress = bool(kwargs.get("auto_decompress", True))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        server = self._manager
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        super().connection_made(transport)
        if not isinstance(server, GuardedServer) or not address:
            return
        if server.admit(address):
            self._address = address
            return
        log.info("refused a connection from %s: %d open already", address, server.max_per_address)
        # Answer, send FIN, and keep reading (and dropping) what the client sends for a
        # moment: closed with its request unread, the socket would send a reset that
        # can destroy the answer before the client reads it.
        self._refused = True
        stream = cast(asyncio.Transport, transport)  # uvloop's are not asyncio's classes
        stream.write(_refusal(server.max_per_address))
        if stream.can_write_eof():
            stream.write_eof()
        self._loop.call_later(REFUSAL_LINGER, self.force_close)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._recorded is not None:
            self._recorded.append(data)
            self._recorded_size += len(data)
            if self._recorded_size > MAX_RECORDED:
                self._recorded = None
        count = self._request_count
        super().data_received(data)
        if self._request_count != count:
            self._record_body(data, self._request_count - count)

    def _record_body(self, data: bytes, new: int) -> None:
        """A request's head ended in ``data``: record the raw bytes of its body if it is
        chunked and ``data`` begins with its request line (so that the head ends at the
        first blank line)."""
        self._recorded = None
        if new != 1 or not self._messages:
            return
        message = self._messages[-1][0]
        method = getattr(message, "method", None)
        if not getattr(message, "chunked", False) or not isinstance(method, str):
            return
        if not data.startswith(method.encode("ascii", "replace") + b" "):
            return
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            self._recorded = [memoryview(data)[end + 4 :]]
            self._recorded_size = len(data) - end - 4

    def recorded_body(self) -> bytes | None:
        """The raw bytes of the current request's chunked body received so far (None if
        not recorded); recording stops here."""
        recorded, self._recorded = self._recorded, None
        return None if recorded is None else b"".join(recorded)

    @property
    def reading_paused(self) -> bool:
        """Whether aiohttp paused reading for a full body buffer (its flow control)."""
        return bool(getattr(self, "_reading_paused", True))

    @property
    def buffer_paused(self) -> bool:
        """Whether aiohttp paused reading for queued (pipelined) requests."""
        return bool(getattr(self, "_buffer_paused", True))

    @property
    def queued(self) -> bool:
        """Whether requests wait behind the current one (pipelined)."""
        return bool(self._messages)

    def renew_parser(self) -> bool:
        """Start a fresh HTTP parser, for the next request after a body read around the
        parser (``api.direct``); False when this aiohttp's parser is not the one known."""
        if getattr(self, "_parser", None) is None or hasattr(self, "_request_parser"):
            return False
        extra: dict[str, Any] = {}
        queue = getattr(web_protocol, "MAX_MSG_QUEUE_SIZE", None)
        if queue is not None:
            extra["max_msg_queue_size"] = queue
        try:
            parser = HttpRequestParser(
                self,
                self._loop,
                self._read_bufsize,
                max_line_size=self.max_line_size,
                max_field_size=self.max_field_size,
                max_headers=self.max_headers,
                payload_exception=RequestPayloadError,
                auto_decompress=self._auto_decompress,
                **extra,
            )
        except (TypeError, AttributeError):
            return False
        self._parser = parser
        return True

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A request aiohttp could not parse (or a handler error past the middleware):
        the OCI envelope, like every other error, instead of aiohttp's text page."""
        plain = super().handle_error(request, status, exc, message)  # logs; refuses if sent
        error = parse_error(status, exc, message)
        response = web.Response(
            status=error.status, body=orjson.dumps(error.envelope()), content_type="application/json"
        )
        response.force_close()
        del plain
        return response

    def connection_lost(self, exc: BaseException | None) -> None:
        server = self._manager
        if self._address is not None and isinstance(server, GuardedServer):
            server.release(self._address)
            self._address = None
        super().connection_lost(exc)


def parse_error(status: int, exc: BaseException | None, message: str | None) -> RegistryError:
    """The error for a request the HTTP parser refused. Limits (aiohttp's defaults): a
    request line or header line of at most 8190 bytes, at most 128 header fields."""
    text = str(getattr(exc, "message", None) or exc or message or "")
    if isinstance(exc, LineTooLong) or "too long" in text.lower() or "Got more than" in text:
        return RegistryError(
            ErrorCode.HEADERS_TOO_LARGE,
            f"request line or a header field is longer than {MAX_LINE} bytes",
        )
    if "too many headers" in text.lower():
        return RegistryError(ErrorCode.HEADERS_TOO_LARGE, f"more than {MAX_HEADERS} header fields")
    if status >= 500:
        return RegistryError(ErrorCode.UNKNOWN)
    first = text.strip().splitlines()[0].strip().rstrip(":") if text.strip() else "unreadable"
    return RegistryError(ErrorCode.BAD_REQUEST, f"malformed HTTP request: {first[:200]}")


class GuardedRunner(web.AppRunner):
    """``web.AppRunner`` whose server is a ``GuardedServer`` with the header timeout."""

    def __init__(self, app: web.Application, server: ServerConfig, **kwargs: Any) -> None:
        super().__init__(app, keepalive_timeout=server.header_timeout, **kwargs)
        self._max_per_address = server.max_connections_per_address

    async def _make_server(self) -> Server:
        plain = await super()._make_server()
        # Same handler, factory and settings; only the protocols it builds differ.
        return GuardedServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            max_per_address=self._max_per_address,
            **plain._kwargs,
        )


class _BodyWatch:
    """Closes the request's connection when its handler has waited ``timeout`` seconds
    for body bytes and none came."""

    def __init__(self, request: web.Request, timeout: float) -> None:
        self._request = request
        self._timeout = timeout
        self._seen = -1
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._handle = asyncio.get_running_loop().call_later(self._timeout, self._check)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        content = self._request.content
        direct = self._request.get(BODY_KEY)
        if direct is not None:  # the body is read around aiohttp (api.direct)
            if direct.done:
                self._handle = None
                return
            received, waiting = direct.received, direct.waiting
        elif content.is_eof() or content.exception() is not None:
            self._handle = None
            return
        else:
            received = content.total_bytes
            # ``_waiter`` is set while a reader awaits bytes (aiohttp's StreamReader): a
            # handler busy elsewhere, with bytes buffered, is not the client's fault.
            waiting = getattr(content, "_waiter", None) is not None
        if received == self._seen and waiting:
            self._handle = None
            transport = self._request.transport
            log.info(
                "closed a connection from %s: no request body bytes for %.0fs",
                self._request.remote,
                self._timeout,
            )
            if transport is not None:
                transport.close()
            return
        self._seen = received
        self.start()


@web.middleware
async def body_timeout(request: web.Request, handler: Handler) -> web.StreamResponse:
    timeout = request.app[SERVICES].config.server.body_timeout
    watch: _BodyWatch | None = None
    if request.body_exists and timeout > 0:
        watch = _BodyWatch(request, timeout)
        watch.start()
    try:
        response = await handler(request)
    finally:
        if watch is not None:
            watch.stop()
    if request.get(CLOSE_KEY):  # a body read around aiohttp, not to its end (api.direct)
        response.force_close()
    return response
