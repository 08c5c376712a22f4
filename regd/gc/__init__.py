"""Online mark-and-sweep garbage collection: pushes and pulls go on while it runs.

Deleting (a tag, a manifest, a repository, a blob link) only removes metadata rows; the
bytes stay until a collection. A collection, holding ``gc.lock`` (one at a time, across
processes: the daemon's scheduler, the API and ``regd gc`` share it):

1. **Recover the trash.** A file in ``trash/`` whose blob row exists was moved by a sweep
   transaction that never committed (kill -9, power loss): it goes back. Any other file
   there belongs to a committed sweep: it is deleted. Also at daemon start, and by the
   daemon's scheduler whenever it finds trash and no collection running.
2. **Expire upload sessions** idle longer than ``[uploads] expire_after``; live ones are
   never touched (their bytes are under ``uploads/``, not ``blobs/``).
3. **Mark** (SQL over the edges, on a read snapshot). Without ``delete_untagged`` every
   manifest row is live. With it, the live set is the closure of tagged manifests and
   untagged ones pushed within the grace period, through index children and referrers
   of live subjects (same repository); the rest is deleted in batches, each manifest
   re-checked inside the deleting transaction (still untagged, still past grace, no index
   of its repository lists it, its subject is gone). A child whose dead index still
   stands waits for the next pass; passes repeat until one deletes nothing.
4. **Sweep blobs**, paged by digest, ``BATCH_SIZE`` per write transaction. In ONE
   ``BEGIN IMMEDIATE`` transaction: re-check each candidate is still referenced by no
   manifest (neither as its bytes nor as a config/layer) and was last seen more than
   1.5 grace periods ago; delete its row (its repository links cascade); rename its file
   into ``trash/``. COMMIT. Then unlink the trash files.
5. **Sweep orphan files**: files under ``blobs/`` that no row knows (a crash between an
   upload's link and its commit) whose mtime is older than the grace period, moved to
   trash under the same kind of transaction (re-checking that no row appeared); stray
   non-digest files under ``blobs/`` of that age are deleted, and files in ``tmp/`` older
   than that and an hour (a manifest ``PUT`` in flight links its blob from there).

Why nothing referenced is ever lost, with pushes running:

- A manifest ``PUT`` checks, inside its write transaction, that every blob it references
  is linked to the repository (``Registry.put_manifest``), and writes the manifest row in
  that same transaction. The sweep deletes a blob row only inside a write transaction
  that has just re-checked no manifest references it. SQLite serialises the two (one
  writer; ``BEGIN IMMEDIATE``, across processes): either the manifest commits first, and
  the sweep's re-check sees the reference and keeps the blob, or the sweep commits first,
  and the ``PUT`` finds the link gone and answers ``MANIFEST_BLOB_UNKNOWN``.
- Rows and files move together. An upload or manifest commit hard-links its file into
  place, then INSIDE its write transaction re-checks that the file is still there,
  re-linking it from its own copy if a sweep took it (``BlobStore.confirm``), and only
  then upserts the row. The sweep renames files only inside its own write transaction.
  So a committed blob row always has its file: a sweep that ran before the commit took
  the file and the commit put it back; a sweep after the commit sees the row and its
  fresh ``last_seen``. Renaming (not unlinking) inside the transaction is what makes a
  crash recoverable: until COMMIT the bytes are only moved, and step 1 moves them back.
- Foreign layers are never fetched, so there is nothing to sweep; a foreign layer that
  was uploaded anyway is referenced like any layer and kept.

The grace period (``[gc] grace_period``, default 7200 s as in Harbor): an unreferenced
blob is kept until ``last_seen + 1.5 * grace_period``; ``last_seen`` is set when the blob
is uploaded or mounted and refreshed by a ``HEAD`` at most every grace/2, so a client told
"exists" by a ``HEAD`` can reference the blob in a manifest ``PUT`` for at least one full
grace period. Within it such a push is never refused. With ``grace_period = 0`` a push
whose blob is swept between its ``HEAD`` and its ``PUT`` is refused cleanly with
``MANIFEST_BLOB_UNKNOWN`` (the client uploads again), and nothing accepted breaks.
Untagged manifests (``delete_untagged``) are kept ``grace_period`` after they were pushed.

No read-only window: each write transaction holds SQLite's write lock for one batch
(typically 10-40 ms for 256 blobs: benchmarks/gc_bench.py); pushes and pulls interleave
between batches. Reads (the mark, the candidate pages) take no lock at all (WAL). A stop request (API or
``gc_runs.stop_requested``) is honoured between batches.

Test hook: ``REGD_TESTHOOK_GC_SWEEP_DELAY=<seconds>`` sleeps after each file moved inside
a sweep transaction (and before emptying the trash), so a test can kill -9 mid-sweep.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from regd.gc.collector import Collector, Options, Report
    from regd.gc.service import GCBusyError, GCService, Parameters

__all__ = ["Collector", "GCBusyError", "GCService", "Options", "Parameters", "Report"]

# The names above are imported on first use (PEP 562), not with the package: the
# collector imports regd.metrics, whose prometheus_client must not be imported before
# ``regd serve`` has chosen its multiprocess mode (regd/cli.py).
_HOMES = {"Collector": "collector", "Options": "collector", "Report": "collector"} | dict.fromkeys(
    ("GCBusyError", "GCService", "Parameters"), "service"
)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"regd.gc.{home}"), name)
