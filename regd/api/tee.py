"""A blob response fed by a proxy-cache download in progress (``regd.proxy.fetch``).

The body is sent from the upload's data file as the download writes it: by sendfile(2)
or from a mapping on plain HTTP (as ``SendfileResponse``), by pread and write over TLS. When the shared
download fails (truncated, stalled, wrong digest) the connection is closed before the
promised Content-Length: the client sees a cut response, never a complete 200 with
wrong bytes (the fetch holds the last byte back until the digest is checked).
"""

from __future__ import annotations

import os
from pathlib import Path

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from regd.api.sendfile import SendfileResponse, mapped, mapped_range, sendfile_range
from regd.proxy.fetch import BlobFetch, FetchFailedError, FetchState
from regd.storage import fsio

_COPY_CHUNK = 256 * 1024


class TeeResponse(web.StreamResponse):
    def __init__(self, fetch: BlobFetch, stored: Path, *, headers: dict[str, str],
                 send: str = "auto") -> None:
        super().__init__(status=200, headers=headers)
        self._fetch = fetch
        self._stored = stored  # where the blob is once the download is committed
        self._send_mode = send
        self.content_length = fetch.size
        self.zero_copy_sent = 0  # read by the access log, as SendfileResponse's
        self.mapped_sent = 0
        self.copied_sent = 0

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        fd = self._fetch.acquire()
        if fd >= 0:
            try:
                return await self._send(request, fd)
            finally:
                self._fetch.release()
        # The download ended between the handler and here: committed, or failed.
        if self._fetch.state is not FetchState.DONE:
            raise ConnectionResetError("the proxy download failed")
        fd = await fsio.run(os.open, self._stored, os.O_RDONLY)
        try:
            return await self._send(request, fd)
        finally:
            await fsio.run(fsio.close_sync, fd)

    async def _send(self, request: web.BaseRequest, fd: int) -> AbstractStreamWriter | None:
        writer = await super().prepare(request)
        transport = request.transport
        if request.method == "HEAD" or writer is None:
            return writer
        if transport is None:
            raise ConnectionResetError("connection lost")
        plain = transport.get_extra_info("sslcontext") is None
        from_mapping = plain and mapped(self._send_mode, transport)
        if plain:
            writer.send_headers()
        offset = 0
        try:
            while True:
                limit = await self._fetch.sendable(offset)
                if limit > offset and from_mapping:
                    await mapped_range(transport, fd, offset, limit - offset)
                    self.mapped_sent += limit - offset
                elif limit > offset and plain:
                    await sendfile_range(transport, fd, offset, limit - offset)
                    self.zero_copy_sent += limit - offset
                elif limit > offset:
                    await self._copy(writer, fd, offset, limit)
                offset = limit
                if offset >= self._fetch.size:
                    break
        except FetchFailedError as e:
            # Cut short: the client must not take what it got for the blob.
            transport.abort()
            raise ConnectionResetError(f"proxy download failed: {e}") from None
        SendfileResponse.sent_zero_copy += self.zero_copy_sent
        SendfileResponse.sent_mapped += self.mapped_sent
        SendfileResponse.sent_copied += self.copied_sent
        await super().write_eof()
        return writer

    async def _copy(self, writer: AbstractStreamWriter, fd: int, offset: int, limit: int) -> None:
        while offset < limit:
            data = await fsio.run(os.pread, fd, min(limit - offset, _COPY_CHUNK), offset)
            if not data:
                raise ConnectionResetError("proxy download shorter than announced")
            await writer.write(data)
            offset += len(data)
            self.copied_sent += len(data)
