"""Issue 15, findings 5 and 11, against a real ``regd serve``: clients that hold
connections without finishing a request (partial headers, a body that stalls, too many
connections from one address), and malformed requests whose raw lines must not reach
the log with the credentials they carry."""

from __future__ import annotations

import asyncio
import base64
import resource
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.regd_process import RegdProcess
from tests.security_support import ADMIN, ADMIN_PASSWORD, Api, session_from, start_regd

HEADER_TIMEOUT = 5.0  # long enough that all 30 connections are open before the first is cut
BODY_TIMEOUT = 2.0
PER_ADDRESS = 20
DEADLINE = 30.0  # polls give up after this; the limits above are what is asserted


@pytest.fixture
def regd(tmp_path: Path) -> Iterator[RegdProcess]:
    server = {
        "header_timeout": HEADER_TIMEOUT,
        "body_timeout": BODY_TIMEOUT,
        "max_connections_per_address": PER_ADDRESS,
        # The cap is per worker process (README, "Security"); one worker makes the
        # counts below exact, whichever worker the kernel hands a connection to.
        "workers": 1,
    }
    process = start_regd(tmp_path, server=server)
    yield process
    process.close()


async def _connect(regd: RegdProcess, address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", regd.port, local_addr=(address, 0))


async def _read_to_close(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (or DEADLINE)."""
    try:
        return await asyncio.wait_for(reader.read(), DEADLINE)
    except ConnectionResetError:
        return b"<reset>"


async def test_partial_headers_are_cut_off_and_one_address_holds_a_bounded_number(
    regd: RegdProcess,
) -> None:
    connections = [await _connect(regd, "127.0.0.2") for _ in range(PER_ADDRESS + 10)]
    for _, writer in connections:
        writer.write(b"GET /v2/ HTTP/1.1\r\nHost: regd\r\nX-Slow: ")  # and never the rest
        await writer.drain()

    # Meanwhile another address is served.
    async with session_from("127.0.0.1") as http:
        api = Api(http, regd)
        assert (await api.expect(200, "GET", "/api/v2.0/health"))["status"] == "healthy"

    answers = await asyncio.gather(*(_read_to_close(reader) for reader, _ in connections))
    refused = [a for a in answers if a.startswith(b"HTTP/1.1 429")]
    cut_off = [a for a in answers if a in (b"", b"<reset>")]
    assert len(refused) == 10, [a[:30] for a in answers]
    assert all(b"TOOMANYREQUESTS" in a and b"at most 20" in a for a in refused)
    assert len(cut_off) == PER_ADDRESS  # closed without an answer: no request came
    for _, writer in connections:
        writer.close()

    # Once they are gone the address may connect again.
    async with session_from("127.0.0.2") as http:
        await Api(http, regd).expect(200, "GET", "/api/v2.0/health")


async def test_a_stalled_request_body_is_cut_off_and_the_upload_keeps_its_bytes(regd: RegdProcess) -> None:
    async with session_from() as http:
        api = Api(http, regd)
        _, _, headers = await api.call("POST", "/v2/library/slow/blobs/uploads/", ADMIN)
        location = headers["Location"]

        stalls = {
            "PATCH upload": (f"PATCH {location}", "application/octet-stream", b"0123456789"),
            "API JSON body": ("POST /api/v2.0/projects", "application/json", b'{"proj'),
            "token form": ("POST /service/token", "application/x-www-form-urlencoded", b"grant_type=pass"),
        }
        for what, (line, content_type, sent) in stalls.items():
            reader, writer = await _connect(regd, "127.0.0.3")
            authorization = ADMIN["Authorization"]
            writer.write(
                f"{line} HTTP/1.1\r\nHost: regd\r\nAuthorization: {authorization}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: 1000000000\r\n\r\n".encode()
                + sent
            )
            await writer.drain()
            answer = await _read_to_close(reader)  # raises TimeoutError if still held
            assert answer in (b"", b"<reset>"), (what, answer[:200])  # cut off, not answered
            writer.close()
        assert regd.log().count("no request body bytes") == len(stalls)

        status, _, headers = await api.call("GET", location, ADMIN)
        assert status == 204
        assert headers["Range"] == "0-9"  # what arrived before the stall is kept


async def test_malformed_requests_do_not_log_their_credentials(regd: RegdProcess) -> None:
    secret = "S3cretPassw0rd"
    encoded = base64.b64encode(f"admin:{secret}".encode()).decode()
    malformed = [
        f"GET /v2/ HTTP/1.1\r\nHost: regd\r\nAuthorization : Basic {encoded}\r\n\r\n",
        f"GET /v2/ HTTP/1.1\r\nHost: regd\r\nAuthorization: Basic {encoded}{'A' * 9000}\r\n\r\n",
        f"GET /v2/ HTTP/1.1\r\nHost: regd\r\nAuthorization: Basic {encoded}\r\nBad Header\r\n\r\n",
    ]
    for request in malformed:
        reader, writer = await _connect(regd, "127.0.0.1")
        writer.write(request.encode())
        await writer.drain()
        answer = await _read_to_close(reader)
        status_line = answer.split(b"\r\n", 1)[0]
        # 400, or 431 for the header line past 8190 bytes; in the OCI envelope either way.
        assert answer.startswith(b"HTTP/1.") and (b" 400 " in status_line or b" 431 " in status_line)
        assert b'{"errors":[{"code":' in answer
        writer.close()
    async with session_from() as http:  # a request after them: their lines are written
        await Api(http, regd).expect(200, "GET", "/api/v2.0/health")

    log = regd.log()
    assert "malformed request: " in log
    for leaked in (encoded, encoded[:20], secret, ADMIN_PASSWORD):
        assert leaked not in log
    assert "Traceback" not in log


def _low_file_limit() -> None:
    """The child's soft limit as a shell often has it, below what the test opens."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 8192))


async def test_a_thousand_idle_connections_do_not_stop_others_from_being_served(tmp_path: Path) -> None:
    """Issue 14 item 5: 1,000 idle connections (ten addresses, each under the per-address
    cap) while regd started with a soft file limit of 256: it raises the limit to the
    hard one at start, so it still accepts and serves everyone else."""
    regd = RegdProcess(
        tmp_path,
        {"auth": {"enabled": True}},
        env={"REGD_ADMIN_PASSWORD": ADMIN_PASSWORD},
        preexec=_low_file_limit,
    )
    regd.start()
    idle: list[asyncio.StreamWriter] = []
    try:
        for i in range(1000):
            _, writer = await _connect(regd, f"127.0.0.{10 + i // 100}")
            idle.append(writer)
        async with session_from("127.0.0.1") as http:
            api = Api(http, regd)
            assert (await api.expect(200, "GET", "/api/v2.0/health"))["status"] == "healthy"
            status, _, _ = await api.call("GET", "/v2/", ADMIN)
            assert status == 200
        assert resource.prlimit(regd.pid, resource.RLIMIT_NOFILE) == (8192, 8192)
    finally:
        for writer in idle:
            writer.close()
        regd.close()
