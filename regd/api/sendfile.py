"""Blob responses: sendfile(2) from the blob file straight to the socket, or (to loopback
peers) write(2) from a mapping of it.

Under uvloop, aiohttp's FileResponse falls back to read()/write() in user space, so regd
has its own path: headers go out through aiohttp's writer, then the body goes through
``os.sendfile`` on the connection's socket. uvloop refuses ``add_writer`` on a file
descriptor that a transport owns, so writability is awaited on a ``dup`` of it (the same
open socket under a second descriptor). Over TLS there is no plain socket to send to;
the body is then read in a thread and written through the transport.

A blob that is not in the page cache would make sendfile(2) wait for the disk on the
event loop, stalling every other request of the process. So before each window of
``WINDOW`` bytes is sent, two one-byte ``preadv2(RWF_NOWAIT)`` probes (its first and last
byte) tell whether the page cache holds it: RWF_NOWAIT reads only what is cached and
fails with EAGAIN otherwise, without waiting. A cached window goes out by sendfile as
before (zero-copy). An uncached one is first read into the page cache by a thread
(sendfile(2) of the window to /dev/null, which waits for the disk there and copies
nothing to user space; the reading of the next two windows is started with it), and
then sent by sendfile from the cache. Where RWF_NOWAIT is
not supported, every window is read ahead in a thread.

To a client on this host (a loopback peer) the body is written from a read-only mapping
of the blob file instead (``[server] blob_send``, "auto"). Over loopback the client's
kernel receives the very buffers the sender queued: sendfile(2)'s are references to
page-cache pages, and receiving those costs the client more system time than the linear
buffers write(2) fills (skopeo, 8 x 16 MiB: 0.64-0.70 CPU s against 0.56-0.61 for the
same pull, which went 5-13% quicker; benchmarks/RESULTS.md, "Real clients' pulls, sixth
pass"). ``os.write`` of the mapped range has the kernel copy the bytes once, from the
page cache into the socket's own buffers; no byte is touched in user space (an
unreadable page makes the write fail with EFAULT: no SIGBUS, which only a user-space
access raises). Each hop maps at most ``HOP`` bytes in a thread, writes until the socket
is full, and unmaps; the loop waits for the socket between hops. Cold windows are read
into the page cache first, as for sendfile (a thread faulting a mapping's pages in from
the disk would hold the memory-map lock that the loop's own allocations need). Over a
network the receiver's buffers are its own, and sendfile(2)'s zero copy is all gain.
"""

from __future__ import annotations

import asyncio
import ipaddress
import mmap
import os
from typing import ClassVar

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from regd.storage import fsio

# Bytes checked (and, when cold, read ahead in a thread) at a time before sendfile.
WINDOW = 2 * 1024 * 1024
READAHEAD_BUFFER = 256 * 1024
# Windows after a cold one whose reading is started (not waited for) with it.
READ_AHEAD_WINDOWS = 2
_RWF_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)
# Bytes mapped and written in one thread hop of a mapped send, at most.
HOP = 2 * 1024 * 1024


def loopback_peer(transport: asyncio.BaseTransport) -> bool:
    """Whether the connection's peer is on this host's loopback (IPv4-mapped included)."""
    peer = transport.get_extra_info("peername")
    if not isinstance(peer, tuple) or not peer:
        return False
    try:
        address = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


class SendfileResponse(web.StreamResponse):
    # Counters (per process) of bytes moved each way, read by /metrics and by the test
    # that proves the zero-copy path is the one taken.
    sent_zero_copy: ClassVar[int] = 0
    sent_copied: ClassVar[int] = 0
    sent_mapped: ClassVar[int] = 0
    # Bytes of blob files read into the page cache by a thread before sendfile (cold).
    read_ahead: ClassVar[int] = 0

    def __init__(
        self, fd: int, offset: int, count: int, *, status: int = 200, headers: dict[str, str] | None = None,
        send: str = "auto",
    ) -> None:
        super().__init__(status=status, headers=headers)
        self._fd = fd
        self._offset = offset
        self._count = count
        self._send = send
        self.content_length = count
        # Body bytes this response sent past aiohttp's writer (whose body_length counts
        # only the headers then), by sendfile(2) or from a mapping: read by the access log.
        self.zero_copy_sent = 0
        self.mapped_sent = 0
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
                if mapped(self._send, transport):
                    await mapped_range(transport, self._fd, self._offset, self._count)
                    SendfileResponse.sent_mapped += self._count
                    self.mapped_sent = self._count
                else:
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


def cached(fd: int, offset: int, count: int) -> bool | None:
    """Whether the page cache holds ``count`` bytes at ``offset`` (probing their first and
    last byte without waiting for the disk); None when the kernel cannot tell."""
    if _RWF_NOWAIT is None:
        return None
    probe = bytearray(1)
    try:
        for at in (offset, offset + count - 1):
            if os.preadv(fd, [probe], at, _RWF_NOWAIT) != 1:
                return False  # past the end: let sendfile find the short file
    except BlockingIOError:
        return False
    except OSError:  # EOPNOTSUPP (a file system without RWF_NOWAIT), EINVAL
        return None
    return True


_devnull: int | None = None


def _sink() -> int:
    global _devnull
    if _devnull is None:
        _devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    return _devnull


