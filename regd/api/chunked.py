"""Decoding the chunked transfer coding (RFC 9112 section 7.1) in place.

The decoder reads raw bytes from a buffer and writes the data they carry to an earlier
(or the same) place of that buffer, so that a body read straight into an upload's
staging buffer (``api.direct``) needs no second buffer: only the few bytes of each chunk
line are squeezed out. It is a state machine, one step function per state (``_STEPS``);
a step consumes what it can and says whether it needs more bytes.

Strict as aiohttp's parser (llhttp) is by default: lines end in CRLF, a chunk size is
1 to 16 hex digits, chunk extensions and trailer fields are read and dropped, a line is
at most ``MAX_LINE`` bytes.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable

MAX_LINE = 4096  # a chunk-size line (with its extensions) or a trailer field
# A chunk-size line: 1-16 hex digits, extensions (dropped) after a ';', CRLF. Matched on
# the buffer itself (no copy); _AFTER_DATA is the same behind the CRLF that ends the
# previous chunk's data, the two lines of every chunk boundary in one match.
_SIZE = re.compile(rb"([0-9a-fA-F]{1,16})(?:[ \t]*;[^\r\n]*)?\r\n")
_AFTER_DATA = re.compile(rb"\r\n([0-9a-fA-F]{1,16})(?:[ \t]*;[^\r\n]*)?\r\n")


class ChunkError(ValueError):
    """The body breaks the chunked coding."""


class State(enum.Enum):
    SIZE = "size"  # at a chunk-size line
    DATA = "data"  # inside a chunk's data
    DATA_END = "data-end"  # at the CRLF after a chunk's data
    TRAILER = "trailer"  # at a trailer field line, or the empty line that ends the body
    DONE = "done"  # after the body


class ChunkDecoder:
    def __init__(self) -> None:
        self.state = State.SIZE
        self.left = 0  # bytes of the current chunk's data still to come

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
        found = _SIZE.match(buf, src, min(end, src + MAX_LINE + 2))
        if found is None:
            line, _ = _line(buf, src, end)  # None while the line is incomplete
            if line is not None:
                raise ChunkError(f"bad chunk size line {bytes(line[:40])!r}")
            return None
        return dst, self._sized(found)

    def _sized(self, found: re.Match[bytes]) -> int:
        self.left = int(found.group(1), 16)
        self.state = State.DATA if self.left else State.TRAILER
        return found.end()

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
