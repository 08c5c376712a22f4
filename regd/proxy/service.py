"""The proxy cache: what a pull from a proxy-cache project does.

A project with a ``registry_id`` mirrors that endpoint: ``<project>/<repo>`` is the
upstream's ``<repo>``. Rules (Harbor's ``repoproxy`` middleware, with its outage
behaviour fixed):

- Manifest by digest: the cache, else the upstream (digest checked), then cached.
- Manifest by tag: ``HEAD`` the upstream; the cached manifest when the digest is the
  same; else the upstream's manifest is fetched, cached and the tag recorded (so a
  ``HEAD`` by tag followed by a ``GET`` by digest, as docker and containerd pull, finds
  both). Upstream DOWN (unreachable, timeout, 5xx, 429) or refusing: the cache.
  Upstream 404: 404, or the cache when ``proxy_cache_local_on_not_found`` is "true".
- Blob: the cache (also a blob cached for another repository, linked here); else one
  shared download (``fetch.BlobFetch``) per project and digest. ``HEAD`` of a blob not
  cached is answered from the upstream's ``HEAD``.
- Tag list: the upstream's merged with the cache's; the cache's alone on failure.
- An endpoint marked unhealthy (``health``) is not asked about what the cache holds.
- Limits per project: ``max_upstream_conn`` transfers at once (else 429), and
  ``proxy_speed_kb`` on each transfer.

A manifest GET records its pull time like any pull (``regd/pulls.py``,
``manifests.pulled_at``), which the retention run goes by.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from regd import metrics
from regd.config import Config
from regd.digest import Digest
from regd.errors import ErrorCode, RegistryError
from regd.manifests import MANIFEST_TYPES
from regd.metadata import projects as project_rows
from regd.metadata import registries as registry_rows
from regd.metadata.db import Database
from regd.metadata.projects import Project
from regd.metadata.registries import Endpoint
from regd.proxy.fetch import (
    FOLLOW_POLL,
    BlobFetch,
    FetchFailedError,
    PacedBody,
    announce_sync,
    close_lock_sync,
    landed_sync,
    leader_state_sync,
    open_lock_sync,
    open_reader,
)
from regd.proxy.health import Health, HealthTable
from regd.proxy.limits import ConnectionCap, Pacer, setting
from regd.proxy.upstream import Failure, Upstream, UpstreamError
from regd.registry import Registry, StoredManifest
from regd.storage import fsio
from regd.storage.layout import Layout
from regd.uploads.session import UploadService

log = logging.getLogger("regd.proxy")

# Tag-list pages followed on the upstream (its Link headers) before giving up.
MAX_TAG_PAGES = 20


class Outcome(enum.Enum):
    HIT = "hit"
    MISS = "miss"


@dataclass(frozen=True)
class ProxyProject:
    project: Project
    endpoint: Endpoint

    @property
    def name(self) -> str:
        return self.project.name

    def upstream_name(self, repository: str) -> str:
        return repository[len(self.project.name) + 1 :]

    def needs_library_prefix(self, repository: str) -> bool:
        """Docker Hub's one-part names are ``library/<name>`` (Harbor: a 301 there)."""
        return self.endpoint.type == "docker-hub" and "/" not in self.upstream_name(repository)

    def scope(self, repository: str) -> str:
        return f"repository:{self.upstream_name(repository)}:pull"

    @property
    def local_on_not_found(self) -> bool:
        return self.project.metadata.get("proxy_cache_local_on_not_found", "false").lower() == "true"


@dataclass(frozen=True)
class BlobAnswer:
    """Where a blob's bytes come from: the cache (``fetch`` None, ``size`` known), a
    shared download (``fetch``), or for a HEAD of an uncached blob, only ``size``."""

    outcome: Outcome
    size: int = -1
    fetch: BlobFetch | None = None


def _down_message(pp: ProxyProject, error: UpstreamError) -> RegistryError:
    return RegistryError(ErrorCode.UNAVAILABLE, f"upstream registry {pp.endpoint.name}: {error.message}")


