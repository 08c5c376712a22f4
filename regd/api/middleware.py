"""The one wrapper around every handler: errors become the OCI JSON envelope."""

from __future__ import annotations

import logging

from aiohttp import web, web_urldispatcher
from aiohttp.typedefs import Handler

from regd import metrics
from regd.api.http import error_response
from regd.errors import ErrorCode, RegistryError, causes, code_for_status, is_out_of_space

log = logging.getLogger("regd.api")

CLIENT_GONE = 499  # nginx's "client closed request", as regd.api.observe counts cut-offs
API_VERSION_HEADER = ("Docker-Distribution-Api-Version", "registry/2.0")


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RegistryError as error:
        return error_response(error)
    except web.HTTPException as http:
        if http.status < 400:
            raise
        mapped = RegistryError(code_for_status(http.status), http.reason)
        if http.status == 405:
            mapped.headers["Allow"] = http.headers.get("Allow", "")
        return error_response(mapped)
    except Exception as exc:
        if not is_out_of_space(exc):
            return _unexpected(request, exc)
        # Nothing of the request became visible: blobs and manifests appear by an atomic
        # link of a complete file, metadata in one transaction; an upload keeps what it
        # wrote and resumes. The operator hears it in the log and in /metrics.
        metrics.STORAGE_FULL.inc()
        why = " <- ".join(str(e) for e in causes(exc))
        log.warning("out of storage space: %s %s refused with 507: %s", request.method, request.path, why)
        return error_response(RegistryError(ErrorCode.INSUFFICIENT_STORAGE))


def _unexpected(request: web.Request, exc: Exception) -> web.StreamResponse:
    if isinstance(exc, ConnectionError | OSError):
        if request.transport is None or request.transport.is_closing():
            # The client went away (or stalled and was cut off): nobody reads this, but
            # the access log and /metrics count it as cut off, not as a server error.
            return web.Response(status=CLIENT_GONE, reason="Client Closed Request")
        log.error("I/O error on %s %s", request.method, request.path, exc_info=exc)
        return error_response(RegistryError(ErrorCode.UNKNOWN, f"storage error: {exc.__class__.__name__}"))
    log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    return error_response(RegistryError(ErrorCode.UNKNOWN))


async def expect(request: web.Request) -> web.StreamResponse | None:
    """``Expect`` (RFC 9110 section 10.1.1): ``100-continue`` is answered ``100 Continue``,
    anything else 417 in the envelope. aiohttp runs this before any middleware."""
    value = request.headers.get("Expect", "")
    if value.lower() != "100-continue":
        error = RegistryError(ErrorCode.EXPECTATION_FAILED, "only Expect: 100-continue is supported")
        return error_response(error)
    if request.version >= (1, 1):
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the final response has not started yet
    return None


# aiohttp answers an unknown Expect itself, in text (and with a 500 when the value is not
# UTF-8), before the middlewares: every route, the 404/405 ones included, takes its
# expect handler from this module global when it is made.
web_urldispatcher._default_expect_handler = expect  # type: ignore[assignment]


async def common_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: headers every response carries."""
    response.headers.setdefault(*API_VERSION_HEADER)
