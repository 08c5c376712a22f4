"""What operators see of each request, and of the daemon: request ids, the access log,
request metrics, ``GET /metrics`` and ``GET /api/v2.0/health``.

- Request id: an incoming ``X-Request-Id`` made of safe characters (at most 128) is
  kept, any other is replaced by a fresh UUID; every response echoes it (Harbor's API
  does the same).
- Access log: ``AccessLogger`` is the aiohttp access logger (``AppRunner(access_log_class=
  ...)``, set up by ``runner_options``). aiohttp calls it once the last byte of a response
  is written, so it also records the request metrics. A request the graceful stop (or
  the server) cancels never reaches it; the ``observe`` middleware's watch on the
  request's task logs that one with status 499. Secrets: the line holds the path
  without its query string, and no header but ``User-Agent``; so never an
  ``Authorization`` value, a password or a token.
- Health: Harbor's ``OverallHealthStatus`` with the components regd has. Like Harbor it
  answers 200 with ``"status": "unhealthy"`` when a component fails; a probe must read
  the body (Harbor's swagger declares only 200 for ``GET /health``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import uuid
from collections.abc import Coroutine
from typing import Any

import orjson
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler
from aiohttp.web_request import BaseRequest
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from regd import metrics
from regd.api.http import received_bytes
from regd.api.sendfile import SendfileResponse
from regd.api.tee import TeeResponse
from regd.config import Config
from regd.metadata import scrub as scrub_rows
from regd.metadata import stats
from regd.services import PROXY_CACHE, REPOSITORY, ROUTE, SERVICES, USER, Services
from regd.storage import fsio

log = logging.getLogger("regd.access")

REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)
RECORDED: web.RequestKey[bool] = web.RequestKey("recorded", bool)  # counted and logged
REQUEST_ID_HEADER = "X-Request-Id"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:+=/-]{1,128}$")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Status of a request that ended without a response: cut off by the stop or the peer.
CUT_OFF = 499
HEALTH_TIMEOUT = 5.0


# -- request id ---------------------------------------------------------------------


def request_id(request: BaseRequest) -> str:
    """The request's id: its safe ``X-Request-Id``, else a new UUID (kept on the request)."""
    known = request.get(REQUEST_ID)
    if known is None:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        known = incoming if _SAFE_ID.match(incoming) else str(uuid.uuid4())
        request[REQUEST_ID] = known
    return known


async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every response carries the request's id; while the daemon
    drains, every response closes its connection."""
    response.headers[REQUEST_ID_HEADER] = request_id(request)
    if request.app[IN_FLIGHT].draining:
        response.force_close()


# -- requests in flight, for the graceful stop -----------------------------------------


class InFlight:
    """The tasks of the requests being handled or answered, so a stop can wait for them.

    aiohttp's own graceful shutdown cannot be used for that: once it starts, a
    connection drops every byte that arrives, the rest of an upload's body included.
    So the daemon stops listening, waits here, and only then lets aiohttp close
    connections and cancel what is left.
    """

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()
        self.draining = False

    def add(self, task: asyncio.Task[Any]) -> None:
        # The request's task ends once its response is written (and logged).
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def drain(self, grace: float) -> int:
        """Wait until no request is in flight, at most ``grace`` s; how many are left."""
        self.draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.tasks and (remaining := deadline - loop.time()) > 0:
            await asyncio.wait(set(self.tasks), timeout=remaining)
        return len(self.tasks)


IN_FLIGHT: web.AppKey[InFlight] = web.AppKey("in_flight", InFlight)


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost middleware: fixes the request id and counts the request in flight."""
    request_id(request)
    task = asyncio.current_task()
    if task is not None:
        request.app[IN_FLIGHT].add(task)
        started = asyncio.get_running_loop().time()
        task.add_done_callback(lambda done: _if_cut_off(request, done, started))
    return await handler(request)


def _if_cut_off(request: web.Request, task: asyncio.Task[Any], started: float) -> None:
    """A request task cancelled before aiohttp logged it (in the handler, or mid-way
    through its response): the stop or the server cut it off. Logged as 499."""
    if task.cancelled() and not request.get(RECORDED, False):
        duration = asyncio.get_running_loop().time() - started
        record(request, CUT_OFF, 0, duration, _access_enabled(request))


# -- access log and request metrics -------------------------------------------------


def _config(request: BaseRequest) -> Config | None:
    # The live configuration (SIGHUP replaces it); a request aiohttp failed to parse has
    # no application behind it (and ``request.app`` asserts a matched route).
    if getattr(request, "_match_info", None) is None:
        return None
    try:
        services: Services = request.app[SERVICES]  # type: ignore[attr-defined]
    except (AttributeError, KeyError, RuntimeError, AssertionError):
        return None
    return services.config


def _access_enabled(request: BaseRequest) -> bool:
    config = _config(request)
    return config is None or config.server.access_log


def route_label(request: BaseRequest) -> str:
    """A bounded name for metrics: the /v2 route's name, else the aiohttp route pattern."""
    name = request.get(ROUTE)
    if name:
        return f"v2 {name}"
    match_info = getattr(request, "_match_info", None)
    resource = None if match_info is None else match_info.route.resource
    return "other" if resource is None else resource.canonical


def _user(request: BaseRequest) -> str:
    return request.get(USER) or "-"


def _path(request: BaseRequest) -> str:
    # The raw (still percent-encoded) path: no query string, which may carry a token,
    # and no decoded control character that could forge a log line.
    return request.raw_path.split("?", 1)[0][:1000]


