"""The services one running app holds, created once by ``app.py`` and typed for handlers."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from regd.auth import Authorizer, Principal
from regd.auth.accounts import Accounts
from regd.auth.sessions import Sessions
from regd.config import Config
from regd.gc.service import GCService
from regd.manage import Management
from regd.metadata.db import Database
from regd.proxy.service import ProxyService
from regd.pulls import PullRecorder
from regd.registry import Registry
from regd.scrub import ScrubService
from regd.storage.blobstore import BlobStore
from regd.storage.layout import Layout
from regd.trust.service import ContentTrust
from regd.uploads.session import UploadService


@dataclass(frozen=True)
class Role:
    """What one process of the daemon does besides answering requests. With
    ``[server] workers = 1`` the one process does everything. With more, the supervisor
    does the start-up recovery once before the workers exist (a worker that did it could
    reset an upload session a sibling is receiving), and only worker 0 runs the
    background tasks (upload janitor, GC and scrub schedulers)."""

    startup_recovery: bool = True
    background: bool = True


@dataclass
class Services:
    config: Config
    layout: Layout
    db: Database
    store: BlobStore
    registry: Registry
    uploads: UploadService
    authorizer: Authorizer
    accounts: Accounts
    trust: ContentTrust
    sessions: Sessions  # browser sessions (web pages, and the API with a cookie)
    gc: GCService
    manage: Management  # the rules every front end (API, CLI, pages) calls
    scrub: ScrubService
    pulls: PullRecorder
    proxy: ProxyService
    role: Role = field(default_factory=Role)


SERVICES: web.AppKey[Services] = web.AppKey("services", Services)

# Per-request facts set by the /v2 dispatcher, read by logging and metrics.
ROUTE: web.RequestKey[str] = web.RequestKey("route", str)
REPOSITORY: web.RequestKey[str] = web.RequestKey("repository", str)
# Who made the request (the access log's user): set by whatever authenticates it, the
# /v2 dispatcher or the /api/v2.0 handlers.
USER: web.RequestKey[str] = web.RequestKey("user", str)
# Who the /v2 dispatcher let through and what it was granted (a mount's source, say; for
# content trust's signer exemption, all the caller holds on the repository).
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)
# "hit" or "miss": how a proxy-cache project answered (the access log's cache=).
PROXY_CACHE: web.RequestKey[str] = web.RequestKey("proxy_cache", str)
