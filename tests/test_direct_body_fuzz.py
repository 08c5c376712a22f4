"""Randomized, adversarial upload bodies against a real ``regd serve``
(regd/api/direct.py, regd/api/chunked.py, the filled stages of regd/storage/appender.py).

Every case draws, from a fixed seed: a body size (many at the edges that matter: the
``MIN_DIRECT`` threshold, 4 KiB blocks, 1 MiB stages, counted from an unaligned resume
offset), Content-Length or chunked (random chunk sizes, extensions, trailers), how the
bytes are split into writes, ``Expect: 100-continue``, a request pipelined behind the
body, a first chunk that leaves the session at an unaligned offset, Content-Range, and
PATCH or the PUT that commits. Each case checks the Range, the committed blob's bytes and
that the same connection serves the next request; the log must hold no traceback.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from regd.api.direct import MIN_DIRECT
from regd.storage.appender import BLOCK, STAGE_SIZE
from tests.regd_process import RegdProcess
from tests.test_direct_body import (
    REPO,
    Connection,
    chunked,
    digest,
    direct_bodies,
    request,
    start_tls_regd,
    start_upload,
    with_digest,
)

# Fixed, so that a failure replays; REGD_FUZZ_SEED / REGD_FUZZ_CASES explore further.
SEED = int(os.environ.get("REGD_FUZZ_SEED", "20261130"))
CASES = int(os.environ.get("REGD_FUZZ_CASES", "160"))
CONCURRENCY = 4
BODY_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def regd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegdProcess]:
    root: Path = tmp_path_factory.mktemp("fuzz")
    process = RegdProcess(root, {"server": {"workers": 1, "body_timeout": BODY_TIMEOUT}})
    process.start()
    yield process
    process.close()


@pytest.fixture(scope="module")
def buffered_regd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegdProcess]:
    """Without O_DIRECT (as on a file system that refuses it): the stages are filled
    from their start and written through the page cache."""
    root: Path = tmp_path_factory.mktemp("fuzz-buffered")
    sections = {"server": {"workers": 1, "body_timeout": BODY_TIMEOUT}, "storage": {"direct_writes": False}}
    process = RegdProcess(root, sections)
    process.start()
    yield process
    process.close()


@pytest.fixture(scope="module")
def tls_regd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegdProcess]:
    """Over TLS: the TLS layer decrypts straight into the stages."""
    process = start_tls_regd(tmp_path_factory.mktemp("fuzz-tls"), body_timeout=BODY_TIMEOUT)
    yield process
    process.close()


def upload_range(size: int) -> str:
    return f"0-{max(size - 1, 0)}"


@dataclass
class Case:
    index: int
    first: int  # bytes sent by a first PATCH before the body under test (0: none)
    size: int  # bytes of the body under test
    sizes: list[int] | None  # chunk sizes (cycled) of a chunked body, None: Content-Length
    extensions: bool
    trailers: bool
    pieces: int  # writes the request is cut into
    pipelined: bool  # the next request is sent in the same writes, right behind the body
    expect: bool  # Expect: 100-continue, the body sent after the interim answer
    ranged: bool  # Content-Range on the body under test
    commit: bool  # the body under test is the last chunk of the PUT that commits
    second: int  # bytes of a further PATCH pipelined right behind the body (0: none)
    second_sizes: list[int] | None  # its chunk sizes, None: Content-Length


def _size(rng: random.Random, first: int) -> int:
    skew = first % BLOCK  # where the first fill of the first stage begins
    edge = rng.choice(
        [
            MIN_DIRECT - 1,
            MIN_DIRECT,
            MIN_DIRECT + 1,
            MIN_DIRECT + BLOCK,
            STAGE_SIZE - skew,  # ends exactly at the end of the first stage
            STAGE_SIZE - skew - 1,
            STAGE_SIZE - skew + 1,
            2 * STAGE_SIZE - skew,  # at the end of the second stage
            3 * STAGE_SIZE - skew - BLOCK,
            STAGE_SIZE,
            STAGE_SIZE + BLOCK - skew,
            BLOCK * rng.randint(16, 700) - skew,  # the file ends on a block boundary
            BLOCK * rng.randint(16, 700) - skew + rng.choice([-1, 1]),
        ]
    )
    return rng.choice([edge, edge, rng.randint(1, 3 * STAGE_SIZE), rng.randint(1, MIN_DIRECT * 2)])


def _chunk_sizes(rng: random.Random, size: int) -> list[int]:
    small = [1, 2, 3, 7, 100] if size < 2 * MIN_DIRECT else [1000, 4095]
    pool = [*small, 4096, 4097, 32 * 1024, 65536, STAGE_SIZE - 1, STAGE_SIZE + 3]
    return [rng.choice(pool) for _ in range(rng.randint(1, 4))]


def make_case(rng: random.Random, index: int) -> Case:
    first = rng.choice([0, 0, rng.randint(1, 3 * BLOCK), rng.randint(1, 2 * STAGE_SIZE), STAGE_SIZE - 1])
    size = max(1, _size(rng, first))
    is_chunked = rng.random() < 0.5
    sizes = _chunk_sizes(rng, size) if is_chunked else None
    commit = rng.random() < 0.25
    second = (
        0 if commit or rng.random() < 0.7 else rng.choice([MIN_DIRECT, rng.randint(1, 3 * STAGE_SIZE // 2)])
    )
    return Case(
        index=index,
        first=first,
        size=size,
        sizes=sizes,
        extensions=is_chunked and rng.random() < 0.3,
        trailers=is_chunked and rng.random() < 0.3,
        pieces=rng.choice([1, 1, 2, rng.randint(3, 40)]),
        pipelined=rng.random() < 0.4,
        expect=rng.random() < 0.2,
        ranged=rng.random() < 0.5,
        commit=commit,
        second=second,
        second_sizes=_chunk_sizes(rng, second) if second and rng.random() < 0.5 else None,
    )


async def send_body(conn: Connection, head: bytes, body: bytes, case: Case, rng: random.Random) -> None:
    if case.expect:
        await conn.send(head)
        status, _, _ = await conn.response()
        assert status == 100, f"case {case}: no 100 Continue"
        await conn.send(body, min(case.pieces, max(len(body) - 1, 1)), rng)
    else:
        data = head + body
        await conn.send(data, min(case.pieces, len(data) - 1), rng)


def body_headers(case: Case, location: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    if case.sizes is not None:
        headers["Transfer-Encoding"] = "chunked"
    if case.ranged:
        headers["Content-Range"] = f"{case.first}-{case.first + case.size - 1}"
    if case.expect:
        headers["Expect"] = "100-continue"
    return headers


def encode(case: Case, part: bytes) -> bytes:
    if case.sizes is None:
        return part
    return chunked(part, case.sizes, case.extensions, case.trailers)


def head_of(method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    """The request's head alone (``request`` with the body cut off)."""
    whole = request(method, path, headers, body)
    return whole[: len(whole) - len(body)]


