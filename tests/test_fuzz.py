"""Hostile and broken clients against a running ``regd serve``: the limits answer in the
OCI envelope (header size), and a fuzz run of 10,000 random and mutated requests
(methods, paths, headers, bodies, truncated and oversized ones) gets no 5xx, never
hangs, and leaves the daemon's memory flat.

Bounded: the requests are generated from a fixed seed, 64 at a time, each with a
deadline; the run takes about a minute on 2 cores."""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.regd_process import RegdProcess

REQUESTS = 10_000
# Many at once: a truncated request holds its connection until the header or body
# timeout (2 s here) closes it, without costing the server anything meanwhile.
CONCURRENCY = 64
DEADLINE = 20.0  # seconds one request may take, the header and body timeouts (2 s) included
RSS_GROWTH_LIMIT = 64 << 20  # bytes the daemon may grow by between the two halves

OCI = "application/vnd.oci.image.manifest.v1+json"
STATUS_RE = re.compile(rb"^HTTP/1\.[01] (\d{3}) ")


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def exchange(port: int, raw: bytes, deadline: float = DEADLINE) -> tuple[int | None, bytes]:
    """Send ``raw`` on a new connection; (status, body) of the answer, status None when
    the server closed without one. Fails when no answer or close comes within ``deadline``."""

    async def talk() -> tuple[int | None, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            try:
                writer.write(raw)
                await writer.drain()
            except ConnectionError:
                pass  # the server answered (and closed) before reading everything
            data = b""
            while True:
                try:
                    chunk = await reader.read(65536)
                except ConnectionError:
                    break
                if not chunk:
                    break
                data += chunk
                head, sep, body = data.partition(b"\r\n\r\n")
                if sep and (length := re.search(rb"(?im)^content-length: *(\d+)", head)):
                    if len(body) >= int(length.group(1)):
                        break
            match = STATUS_RE.match(data)
            return (int(match.group(1)) if match else None), data.partition(b"\r\n\r\n")[2]
        finally:
            writer.close()

    return await asyncio.wait_for(talk(), deadline)


def _request(method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body and not any(k.lower() in ("content-length", "transfer-encoding") for k in headers or {}):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace") + body


@pytest.fixture
def regd(tmp_path: Path) -> Iterator[RegdProcess]:
    server = {"workers": 1, "header_timeout": 2.0, "body_timeout": 2.0, "access_log": False}
    process = RegdProcess(tmp_path, {"server": server})
    process.start()
    yield process
    process.close()


# -- limits with clear errors ------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "status", "code", "says"),
    [
        (_request("GET", "/v2/", {"X-Big": "a" * 9000}), 431, "HEADERS_TOO_LARGE", "longer than 8190 bytes"),
        (_request("GET", "/v2/" + "a" * 9000), 431, "HEADERS_TOO_LARGE", "longer than 8190 bytes"),
        (_request("GET", "/v2/", {f"X-H{i}": "1" for i in range(200)}), 431, "HEADERS_TOO_LARGE",
         "more than 128 header fields"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n", 400, "BAD_REQUEST",
         "malformed HTTP request"),
        (_request("PATCH", "/v2/a/b/blobs/uploads/x", {"Content-Length": "abc"}), 400, "BAD_REQUEST",
         "Content-Length"),
        (_request("PROPFIND", "/api/v2.0/systeminfo", {"Expect": "n\u00fcthing"}), 417, "EXPECTATION_FAILED",
         "100-continue"),
    ],
    ids=["header line", "request line", "header count", "TLS on the HTTP port", "bad Content-Length",
         "unknown Expect"],
)
def test_requests_over_the_limits_get_the_oci_envelope(
    regd: RegdProcess, raw: bytes, status: int, code: str, says: str
) -> None:
    got, body = asyncio.run(exchange(regd.port, raw))

    assert got == status, body
    error = orjson.loads(body)["errors"][0]
    assert error["code"] == code and says in error["message"], error


# -- the fuzz run --------------------------------------------------------------------------


class Fuzzer:
    """Requests from a fixed seed: valid ones the registry knows, then mutations of them."""

    METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "PROPFIND",
               "get", "G\x00T", "X" * 40]

    def __init__(self, seed: int, manifest: bytes, blob: str) -> None:
        self.rng = random.Random(seed)
        self.manifest = manifest
        self.blob = blob

    def _name(self) -> str:
        r = self.rng
        return r.choice(["library/app", "library/fuzz", "a/b/c/d", "Library/App", "x", "..", "a/../b",
                         "%2e%2e/x", "a//b", "a" * 300, "library/app%00", "l\u00e9brary/\u00e4pp", "a/b:c"])

    def _reference(self) -> str:
        r = self.rng
        return r.choice(["latest", "v1", self.blob, _digest(self.manifest), "sha256:" + "0" * 64,
                         "sha256:xyz", "sha512:" + "a" * 128, "md5:abc", "-bad", "t" * 200, "%ff", ""])

    def _path(self) -> str:
        r = self.rng
        name, ref = self._name(), self._reference()
        return r.choice([
            "/v2/", "/v2", "/v2/_catalog", f"/v2/_catalog?n={r.choice(['-1', '0', 'x', '99999999999'])}",
            f"/v2/{name}/tags/list", f"/v2/{name}/tags/list?n={r.randint(-5, 10**12)}&last=%ff",
            f"/v2/{name}/manifests/{ref}", f"/v2/{name}/blobs/{ref}", f"/v2/{name}/referrers/{ref}",
            f"/v2/{name}/blobs/uploads/", f"/v2/{name}/blobs/uploads/?digest={ref}",
            f"/v2/{name}/blobs/uploads/?mount={ref}&from={self._name()}",
            f"/v2/{name}/blobs/uploads/{r.choice(['0' * 32, 'f' * 32, 'nope', '../../etc', '%00'])}",
            "/api/v2.0/health", "/api/v2.0/systeminfo", "/api/v2.0/projects?page=-1&page_size=x",
            f"/api/v2.0/projects/{name}/repositories", "/api/v2.0/users/current", "/api/v2.0/system/gc",
            "/api/v2.0/system/scrub", f"/service/token?scope=repository:{name}:pull,push&service=regd",
            "/service/token?scope=" + "x:" * 500, "/metrics", "/", "/%", "/../../etc/passwd", "*",
            "http://evil/v2/", "/v2/" + "/".join(["a"] * 400),
        ])

    def _headers(self) -> dict[str, str]:
        r = self.rng
        pool = {
            "Content-Range": [f"{r.randint(-3, 10)}-{r.randint(-3, 10**15)}", "bytes 0-1/2", "x", "5-2", ""],
            "Range": ["bytes=0-0", "bytes=-1", "bytes=5-", "bytes=9-1", "bytes=0-1,2-3", "bytes=x",
                      "items=0-1"],
            "Content-Type": [OCI, "application/json", "text/plain", "application/vnd.oci.image.index.v1+json",
                             "multipart/form-data; boundary=x", "\x7f"],
            "Accept": [OCI, "*/*", "text/html", ""],
            "Authorization": ["Basic Zm9vOmJhcg==", "Basic !!!", "Bearer x.y.z", "Bearer ", "Negotiate x"],
            "Content-Length": ["0", "5", "-1", "99999999999999999999", " 3"],
            "Transfer-Encoding": ["chunked", "gzip", "chunked, chunked", "identity"],
            "X-Request-Id": ["abc", "\u00ff" * 10, "a" * 500],
            "Expect": ["100-continue", "nothing"],
        }
        chosen = r.sample(sorted(pool), r.randint(0, 4))
        return {k: r.choice(pool[k]) for k in chosen}

    def _body(self) -> bytes:
        r = self.rng
        kind = r.randrange(6)
        if kind == 0:
            return b""
        if kind == 1:
            return r.randbytes(r.randint(1, 4096))
        if kind == 2:
            return self._mutate(self.manifest)
        if kind == 3:
            return orjson.dumps({"schemaVersion": 2, "manifests": [{"digest": self.blob}] * r.randint(0, 5)})
        if kind == 4:
            return b'{"project_name": "' + r.randbytes(20).hex().encode() + b'", "public": "maybe"}'
        return b"[" * r.randint(1, 5000)

    def _mutate(self, data: bytes) -> bytes:
        r = self.rng
        raw = bytearray(data)
        for _ in range(r.randint(1, 8)):
            op = r.randrange(4)
            at = r.randrange(len(raw) + 1)
            if op == 0 and raw:
                raw[min(at, len(raw) - 1)] = r.randrange(256)
            elif op == 1:
                raw[at:at] = r.randbytes(r.randint(1, 16))
            elif op == 2:
                del raw[at : at + r.randint(1, 16)]
            else:
                raw = raw[:at]
        return bytes(raw)

    def request(self) -> bytes:
        r = self.rng
        method, path, headers, body = r.choice(self.METHODS), self._path(), self._headers(), self._body()
        raw = _request(method, path, headers, body)
        roll = r.random()
        if roll < 0.10:
            return self._mutate(raw)  # mangled anywhere: request line, headers, body
        if roll < 0.15:
            return raw[: r.randrange(1, len(raw) + 1)]  # truncated (the server must time out)
        if roll < 0.17:
            return _request(method, path, {**headers, "X-Pad": "p" * r.randint(8000, 20000)}, body)
        if roll < 0.19:
            return _request("PUT", f"/v2/library/fuzz/manifests/big{r.randrange(9)}",
                            {"Content-Type": OCI}, b" " * (4 * 1024 * 1024 + r.randint(1, 5000)))
        return raw


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_ten_thousand_random_and_mutated_requests_get_no_5xx_never_hang_and_memory_stays_flat(
    regd: RegdProcess,
) -> None:
    config, layer = b"{}", b"fuzz layer"
    manifest = orjson.dumps({
        "schemaVersion": 2, "mediaType": OCI,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _digest(config),
                   "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": _digest(layer),
                    "size": len(layer)}],
    })
    statuses: Counter[int | None] = Counter()
    server_errors: list[tuple[bytes, int | None, bytes]] = []
    rss: list[int] = []

    async def seed() -> None:
        for blob in (config, layer):
            status, body = await exchange(regd.port, _request(
                "POST", f"/v2/library/app/blobs/uploads/?digest={_digest(blob)}", {}, blob))
            assert status == 201, body
        status, body = await exchange(regd.port, _request(
            "PUT", "/v2/library/app/manifests/latest", {"Content-Type": OCI}, manifest))
        assert status == 201, body

    async def run() -> None:
        fuzzer = Fuzzer(20261130, manifest, _digest(layer))
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=CONCURRENCY * 4)

        async def worker() -> None:
            while (raw := await queue.get()) is not None:
                try:
                    status, body = await exchange(regd.port, raw)
                except TimeoutError:
                    raise AssertionError(f"no answer or close within {DEADLINE}s to {raw[:300]!r}") from None
                except OSError as e:
                    raise AssertionError(f"connection failed ({e}) for {raw[:300]!r}") from None
                statuses[status] += 1
                if status is not None and status >= 500:
                    server_errors.append((raw[:500], status, body[:500]))

        workers = [asyncio.create_task(worker()) for _ in range(CONCURRENCY)]
        for i in range(REQUESTS):
            if i in (REQUESTS // 2, REQUESTS - 1):
                rss.append(_rss(regd.pid))
            await queue.put(fuzzer.request())
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)

    asyncio.run(seed())
    asyncio.run(run())

    assert sum(statuses.values()) == REQUESTS
    assert not server_errors, server_errors[:5]
    assert regd.alive()
    assert rss[1] - rss[0] < RSS_GROWTH_LIMIT, (rss, statuses)
    # Still serving, and what was stored is intact.
    status, body = asyncio.run(exchange(regd.port, _request("GET", "/v2/library/app/manifests/latest",
                                                            {"Accept": OCI})))
    assert status == 200 and body == manifest
    log = regd.log()
    assert "Traceback" not in log, log[log.find("Traceback") - 500 : log.find("Traceback") + 3000]
