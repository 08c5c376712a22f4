"""Decoding the chunked transfer coding (RFC 9112 section 7.1) in place.

The decoder reads raw bytes from a buffer and writes the data they carry to an earlier
(or the same) place of that buffer, so that a body read straight into an upload's
staging buffer (``api.direct``) needs no second buffer: only the few bytes of each chunk
line are squeezed out. It is a state machine, one step function per state (``_STEPS``);
a step consumes what it can and says whether it needs more bytes.

It takes what aiohttp's parser (llhttp) takes, so that a body is answered alike whichever
way it is read: lines end in CRLF, a chunk size is hex digits worth at most 64 bits
(leading zeros allowed), chunk extensions of any length are skipped as they stream by
(not buffered), trailer fields are read and dropped (a trailer line at most ``MAX_LINE``
bytes, aiohttp's limit for a header line). Whitespace before a ``;`` is taken, as RFC 9112
allows (llhttp refuses it).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable

MAX_LINE = 8192  # a trailer field line; a chunk-size line's window before its extension
# A chunk-size line: hex digits worth at most 64 bits, extensions (dropped) after a ';',
# CRLF. Matched on the buffer itself (no copy); _AFTER_DATA is the same behind the CRLF
# that ends the previous chunk's data, the two lines of every chunk boundary in one
# match. _EXTENDED is the start of a line whose extension runs past the window.
_SIZE = re.compile(rb"0*([0-9a-fA-F]{1,16})(?:[ \t]*;[^\r\n]*)?\r\n")
_AFTER_DATA = re.compile(rb"\r\n0*([0-9a-fA-F]{1,16})(?:[ \t]*;[^\r\n]*)?\r\n")
_EXTENDED = re.compile(rb"0*([0-9a-fA-F]{1,16})[ \t]*;[^\r\n]*")
_LF = re.compile(rb"\n")


class ChunkError(ValueError):
    """The body breaks the chunked coding."""


class State(enum.Enum):
    SIZE = "size"  # at a chunk-size line
    EXTENSION = "extension"  # inside a long chunk extension (skipped up to its CRLF)
    DATA = "data"  # inside a chunk's data
    DATA_END = "data-end"  # at the CRLF after a chunk's data
    TRAILER = "trailer"  # at a trailer field line, or the empty line that ends the body
    DONE = "done"  # after the body


class ChunkDecoder:
    def __init__(self) -> None:
        self.state = State.SIZE
        self.left = 0  # bytes of the current chunk's data still to come
        self.after_extension = State.DATA  # where a long extension's CRLF leads

    @property
    def done(self) -> bool:
        return self.state is State.DONE

    def decode(self, buf: memoryview, dst: int, src: int, end: int) -> tuple[int, int]:
        """Decode the raw bytes ``buf[src:end]``, moving the data they carry to
        ``buf[dst:]`` (``dst <= src``). Returns (end of the data written, end of the raw
        bytes consumed): what is left of ``buf[src:end]`` is an incomplete line, or the
        bytes after the body once ``done``."""
        while src < end and self.state is not State.DONE:
            step = _STEPS[self.state]
            moved = step(self, buf, dst, src, end)
            if moved is None:
                break  # an incomplete line: wait for more bytes
            dst, src = moved
        return dst, src

    def _size(self, buf: memoryview, dst: int, src: int, end: int) -> tuple[int, int] | None:
        window = min(end, src + MAX_LINE + 2)
        found = _SIZE.match(buf, src, window)
        if found is not None:
            return dst, self._sized(found)
        extended = _EXTENDED.match(buf, src, window)
        if extended is not None and extended.end() == window and window - src > MAX_LINE:
            self._sized(extended)  # the size; the rest of the extension streams by
            self.after_extension, self.state = self.state, State.EXTENSION
            return dst, extended.end()
        line, _ = _line(buf, src, end)  # None while the line is incomplete
        if line is not None:
            raise ChunkError(f"bad chunk size line {bytes(line[:40])!r}")
        return None

    def _sized(self, found: re.Match[bytes]) -> int:
        self.left = int(found.group(1), 16)
        self.state = State.DATA if self.left else State.TRAILER
        return found.end()

    def _extension(self, buf: memoryview, dst: int, src: int, end: int) -> tuple[int, int] | None:
        lf = _LF.search(buf, src, end)
        if lf is not None and (lf.start() == src or buf[lf.start() - 1] != 0x0D):
            raise ChunkError("chunk extension not ended by CRLF")
        # Skipped up to its CRLF, or (none yet) up to a CR at the end that may begin it.
        stop = lf.start() - 1 if lf is not None else end - (1 if buf[end - 1] == 0x0D else 0)
        if 0x0D in bytes(buf[src:stop]):
            raise ChunkError("bare CR in a chunk extension")
        if lf is not None:
            self.state = self.after_extension
            return dst, lf.end()
        return (dst, stop) if stop > src else None

    def _data(self, buf: memoryview, dst: int, src: int, end: int) -> tuple[int, int] | None:
        n = min(self.left, end - src)
        if dst != src:
            buf[dst : dst + n] = buf[src : src + n]  # memmove: the regions may overlap
        self.left -= n
        if not self.left:
            self.state = State.DATA_END
        return dst + n, src + n

    def _data_end(self, buf: memoryview, dst: int, src: int, end: int) -> tuple[int, int] | None:
        found = _AFTER_DATA.match(buf, src, min(end, src + MAX_LINE + 4))
        if found is not None:  # the usual case: this CRLF and the next size line at once
            return dst, self._sized(found)
        if end - src < 2:
            if buf[src] != 0x0D:
                raise ChunkError("chunk data not followed by CRLF")
            return None
        if buf[src] != 0x0D or buf[src + 1] != 0x0A:
            raise ChunkError("chunk data not followed by CRLF")
        self.state = State.SIZE
        return dst, src + 2

    def _trailer(self, buf: memoryview, dst: int, src: int, end: int) -> tuple[int, int] | None:
        line, after = _line(buf, src, end)
        if line is None:
            return None
        if not line:
            self.state = State.DONE
        return dst, after


_Step = Callable[[ChunkDecoder, memoryview, int, int, int], "tuple[int, int] | None"]
_STEPS: dict[State, _Step] = {
    State.SIZE: ChunkDecoder._size,
    State.EXTENSION: ChunkDecoder._extension,
    State.DATA: ChunkDecoder._data,
    State.DATA_END: ChunkDecoder._data_end,
    State.TRAILER: ChunkDecoder._trailer,
}


def _line(buf: memoryview, src: int, end: int) -> tuple[bytes | None, int]:
    """The CRLF-ended line at ``src`` (without its CRLF) and where the next begins;
    (None, src) when the line is not complete yet."""
    window = bytes(buf[src : min(end, src + 64)])
    lf = window.find(b"\n")
    if lf < 0 and end - src > 64:
        window = bytes(buf[src : min(end, src + MAX_LINE + 2)])
        lf = window.find(b"\n")
    if lf < 0:
        if len(window) > MAX_LINE + 1:
            raise ChunkError(f"chunk line longer than {MAX_LINE} bytes")
        return None, src
    if lf == 0 or window[lf - 1] != 0x0D:
        raise ChunkError("chunk line not ended by CRLF")
    return window[: lf - 1], src + lf + 1