async def run_case(regd: RegdProcess, case: Case) -> None:
    rng = random.Random(SEED * 1000 + case.index)
    data = rng.randbytes(case.first + case.size + case.second)
    conn = await Connection.open(regd)
    try:
        location = await start_upload(conn)
        if case.first:
            await conn.send(request("PATCH", location, {}, data[: case.first]))
            status, headers, _ = await conn.response()
            assert status == 202 and headers["range"] == upload_range(case.first), f"case {case}: first"
        part = data[case.first : case.first + case.size]
        method, path = ("PUT", with_digest(location, data)) if case.commit else ("PATCH", location)
        headers = body_headers(case, location)
        body = encode(case, part)
        head = head_of(method, path, headers, body)
        follow = (
            request("GET", location)
            if not case.commit
            else request("GET", f"/v2/{REPO}/blobs/{digest(data)}")
        )
        if case.second:  # one more chunk right behind: it may arrive in the same reads
            extra = data[case.first + case.size :]
            more = {"Content-Range": f"{case.first + case.size}-{len(data) - 1}"}
            if case.second_sizes is not None:
                more["Transfer-Encoding"] = "chunked"
                extra = chunked(extra, case.second_sizes)
            body += request("PATCH", location, more, extra)
        if case.pipelined or case.second:
            body += follow
        await send_body(conn, head, body, case, rng)
        status, headers, _ = await conn.response()
        if case.commit:
            assert status == 201, f"case {case}: status {status}"
        else:
            assert status == 202, f"case {case}: status {status}"
            size = case.first + case.size
            assert headers["range"] == upload_range(size), f"case {case}: range {headers['range']}"
        assert headers.get("connection", "").lower() != "close", f"case {case}: connection closed"
        if case.second:
            status, headers, _ = await conn.response()
            assert status == 202, f"case {case}: second chunk {status}"
            assert headers["range"] == upload_range(len(data)), f"case {case}: range {headers['range']}"
        # The same connection serves the next request (sent already when pipelined).
        if not (case.pipelined or case.second):
            await conn.send(follow)
        status, headers, got = await conn.response()
        if case.commit:
            assert status == 200 and got == data, f"case {case}: blob differs ({status}, {len(got)} bytes)"
        else:
            assert status == 204 and headers["range"] == upload_range(len(data)), f"case {case}: status"
            await conn.send(request("PUT", with_digest(location, data)))
            status, _, answer = await conn.response()
            assert status == 201, f"case {case}: commit {status} {answer[:300]!r}"
            await conn.send(request("GET", f"/v2/{REPO}/blobs/{digest(data)}"))
            status, _, got = await conn.response()
            assert status == 200 and got == data, f"case {case}: blob differs ({status}, {len(got)} bytes)"
    finally:
        await conn.close()


