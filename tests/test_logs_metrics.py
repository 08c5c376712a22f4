"""Access log, request ids, Prometheus metrics and the Harbor-shaped health endpoint."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shutil
import signal
import socket
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from regd import metrics
from regd.api import observe
from regd.api.harbor.gc import GC
from regd.app import create_app
from regd.gc.service import Parameters
from regd.logs import JsonFormatter, TextFormatter
from regd.services import SERVICES
from tests.conftest import Client, make_config, push_blob, sha256
from tests.regd_process import RegdProcess

ClientFactory = Callable[..., Awaitable[Client]]


async def _client(aiohttp_client: ClientFactory, data_dir: Path, **server: Any) -> Client:
    # Authentication has its own tests; here every request is let through (as "anonymous").
    app = create_app(make_config(data_dir, server=server, auth={"enabled": False}))
    # As `regd serve` runs it: with regd's access logger (TestServer drops server_kwargs).
    server_ = TestServer(app)
    await server_.start_server(**observe.runner_options())
    return await aiohttp_client(server_)


@pytest.fixture
async def observed(aiohttp_client: ClientFactory, data_dir: Path) -> Client:
    return await _client(aiohttp_client, data_dir)


def _logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "regd.access"]


async def _access(caplog: pytest.LogCaptureFixture, count: int = 1) -> list[logging.LogRecord]:
    """The access records, once ``count`` are there: aiohttp logs a request after its
    last byte is written, which can be after the client has read it."""
    deadline = time.monotonic() + 10
    while len(_logged(caplog)) < count:
        assert time.monotonic() < deadline, f"{len(_logged(caplog))} access records, wanted {count}"
        await asyncio.sleep(0.005)
    return _logged(caplog)


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


async def _scrape(client: Client) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    return _samples(await resp.text())


def _value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


# -- access log --------------------------------------------------------------------------


async def test_each_request_logs_one_line_with_its_facts(
    observed: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "regd.access")
    data = os.urandom(5000)
    digest = await push_blob(observed, "library/app", data)
    caplog.clear()

    resp = await observed.get(f"/v2/library/app/blobs/{digest}", headers={"User-Agent": "docker/27"})
    assert await resp.read() == data

    [record] = await _access(caplog)
    fields = record.fields  # type: ignore[attr-defined]
    assert fields["method"] == "GET"
    assert fields["path"] == f"/v2/library/app/blobs/{digest}"
    assert fields["repository"] == "library/app"
    assert fields["status"] == 200
    assert fields["bytes"] >= len(data)  # body (by sendfile) plus headers
    assert 0 <= fields["duration"] < 30
    assert fields["request_id"] == resp.headers["X-Request-Id"]
    assert fields["user"] == "anonymous"  # the principal the /v2 dispatcher was given
    assert fields["user_agent"] == "docker/27"
    text = TextFormatter().format(record)
    assert f"GET /v2/library/app/blobs/{digest} 200 " in text
    assert "repository=library/app user=anonymous" in text


def test_a_request_that_does_not_parse_is_logged_without_a_traceback(tmp_path: Path) -> None:
    # podman and buildah with --tls-verify=false try TLS first: a ClientHello to plain HTTP.
    # aiohttp answers 400 with no application behind the request; the access log used to
    # fail on it with a traceback.
    regd = RegdProcess(tmp_path)
    try:
        regd.start()
        with socket.create_connection(("127.0.0.1", regd.port), timeout=10) as sock:
            sock.sendall(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + os.urandom(32))
            answer = sock.recv(100)
        deadline = time.monotonic() + 10
        while " 400 " not in regd.log() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        regd.stop()
        regd.close()

    assert answer.startswith(b"HTTP/1.0 400")
    assert "UNKNOWN / 400" in regd.log()
    assert "access log failed" not in regd.log()


async def test_upload_line_counts_the_bytes_received(
    observed: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "regd.access")
    data = os.urandom(70_000)

    await push_blob(observed, "library/app", data)

    [record] = await _access(caplog)
    assert record.fields["received"] == len(data)  # type: ignore[attr-defined]
    assert record.fields["status"] == 201  # type: ignore[attr-defined]


async def test_json_lines_carry_the_same_fields(observed: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "regd.access")

    await observed.get("/v2/")

    [record] = await _access(caplog)
    line = orjson.loads(JsonFormatter().format(record))
    assert line["logger"] == "regd.access" and line["level"] == "info"
    for key in ("method", "path", "repository", "status", "bytes", "duration", "request_id", "user"):
        assert key in line, key
    assert line["path"] == "/v2/" and line["status"] == 200 and line["repository"] == "-"


async def test_no_password_token_or_query_reaches_the_log(
    observed: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    basic = base64.b64encode(b"alice:hunter2-password").decode()

    await observed.get(
        "/v2/library/app/tags/list",
        params={"token": "s3cr3t-token", "password": "hunter2-query"},
        headers={"Authorization": f"Basic {basic}", "X-Registry-Auth": "hunter2-header"},
    )
    await observed.get(
        "/service/token",
        params={"account": "alice", "scope": "repository:a:pull"},
        headers={"Authorization": "Bearer eyJhbGciOiJSUzI1NiJ9.secret.sig"},
    )

    assert len(await _access(caplog, 2)) == 2
    for record in caplog.records:
        for text in (TextFormatter().format(record), JsonFormatter().format(record)):
            for secret in ("hunter2", "s3cr3t", basic, "eyJhbGci", "Bearer"):
                assert secret not in text, (secret, text)
    for record in _logged(caplog):
        assert "?" not in record.fields["path"]  # type: ignore[attr-defined]


async def test_access_log_off_writes_no_line_but_still_counts(
    aiohttp_client: ClientFactory, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = await _client(aiohttp_client, data_dir, access_log=False)
    caplog.set_level(logging.INFO, "regd.access")
    base = {"method": "GET", "route": "v2 base", "status": "200"}
    before = _value(await _scrape(client), "regd_http_requests_total", **base)

    await client.get("/v2/")

    assert not [r for r in _logged(caplog) if r.fields["path"] == "/v2/"]  # type: ignore[attr-defined]
    after = _value(await _scrape(client), "regd_http_requests_total", **base)
    assert after == before + 1


# -- request id --------------------------------------------------------------------------


async def test_an_incoming_request_id_is_echoed(observed: Client) -> None:
    resp = await observed.get("/v2/", headers={"X-Request-Id": "req-42.a_b:c"})
    assert resp.headers["X-Request-Id"] == "req-42.a_b:c"


async def test_every_response_gets_a_request_id_even_an_error(observed: Client) -> None:
    resp = await observed.get("/v2/library/app/manifests/nope")
    assert resp.status == 404
    assert len(resp.headers["X-Request-Id"]) == 36  # a UUID


async def test_an_unsafe_request_id_is_replaced(observed: Client) -> None:
    resp = await observed.get("/v2/", headers={"X-Request-Id": "x" * 200})
    assert resp.headers["X-Request-Id"] != "x" * 200
    resp = await observed.get("/v2/", headers={"X-Request-Id": 'a b"c'})
    assert resp.headers["X-Request-Id"] != 'a b"c'


# -- /metrics ----------------------------------------------------------------------------


async def test_metrics_count_requests_by_route_and_status(observed: Client) -> None:
    before = await _scrape(observed)
    data = os.urandom(3000)
    digest = await push_blob(observed, "library/app", data)
    await observed.get(f"/v2/library/app/blobs/{digest}")
    await observed.get("/v2/library/app/blobs/" + sha256(b"missing"))

    after = await _scrape(observed)

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert delta("regd_http_requests_total", method="GET", route="v2 blob", status="200") == 1
    assert delta("regd_http_requests_total", method="GET", route="v2 blob", status="404") == 1
    assert delta("regd_http_requests_total", method="POST", route="v2 upload_start", status="201") == 1
    assert delta("regd_http_request_duration_seconds_count", route="v2 blob") == 2
    assert delta("regd_http_received_bytes_total", route="v2 upload_start") == len(data)
    assert delta("regd_http_sent_bytes_total", route="v2 blob") >= len(data)
    # the test client is on the loopback: blob_send "auto" writes from a mapping
    assert delta("regd_blob_sent_bytes_total", path="mapped") == len(data)
    assert delta("regd_blob_sent_bytes_total", path="sendfile") == 0


async def test_metrics_report_what_is_stored_and_uploads_in_progress(observed: Client) -> None:
    await push_blob(observed, "library/app", b"a" * 1000)
    await push_blob(observed, "library/app", b"b" * 500)
    resp = await observed.post("/v2/library/app/blobs/uploads/")
    assert resp.status == 202

    samples = await _scrape(observed)

    assert _value(samples, "regd_blobs") == 2
    assert _value(samples, "regd_blob_bytes") == 1500
    assert _value(samples, "regd_upload_sessions", state="active") == 1
    assert _value(samples, "regd_storage_free_bytes") > 0
    assert _value(samples, "regd_build_info", version=metrics.__version__) == 1


async def test_a_collection_in_the_daemon_counts_its_run_and_what_it_freed(observed: Client) -> None:
    app = observed.server.app  # type: ignore[union-attr]
    await push_blob(observed, "library/app", os.urandom(7000))  # no manifest refers to it
    before = await _scrape(observed)

    _, report = await app[GC].run(Parameters(), grace_period=0)

    after = await _scrape(observed)
    assert report.bytes_freed == 7000
    assert _value(after, "regd_gc_runs_total") - _value(before, "regd_gc_runs_total") == 1
    assert _value(after, "regd_gc_freed_bytes_total") - _value(before, "regd_gc_freed_bytes_total") == 7000
    assert _value(after, "regd_gc_deleted_blobs_total") - _value(before, "regd_gc_deleted_blobs_total") == 1
    assert _value(after, "regd_blobs") == 0


# -- /api/v2.0/health --------------------------------------------------------------------


async def _health(client: Client) -> dict[str, Any]:
    resp = await client.get("/api/v2.0/health")
    assert resp.status == 200  # like Harbor: the body says whether it is healthy
    body: dict[str, Any] = orjson.loads(await resp.read())
    return body


async def test_health_is_harbors_shape_and_healthy(observed: Client) -> None:
    assert await _health(observed) == {
        "status": "healthy",
        "components": [
            {"name": "core", "status": "healthy"},
            {"name": "database", "status": "healthy"},
            {"name": "storage", "status": "healthy"},
        ],
    }


async def test_health_is_unhealthy_when_the_database_is_not_usable(observed: Client) -> None:
    services = observed.server.app[SERVICES]  # type: ignore[union-attr]
    await services.db.close()

    body = await _health(observed)

    assert body["status"] == "unhealthy"
    database = body["components"][1]
    assert database["name"] == "database" and database["status"] == "unhealthy" and database["error"]
    assert body["components"][2]["status"] == "healthy"


async def test_health_is_unhealthy_when_the_data_directory_is_not_usable(
    observed: Client, data_dir: Path
) -> None:
    shutil.rmtree(data_dir / "tmp")
    (data_dir / "tmp").write_text("not a directory")

    body = await _health(observed)

    assert body["status"] == "unhealthy"
    storage = body["components"][2]
    assert storage == {"name": "storage", "status": "unhealthy", "error": storage["error"]}
    assert "tmp" in storage["error"]


async def test_health_reports_storage_unhealthy_below_the_free_space_floor(
    aiohttp_client: ClientFactory, data_dir: Path
) -> None:
    floor = 1 << 60  # more than any disk here has free
    app = create_app(make_config(data_dir, storage={"min_free": floor}))
    client = await aiohttp_client(app)

    body = await _health(client)

    assert body["status"] == "unhealthy"
    storage = body["components"][2]
    assert storage["status"] == "unhealthy" and f"below [storage] min_free ({floor})" in storage["error"]


async def test_metrics_and_health_need_no_login_when_access_control_is_on(auth_client: Client) -> None:
    # Scrapers and load balancers have no account; the registry itself does want one.
    assert (await auth_client.get("/v2/")).status == 401
    metrics_resp = await auth_client.get("/metrics")
    assert metrics_resp.status == 200 and "regd_build_info" in await metrics_resp.text()
    health = await auth_client.get("/api/v2.0/health")
    assert health.status == 200 and orjson.loads(await health.read())["status"] == "healthy"


# -- the daemon: JSON lines on stderr ----------------------------------------------------


def test_regd_serve_writes_json_lines_when_configured(tmp_path: Path) -> None:
    regd = RegdProcess(tmp_path, {"server": {"log_format": "json"}})
    try:
        regd.start()
        url = f"http://127.0.0.1:{regd.port}"
        with urllib.request.urlopen(f"{url}/v2/?token=hide-me", timeout=5) as resp:
            assert resp.status == 200
        assert regd.stop(signal.SIGTERM) == 0
    finally:
        regd.close()

    lines = [orjson.loads(line) for line in regd.log().splitlines() if line.strip()]
    access = [line for line in lines if line["logger"] == "regd.access"]
    assert [a["path"] for a in access] == ["/v2/"]
    assert access[0]["status"] == 200
    assert any("listening on" in line.get("message", "") for line in lines)
    assert "hide-me" not in regd.log()