def read_ahead_sync(fd: int, offset: int, count: int, ahead: int = 0) -> None:
    """Bring ``count`` bytes at ``offset`` into the page cache, waiting for the disk (in a
    thread), and start reading the ``ahead`` bytes after them without waiting (the disk
    works on the next windows while this one is sent: 8 cold readers went from 1.4 to
    2.1 GB/s on the benchmark machine). sendfile(2) to /dev/null reads the pages into
    the cache and drops them there, without a copy to user space (2.4x the rate of
    reading through a buffer, and a fortieth of its CPU); where that is refused, the
    range is read through one buffer."""
    end = offset + count
    if ahead:
        os.posix_fadvise(fd, end, ahead, os.POSIX_FADV_WILLNEED)
    try:
        while offset < end:
            sent = os.sendfile(_sink(), fd, offset, end - offset)
            if sent <= 0:
                return
            offset += sent
        return
    except OSError:  # the rest of the window (all of it, mostly) through one buffer
        pass
    os.posix_fadvise(fd, offset, end - offset, os.POSIX_FADV_WILLNEED)
    buf = bytearray(min(end - offset, READAHEAD_BUFFER))
    while offset < end:
        n = os.preadv(fd, [memoryview(buf)[: end - offset]], offset)
        if n <= 0:
            return
        offset += n


def mapped(send: str, transport: asyncio.BaseTransport) -> bool:
    """Whether a plain-HTTP body goes out from a mapping (else by sendfile(2)); ``send`` is
    ``[server] blob_send``, one of the words ``config.validate`` lets through."""
    return send == "mapped" or (send == "auto" and loopback_peer(transport))


def write_mapped_sync(out_fd: int, in_fd: int, offset: int, count: int) -> int:
    """Writes ``count`` (at most ``HOP``) bytes of ``in_fd`` at ``offset`` to the
    non-blocking socket ``out_fd`` from a read-only mapping of them, until the socket is
    full; returns how many it took. In a thread; the caller has made sure the pages are
    in the page cache; the kernel maps them as its copy reaches them (populating the
    whole mapping up front cost more: a slow reader takes a fraction of a hop)."""
    start = offset - offset % mmap.ALLOCATIONGRANULARITY
    length = offset + count - start
    try:
        mapping = mmap.mmap(in_fd, length, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ, offset=start)
    except ValueError:  # mmap's own size check: the range runs past the end of the file
        raise ConnectionResetError("blob file shorter than recorded") from None
    with mapping:
        pos, written = offset - start, 0
        with memoryview(mapping) as view:
            while pos < length:
                try:
                    with view[pos:] as part:
                        n = os.write(out_fd, part)
                except BlockingIOError:
                    break
                pos += n
                written += n
    return written


async def _warm(in_fd: int, offset: int, count: int) -> int:
    """Makes sure the window at ``offset`` (of the ``count`` bytes left) is in the page
    cache, reading it ahead in a thread when the probe finds it is not; returns where
    the bytes known to be cached end."""
    window = min(count, WINDOW)
    if not cached(in_fd, offset, window):
        ahead = min(count - window, READ_AHEAD_WINDOWS * WINDOW)
        await fsio.run_to_end(read_ahead_sync, in_fd, offset, window, ahead)
        SendfileResponse.read_ahead += window
    return offset + window


async def _flushed(loop: asyncio.AbstractEventLoop, transport: asyncio.BaseTransport, out_fd: int) -> None:
    """Waits until the transport has sent what it holds (the response's headers)."""
    while isinstance(transport, asyncio.WriteTransport) and transport.get_write_buffer_size():
        await _writable(loop, out_fd)
        await asyncio.sleep(0)


async def mapped_range(transport: asyncio.BaseTransport, in_fd: int, offset: int, count: int) -> None:
    """Sends ``count`` bytes of ``in_fd`` at ``offset`` in hops of ``write_mapped_sync``.
    Cold windows are read into the page cache first, as for sendfile: a thread that
    faults pages of a mapping in from the disk holds the process's memory-map lock,
    which every other thread's mmap and munmap (the event loop's allocations) then waits
    for (measured on a 40 MB/s disk: `GET /v2/` p50 200 ms during cold pulls)."""
    loop = asyncio.get_running_loop()
    out_fd = os.dup(transport.get_extra_info("socket").fileno())
    end, warm_until = offset + count, offset
    try:
        await _flushed(loop, transport, out_fd)
        while count > 0:
            while warm_until < min(end, offset + HOP):
                warm_until = await _warm(in_fd, warm_until, end - warm_until)
            want = min(count, HOP, warm_until - offset)
            sent = await fsio.run_to_end(write_mapped_sync, out_fd, in_fd, offset, want)
            offset += sent
            count -= sent
            if sent < want:  # the socket is full
                await _writable(loop, out_fd)
    finally:
        os.close(out_fd)


async def sendfile_range(transport: asyncio.BaseTransport, in_fd: int, offset: int, count: int) -> None:
    loop = asyncio.get_running_loop()
    sock = transport.get_extra_info("socket")
    out_fd = os.dup(sock.fileno())
    warm_until = offset  # bytes before this are known to be in the page cache
    try:
        # The headers were handed to the transport; wait until it has flushed them.
        await _flushed(loop, transport, out_fd)
        while count > 0:
            if offset >= warm_until:
                warm_until = await _warm(in_fd, offset, count)
            try:
                # Non-blocking socket: copies what fits in the socket buffer, from the
                # page cache, and returns; never waits on the peer.
                sent = os.sendfile(out_fd, in_fd, offset, min(count, warm_until - offset))
            except BlockingIOError:
                await _writable(loop, out_fd)
                continue
            if sent == 0:
                raise ConnectionResetError("blob file shorter than recorded")
            offset += sent
            count -= sent
    finally:
        os.close(out_fd)