def assert_clean_log(regd: RegdProcess) -> None:
    log = regd.log()
    assert "Traceback" not in log, log[-6000:]
    assert "unhandled error" not in log and "Error handling request" not in log, log[-6000:]
    assert " 500 " not in log, log[-6000:]


@pytest.mark.parametrize("server", ["regd", "buffered_regd", "tls_regd"])
async def test_randomized_bodies_arrive_whole_and_the_connection_carries_on(
    request: pytest.FixtureRequest, server: str
) -> None:
    regd: RegdProcess = request.getfixturevalue(server)
    rng = random.Random(SEED + ["regd", "buffered_regd", "tls_regd"].index(server))
    cases = [make_case(rng, i) for i in range(CASES if server == "regd" else CASES // 2)]
    # The draw covers what it is meant to: both codings, resumes, both sides of the threshold.
    assert {c.sizes is None for c in cases} == {True, False}
    assert any(c.first % BLOCK for c in cases) and any(c.size < MIN_DIRECT for c in cases)
    assert any(c.size >= 2 * STAGE_SIZE for c in cases) and any(c.second_sizes for c in cases)
    before = await direct_bodies(regd)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(case: Case) -> None:
        async with gate:
            await asyncio.wait_for(run_case(regd, case), 60)

    results = await asyncio.gather(*(one(c) for c in cases), return_exceptions=True)
    failures = [(c, r) for c, r in zip(cases, results, strict=True) if isinstance(r, BaseException)]
    assert not failures, "\n".join(f"{c}: {r!r}" for c, r in failures[:5])
    # Most bodies (every one of at least MIN_DIRECT) went the direct way.
    assert await direct_bodies(regd) - before >= sum(c.size >= MIN_DIRECT for c in cases) // 2
    assert_clean_log(regd)


async def status_size(regd: RegdProcess, location: str) -> int:
    """The session's size once no request holds it any more: an empty PATCH (which
    changes nothing) is answered 202 with the Range only when the session is free."""
    for _ in range(200):
        conn = await Connection.open(regd)
        try:
            await conn.send(request("PATCH", location))
            status, headers, answer = await conn.response()
        finally:
            await conn.close()
        if status == 202:
            return int(headers["range"].split("-")[1]) + 1 if headers["range"] != "0-0" else 0
        assert status == 416 and b"being written" in answer, (status, answer)
        await asyncio.sleep(0.05)
    raise AssertionError("session still held")


@pytest.mark.parametrize("coding", ["length", "chunked"])
async def test_a_client_that_goes_away_anywhere_leaves_a_session_that_resumes(
    regd: RegdProcess, coding: str
) -> None:
    rng = random.Random(SEED + len(coding))
    for round_ in range(6):
        data = rng.randbytes(rng.randint(MIN_DIRECT, 3 * STAGE_SIZE))
        # At least 2 bytes before the cut: a session of 1 byte reports Range 0-0, as an empty one.
        first = rng.choice([2, rng.randint(2, 2 * BLOCK)])
        conn = await Connection.open(regd)
        location = await start_upload(conn)
        if first:
            await conn.send(request("PATCH", location, {}, data[:first]))
            status, _, _ = await conn.response()
            assert status == 202
        headers = {"Transfer-Encoding": "chunked"} if coding == "chunked" else {}
        body = (
            chunked(data[first:], [rng.choice([4096, 32768, 100_003])])
            if coding == "chunked"
            else data[first:]
        )
        whole = request("PATCH", location, headers, body)
        cut = rng.choice([rng.randint(1, len(whole) - 1), len(whole) - 1, len(whole) - len(body) + 1])
        await conn.send(whole[:cut], rng.randint(1, 8), rng)
        await asyncio.sleep(rng.choice([0, 0.05, 0.3]))
        if rng.random() < 0.5:
            conn.writer.transport.abort()  # a reset, not a FIN
        await conn.close()
        size = await status_size(regd, location)
        assert first <= size <= len(data), f"round {round_}: size {size}"
        # Resume exactly where the session says, commit, and compare.
        conn = await Connection.open(regd)
        rest = data[size:]
        put = with_digest(location, data)
        await conn.send(
            request("PUT", put, {"Content-Range": f"{size}-{len(data) - 1}"} if rest else {}, rest)
        )
        status, _, answer = await conn.response()
        assert status == 201, f"round {round_}: {status} {answer[:300]!r}"
        await conn.send(request("GET", f"/v2/{REPO}/blobs/{digest(data)}"))
        status, _, got = await conn.response()
        assert status == 200 and got == data
        await conn.close()
    assert_clean_log(regd)


@pytest.mark.parametrize("delta", [-1, 1, -BLOCK, 5000])
async def test_a_chunked_body_longer_or_shorter_than_its_content_range_is_refused_and_not_kept(
    regd: RegdProcess, delta: int
) -> None:
    rng = random.Random(SEED + delta)
    data = rng.randbytes(2 * STAGE_SIZE + 123)
    first = 777
    conn = await Connection.open(regd)
    location = await start_upload(conn)
    await conn.send(request("PATCH", location, {}, data[:first]))
    status, _, _ = await conn.response()
    assert status == 202
    sent = data[first : len(data) + min(delta, 0)] + rng.randbytes(max(delta, 0))
    headers = {"Transfer-Encoding": "chunked", "Content-Range": f"{first}-{len(data) - 1}"}
    await conn.send(
        request("PATCH", location, headers, chunked(sent, [65536])) + request("GET", location), 5, rng
    )
    status, _, answer = await conn.response()
    assert status == 400 and b"SIZE_INVALID" in answer, (status, answer)
    if delta < 0:  # the whole body was read: the connection serves the pipelined request
        status, headers, _ = await conn.response()
        assert status == 204 and headers["range"] == upload_range(first)
    else:  # read to its end (then the pipelined request is served), or cut off and closed
        try:
            status, headers, _ = await conn.response()
        except (asyncio.IncompleteReadError, ConnectionResetError):
            pass
        else:
            assert status == 204 and headers["range"] == upload_range(first)
    await conn.close()
    assert await status_size(regd, location) == first
    assert_clean_log(regd)


async def test_a_half_close_after_the_whole_body_still_gets_its_answer(regd: RegdProcess) -> None:
    data = random.Random(SEED + 7).randbytes(STAGE_SIZE + 5)
    conn = await Connection.open(regd)
    location = await start_upload(conn)
    await conn.send(request("PATCH", location, {}, data), 7)
    conn.writer.write_eof()
    status, headers, _ = await conn.response()
    assert status == 202 and headers["range"] == upload_range(len(data))
    await conn.close()
    assert await status_size(regd, location) == len(data)
    assert_clean_log(regd)


async def test_http10_bodies_are_read_whole_and_the_connection_ends(regd: RegdProcess) -> None:
    data = random.Random(SEED + 8).randbytes(3 * MIN_DIRECT + 11)
    conn = await Connection.open(regd)
    location = await start_upload(conn)
    await conn.close()
    conn = await Connection.open(regd)
    head = f"PATCH {location} HTTP/1.0\r\nHost: regd\r\nContent-Length: {len(data)}\r\n\r\n".encode()
    await conn.send(head + data, 5)
    status, headers, _ = await conn.response()
    assert status == 202 and headers["range"] == upload_range(len(data))
    assert await conn.closed()
    await conn.close()
    assert_clean_log(regd)


async def test_a_content_length_that_disagrees_with_content_range_is_refused_before_the_body(
    regd: RegdProcess,
) -> None:
    data = random.Random(SEED + 9).randbytes(2 * MIN_DIRECT)
    conn = await Connection.open(regd)
    location = await start_upload(conn)
    wrong = {"Content-Range": f"0-{len(data)}"}  # one byte more than the body
    await conn.send(request("PATCH", location, wrong, data) + request("GET", location))
    status, _, answer = await conn.response()
    assert status == 400 and b"SIZE_INVALID" in answer
    # Either the body is drained and the pipelined request answered, or the connection ends.
    try:
        status, headers, _ = await conn.response()
        assert status == 204 and headers["range"] == "0-0"
    except (asyncio.IncompleteReadError, ConnectionResetError):
        pass
    await conn.close()
    assert await status_size(regd, location) == 0
    assert_clean_log(regd)


async def test_empty_patches_one_after_another_are_all_answered(regd: RegdProcess) -> None:
    """A body-less PATCH gets aiohttp's shared EMPTY_PAYLOAD, whose ``readchunk`` says
    "end of body" (b"", False) only the first time in the process and (b"", True) ever
    after: read in a loop until the former, it spun the worker's event loop forever."""
    conn = await Connection.open(regd)
    location = await start_upload(conn)
    for _ in range(3):
        await conn.send(request("PATCH", location))
        status, headers, _ = await asyncio.wait_for(conn.response(), 5)
        assert status == 202 and headers["range"] == "0-0"
    await conn.close()


async def test_a_stop_mid_body_ends_cleanly_and_the_session_resumes_after_restart(tmp_path: Path) -> None:
    """SIGTERM while two direct bodies are coming: one finishes within the grace time
    (answered, connection closed), the other stalls and is cut at the end of it; the
    daemon exits without a traceback and, started again, resumes the stalled session."""
    process = RegdProcess(tmp_path, {"server": {"workers": 1, "shutdown_grace": 1.5, "body_timeout": 30.0}})
    process.start()
    try:
        rng = random.Random(SEED + 10)
        done, stalled = rng.randbytes(3 * STAGE_SIZE + 17), rng.randbytes(3 * STAGE_SIZE + 4099)
        a, b = await Connection.open(process), await Connection.open(process)
        loc_a, loc_b = await start_upload(a), await start_upload(b)
        whole_a = request("PATCH", loc_a, {}, done)
        head_b = head_of("PATCH", loc_b, {"Transfer-Encoding": "chunked"}, b"")
        body_b = chunked(stalled, [32 * 1024])
        await a.send(whole_a[: len(whole_a) // 2])
        sent_b = len(body_b) // 2 + 3
        await b.send(head_b + body_b[:sent_b], 4, rng)
        await asyncio.sleep(0.3)
        process.send(signal.SIGTERM)
        await asyncio.sleep(0.2)
        await a.send(whole_a[len(whole_a) // 2 :], 5, rng)
        status, headers, _ = await a.response()
        assert status == 202 and headers["range"] == upload_range(len(done))
        assert await a.closed()
        assert await b.closed()
        await a.close()
        await b.close()
        assert await asyncio.to_thread(process.wait, 20) == 0
        assert_clean_log(process)
        process.start()
        size = await status_size(process, loc_b)
        assert 0 < size < len(stalled)
        conn = await Connection.open(process)
        headers = {"Content-Range": f"{size}-{len(stalled) - 1}"}
        await conn.send(request("PUT", with_digest(loc_b, stalled), headers, stalled[size:]))
        status, _, answer = await conn.response()
        assert status == 201, answer
        await conn.send(request("GET", f"/v2/{REPO}/blobs/{digest(stalled)}"))
        status, _, got = await conn.response()
        assert status == 200 and got == stalled
        await conn.close()
        assert_clean_log(process)
    finally:
        process.close()


# Chunk-size lines that aiohttp's parser (llhttp) takes: regd/api/chunked.py takes them too.
ACCEPTED_LINES = {
    "long extension": b"%x;note=" + b"a" * 100_000,  # RFC 9112 sets no limit, llhttp none either
    "17 digits": b"000000000000%x",  # leading zeros: llhttp limits the value, not the digits
}


@pytest.mark.parametrize("line", list(ACCEPTED_LINES))
@pytest.mark.parametrize("split_head", [True, False])
async def test_a_chunk_size_line_aiohttp_takes_is_taken_whichever_way_the_body_is_read(
    regd: RegdProcess, split_head: bool, line: str
) -> None:
    data = random.Random(SEED + 11).randbytes(200_000)
    conn = await Connection.open(regd)
    location = await start_upload(conn)
    head = request("PATCH", location, {"Transfer-Encoding": "chunked"})
    half = len(data) // 2
    size_line = ACCEPTED_LINES[line] % (len(data) - half)
    body = b"%x\r\n%s\r\n%s\r\n%s\r\n0\r\n\r\n" % (half, data[:half], size_line, data[half:])
    if split_head:  # a head in two reads is not recorded: the body goes through aiohttp
        await conn.send(head[:10])
        await asyncio.sleep(0.05)
    await conn.send(head[10:] if split_head else head)
    await asyncio.sleep(0.05)
    await conn.send(body, 3)
    try:
        status, headers, answer = await conn.response()
    except (ConnectionResetError, asyncio.IncompleteReadError) as exc:
        status, headers, answer = 0, {}, repr(exc).encode()
    await conn.close()
    assert status == 202 and headers["range"] == upload_range(len(data)), (status, answer[:200])
