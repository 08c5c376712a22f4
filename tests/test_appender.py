"""The upload writer's file end (regd/storage/appender.py): O_DIRECT blocks from a
staging buffer, a partial block through the page cache and read back by the next
request, the running hash in step with the file, and page-cache writes where O_DIRECT
is refused."""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regd.digest import ContentHash
from regd.storage.appender import BLOCK, STAGE_SIZE, Appender
from tests.pagecache import resident_pages

# Piece sizes around the boundaries that matter: a block, the stage, docker's 32 KiB.
SIZES = st.one_of(
    st.integers(0, 3 * BLOCK),
    st.sampled_from([BLOCK - 1, BLOCK + 1, 32 * 1024, STAGE_SIZE - 1, STAGE_SIZE, STAGE_SIZE + 7]),
    st.integers(0, 2 * STAGE_SIZE + 3),
)


def _append_requests(path: Path, requests: list[list[bytes]], direct: bool) -> tuple[int, ContentHash]:
    """Each request as the upload service runs one: open at the recorded size, write
    its lots, close; the sizes it reports are what the session records."""
    size = 0
    hasher = ContentHash()
    for lots in requests:
        writer = Appender(path, size, direct=direct, start_writeback=False)
        written = sum(writer.write_sync([chunk], hasher) for chunk in lots)
        written += writer.close_sync()
        assert writer.complete
        size += written
    return size, hasher


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    requests=st.lists(st.lists(SIZES, max_size=4), min_size=1, max_size=4),
    direct=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_byte_lands_once_and_is_hashed_once(
    tmp_path: Path, requests: list[list[int]], direct: bool, seed: int
) -> None:
    rng = random.Random(seed)
    data = [[rng.randbytes(n) for n in lots] for lots in requests]
    path = tmp_path / f"data-{seed}-{direct}"
    path.unlink(missing_ok=True)
    size, hasher = _append_requests(path, data, direct)
    expected = b"".join(b"".join(lots) for lots in data)
    assert size == len(expected)
    assert path.read_bytes() == expected
    assert hasher.digest.hexdigest() == hashlib.sha256(expected).hexdigest()


def test_reported_bytes_are_in_the_file_at_every_step(tmp_path: Path) -> None:
    """What a call reports may be read from the file at once (the proxy cache's tee reads
    a growing upload up to the reported size)."""
    path = tmp_path / "data"
    data = os.urandom(3 * STAGE_SIZE + 12345)
    writer = Appender(path, 0, direct=True, start_writeback=False)
    reported = 0
    for start in range(0, len(data), 100_000):
        reported += writer.write_sync([data[start : start + 100_000]], None)
        assert path.read_bytes()[:reported] == data[:reported]
        assert len(data[: start + 100_000]) - reported < BLOCK  # at most a block waits
    reported += writer.close_sync()
    assert reported == len(data) and path.read_bytes() == data


def test_a_resumed_upload_continues_in_the_middle_of_a_block(tmp_path: Path) -> None:
    path = tmp_path / "data"
    first, second = os.urandom(BLOCK + 100), os.urandom(2 * BLOCK + 5)
    writer = Appender(path, 0, direct=True, start_writeback=False)
    assert writer.write_sync([first], None) == BLOCK  # the partial block waits
    assert writer.close_sync() == 100
    writer = Appender(path, len(first), direct=True, start_writeback=False)
    writer.write_sync([second], None)
    writer.close_sync()
    assert path.read_bytes() == first + second


