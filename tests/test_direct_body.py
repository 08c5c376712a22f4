"""Upload bodies read straight into the staging buffer (regd/api/direct.py), against a
real ``regd serve`` over raw sockets: Content-Length and chunked bodies however the
bytes are split, the connection kept for the next request (a pipelined one included),
and every way a body can go wrong: cut off, stalled, malformed."""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from regd.api.chunked import MAX_LINE, ChunkDecoder, ChunkError
from tests.certs import PrivateCA
from tests.regd_process import RegdProcess

REPO = "library/direct"
BODY_TIMEOUT = 2.0
DEADLINE = 30.0


@pytest.fixture
def regd(tmp_path: Path) -> Iterator[RegdProcess]:
    process = RegdProcess(tmp_path, {"server": {"workers": 1, "body_timeout": BODY_TIMEOUT}})
    process.start()
    yield process
    process.close()


def start_tls_regd(root: Path, **server: object) -> RegdProcess:
    """A ``regd serve`` over HTTPS with a certificate of a private CA; ``Connection``
    trusts that CA (``client_tls``)."""
    ca = PrivateCA(root / "pki")
    cert = ca.issue("server", ["localhost", "127.0.0.1"])
    settings = {"workers": 1, **server, "tls_cert": str(cert.chain), "tls_key": str(cert.key)}
    process = RegdProcess(root, {"server": settings})
    process.client_tls = ssl.create_default_context(cafile=str(ca.ca_cert))  # type: ignore[attr-defined]
    process.start()
    return process


