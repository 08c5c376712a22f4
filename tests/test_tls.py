"""HTTPS with a private CA against a real ``regd serve``: the chain is served, an
untrusting client is refused at the handshake, and SIGHUP rotates the certificate for
new connections while an upload in flight on an old one carries on."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.certs import PrivateCA, ServerCert, serial_of
from tests.regd_process import RegdProcess

HOSTS = ["localhost", "127.0.0.1"]


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def ca(tmp_path: Path) -> PrivateCA:
    return PrivateCA(tmp_path / "pki")


@pytest.fixture
def server_cert(ca: PrivateCA) -> ServerCert:
    return ca.issue("server", HOSTS)


@pytest.fixture
def regd(tmp_path: Path, server_cert: ServerCert, ca: PrivateCA) -> Iterator[RegdProcess]:
    process = RegdProcess(
        tmp_path,
        {
            "server": {
                "tls_cert": str(server_cert.chain),
                "tls_key": str(server_cert.key),
                "ca_cert": str(ca.ca_cert),
            }
        },
    )
    process.start()
    yield process
    process.close()


def _trusting(ca: PrivateCA) -> ssl.SSLContext:
    # Only the root: the intermediate must come from the server (the full chain).
    return ssl.create_default_context(cafile=str(ca.ca_cert))


def _url(regd: RegdProcess) -> str:
    return f"https://127.0.0.1:{regd.port}"


async def _served_serial(regd: RegdProcess, context: ssl.SSLContext) -> int:
    """The serial of the certificate a new connection is shown."""
    _reader, writer = await asyncio.open_connection("127.0.0.1", regd.port, ssl=context)
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        return serial_of(ssl_object.getpeercert(binary_form=True))
    finally:
        writer.close()
        await writer.wait_closed()


async def test_push_and_pull_over_https_trusting_only_the_root_ca(regd: RegdProcess, ca: PrivateCA) -> None:
    data = os.urandom(3 * 1024 * 1024 + 7)
    digest = _digest(data)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=_trusting(ca))) as http:
        base = f"{_url(regd)}/v2/library/tls"
        resp = await http.post(f"{base}/blobs/uploads/")
        assert resp.status == 202
        location = resp.headers["Location"]
        resp = await http.patch(f"{_url(regd)}{location}", data=data)
        assert resp.status == 202
        resp = await http.put(f"{_url(regd)}{location}", params={"digest": digest})
        assert resp.status == 201, await resp.text()

        resp = await http.get(f"{base}/blobs/{digest}")
        body = await resp.read()
        assert resp.status == 200
        assert _digest(body) == digest

        resp = await http.get(f"{base}/blobs/{digest}", headers={"Range": "bytes=10-19"})
        assert resp.status == 206 and await resp.read() == data[10:20]


async def test_a_client_that_does_not_trust_the_ca_fails_the_handshake(regd: RegdProcess) -> None:
    untrusting = ssl.create_default_context()  # the system's roots, not ours
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=untrusting)) as http:
        with pytest.raises(aiohttp.ClientConnectorCertificateError) as failure:
            await http.get(f"{_url(regd)}/v2/")
    assert "certificate verify failed" in str(failure.value)
    assert regd.alive()


async def test_plain_http_to_the_https_port_gets_no_registry_answer(regd: RegdProcess) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientError):
            await http.get(f"http://127.0.0.1:{regd.port}/v2/")


async def test_sighup_serves_the_new_certificate_while_an_upload_in_flight_completes(
    regd: RegdProcess, ca: PrivateCA, server_cert: ServerCert
) -> None:
    context = _trusting(ca)
    assert await _served_serial(regd, context) == server_cert.serial
    first, second = os.urandom(600_000), os.urandom(900_000)
    data = first + second
    resume = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield first
        await resume.wait()
        yield second

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http:
        resp = await http.post(f"{_url(regd)}/v2/library/rotate/blobs/uploads/")
        location = resp.headers["Location"]
        upload = asyncio.create_task(http.patch(f"{_url(regd)}{location}", data=body()))
        await asyncio.sleep(0.5)  # the first part is on its way over the old connection

        rotated = ca.issue("rotated", HOSTS)
        server_cert.chain.write_bytes(rotated.chain.read_bytes())
        server_cert.key.write_bytes(rotated.key.read_bytes())
        regd.notify.messages.clear()
        regd.send(signal.SIGHUP)
        await asyncio.to_thread(regd.notify.wait_for, "READY=1", 10)

        assert await _served_serial(regd, context) == rotated.serial
        resume.set()
        resp = await asyncio.wait_for(upload, 30)
        assert resp.status == 202, await resp.text()
        assert resp.headers["Range"] == f"0-{len(data) - 1}"
        resp = await http.put(f"{_url(regd)}{location}", params={"digest": _digest(data)})
        assert resp.status == 201, await resp.text()
        resp = await http.get(f"{_url(regd)}/v2/library/rotate/blobs/{_digest(data)}")
        assert _digest(await resp.read()) == _digest(data)
    assert "TLS certificate reloaded" in regd.log()


async def test_a_bad_certificate_on_sighup_keeps_the_running_one(
    regd: RegdProcess, ca: PrivateCA, server_cert: ServerCert
) -> None:
    server_cert.key.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    regd.notify.messages.clear()

    regd.send(signal.SIGHUP)
    await asyncio.to_thread(regd.notify.wait_for, "READY=1", 10)

    assert regd.alive()
    assert "reload failed" in regd.log()
    assert await _served_serial(regd, _trusting(ca)) == server_cert.serial


def test_an_unreadable_certificate_stops_regd_at_start_with_one_line(tmp_path: Path) -> None:
    regd = RegdProcess(
        tmp_path, {"server": {"tls_cert": str(tmp_path / "missing.crt"), "tls_key": str(tmp_path / "k")}}
    )
    try:
        regd.start(wait=False)
        assert regd.wait(30) == 1
    finally:
        regd.close()
    [line] = regd.log().strip().splitlines()  # TLS is loaded before anything else
    assert line.startswith("regd: cannot load TLS certificate ")
    assert "missing.crt" in line and "No such file" in line


def test_a_ca_cert_that_is_not_a_certificate_stops_regd_at_start(tmp_path: Path) -> None:
    bogus = tmp_path / "ca.crt"
    bogus.write_text("not a certificate\n")
    regd = RegdProcess(tmp_path, {"server": {"ca_cert": str(bogus)}})
    try:
        regd.start(wait=False)
        assert regd.wait(30) == 1
    finally:
        regd.close()
    [line] = regd.log().strip().splitlines()
    assert line.startswith(f"regd: cannot load CA certificate {bogus}: ")


async def _serial_and_worker(regd: RegdProcess, context: ssl.SSLContext, request_id: str) -> tuple[int, int]:
    """On one new connection: the certificate it was shown and the worker that answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", regd.port, ssl=context)
    try:
        serial = serial_of(writer.get_extra_info("ssl_object").getpeercert(binary_form=True))
        writer.write(
            f"GET /v2/ HTTP/1.1\r\nHost: localhost\r\nX-Request-Id: {request_id}\r\nConnection: close\r\n\r\n"
            .encode()
        )
        await writer.drain()
        assert (await reader.read()).startswith(b"HTTP/1.1 200")
    finally:
        writer.close()
    return serial, await asyncio.to_thread(regd.served_by, request_id)


