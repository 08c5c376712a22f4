"""Access control wired into the app: the authorizer in front of ``/v2/``, the token
service, the management API, and the accounts' start (token key, first admin) once the
database is open.

With ``[auth] enabled = false`` every ``/v2/`` request is allowed, every management API
caller acts as the system administrator, and there is no token service (no challenge
ever sends a client there); nor is a key generated or ``admin`` created then: the first
start with access control on does that.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from regd.api import harbor, token
from regd.auth import AllowAll, Authorizer
from regd.auth.accounts import Accounts
from regd.auth.authorizer import TokenAuthorizer
from regd.config import Config
from regd.services import SERVICES


def make_authorizer(config: Config, accounts: Accounts) -> Authorizer:
    return TokenAuthorizer(accounts, config) if config.auth.enabled else AllowAll()


async def _start_accounts(app: web.Application) -> AsyncIterator[None]:
    await app[SERVICES].accounts.start()
    yield
    app[SERVICES].accounts.close()


def setup_security(app: web.Application) -> None:
    """Call after the cleanup context that opens the database."""
    harbor.setup(app)
    if app[SERVICES].config.auth.enabled:
        token.setup(app)
        app.cleanup_ctx.append(_start_accounts)