def access_fields(request: BaseRequest, status: int, sent: int, duration: float) -> dict[str, Any]:
    return {
        "method": request.method,
        "path": _path(request),
        "status": status,
        "bytes": sent,
        "received": received_bytes(request),
        "duration": round(duration, 6),
        "repository": request.get(REPOSITORY) or "-",
        "user": _user(request),
        "request_id": request_id(request),
        "remote": request.remote or "-",
        "user_agent": request.headers.get("User-Agent", "-")[:300],
        "pid": os.getpid(),  # which worker process answered ([server] workers)
        "cache": request.get(PROXY_CACHE) or "-",
    }


def record(request: BaseRequest, status: int, sent: int, duration: float, emit: bool) -> None:
    """Count the request in the metrics and, when ``emit``, write its access-log line."""
    request[RECORDED] = True
    fields = access_fields(request, status, sent, duration)
    route = route_label(request)
    method = request.method if request.method in _METHODS else "other"
    metrics.REQUESTS.labels(method, route, str(status)).inc()
    metrics.REQUEST_DURATION.labels(route).observe(duration)
    metrics.RECEIVED_BYTES.labels(route).inc(fields["received"])
    metrics.SENT_BYTES.labels(route).inc(sent)
    if emit:
        log.info("%s", _text(fields), extra={"fields": fields})


def _text(fields: dict[str, Any]) -> str:
    # GET /v2/lib/app/blobs/sha256:... 200 1048576 0.012s repository=lib/app user=- ...
    f = fields
    head = f"{f['method']} {f['path']} {f['status']} {f['bytes']} {f['duration']:.3f}s"
    tail = " ".join(
        f"{key}={fields[key]}" for key in ("repository", "user", "request_id", "remote", "received", "pid")
    )
    if fields["cache"] != "-":  # a proxy-cache project's pull: hit or miss
        tail += f" cache={fields['cache']}"
    # Quoted and escaped: a client chooses its User-Agent.
    return f"{head} {tail} user_agent={orjson.dumps(fields['user_agent']).decode()}"


class AccessLogger(AbstractAccessLogger):
    """aiohttp's hook after each response: one access-log line, and the request metrics."""

    def log(self, request: BaseRequest, response: web.StreamResponse, time: float) -> None:
        sent = response.body_length
        if isinstance(response, SendfileResponse | TeeResponse):
            sent += response.zero_copy_sent + response.mapped_sent
            metrics.BLOB_SENT_BYTES.labels("sendfile").inc(response.zero_copy_sent)
            metrics.BLOB_SENT_BYTES.labels("mapped").inc(response.mapped_sent)
            metrics.BLOB_SENT_BYTES.labels("copy").inc(response.copied_sent)
        try:
            record(request, response.status, sent, time, _access_enabled(request))
        except Exception:  # an access log must never break a response
            logging.getLogger("regd").exception("access log failed")


def runner_options() -> dict[str, Any]:
    """``AppRunner``/``TestServer`` keyword arguments that install ``AccessLogger``.

    The logger is always installed (metrics need it); ``[server] access_log`` decides,
    request by request, whether a line is written.
    """
    return {"access_log_class": AccessLogger, "access_log": log}


# -- /metrics -----------------------------------------------------------------------


async def _update_store_metrics(s: Services) -> None:
    blobs, size = await stats.blob_totals(s.db)
    metrics.BLOBS.set(blobs)
    metrics.BLOB_BYTES.set(size)
    counts = await stats.uploads_by_state(s.db)
    for state in ("active", "receiving", "committing"):
        metrics.UPLOADS.labels(state).set(counts.get(state, 0))
    metrics.FREE_BYTES.set(await fsio.run(fsio.free_bytes_sync, s.layout.root))
    metrics.QUARANTINED.set(await scrub_rows.quarantined_count(s.db))


async def get_metrics(request: web.Request) -> web.StreamResponse:
    """GET /metrics: the Prometheus text format. Totals are read from SQLite per scrape."""
    try:
        await _update_store_metrics(request.app[SERVICES])
    except Exception as e:  # still serve what is known; health says what is wrong
        logging.getLogger("regd").warning("metrics: cannot read totals: %s", e)
    body = generate_latest(metrics.exposition())
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


# -- /api/v2.0/health ---------------------------------------------------------------


async def _check_database(s: Services) -> None:
    await stats.ping(s.db)


async def _check_storage(s: Services) -> None:
    for directory in s.layout.directories():
        if not await fsio.run(directory.is_dir):
            raise OSError(f"{directory} is not a directory")
    free = await fsio.run(fsio.free_bytes_sync, s.layout.root)
    floor = s.config.storage.min_free
    if free < floor:
        raise OSError(f"{free} bytes free, below [storage] min_free ({floor}): pushes may fail with 507")
    await fsio.run(fsio.probe_sync, s.layout.tmp)


async def _component(name: str, check: Coroutine[Any, Any, None]) -> dict[str, str]:
    try:
        await asyncio.wait_for(check, HEALTH_TIMEOUT)
    except Exception as e:
        reason = "timed out" if isinstance(e, TimeoutError) else str(e) or e.__class__.__name__
        logging.getLogger("regd").warning("health: %s unhealthy: %s", name, reason)
        return {"name": name, "status": "unhealthy", "error": reason}
    return {"name": name, "status": "healthy"}


async def get_health(request: web.Request) -> web.StreamResponse:
    """GET /api/v2.0/health (no authentication, as in Harbor)."""
    s = request.app[SERVICES]
    components = [
        {"name": "core", "status": "healthy"},
        await _component("database", _check_database(s)),
        await _component("storage", _check_storage(s)),
    ]
    healthy = all(c["status"] == "healthy" for c in components)
    body = {"status": "healthy" if healthy else "unhealthy", "components": components}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def setup(app: web.Application) -> None:
    app[IN_FLIGHT] = InFlight()
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/api/v2.0/health", get_health)
    app.on_response_prepare.append(on_prepare)
