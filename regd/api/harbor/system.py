"""``/api/v2.0/ping``, ``/api/v2.0/systeminfo`` and ``/api/v2.0/systeminfo/getcert``.

``getcert`` answers ``[server] ca_cert`` as an attachment named ``ca.crt`` without
login (Harbor's "Registry Certificate" download), or 404 when none is configured.
``systeminfo`` tells anyone the auth mode; authenticated callers also get the URLs and
settings (Harbor's "protected" part).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from regd import __version__
from regd.api.harbor.common import PREFIX, caller, services_of
from regd.api.http import json_response
from regd.errors import ErrorCode, RegistryError


async def ping(request: web.Request) -> web.Response:
    return web.Response(text="Pong", content_type="text/plain")


async def systeminfo(request: web.Request) -> web.Response:
    account = await caller(request)
    config = services_of(request).config
    info: dict[str, Any] = {
        "auth_mode": "db_auth",
        "primary_auth_mode": False,
        "self_registration": False,
        "banner_message": "",
        "oidc_provider_name": "",
    }
    if account.authenticated:
        external = config.external_url
        info.update(
            current_time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            harbor_version=f"regd-{__version__}",
            external_url=external,
            registry_url=urlsplit(external).netloc,
            has_ca_root=bool(config.server.ca_cert) and external.startswith("https://"),
            project_creation_restriction=config.auth.project_creation_restriction,
            registry_storage_provider_name="filesystem",
            read_only=False,
            notification_enable=False,
        )
    return json_response(info)


async def getcert(request: web.Request) -> web.Response:
    path = services_of(request).config.server.ca_cert
    if not path:
        raise RegistryError(ErrorCode.NOT_FOUND, "no CA certificate is configured")
    try:
        # A small file, read once per click: the executor keeps the loop free.
        data = await asyncio.get_running_loop().run_in_executor(None, Path(path).read_bytes)
    except OSError:
        raise RegistryError(ErrorCode.NOT_FOUND, "cert not found") from None
    return web.Response(
        body=data,
        content_type="application/octet-stream",
        headers={"Content-Disposition": "attachment; filename=ca.crt"},
    )


def routes(app: web.Application) -> None:
    app.router.add_get(f"{PREFIX}/ping", ping)
    app.router.add_get(f"{PREFIX}/systeminfo", systeminfo)
    app.router.add_get(f"{PREFIX}/systeminfo/getcert", getcert)