@pytest.fixture
def tls_regd(tmp_path: Path) -> Iterator[RegdProcess]:
    process = start_tls_regd(tmp_path)
    yield process
    process.close()


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Connection:
    """One HTTP/1.1 connection, written and read by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, regd: RegdProcess) -> Connection:
        tls: ssl.SSLContext | None = getattr(regd, "client_tls", None)  # set by tls_regd
        host = "localhost" if tls is not None else None
        return cls(*await asyncio.open_connection("127.0.0.1", regd.port, ssl=tls, server_hostname=host))

    async def send(self, data: bytes, pieces: int = 1, rng: random.Random | None = None) -> None:
        """``data`` in ``pieces`` writes cut at random places, each drained and a moment
        apart, so that the server reads it in as many parts."""
        cuts = sorted((rng or random.Random(0)).sample(range(1, len(data)), pieces - 1)) if pieces > 1 else []
        for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True):
            self.writer.write(data[a:b])
            await self.writer.drain()
            if pieces > 1:
                await asyncio.sleep(0.002)

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), DEADLINE)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers, body

    async def closed(self) -> bool:
        """Whether the server closes the connection (within DEADLINE)."""
        try:
            return await asyncio.wait_for(self.reader.read(), DEADLINE) == b""
        except ConnectionResetError:
            return True

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):  # the server cut it first
            pass


def request(method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: regd", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    if body or method in ("PATCH", "PUT", "POST"):
        if "Transfer-Encoding" not in (headers or {}):
            lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(data: bytes, sizes: list[int], extensions: bool = False, trailers: bool = False) -> bytes:
    """``data`` in the chunked coding, in chunks of ``sizes`` (cycled)."""
    out, at, k = bytearray(), 0, 0
    while at < len(data):
        n = min(sizes[k % len(sizes)], len(data) - at)
        ext = f';name{k}="v{k}"' if extensions and k % 3 == 0 else ""
        out += f"{n:x}{ext}\r\n".encode() + data[at : at + n] + b"\r\n"
        at, k = at + n, k + 1
    out += b"0\r\n" + (b"X-Checksum: none\r\nX-Other: 1\r\n" if trailers else b"") + b"\r\n"
    return bytes(out)


def with_digest(location: str, data: bytes) -> str:
    return f"{location}{'&' if '?' in location else '?'}digest={digest(data)}"


async def start_upload(conn: Connection) -> str:
    await conn.send(request("POST", f"/v2/{REPO}/blobs/uploads/"))
    status, headers, _ = await conn.response()
    assert status == 202
    return headers["location"]


async def blob(regd: RegdProcess, data: bytes) -> bytes:
    conn = await Connection.open(regd)
    try:
        await conn.send(request("GET", f"/v2/{REPO}/blobs/{digest(data)}"))
        status, _, body = await conn.response()
        assert status == 200
        return body
    finally:
        await conn.close()


async def direct_bodies(regd: RegdProcess) -> float:
    conn = await Connection.open(regd)
    try:
        await conn.send(request("GET", "/metrics"))
        _, _, text = await conn.response()
    finally:
        await conn.close()
    found = re.search(rb'^regd_upload_bodies_total\{path="direct"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


async def commit_on(conn: Connection, regd: RegdProcess, location: str, data: bytes, before: float) -> None:
    """Read the answer to a status request sent on ``conn``, commit the upload on the
    same connection, and check the blob and that one more body was read directly."""
    status, headers, _ = await conn.response()
    assert status == 204 and headers["range"] == f"0-{len(data) - 1}"
    await conn.send(request("PUT", with_digest(location, data)))
    status, _, _ = await conn.response()
    assert status == 201
    await conn.close()
    assert await blob(regd, data) == data
    assert await direct_bodies(regd) == before + 1


async def test_a_content_length_body_is_read_directly_and_the_connection_carries_on(
    regd: RegdProcess,
) -> None:
    rng = random.Random(1)
    data = rng.randbytes(3 * 1024 * 1024 + 4321)
    before = await direct_bodies(regd)
    conn = await Connection.open(regd)
    location = await start_upload(conn)
    # Head and the first bytes of the body in one write, the rest in many.
    await conn.send(request("PATCH", location, {"Content-Type": "application/octet-stream"}, data), 40, rng)
    status, headers, _ = await conn.response()
    assert status == 202 and headers["range"] == f"0-{len(data) - 1}"
    assert headers.get("connection", "").lower() != "close"
    # The same connection: status, then the commit.
    await conn.send(request("GET", location))
    await commit_on(conn, regd, location, data, before)
    # The access log counts the body's bytes, read around aiohttp or not.
    assert re.search(rf"PATCH \S+ 202 .* received={len(data)} ", regd.log())


@pytest.mark.parametrize(
    ("sizes", "extensions", "trailers", "pieces"),
    [
        ([32 * 1024], False, False, 1),  # docker's
        ([1, 7, 4095, 4097, 65536, 1 << 20], True, True, 300),
        ([3], False, True, 50),  # a line every few bytes
        ([(1 << 20) + 3, 100], True, False, 80),
    ],
)
async def test_a_chunked_body_is_decoded_however_it_is_split_and_a_pipelined_request_follows(
    regd: RegdProcess, sizes: list[int], extensions: bool, trailers: bool, pieces: int
) -> None:
    rng = random.Random(sum(sizes) + pieces)
    data = rng.randbytes(150_000 if sizes == [3] else 2 * 1024 * 1024 + 777)
    before = await direct_bodies(regd)
    conn = await Connection.open(regd)
    location = await start_upload(conn)
    body = chunked(data, sizes, extensions, trailers)
    head = request("PATCH", location, {"Transfer-Encoding": "chunked"})
    # The status request pipelined right behind the body, in the same writes.
    await conn.send(head + body + request("GET", location), pieces, rng)
    status, headers, _ = await conn.response()
    assert status == 202 and headers["range"] == f"0-{len(data) - 1}"
    await commit_on(conn, regd, location, data, before)


async def test_over_tls_bodies_are_read_directly_too(tls_regd: RegdProcess) -> None:
    """The TLS layer decrypts into the staging buffer: a Content-Length body, then a
    chunked one with a request pipelined behind it, on one connection."""
    rng = random.Random(6)
    first, second = rng.randbytes(2 * 1024 * 1024 + 5), rng.randbytes(3 * 1024 * 1024 + 11)
    before = await direct_bodies(tls_regd)
    conn = await Connection.open(tls_regd)
    location = await start_upload(conn)
    await conn.send(request("PATCH", location, {}, first), 30, rng)
    status, headers, _ = await conn.response()
    assert status == 202 and headers["range"] == f"0-{len(first) - 1}"
    head = request("PATCH", location, {"Transfer-Encoding": "chunked"})
    body = chunked(second, [32 * 1024, 1000, 7])
    await conn.send(head + body + request("GET", location), 60, rng)
    status, headers, _ = await conn.response()
    assert status == 202
    await commit_on(conn, tls_regd, location, first + second, before + 1)


async def test_a_body_refused_before_it_is_read_is_drained_and_the_connection_kept(regd: RegdProcess) -> None:
    """A PATCH refused by the session's checks (416: it does not continue at the
    session's offset) before its body is read: the body is left to aiohttp, which reads
    it away after the answer, so the answer arrives and the connection serves the next
    request, with nothing read around aiohttp."""
    data = random.Random(8).randbytes(2 * 1024 * 1024)
    before = await direct_bodies(regd)
    conn = await Connection.open(regd)
    location = await start_upload(conn)
    wrong = {"Content-Range": f"5-{len(data) + 4}"}
    await conn.send(request("PATCH", location, wrong, data), 20)
    status, headers, answer = await conn.response()
    assert status == 416 and headers["range"] == "0-0", answer
    await conn.send(request("GET", location))
    status, headers, _ = await conn.response()
    assert status == 204 and headers["range"] == "0-0"
    await conn.close()
    assert await direct_bodies(regd) == before


async def test_a_malformed_chunked_body_is_refused_in_the_envelope_and_the_connection_closed(
    regd: RegdProcess,
) -> None:
    data = random.Random(2).randbytes(1024 * 1024)
    conn = await Connection.open(regd)
    location = await start_upload(conn)
    good = chunked(data, [32 * 1024])[: -len(b"0\r\n\r\n")]
    await conn.send(request("PATCH", location, {"Transfer-Encoding": "chunked"}) + good, 10)
    await conn.send(b"zz\r\nnot a chunk\r\n")
    status, headers, body = await conn.response()
    assert status == 400
    assert b'"code":"BAD_REQUEST"' in body.replace(b" ", b"") and b"chunk" in body
    assert await conn.closed()
    await conn.close()
    # What arrived whole before the bad line is kept: the upload resumes from there.
    conn = await Connection.open(regd)
    await conn.send(request("GET", location))
    status, headers, _ = await conn.response()
    assert status == 204 and headers["range"] == f"0-{len(data) - 1}"
    await conn.close()


async def test_a_body_cut_off_keeps_what_arrived_and_the_upload_resumes(regd: RegdProcess) -> None:
    rng = random.Random(3)
    data = rng.randbytes(4 * 1024 * 1024)
    conn = await Connection.open(regd)
    location = await start_upload(conn)
    sent = 2 * 1024 * 1024 + 12345
    await conn.send(request("PATCH", location, {}, data)[: -(len(data) - sent)], 20, rng)
    await asyncio.sleep(0.5)
    await conn.close()  # mid-body
    conn = await Connection.open(regd)
    size = 0
    for _ in range(100):  # the server notices the cut; its request ends
        await conn.send(request("GET", location))
        status, headers, _ = await conn.response()
        if status == 204 and headers["range"] != "0-0":
            size = int(headers["range"].split("-")[1]) + 1
            break
        await asyncio.sleep(0.1)
    assert 0 < size <= sent
    rest = data[size:]
    await conn.send(
        request("PUT", with_digest(location, data), {"Content-Range": f"{size}-{len(data) - 1}"}, rest)
    )
    status, _, _ = await conn.response()
    assert status == 201
    await conn.close()
    assert await blob(regd, data) == data


async def test_a_body_that_stalls_is_cut_off_by_the_body_timeout(regd: RegdProcess) -> None:
    data = random.Random(4).randbytes(2 * 1024 * 1024)
    conn = await Connection.open(regd)
    location = await start_upload(conn)
    await conn.send(request("PATCH", location, {}, data)[: 1024 * 1024])  # and no more
    started = asyncio.get_running_loop().time()
    assert await conn.closed()
    await conn.close()
    assert asyncio.get_running_loop().time() - started < 2 * BODY_TIMEOUT + DEADLINE / 3
    assert "no request body bytes for" in regd.log()


# The decoder alone: every split of a body gives the same bytes.


def _decode_split(raw: bytes, cuts: list[int], body_end: int) -> bytes:
    """Feed ``raw`` in the parts ``cuts`` makes, as DirectBody does: each part appended
    behind what is left undecoded, decoded in place."""
    decoder = ChunkDecoder()
    buf = memoryview(bytearray(len(raw)))
    pos = raw_end = 0
    for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True):
        buf[raw_end : raw_end + b - a] = raw[a:b]
        end = raw_end + b - a
        dst, src = decoder.decode(buf, pos, pos, end)
        rest = end - src
        if decoder.done:
            assert b - rest == body_end  # what is left is what follows the body
            return bytes(buf[:dst])
        buf[dst : dst + rest] = buf[src:end]
        pos, raw_end = dst, dst + rest
    raise AssertionError("body not ended")


def test_a_long_chunk_extension_streams_by_however_it_is_split() -> None:
    """An extension longer than a line's window is skipped as it arrives, whatever the
    parts (llhttp sets no limit on it either); leading zeros of a size are taken."""
    rng = random.Random(7)
    data = rng.randbytes(3000)
    body = (
        b"0000000000000000000400;x=" + b"y" * 3 * MAX_LINE + b"\r\n" + data[:1024] + b"\r\n"
        + b"%x;z=\"q\"\r\n" % (len(data) - 1024) + data[1024:] + b"\r\n0;" + b"e" * 2 * MAX_LINE + b"\r\n\r\n"
    )
    for _ in range(100):
        cuts = sorted(rng.sample(range(1, len(body)), rng.randint(1, 30)))
        assert _decode_split(body, cuts, len(body)) == data


def test_the_decoder_gives_the_data_for_every_split() -> None:
    rng = random.Random(5)
    data = rng.randbytes(5000)
    body = chunked(data, [1, 2, 100, 4096], extensions=True, trailers=True)
    raw = body + b"GET / HTTP/1.1\r\n"
    for cut in range(1, len(raw)):
        assert _decode_split(raw, [cut], len(body)) == data
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(raw)), rng.randint(2, 40)))
        assert _decode_split(raw, cuts, len(body)) == data


@pytest.mark.parametrize(
    "raw",
    [
        b"zz\r\n",  # not hex
        b"5\nhello\r\n",  # LF alone
        b"5\r\nhelloXX",  # data not followed by CRLF
        b"12345678901234567\r\n",  # more than 16 digits
        b"\r\n",  # empty size
        b"5" * (MAX_LINE + 10),  # a line with no end
        b"0\r\nX-Trailer: 1\n\r\n",  # a trailer line ended by LF alone
        b"5;" + b"x" * (2 * MAX_LINE) + b"\rx\r\nhello\r\n",  # a bare CR in a long extension
        b"5;" + b"x" * (2 * MAX_LINE) + b"\n",  # a long extension ended by LF alone
    ],
)
def test_the_decoder_refuses_what_breaks_the_coding(raw: bytes) -> None:
    with pytest.raises(ChunkError):
        ChunkDecoder().decode(memoryview(bytearray(raw)), 0, 0, len(raw))
