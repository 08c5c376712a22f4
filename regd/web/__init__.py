"""The web interface, served by the daemon on its own port at ``/``.

Pages are rendered on the server from Jinja2 templates (autoescaping on) through
aiohttp-jinja2, with a small vendored script for partial updates (``static/htmx-*.js``,
htmx from npm, version in the file name, its license beside it) and ``static/app.js``
(copy buttons, the CSRF header for htmx). Nothing is fetched from elsewhere: the pages
work offline. No page has an inline script or style (the Content-Security-Policy says
so), every page carries X-Frame-Options DENY, nosniff and a Referrer-Policy.

Every page calls the management services (``regd.manage``) as the Harbor API does,
with the same permission checks: a control a role may not use is hidden, and the POST
behind it is refused anyway. Modules: ``account`` (sign in and out, ``/c/login``),
``projects`` (projects, members, robots), ``repositories`` (artifacts, info,
deletions), ``admin`` (garbage collection, users), ``render`` (what pages share),
``markdown`` (descriptions).
"""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from regd.services import SERVICES
from regd.web import account, admin, projects, render, repositories

HERE = Path(__file__).parent
HTMX = "htmx-2.0.11.min.js"


def setup(app: web.Application) -> None:
    """``/c/login`` and ``/c/log_out`` always; the pages when ``[web] enabled``."""
    pages = app[SERVICES].config.web.enabled
    account.routes(app, pages)
    app.on_response_prepare.append(render.security_headers)
    if not pages:
        return
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a misspelt name fails the tests, not the page
        auto_reload=False,  # no stat() per render on the event loop
        filters=render.FILTERS,
    )
    env.globals["htmx"] = HTMX
    # Read every template now, once, so that no request reads one from disk on the loop.
    for name in env.list_templates():
        env.get_template(name)
    app.middlewares.append(render.html_errors)  # inside the API's error middleware
    projects.routes(app)
    repositories.routes(app)
    admin.routes(app)
    app.router.add_static("/static", HERE / "static", append_version=False)
