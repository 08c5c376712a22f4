"""The content-trust check on manifest pulls, and the verdicts the API shows.

Project metadata (Harbor's keys, strings "true"/"false"):

- ``enable_content_trust_cosign``: an image needs a cosign signature;
- ``enable_content_trust``: an image needs a notation signature (both on: both kinds);
- ``content_trust_verify`` (regd's): a signature counts only if it verifies against the
  project's trust anchors.

The hot path costs no SQL and no cryptography after the first pull of an image: the
project's policy, an image's pass, its signatures' rows and the anchors come from
``LookupCache`` (valid while the shared generation stands, so exact across worker
processes), and verdicts from a cache keyed by what determines them (signature digest,
image digest, the anchor set's fingerprint, the signature's arrival time), which no
commit can make stale. A pass resting on an expiring verdict (notation's
``io.cncf.notary.expiry``) lasts until that expiry; the verdict is then re-judged
against the clock.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import orjson

from regd import signing
from regd.digest import Digest
from regd.errors import ErrorCode, RegistryError
from regd.metadata import projects, signatures, trust_anchors
from regd.metadata.db import Database
from regd.metadata.generation import LookupCache
from regd.metadata.manifests import ManifestRow
from regd.metadata.projects import Project
from regd.metadata.signatures import SignatureRow
from regd.names import project_of
from regd.registry import Registry
from regd.signing import Kind
from regd.storage.blobstore import BlobStore
from regd.trust import bundle, cosign, notation
from regd.trust.anchors import AnchorSet
from regd.trust.verdict import Verdict

log = logging.getLogger("regd.trust")

COSIGN_KEY = "enable_content_trust_cosign"
NOTATION_KEY = "enable_content_trust"
VERIFY_KEY = "content_trust_verify"
POLICY_KEYS = (COSIGN_KEY, NOTATION_KEY, VERIFY_KEY)

MAX_SIGNATURE_BLOB = 4 * 1024 * 1024
MAX_VERDICTS = 20_000
MAX_INDEX_DEPTH = 2  # an index of indexes of the image, at most


@dataclass(frozen=True)
class Policy:
    kinds: tuple[Kind, ...]  # cosign before notation, as Harbor checks them
    verify: bool

    @classmethod
    def of(cls, metadata: dict[str, str]) -> Policy:
        def on(key: str) -> bool:
            return metadata.get(key, "false").lower() == "true"

        kinds = tuple(k for k, key in ((Kind.COSIGN, COSIGN_KEY), (Kind.NOTATION, NOTATION_KEY)) if on(key))
        return cls(kinds, on(VERIFY_KEY))


class ContentTrust:
    def __init__(self, db: Database, registry: Registry, store: BlobStore) -> None:
        self.db = db
        self.registry = registry
        self.store = store
        self.lookups = LookupCache(db.generation)
        self._verdicts: dict[Hashable, Verdict] = {}
        self._anchor_sets: dict[str, AnchorSet] = {}

    async def anchors(self, project_id: int) -> AnchorSet:
        key = ("anchors", project_id)
        found: AnchorSet | None = self.lookups.get(key)
        if found is None:
            stamp = self.lookups.stamp()
            rows = await trust_anchors.of_project(self.db, project_id)
            fresh = AnchorSet.of([r.anchor for r in rows])
            found = self._anchor_sets.setdefault(fresh.fingerprint, fresh)
            if len(self._anchor_sets) > 1000:
                self._anchor_sets.clear()
            self.lookups.put(key, found, stamp)
        return found

    async def signatures(self, repository_id: int, digest: str) -> list[SignatureRow]:
        """Signatures of ``digest`` and, for a child of an index, of the indexes above it."""
        key = ("signatures", repository_id, digest)
        found: list[SignatureRow] | None = self.lookups.get(key)
        if found is None:
            stamp = self.lookups.stamp()
            found = await signatures.of_subjects(self.db, repository_id, [digest])
            level = [digest]
            for _ in range(MAX_INDEX_DEPTH):
                level = [p for d in level for p in await signatures.parents(self.db, repository_id, d)]
                if not level:
                    break
                found += await signatures.of_subjects(self.db, repository_id, level)
            self.lookups.put(key, found, stamp)
        return found

    async def is_signature(self, row: ManifestRow) -> bool:
        key = ("is_signature", row.id)
        found: bool | None = self.lookups.get(key)
        if found is None:
            stamp = self.lookups.stamp()
            found = await signatures.is_signature(self.db, row.id)
            self.lookups.put(key, found, stamp)
        return found

    # -- the pull check ---------------------------------------------------------------

    async def policy(self, project_name: str) -> tuple[Project | None, Policy]:
        key = ("policy", project_name)
        found: tuple[Project | None, Policy] | None = self.lookups.get(key)
        if found is None:
            stamp = self.lookups.stamp()
            project = await projects.by_name(self.db, project_name)
            found = (project, Policy.of(project.metadata if project else {}))
            self.lookups.put(key, found, stamp)
        return found

    async def check_pull(self, repository: str, row: ManifestRow, signer_exempt: bool) -> None:
        """Raise 412 PROJECTPOLICYVIOLATION when the project's policy refuses ``row``.

        A pass is remembered under the shared generation (any commit forgets it) until
        the earliest expiry of the verdicts it rests on: one lookup per pull after that."""
        project, policy = await self.policy(project_of(repository))
        if project is None or not policy.kinds:
            return
        key = ("passes", row.id, policy)
        until: float | None = self.lookups.get(key)
        if until is not None and time.time() < until:
            return
        stamp = self.lookups.stamp()
        failure, until = await self._unmet(project, repository, row, policy)
        if failure is None:
            self.lookups.put(key, until, stamp)
            return
        if signer_exempt or await self.is_signature(row):
            return
        kind, reason = failure
        raise RegistryError(
            ErrorCode.PROJECTPOLICYVIOLATION, f"The image is not signed by {kind.signer}.", detail=reason
        )

    async def _unmet(
        self, project: Project, repository: str, row: ManifestRow, policy: Policy
    ) -> tuple[tuple[Kind, str | None] | None, float]:
        """The first kind the policy needs that no (verified) signature provides, with
        the reason; else None and how long the verdicts it rests on hold."""
        found = await self.signatures(row.repository_id, row.digest)
        until = math.inf
        now = time.time()
        for kind in policy.kinds:
            candidates = [s for s in found if s.kind is kind]
            if not candidates:
                return (kind, None), until
            if not policy.verify:
                continue
            reasons = []
            for signature in candidates:
                subject = await self._subject(repository, row, signature)
                verdict = await self.verdict(project.id, repository, signature, subject)
                if verdict.holds(now):
                    until = min(until, verdict.expires_at or math.inf)
                    break
                reasons.append(f"{signature.digest}: {verdict.reason_at(now)}")
            else:
                return (kind, "; ".join(reasons)), until
        return None, until

    async def _subject(self, repository: str, row: ManifestRow, signature: SignatureRow) -> ManifestRow:
        """The manifest a signature signs: ``row`` or an index above it."""
        if signature.subject == row.digest:
            return row
        return await self.registry.resolve(repository, signature.subject)

    # -- verdicts ---------------------------------------------------------------------

    async def verdict(
        self, project_id: int, repository: str, signature: SignatureRow, subject: ManifestRow
    ) -> Verdict:
        anchors = await self.anchors(project_id)
        key = (signature.digest, subject.digest, anchors.fingerprint, signature.pushed_at)
        found = self._verdicts.get(key)
        if found is None:
            found = await self._judge(repository, signature, subject, anchors)
            if len(self._verdicts) >= MAX_VERDICTS:
                self._verdicts.clear()
            if found.final:
                self._verdicts[key] = found
        return found

    async def _judge(
        self, repository: str, signature: SignatureRow, subject: ManifestRow, anchors: AnchorSet
    ) -> Verdict:
        try:
            stored = await self.registry.get_manifest(repository, signature.digest)
            body = orjson.loads(stored.data)
            layers = [layer for layer in body.get("layers") or [] if isinstance(layer, dict)]
        except (RegistryError, orjson.JSONDecodeError, AttributeError):
            return Verdict(False, "the signature manifest cannot be read", final=False)
        if signature.kind is Kind.COSIGN:
            if body.get("artifactType") == signing.SIGSTORE_BUNDLE:
                return await self._judge_bundle(repository, layers, subject, anchors, signature)
            signed = [
                cosign.SignatureLayer(layer.get("annotations") or {}, payload)
                for layer in layers
                if layer.get("mediaType") == signing.SIMPLESIGNING
                and (payload := await self._blob(layer)) is not None
            ]
            return await _off_loop(cosign.verify, signed, subject.digest, anchors, signature.pushed_at)
        envelopes = [layer for layer in layers if layer.get("mediaType") in signing.NOTATION_ENVELOPES]
        if len(envelopes) != 1:
            return Verdict(False, "a notation signature has exactly one envelope layer")
        envelope = await self._blob(envelopes[0])
        if envelope is None:
            return Verdict(False, "the notation envelope cannot be read", final=False)
        target = notation.Target(subject.media_type, subject.digest, subject.size)
        media_type = str(envelopes[0]["mediaType"])
        return await _off_loop(notation.verify, media_type, envelope, target, anchors, time.time())

    async def _judge_bundle(
        self,
        repository: str,
        layers: list[dict[str, Any]],
        subject: ManifestRow,
        anchors: AnchorSet,
        signature: SignatureRow,
    ) -> Verdict:
        found = [layer for layer in layers if layer.get("mediaType") == signing.SIGSTORE_BUNDLE]
        if len(found) != 1:
            return Verdict(False, "a sigstore bundle signature has exactly one bundle layer")
        data = await self._blob(found[0])
        if data is None:
            return Verdict(False, "the sigstore bundle cannot be read", final=False)
        manifest = (await self.registry.get_manifest(repository, subject.digest)).data
        return await _off_loop(bundle.verify, data, subject.digest, manifest, anchors, signature.pushed_at)

    async def _blob(self, descriptor: dict[str, object]) -> bytes | None:
        size, digest = descriptor.get("size"), descriptor.get("digest")
        if not isinstance(size, int) or size > MAX_SIGNATURE_BLOB or not isinstance(digest, str):
            return None
        try:
            return await self.store.read(Digest.parse(digest))
        except (RegistryError, FileNotFoundError):
            return None


async def _off_loop(verify: Callable[..., Verdict], *args: Any) -> Verdict:
    """Run a verification (CPU work of a millisecond or so) off the event loop. Whatever
    hostile bytes make a parser or ``cryptography`` raise (an unsupported curve in a
    certificate, say) is a signature that does not verify, never a failed pull."""
    try:
        return await asyncio.get_running_loop().run_in_executor(None, verify, *args)
    except Exception as e:
        log.info("a signature could not be verified: %r", e)
        return Verdict(False, f"the signature cannot be verified ({type(e).__name__})")
