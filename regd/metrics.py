"""Prometheus metrics: the registry of this process and the metrics other modules update.

Exposed at ``GET /metrics`` (``regd.api.observe``) in the text exposition format, by
``prometheus_client``. Counters are per process and start at zero when regd starts,
as Prometheus expects of counters.

Updated where things happen:

- ``REQUESTS``, ``REQUEST_DURATION``, ``RECEIVED_BYTES``, ``SENT_BYTES``: once per
  request, by the access logger (``regd.api.observe``), the one hook aiohttp calls after
  a response is sent;
- ``PROXY_*``: by the proxy cache (``regd.proxy``), per upstream request, per byte
  received from an upstream, per hit or miss of a proxy-cache project;
- ``GC_RUNS``, ``GC_BYTES_FREED``, ``GC_BLOBS_DELETED``: by the garbage collector, e.g.
  ``metrics.GC_RUNS.inc()`` and ``metrics.GC_BYTES_FREED.inc(freed)`` after a sweep;

and set at scrape time by ``GET /metrics``: blobs and bytes stored and upload sessions,
from SQLite; free space, from the file system. The API layer adds the blob bytes sent by
sendfile(2) or copied (``regd_blob_sent_bytes``, from ``SendfileResponse``'s counters).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.multiprocess import MultiProcessCollector

from regd import __version__

# With ``[server] workers`` > 1 the supervisor sets PROMETHEUS_MULTIPROC_DIR before this
# module is first imported: every worker then writes its values to files there and
# /metrics, whichever worker answers it, sums them (prometheus_client's multiprocess mode).
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

REGISTRY = CollectorRegistry(auto_describe=True)
if not MULTIPROCESS:
    ProcessCollector(registry=REGISTRY)


def exposition() -> CollectorRegistry:
    """What GET /metrics renders: this process's registry, or the sum over all workers."""
    if not MULTIPROCESS:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


BUILD_INFO = Gauge(
    "regd_build_info", "regd version (always 1)", ["version"], registry=REGISTRY, multiprocess_mode="max"
)
BUILD_INFO.labels(__version__).set(1)

REQUESTS = Counter(
    "regd_http_requests",
    "HTTP requests answered, by route and status (499: the stop or the client cut it off)",
    ["method", "route", "status"],
    registry=REGISTRY,
)
REQUEST_DURATION = Histogram(
    "regd_http_request_duration_seconds",
    "Time from a request's first byte to its response's last byte, by route",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
    registry=REGISTRY,
)
RECEIVED_BYTES = Counter(
    "regd_http_received_bytes", "Request body bytes received, by route", ["route"], registry=REGISTRY
)
UPLOAD_BODIES = Counter(
    "regd_upload_bodies",
    "Upload request bodies, by how they were read: direct (straight into the staging buffer) or aiohttp",
    ["path"],
    registry=REGISTRY,
)
SENT_BYTES = Counter(
    "regd_http_sent_bytes",
    "Response bytes sent (headers included; blob bodies sent by sendfile too), by route",
    ["route"],
    registry=REGISTRY,
)

BLOBS = Gauge(
    "regd_blobs", "Blobs stored (manifests included)", registry=REGISTRY, multiprocess_mode="mostrecent"
)
BLOB_BYTES = Gauge(
    "regd_blob_bytes", "Bytes of the blobs stored", registry=REGISTRY, multiprocess_mode="mostrecent"
)
UPLOADS = Gauge(
    "regd_upload_sessions",
    "Upload sessions in progress, by state",
    ["state"],
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)
FREE_BYTES = Gauge(
    "regd_storage_free_bytes",
    "Bytes free for regd on the data directory's file system",
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)

STORAGE_FULL = Counter(
    "regd_storage_full_errors",
    "Requests refused with 507 because the disk or the quota was full (ENOSPC, EDQUOT, SQLITE_FULL)",
    registry=REGISTRY,
)

SCRUB_RUNS = Counter("regd_scrub_runs", "Scrubs finished by this process", registry=REGISTRY)
SCRUB_BYTES = Counter("regd_scrub_read_bytes", "Blob bytes the scrub read back", registry=REGISTRY)
SCRUB_FINDINGS = Counter(
    "regd_scrub_findings",
    "Blobs a scrub quarantined, by what was wrong (damaged, missing)",
    ["kind"],
    registry=REGISTRY,
)
QUARANTINED = Gauge(
    "regd_quarantined_blobs",
    "Blobs in quarantine (damaged or missing; answered as unknown until pushed again)",
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)
SCRUB_UNKNOWN_FILES = Gauge(
    "regd_scrub_unknown_files",
    "Files under blobs/ that no blob row knew at the last scrub (garbage collection removes them)",
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)

GC_RUNS = Counter("regd_gc_runs", "Garbage collections run by this process", registry=REGISTRY)
GC_BYTES_FREED = Counter(
    "regd_gc_freed_bytes", "Bytes of blobs garbage collection removed", registry=REGISTRY
)
GC_BLOBS_DELETED = Counter("regd_gc_deleted_blobs", "Blobs garbage collection removed", registry=REGISTRY)

BLOB_SENT_BYTES = Counter(
    "regd_blob_sent_bytes",
    "Blob body bytes served, by how they were sent: sendfile(2) or mapped (plain HTTP), copied (TLS)",
    ["path"],
    registry=REGISTRY,
)

PROXY_UPSTREAM_REQUESTS = Counter(
    "regd_proxy_upstream_requests",
    "HTTP requests regd sent to upstream registries (token requests included), by endpoint",
    ["registry"],
    registry=REGISTRY,
)
PROXY_UPSTREAM_BYTES = Counter(
    "regd_proxy_upstream_received_bytes",
    "Blob and manifest bytes received from upstream registries, by endpoint",
    ["registry"],
    registry=REGISTRY,
)
PROXY_HITS = Counter(
    "regd_proxy_cache_hits",
    "Proxy-cache answers served from the cache, by kind (manifest, blob)",
    ["kind"],
    registry=REGISTRY,
)
PROXY_MISSES = Counter(
    "regd_proxy_cache_misses",
    "Proxy-cache answers that needed the upstream's content, by kind (manifest, blob)",
    ["kind"],
    registry=REGISTRY,
)