async def _serials_by_worker(regd: RegdProcess, context: ssl.SSLContext, tag: str) -> dict[int, set[int]]:
    """Connections until every worker answered at least once (bounded): serials by pid."""
    seen: dict[int, set[int]] = {}
    for i in range(100):
        serial, pid = await _serial_and_worker(regd, context, f"{tag}-{i}")
        seen.setdefault(pid, set()).add(serial)
        if len(seen) == 2:
            return seen
    raise AssertionError(f"100 connections and not both workers answered: {seen}")


async def test_sighup_rotates_the_certificate_in_every_worker(
    tmp_path: Path, ca: PrivateCA, server_cert: ServerCert
) -> None:
    tls = {"tls_cert": str(server_cert.chain), "tls_key": str(server_cert.key), "workers": 2}
    regd = RegdProcess(tmp_path, {"server": tls})
    context = _trusting(ca)
    try:
        regd.start()
        before = await _serials_by_worker(regd, context, "before")
        assert all(serials == {server_cert.serial} for serials in before.values()), before

        rotated = ca.issue("rotated", HOSTS)
        server_cert.chain.write_bytes(rotated.chain.read_bytes())
        server_cert.key.write_bytes(rotated.key.read_bytes())
        regd.notify.messages.clear()
        regd.send(signal.SIGHUP)
        await asyncio.to_thread(regd.notify.wait_for, "READY=1", 10)  # every worker reloaded

        after = await _serials_by_worker(regd, context, "after")
        assert set(after) == set(before)  # the same two workers, no restart
        assert all(serials == {rotated.serial} for serials in after.values()), after
        assert regd.stop() == 0
    finally:
        regd.close()
