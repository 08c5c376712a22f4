"""benchmarks/dockerreqs.py counts the same requests in both registries' logs.

docker sends regd and distribution the same requests for the same push (a recording proxy
in front of both showed it); earlier runs counted 13 blob HEADs and one `GET /v2/` for
distribution against 18 and two for regd because the parser dropped distribution's
sub-millisecond requests (logrus quotes `"812.5µs"`) and counted regd's readiness probe.
These lines are copied from real logs of both registries."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.dockerreqs import requests

UA = r'"docker/20.10.24+dfsg1 go/go1.19.8 UpstreamClient(Docker-Client/28.2.2 \\(linux\\))"'
BLOB = "/v2/library/bench-docker/blobs/sha256:" + "a1" * 32


def dist(method: str, uri: str, duration: str, status: int, useragent: str = UA,
         msg: str = "response completed") -> str:
    return (f'time="2026-11-30T10:00:45.451147191Z" level=info msg="{msg}" go.version=go1.19.8 '
            f'http.request.host="127.0.0.1:32901" http.request.id=8c27a2b6 http.request.method={method} '
            f'http.request.remoteaddr="127.0.0.1:38606" http.request.uri={uri} '
            f'http.request.useragent={useragent} http.response.contenttype="application/json; charset=utf-8" '
            f"http.response.duration={duration} http.response.status={status} http.response.written=2")


def regd(method: str, path: str, duration: float, user_agent: str = "docker/20.10.24") -> str:
    return ('{"time":"2026-11-30T10:00:47.428Z","level":"info","logger":"regd.access",'
            f'"method":"{method}","path":"{path}","status":200,"bytes":349,"received":0,'
            f'"duration":{duration},"user_agent":"{user_agent}","pid":30212}}')


def parsed(tmp_path: Path, lines: list[str]) -> list[tuple[str, float]]:
    log = tmp_path / "registry.log"
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return requests(log, 0)


def test_distribution_durations_quoted_or_not_and_errors_are_all_counted(tmp_path: Path) -> None:
    found = parsed(tmp_path, [
        dist("HEAD", f'"{BLOB}"', '"588.333µs"', 404, msg="response completed with error"),
        dist("HEAD", f'"{BLOB}"', '"876.26µs"', 200),
        dist("GET", "/v2/", "1.267861ms", 200),
        dist("PATCH", '"/v2/library/bench-docker/blobs/uploads/x?_state=y"', "5.2s", 202),
    ])
    assert [k for k, _ in found] == ["HEAD blob", "HEAD blob", "GET /v2/", "PATCH upload"]
    assert [ms for _, ms in found] == pytest.approx([0.588333, 0.87626, 1.267861, 5200.0])


def test_readiness_probe_and_non_http_requests_are_left_out(tmp_path: Path) -> None:
    found = parsed(tmp_path, [
        dist("GET", "/v2/", '"807.858µs"', 200, useragent="Python-urllib/3.11"),
        regd("GET", "/v2/", 0.002, user_agent="Python-urllib/3.11"),
        regd("UNKNOWN", "/", 0.001, user_agent="-"),
        regd("GET", "/v2/", 0.001),
        regd("HEAD", BLOB, 0.0005),
    ])
    assert found == [("GET /v2/", 1.0), ("HEAD blob", 0.5)]
