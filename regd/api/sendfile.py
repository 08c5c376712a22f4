"""Zero-copy blob responses: sendfile(2) from the blob file straight to the socket.

Under uvloop, aiohttp's FileResponse falls back to read()/write() in user space, so regd
has its own path: headers go out through aiohttp's writer, then the body goes through
``os.sendfile`` on the connection's socket. uvloop refuses ``add_writer`` on a file
descriptor that a transport owns, so writability is awaited on a ``dup`` of it (the same
open socket under a second descriptor). Over TLS there is no plain socket to send to;
the body is then read in a thread and written through the transport.
"""

from __future__ import annotations

import asyncio
import os
from typing import ClassVar

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from regd.storage import fsio

CHUNK = 4 * 1024 * 1024


class SendfileResponse(web.StreamResponse):
    # Counters (per process) of bytes moved each way, read by /metrics and by the test
    # that proves the zero-copy path is the one taken.
    sent_zero_copy: ClassVar[int] = 0
    sent_copied: ClassVar[int] = 0

    def __init__(
        self, fd: int, offset: int, count: int, *, status: int = 200, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status=status, headers=headers)
        self._fd = fd
        self._offset = offset
        self._count = count
        self.content_length = count
        # Body bytes this response sent by sendfile(2), past aiohttp's writer (whose
        # body_length counts only the headers then): read by the access log.
        self.zero_copy_sent = 0
        self.copied_sent = 0

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        try:
            writer = await super().prepare(request)
            if request.method == "HEAD" or self._count == 0 or writer is None:
                return writer
            transport = request.transport
            if transport is None:
                raise ConnectionResetError("connection lost")
            if transport.get_extra_info("sslcontext") is None:
                writer.send_headers()
                await sendfile_range(transport, self._fd, self._offset, self._count)
                SendfileResponse.sent_zero_copy += self._count
                self.zero_copy_sent = self._count
            else:
                await self._copy(writer)
            await super().write_eof()
            return writer
        finally:
            await fsio.run(fsio.close_sync, self._fd)

    async def _copy(self, writer: AbstractStreamWriter) -> None:
        offset, remaining = self._offset, self._count
        while remaining:
            data = await fsio.run(os.pread, self._fd, min(remaining, 256 * 1024), offset)
            if not data:
                raise ConnectionResetError("blob file shorter than recorded")
            await writer.write(data)
            offset += len(data)
            remaining -= len(data)
        SendfileResponse.sent_copied += self._count
        self.copied_sent = self._count


async def _writable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    future: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not future.done():
            future.set_result(None)

    loop.add_writer(fd, ready)
    try:
        await future
    finally:
        loop.remove_writer(fd)


async def sendfile_range(transport: asyncio.BaseTransport, in_fd: int, offset: int, count: int) -> None:
    loop = asyncio.get_running_loop()
    sock = transport.get_extra_info("socket")
    out_fd = os.dup(sock.fileno())
    try:
        # The headers were handed to the transport; wait until it has flushed them.
        while isinstance(transport, asyncio.WriteTransport) and transport.get_write_buffer_size():
            await _writable(loop, out_fd)
            await asyncio.sleep(0)
        while count > 0:
            try:
                # Non-blocking socket: copies what fits in the socket buffer, from the
                # page cache, and returns; never waits on the peer.
                sent = os.sendfile(out_fd, in_fd, offset, min(count, CHUNK))
            except BlockingIOError:
                await _writable(loop, out_fd)
                continue
            if sent == 0:
                raise ConnectionResetError("blob file shorter than recorded")
            offset += sent
            count -= sent
    finally:
        os.close(out_fd)