def test_bytes_left_past_the_recorded_size_are_cut_off(tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.write_bytes(b"a" * 10_000)  # a crash left 5,000 bytes the session never recorded
    writer = Appender(path, 5_000, direct=True, start_writeback=False)
    writer.write_sync([b"b" * 3_000], None)
    writer.close_sync()
    assert path.read_bytes() == b"a" * 5_000 + b"b" * 3_000


def _o_direct_accepted(directory: Path) -> bool:
    try:
        os.close(os.open(directory / "probe", os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600))
    except OSError:
        return False
    return True


def test_direct_writes_leave_the_page_cache_alone(tmp_path: Path) -> None:
    assert _o_direct_accepted(tmp_path), f"{tmp_path}'s file system refuses O_DIRECT: test elsewhere"
    data = os.urandom(8 * 1024 * 1024 + 100)
    for direct, most in ((True, 1), (False, None)):
        path = tmp_path / f"data-{direct}"
        writer = Appender(path, 0, direct=direct, start_writeback=False)
        assert writer.direct is direct
        for start in range(0, len(data), 32 * 1024):
            writer.write_sync([data[start : start + 32 * 1024]], None)
        writer.close_sync()
        resident, _ = resident_pages(path)
        if most is not None:
            assert resident <= most  # only the last, partial block went through the cache
        else:
            assert resident >= len(data) // mmap.PAGESIZE - 1
        assert path.read_bytes() == data


def test_a_file_system_that_refuses_o_direct_gets_page_cache_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def refuse_direct(path: str | Path, flags: int, *args: int) -> int:
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refuse_direct)
    data = os.urandom(STAGE_SIZE + 999)
    writer = Appender(tmp_path / "data", 0, direct=True, start_writeback=True)
    assert writer.direct is False
    assert writer.write_sync([data], None) == len(data)  # all of it, at once
    assert writer.close_sync() == 0
    assert (tmp_path / "data").read_bytes() == data


def _filled_request(path: Path, size: int, fills: list[bytes], direct: bool, hasher: ContentHash) -> int:
    """One request as the upload service runs a body received straight into the stages
    (api.direct): each fill put at ``stage_view`` of the two stages in turn, then handed
    to ``filled_sync``."""
    writer = Appender(path, size, direct=direct, start_writeback=False, filled=True)
    written = 0
    i, start = 0, writer.first_start
    for data in fills:
        view = writer.stage_view(i, start)
        piece = data[: len(view)]  # a fill never exceeds the view it is given
        view[: len(piece)] = piece
        written += writer.filled_sync(i, start, len(piece), hasher)
        assert written <= writer.received
        i, start = 1 - i, writer.next_start(start, len(piece))
    written += writer.close_sync()
    assert writer.complete
    return written


FILLS = st.one_of(
    st.integers(1, 3 * BLOCK),
    st.sampled_from([BLOCK - 1, BLOCK, BLOCK + 1, STAGE_SIZE - BLOCK, STAGE_SIZE]),
    st.integers(1, STAGE_SIZE),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    requests=st.lists(st.tuples(st.booleans(), st.lists(FILLS, max_size=4)), min_size=1, max_size=4),
    direct=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_filled_stages_land_every_byte_once_between_chunked_requests(
    tmp_path: Path, requests: list[tuple[bool, list[int]]], direct: bool, seed: int
) -> None:
    """Requests whose bodies were received into the stages, mixed with requests handed
    in as chunks, resumed at any offset (partial blocks carried from one stage to the
    other and from one request to the next): the file and the running hash hold every
    byte once, in order."""
    rng = random.Random(seed)
    path = tmp_path / f"filled-{seed}-{direct}"
    path.unlink(missing_ok=True)
    size = 0
    hasher = ContentHash()
    expected = bytearray()
    for filled, sizes in requests:
        pieces = [rng.randbytes(n) for n in sizes]
        if filled:
            stage_room = STAGE_SIZE - BLOCK  # the smallest view a fill can get
            pieces = [p[:stage_room] for p in pieces]
            size += _filled_request(path, size, pieces, direct, hasher)
        else:
            writer = Appender(path, size, direct=direct, start_writeback=False)
            size += sum(writer.write_sync([p], hasher) for p in pieces) + writer.close_sync()
        expected += b"".join(pieces)
    assert size == len(expected)
    assert path.read_bytes() == bytes(expected)
    assert hasher.digest.hexdigest() == hashlib.sha256(expected).hexdigest()
