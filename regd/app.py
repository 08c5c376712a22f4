"""``create_app(config)``: the aiohttp application, its services and their lifetimes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from regd import web as web_pages
from regd.api import connections, middleware, observe, routes
from regd.api.harbor import gc as harbor_gc
from regd.api.security import make_authorizer, setup_security
from regd.auth.accounts import Accounts
from regd.auth.sessions import Sessions
from regd.config import Config
from regd.datadir import check_database_present
from regd.gc import GCBusyError, Parameters
from regd.gc.service import GCService
from regd.manage import Management
from regd.metadata.db import Database
from regd.proxy import retention
from regd.proxy.service import ProxyService
from regd.pulls import PullRecorder
from regd.registry import Registry
from regd.scrub import ScrubService
from regd.services import SERVICES, Role, Services
from regd.storage import fsio
from regd.storage.blobstore import BlobStore
from regd.storage.layout import Layout
from regd.trust.service import ContentTrust
from regd.uploads.session import UploadService

log = logging.getLogger("regd")

# Threads for file-system calls, hashing and sendfile-free copies; hashing and writes
# release the GIL, so these run beside the loop on the second core.
IO_THREADS = 32


def build_services(config: Config, role: Role | None = None) -> Services:
    layout = Layout(config.data_dir)
    db = Database(layout.database)
    store = BlobStore(layout, fsync=config.storage.fsync)
    accounts = Accounts(db, layout, config)
    sessions = Sessions(db, config.web)
    registry = Registry(db, store, config.gc.grace_period, config.uploads.max_manifest_size)
    uploads = UploadService(
        db,
        store,
        layout,
        config.uploads.max_sessions_per_repository,
        config.uploads.max_sessions_per_account,
        direct_writes=config.storage.direct_writes,
    )
    gc = GCService(config, db, store, uploads)
    trust = ContentTrust(db, registry, store)
    return Services(
        config=config,
        layout=layout,
        db=db,
        store=store,
        registry=registry,
        uploads=uploads,
        authorizer=make_authorizer(config, accounts),
        accounts=accounts,
        sessions=sessions,
        trust=trust,
        gc=gc,
        manage=Management.build(config, db, accounts, sessions, registry, gc, trust),
        scrub=ScrubService(config, db, store),
        pulls=PullRecorder(db),
        proxy=ProxyService(config, db, registry, uploads, layout),
        role=role or Role(),
    )


async def open_services(config: Config) -> Services:
    """The services of a data directory for a one-off command (``regd scrub``, ``user``,
    ``project``...), its directories made and its database open: no recovery and no
    background tasks, since a daemon may be running on it. The caller closes ``db``."""
    services = build_services(config, Role(startup_recovery=False, background=False))
    await services.store.prepare()
    await services.db.open()
    return services


async def _janitor(services: Services) -> None:
    """Expire abandoned upload sessions every ``[uploads] janitor_interval`` seconds."""
    while True:
        await asyncio.sleep(services.config.uploads.janitor_interval)
        try:
            expired = await services.uploads.expire(services.config.uploads.expire_after, time.time())
            if expired:
                log.info("expired %d abandoned upload sessions", expired)
        except Exception:
            log.exception("upload janitor failed")


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    services = app[SERVICES]
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="regd-io"))
    await services.store.prepare()
    if services.role.startup_recovery:
        await fsio.run(check_database_present, services.layout)
    await services.db.open(check=services.role.startup_recovery)
    await fsio.run(fsio.make_private_sync, services.layout.root)
    if services.role.startup_recovery:
        recovered = await services.uploads.recover()
        if recovered:
            log.info("%d upload sessions cut off by the last stop can resume", recovered)
    background = (
        [asyncio.create_task(_janitor(services)), asyncio.create_task(services.scrub.scheduler())]
        if services.role.background
        else []
    )
    # Every process counts its own pulls and writes them (regd/pulls.py).
    background.append(asyncio.create_task(services.pulls.run(services.config.server.pull_flush_interval)))
    try:
        yield
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await services.proxy.close()
        try:
            await services.pulls.flush()
        except Exception:
            log.exception("the last %d pulls were not written", services.pulls.pending)
        await services.db.close()


async def _proxy_retention(app: web.Application) -> AsyncIterator[None]:
    """The nightly removal of proxy-cache artifacts nobody pulls, then a collection."""
    services = app[SERVICES]
    proxy = services.config.proxy
    task = None
    if services.role.background and proxy.retention_schedule:

        async def collect() -> None:
            try:
                await services.gc.start(Parameters(), kind="SCHEDULE", schedule_type="Proxy retention")
            except GCBusyError:
                log.info("a collection is running; it or the next frees what retention removed")

        task = asyncio.create_task(
            retention.run_nightly(
                services.db, services.registry, proxy.retention_days, proxy.retention_schedule, collect
            )
        )
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def create_app(config: Config, services: Services | None = None, role: Role | None = None) -> web.Application:
    app = web.Application(middlewares=[observe.observe, connections.body_timeout, middleware.errors])
    app[SERVICES] = services or build_services(config, role)
    app.cleanup_ctx.append(_lifetime)
    app.on_response_prepare.append(middleware.common_headers)
    routes.setup(app)
    setup_security(app)  # /service/token, /api/v2.0 (but gc), first start
    observe.setup(app)  # /metrics, /api/v2.0/health, X-Request-Id
    harbor_gc.setup(app)  # /api/v2.0/system/gc*, the GC scheduler, trash recovery at start
    web_pages.setup(app)  # /, the pages, /static, /c/login, /c/log_out
    app.cleanup_ctx.append(_proxy_retention)
    return app
