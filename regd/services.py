"""The services one running app holds, created once by ``app.py`` and typed for handlers."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from regd.auth import Authorizer
from regd.auth.accounts import Accounts
from regd.config import Config
from regd.metadata.db import Database
from regd.registry import Registry
from regd.storage.blobstore import BlobStore
from regd.storage.layout import Layout
from regd.uploads.session import UploadService


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


SERVICES: web.AppKey[Services] = web.AppKey("services", Services)

# Per-request facts set by the /v2 dispatcher, read by logging and metrics.
ROUTE: web.RequestKey[str] = web.RequestKey("route", str)
REPOSITORY: web.RequestKey[str] = web.RequestKey("repository", str)
# Who made the request (the access log's user): set by whatever authenticates it, the
# /v2 dispatcher or the /api/v2.0 handlers.
USER: web.RequestKey[str] = web.RequestKey("user", str)
