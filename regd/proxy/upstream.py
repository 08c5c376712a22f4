"""The client of one upstream registry endpoint: HTTP, its auth, and how it failed.

Auth follows what the upstream asks for in its ``WWW-Authenticate`` challenge
(distribution's "Token Authentication Specification"): ``Basic`` gets the endpoint's
credentials; ``Bearer realm=...,service=...`` sends regd to the realm (often another
host, as Docker Hub's auth.docker.io) for a token of the repository's pull scope, with
the credentials as Basic when there are any (anonymous otherwise). Tokens are kept per
scope until shortly before they expire; after the first challenge, requests carry the
right header from the start.

Failures are classified once (``Failure``): an upstream that cannot be reached, times
out, answers 5xx or 429 is DOWN (the cache answers); 404 is NOT_FOUND; anything else
(401/403 after auth, 400...) is REFUSED.
"""

from __future__ import annotations

import base64
import enum
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from regd.metadata.registries import Endpoint

# Docker Hub's web address is not its registry's.
_DOCKER_HUB_API = "https://registry-1.docker.io"
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
READ_BUFFER = 1 << 20
# A token is used until this many seconds before it expires.
_TOKEN_MARGIN = 10.0


class Failure(enum.Enum):
    DOWN = "down"  # unreachable, timeout, 5xx, 429: serve what is cached
    NOT_FOUND = "not found"
    REFUSED = "refused"


class UpstreamError(Exception):
    def __init__(self, failure: Failure, message: str) -> None:
        self.failure = failure
        self.message = message
        super().__init__(message)


def classify(status: int) -> Failure:
    if status == 404:
        return Failure.NOT_FOUND
    if status >= 500 or status == 429:
        return Failure.DOWN
    return Failure.REFUSED


def api_url(endpoint: Endpoint) -> str:
    url = endpoint.url.rstrip("/")
    if endpoint.type == "docker-hub" and re.match(r"^https?://(www\.)?hub\.docker\.com$", url):
        return _DOCKER_HUB_API
    return url


@dataclass
class _Token:
    value: str
    expires: float


class Upstream:
    """Requests to one endpoint over one connection pool."""

    def __init__(
        self,
        endpoint: Endpoint,
        connect_timeout: float,
        read_timeout: float,
        on_request: Callable[[], object] = lambda: None,
    ) -> None:
        """``on_request``: called for each request sent (the proxy service counts them
        in /metrics; this module stays free of ``regd.metrics``, which the CLI must not
        import before ``regd serve`` chose its metrics mode)."""
        self.endpoint = endpoint
        self._on_request = on_request
        self.base = api_url(endpoint)
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )
        # Questions whose answer has a cached fallback (a tag's digest, a tag list, a
        # token) wait no longer than a connection may take: a stalled upstream must not
        # hold a pull the cache can answer.
        self.quick = aiohttp.ClientTimeout(total=connect_timeout * 2, sock_connect=connect_timeout)
        self._session: aiohttp.ClientSession | None = None
        self._challenge: dict[str, str] | None = None  # the last Bearer challenge's params
        self._basic = False  # the upstream asked for Basic
        self._tokens: dict[str, _Token] = {}

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                ssl=False if self.endpoint.insecure else True, limit=0, enable_cleanup_closed=True
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                auto_decompress=False,
                trust_env=False,
                # aiohttp's 64 KiB buffer pauses the socket every 64 KiB; 1 MiB lets a
                # blob stream in large reads (bounded memory: at most 2 MiB per transfer).
                read_bufsize=READ_BUFFER,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    # -- auth -------------------------------------------------------------------

    def _credentials(self) -> str | None:
        e = self.endpoint
        if e.credential_type != "basic" or not e.access_key:
            return None
        return "Basic " + base64.b64encode(f"{e.access_key}:{e.access_secret}".encode()).decode()

    def _auth_header(self, scope: str) -> dict[str, str]:
        if self._basic:
            basic = self._credentials()
            return {"Authorization": basic} if basic else {}
        token = self._tokens.get(scope)
        if token is not None and token.expires > time.monotonic():
            return {"Authorization": f"Bearer {token.value}"}
        return {}

    async def _authenticate(self, header: str, scope: str) -> bool:
        """Act on a 401's challenge; False when it asks for nothing regd can give."""
        scheme = header.partition(" ")[0].lower()
        if scheme == "basic":
            self._basic = True
            return self._credentials() is not None
        if scheme != "bearer":
            return False
        params = dict(_CHALLENGE_PARAM.findall(header))
        if "realm" not in params:
            return False
        self._challenge = params
        await self._fetch_token(scope)
        return True

    async def _fetch_token(self, scope: str) -> None:
        assert self._challenge is not None
        query = {"service": self._challenge.get("service", "")}
        if scope:
            query["scope"] = scope
        headers = {}
        basic = self._credentials()
        if basic is not None:
            headers["Authorization"] = basic
        self._on_request()
        realm = self._challenge["realm"]
        async with self._client().get(realm, params=query, headers=headers, timeout=self.quick) as resp:
            if resp.status != 200:
                raise UpstreamError(
                    classify(resp.status) if resp.status != 404 else Failure.REFUSED,
                    f"token service {realm} answered {resp.status}",
                )
            body: Any = orjson.loads(await resp.read())
        token = body.get("token") or body.get("access_token")
        if not isinstance(token, str):
            raise UpstreamError(Failure.REFUSED, "token service answered no token")
        lifetime = body.get("expires_in")
        lifetime = float(lifetime) if isinstance(lifetime, int | float) and lifetime > 0 else 60.0
        self._tokens[scope] = _Token(token, time.monotonic() + max(lifetime - _TOKEN_MARGIN, 1.0))

    # -- requests ---------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        scope: str,
        headers: dict[str, str] | None = None,
        quick: bool = False,
    ) -> aiohttp.ClientResponse:
        """The upstream's answer to ``method path`` (its body not read yet: the caller
        must ``release()`` it), authenticated as the upstream asks. Errors become
        ``UpstreamError``; a 2xx or 3xx answer is returned."""
        url = self.base + path
        for attempt in range(2):
            sent = {**(headers or {}), **self._auth_header(scope)}
            self._on_request()
            try:
                resp = await self._client().request(
                    method,
                    url,
                    headers=sent,
                    allow_redirects=True,
                    timeout=self.quick if quick else self._timeout,
                )
            except (TimeoutError, aiohttp.ClientError, OSError) as e:
                raise UpstreamError(
                    Failure.DOWN, f"{self.endpoint.name}: {e.__class__.__name__} {e}"
                ) from None
            if resp.status == 401 and attempt == 0:
                challenge = resp.headers.get("WWW-Authenticate", "")
                resp.release()
                try:
                    if await self._authenticate(challenge, scope):
                        continue
                except (TimeoutError, aiohttp.ClientError, OSError) as e:
                    raise UpstreamError(Failure.DOWN, f"{self.endpoint.name} token service: {e}") from None
                raise UpstreamError(Failure.REFUSED, f"{self.endpoint.name} requires credentials regd lacks")
            if resp.status >= 400:
                resp.release()
                raise UpstreamError(
                    classify(resp.status), f"{self.endpoint.name} answered {resp.status} to {method} {url}"
                )
            return resp
        raise UpstreamError(Failure.REFUSED, f"{self.endpoint.name} refused the credentials")

    async def ping(self) -> None:
        """Raise ``UpstreamError`` unless ``GET /v2/`` works (with auth, when asked)."""
        resp = await self.request("GET", "/v2/", scope="", quick=True)
        resp.release()
