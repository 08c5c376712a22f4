"""The one wrapper around every handler: errors become the OCI JSON envelope."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from regd.api.http import error_response
from regd.errors import ErrorCode, RegistryError, code_for_status

log = logging.getLogger("regd.api")

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
    except (ConnectionError, OSError) as exc:
        if request.transport is None or request.transport.is_closing():
            raise  # the client went away; nobody to answer
        log.exception("I/O error on %s %s", request.method, request.path)
        return error_response(RegistryError(ErrorCode.UNKNOWN, f"storage error: {exc.__class__.__name__}"))
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(RegistryError(ErrorCode.UNKNOWN))


async def common_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: headers every response carries."""
    response.headers.setdefault(*API_VERSION_HEADER)
