"""Browser sessions: a random cookie value bound to a row in ``web_sessions`` (by its
SHA-256), so that every worker process of the daemon knows a session and "Log out" ends
it everywhere. Each session carries its CSRF token.

A session ends ``[web] session_idle_timeout`` seconds after its last request and
``session_lifetime`` seconds after sign-in; ``last_seen`` is written at most once a
minute. A password change ends the user's sessions (``UserService``); deleting the
user deletes them.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from regd.config import WebConfig
from regd.metadata import sessions
from regd.metadata.db import Database

TOUCH_INTERVAL = 60.0


@dataclass(frozen=True)
class Session:
    user_id: int
    username: str
    csrf: str


def _key(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


class Sessions:
    def __init__(self, db: Database, config: WebConfig) -> None:
        self.db = db
        self.config = config

    async def start(self, user_id: int) -> tuple[str, Session]:
        """A new session for a user who just signed in: (cookie value, session)."""
        cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = time.time()
        await sessions.insert(
            self.db, _key(cookie), user_id, csrf, now, now - self.config.session_idle_timeout
        )
        row = await sessions.get(self.db, _key(cookie))
        return cookie, Session(user_id, row.username if row else "", csrf)

    async def find(self, cookie: str) -> Session | None:
        """The live session of a cookie value, or None (unknown, ended or expired)."""
        if not cookie or len(cookie) > 200:
            return None
        row = await sessions.get(self.db, _key(cookie))
        now = time.time()
        if row is None:
            return None
        idle, age = now - row.last_seen, now - row.created_at
        if idle > self.config.session_idle_timeout or age > self.config.session_lifetime:
            await sessions.delete(self.db, _key(cookie))
            return None
        if now - row.last_seen > TOUCH_INTERVAL:
            await sessions.touch(self.db, _key(cookie), now)
        return Session(row.user_id, row.username, row.csrf)

    async def end(self, cookie: str) -> None:
        await sessions.delete(self.db, _key(cookie))

    async def end_all_of(self, user_id: int) -> None:
        await sessions.delete_of_user(self.db, user_id)