class ProxyService:
    def __init__(
        self, config: Config, db: Database, registry: Registry, uploads: UploadService, layout: Layout
    ) -> None:
        self.config = config
        self.db = db
        self.registry = registry
        self.store = registry.store
        self.uploads = uploads
        self.layout = layout
        self.health = HealthTable(self._probe, self._record_health, config.proxy.probe_interval)
        self.cap = ConnectionCap()
        self._upstreams: dict[int, Upstream] = {}
        self._retired: list[Upstream] = []
        self._fetches: dict[str, BlobFetch] = {}  # by digest

    async def close(self) -> None:
        await self.health.close()
        tasks = [f.task for f in self._fetches.values() if f.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for upstream in [*self._upstreams.values(), *self._retired]:
            await upstream.close()

    # -- projects and endpoints ---------------------------------------------------

    async def project_of(self, repository: str) -> ProxyProject | None:
        """The proxy-cache project ``repository`` belongs to, or None (a normal one)."""
        name = repository.split("/", 1)[0]
        key = ("proxy-project", name)
        lookups = self.registry.lookups
        cached: tuple[ProxyProject | None] | None = lookups.get(key)
        if cached is not None:
            return cached[0]
        stamp = lookups.stamp()
        found: ProxyProject | None = None
        project = await project_rows.by_name(self.db, name)
        if project is not None and project.registry_id is not None:
            endpoint = await registry_rows.by_id(self.db, project.registry_id)
            if endpoint is not None:
                found = ProxyProject(project, endpoint)
        lookups.put(key, (found,), stamp)
        return found

    def upstream(self, endpoint: Endpoint) -> Upstream:
        """The client of ``endpoint``, kept (with its connections and tokens) until the
        endpoint's settings change; a replaced one is closed with the service, as
        transfers may still be using it."""
        current = self._upstreams.get(endpoint.id)
        if current is None or _settings(current.endpoint) != _settings(endpoint):
            if current is not None:
                self._retired.append(current)
            counter = metrics.PROXY_UPSTREAM_REQUESTS.labels(endpoint.name)
            timeouts = self.config.proxy
            current = Upstream(endpoint, timeouts.connect_timeout, timeouts.read_timeout, counter.inc)
            self._upstreams[endpoint.id] = current
        return current

    async def _probe(self, registry_id: int) -> bool:
        endpoint = await registry_rows.by_id(self.db, registry_id)
        if endpoint is None:
            return True  # gone: nothing to keep probing
        try:
            await self.upstream(endpoint).ping()
        except UpstreamError as e:
            return e.failure is not Failure.DOWN
        return True

    async def _record_health(self, registry_id: int, health: Health) -> None:
        async with self.db.transaction(bump=False) as conn:
            await registry_rows.set_status(conn, registry_id, health.value)

    def _failed(self, pp: ProxyProject, error: UpstreamError) -> None:
        if error.failure is Failure.DOWN:
            self.health.down(pp.endpoint.id)

    async def _call(
        self,
        pp: ProxyProject,
        method: str,
        path: str,
        scope: str,
        headers: dict[str, str] | None = None,
        quick: bool = False,
    ) -> aiohttp.ClientResponse:
        upstream = self.upstream(pp.endpoint)
        try:
            resp = await upstream.request(method, path, scope, headers, quick)
        except UpstreamError as e:
            self._failed(pp, e)
            raise
        self.health.up(pp.endpoint.id)
        return resp

    # -- manifests ------------------------------------------------------------------

    async def _cached(self, repository: str, reference: str) -> StoredManifest | None:
        try:
            return await self.registry.get_manifest(repository, reference)
        except RegistryError as e:
            if e.code is ErrorCode.MANIFEST_UNKNOWN:
                return None
            raise

    async def manifest(
        self, pp: ProxyProject, repository: str, reference: str, accept: list[str]
    ) -> tuple[StoredManifest, Outcome]:
        cached = await self._cached(repository, reference)
        if Digest.is_digest(reference):
            if cached is not None:
                return cached, Outcome.HIT
            return await self._fetch_manifest(pp, repository, reference, None, accept), Outcome.MISS
        limit = setting(pp.project.metadata, "max_upstream_conn")
        if cached is not None and (
            not self.health.usable(pp.endpoint.id) or not self.cap.available(pp.name, limit)
        ):
            return cached, Outcome.HIT
        try:
            digest = await self._head_manifest(pp, repository, reference, accept)
        except UpstreamError as e:
            if cached is not None and (e.failure is not Failure.NOT_FOUND or pp.local_on_not_found):
                return cached, Outcome.HIT
            if e.failure is Failure.NOT_FOUND:
                raise RegistryError(
                    ErrorCode.MANIFEST_UNKNOWN, f"manifest {reference} unknown to {repository} upstream"
                ) from None
            raise _down_message(pp, e) from None
        if cached is not None and cached.row.digest == digest:
            return cached, Outcome.HIT
        if digest is not None and (same := await self._cached(repository, digest)) is not None:
            # The content is cached (e.g. pulled by digest before): only the tag moves.
            await self.registry.put_manifest(
                repository, reference, same.data, same.row.media_type, require_references=False
            )
            return same, Outcome.HIT
        try:
            fetched = await self._fetch_manifest(pp, repository, digest or reference, reference, accept)
        except RegistryError as e:
            if cached is not None and e.code is ErrorCode.UNAVAILABLE:
                return cached, Outcome.HIT
            raise
        return fetched, Outcome.MISS

    async def _head_manifest(
        self, pp: ProxyProject, repository: str, tag: str, accept: list[str]
    ) -> str | None:
        with self.cap.hold(pp.name, setting(pp.project.metadata, "max_upstream_conn")):
            path = f"/v2/{pp.upstream_name(repository)}/manifests/{tag}"
            resp = await self._call(pp, "HEAD", path, pp.scope(repository), _accept(accept), quick=True)
            resp.release()
        return resp.headers.get("Docker-Content-Digest")

    async def _fetch_manifest(
        self, pp: ProxyProject, repository: str, reference: str, tag: str | None, accept: list[str]
    ) -> StoredManifest:
        limit = self.config.uploads.max_manifest_size
        with self.cap.hold(pp.name, setting(pp.project.metadata, "max_upstream_conn")):
            path = f"/v2/{pp.upstream_name(repository)}/manifests/{reference}"
            try:
                resp = await self._call(pp, "GET", path, pp.scope(repository), _accept(accept))
                try:
                    data = await _read_at_most(resp, limit + 1)
                    content_type = resp.headers.get("Content-Type")
                finally:
                    resp.release()
            except UpstreamError as e:
                if e.failure is Failure.NOT_FOUND:
                    raise RegistryError(
                        ErrorCode.MANIFEST_UNKNOWN, f"manifest {reference[:200]} unknown upstream"
                    ) from None
                raise _down_message(pp, e) from None
            except (TimeoutError, aiohttp.ClientError) as e:
                self.health.down(pp.endpoint.id)
                raise RegistryError(ErrorCode.UNAVAILABLE, f"upstream manifest read failed: {e}") from None
        metrics.PROXY_UPSTREAM_BYTES.labels(pp.endpoint.name).inc(len(data))
        if len(data) > limit:
            raise RegistryError(ErrorCode.MANIFEST_INVALID, f"upstream manifest exceeds {limit} bytes")
        wanted = Digest.parse(reference) if Digest.is_digest(reference) else None
        if wanted is not None and Digest.of(data, wanted.algorithm) != wanted:
            raise RegistryError(
                ErrorCode.MANIFEST_INVALID, f"upstream sent a manifest that is not {reference}"
            )
        manifest = await self.registry.put_manifest(
            repository, tag or reference, data, content_type, require_references=False
        )
        stored = await self.registry.get_manifest(repository, str(manifest.digest))
        return stored

    # -- blobs ------------------------------------------------------------------------

    async def blob(self, pp: ProxyProject, repository: str, digest: Digest, head: bool) -> BlobAnswer:
        try:
            return BlobAnswer(Outcome.HIT, await self.registry.blob_size(repository, digest))
        except RegistryError as e:
            if e.code is not ErrorCode.BLOB_UNKNOWN:
                raise
        key = str(digest)
        running = self._fetches.get(key)
        if running is not None:
            return BlobAnswer(Outcome.MISS, fetch=running)
        async with self.db.transaction(bump=False) as conn:
            size = await registry_rows.link_stored_blob(conn, repository, str(digest))
        if size is not None:
            return BlobAnswer(Outcome.HIT, size)
        if head:
            return BlobAnswer(Outcome.MISS, await self._head_blob(pp, repository, digest))
        # Checked again with no await before the fetch is registered: concurrent cold
        # pulls of one blob must all find the same download.
        running = self._fetches.get(key)
        if running is not None:
            return BlobAnswer(Outcome.MISS, fetch=running)
        limit = setting(pp.project.metadata, "max_upstream_conn")
        if not self.cap.available(pp.name, limit):
            raise RegistryError(ErrorCode.TOO_MANY_REQUEST)
        fetch = BlobFetch(str(digest))
        self._fetches[key] = fetch
        fetch.task = asyncio.create_task(self._run_fetch(pp, repository, digest, fetch, limit))
        return BlobAnswer(Outcome.MISS, fetch=fetch)

    async def _head_blob(self, pp: ProxyProject, repository: str, digest: Digest) -> int:
        with self.cap.hold(pp.name, setting(pp.project.metadata, "max_upstream_conn")):
            try:
                resp = await self._call(
                    pp, "HEAD", f"/v2/{pp.upstream_name(repository)}/blobs/{digest}", pp.scope(repository)
                )
                resp.release()
            except UpstreamError as e:
                raise _blob_error(pp, digest, e) from None
        return resp.content_length if resp.content_length is not None else -1

    async def _run_fetch(
        self, pp: ProxyProject, repository: str, digest: Digest, fetch: BlobFetch, limit: int
    ) -> None:
        """Lead the download, or follow the one another worker leads (``fetch``'s
        module comment); a follower whose leader ended before it announced anything
        tries to lead in its turn."""
        error: BaseException | None = None
        lock = self.layout.proxy_fetch_lock(digest)
        try:
            followed = False
            while not followed:
                fd, leading = await fsio.run(open_lock_sync, lock)
                try:
                    if leading:
                        with self.cap.hold(pp.name, limit):
                            await self._download(pp, repository, digest, fetch, fd)
                        break
                    followed = await self._follow(repository, digest, fetch, fd)
                finally:
                    await asyncio.shield(fsio.run(close_lock_sync, fd, lock, leading))
        except UpstreamError as e:
            error = _blob_error(pp, digest, e)
        except BaseException as e:
            error = e
            if not isinstance(
                e, RegistryError | FetchFailedError | aiohttp.ClientError | asyncio.TimeoutError
            ):
                log.exception("proxy fetch of %s failed", digest)
        finally:
            self._fetches.pop(str(digest), None)
            fetch.finish(error)
        if error is not None:
            log.warning("proxy fetch of %s from %s failed: %s", digest, pp.endpoint.name, error)
            if isinstance(error, asyncio.CancelledError):
                raise error

    async def _follow(self, repository: str, digest: Digest, fetch: BlobFetch, lock_fd: int) -> bool:
        """Serve the download another worker leads; False when it ended before saying
        what it downloads (the caller then leads)."""
        state = await fsio.run(leader_state_sync, lock_fd)
        while state.upload_id is None:
            if not state.alive:
                return False
            await asyncio.sleep(FOLLOW_POLL)
            state = await fsio.run(leader_state_sync, lock_fd)
        try:
            data_fd = await fsio.run(os.open, self.layout.upload_data(state.upload_id), os.O_RDONLY)
        except FileNotFoundError:  # committed (or discarded) already
            data_fd = await fsio.run(_open_if_exists, self.store.path(digest))
            if data_fd < 0:
                raise FetchFailedError("the download in another worker failed") from None
        fetch.streaming(state.size, data_fd)
        while state.alive:
            fetch.progress(await fsio.run(landed_sync, data_fd))
            await asyncio.sleep(FOLLOW_POLL)
            state = await fsio.run(leader_state_sync, lock_fd)
        if await self.store.size(digest) != state.size:
            raise FetchFailedError("the download in another worker failed")
        fetch.progress(state.size)
        async with self.db.transaction(bump=False) as conn:
            await registry_rows.link_stored_blob(conn, repository, str(digest))
        return True

    async def _download(
        self, pp: ProxyProject, repository: str, digest: Digest, fetch: BlobFetch, lock_fd: int
    ) -> None:
        resp = await self._call(
            pp, "GET", f"/v2/{pp.upstream_name(repository)}/blobs/{digest}", pp.scope(repository)
        )
        try:
            if resp.content_length is None:
                raise RegistryError(ErrorCode.UNAVAILABLE, "upstream sent a blob without Content-Length")
            row = await self.uploads.start(repository)
            try:
                fetch.streaming(resp.content_length, await open_reader(self.layout.upload_data(row.id)))
                await fsio.run(announce_sync, lock_fd, row.id, resp.content_length)
                pacer = Pacer(setting(pp.project.metadata, "proxy_speed_kb"))
                counter = metrics.PROXY_UPSTREAM_BYTES.labels(pp.endpoint.name)
                body = PacedBody(resp.content.readany, counter.inc, pacer.pace)
                row = await self.uploads.append(row, body, None, None, on_written=fetch.progress)
                if row.size != resp.content_length:
                    raise RegistryError(
                        ErrorCode.SIZE_INVALID, f"upstream sent {row.size} of {resp.content_length} bytes"
                    )
                await self.uploads.commit(row, digest)
            except BaseException:
                await asyncio.shield(self._discard(repository, row.id))
                raise
        except (TimeoutError, aiohttp.ClientError):
            self.health.down(pp.endpoint.id)
            raise
        finally:
            resp.release()

    async def _discard(self, repository: str, upload_id: str) -> None:
        try:
            row = await self.uploads.get(repository, upload_id)
        except RegistryError:
            return  # the commit's digest check removed it already
        try:
            await self.uploads.cancel(row)
        except RegistryError:
            log.warning("could not discard proxy upload %s", upload_id)

    # -- tags -------------------------------------------------------------------------

    async def tags(self, pp: ProxyProject, repository: str) -> list[str]:
        """The upstream's tags and the cache's, merged and sorted."""
        try:
            local = await self.registry.tags(repository, "", 1_000_000)
        except RegistryError as e:
            if e.code is not ErrorCode.NAME_UNKNOWN:
                raise
            local = []
        if not self.health.usable(pp.endpoint.id) and local:
            return local
        try:
            remote = await self._remote_tags(pp, repository)
        except UpstreamError as e:
            if not local and e.failure is Failure.NOT_FOUND:
                raise RegistryError(
                    ErrorCode.NAME_UNKNOWN, f"repository {repository} unknown upstream"
                ) from None
            return local
        except RegistryError:
            return local
        return sorted(set(local) | set(remote))

    async def _remote_tags(self, pp: ProxyProject, repository: str) -> list[str]:
        tags: list[str] = []
        path: str | None = f"/v2/{pp.upstream_name(repository)}/tags/list"
        with self.cap.hold(pp.name, setting(pp.project.metadata, "max_upstream_conn")):
            for _ in range(MAX_TAG_PAGES):
                if path is None:
                    break
                resp = await self._call(pp, "GET", path, pp.scope(repository), quick=True)
                try:
                    body = await resp.json(content_type=None)
                except (TimeoutError, aiohttp.ClientError, ValueError):
                    return tags
                finally:
                    resp.release()
                tags += [t for t in (body.get("tags") or []) if isinstance(t, str)]
                path = _next_page(resp.headers.get("Link"))
        return tags


async def _read_at_most(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, or its first ``limit`` bytes when it is longer."""
    chunks: list[bytes] = []
    total = 0
    while total < limit and (chunk := await resp.content.readany()):
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)[:limit]


def _open_if_exists(path: Path) -> int:
    try:
        return os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return -1


def _settings(endpoint: Endpoint) -> tuple[object, ...]:
    """What an upstream client is made of (not the endpoint's name, status or times)."""
    e = endpoint
    return (e.type, e.url, e.credential_type, e.access_key, e.access_secret, e.insecure)


def _accept(accept: list[str]) -> dict[str, str]:
    """The client's manifest types, passed on; all of them when it named none (``*/*``:
    distribution answers 404 for an OCI manifest to a client that did not name OCI)."""
    named = [t for t in accept if t in MANIFEST_TYPES]
    return {"Accept": ", ".join(named or sorted(MANIFEST_TYPES))}


def _next_page(link: str | None) -> str | None:
    """The path of the next page from a ``Link: </v2/...>; rel="next"`` header."""
    if not link or 'rel="next"' not in link:
        return None
    target = link.split(";", 1)[0].strip().strip("<>")
    return target if target.startswith("/v2/") else None


def _blob_error(pp: ProxyProject, digest: Digest, error: UpstreamError) -> RegistryError:
    if error.failure is Failure.NOT_FOUND:
        return RegistryError(ErrorCode.BLOB_UNKNOWN, f"blob {digest} unknown upstream")
    return _down_message(pp, error)
