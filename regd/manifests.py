"""Manifest media types, parsing and validation. Pure: no I/O.

Accepted (OCI image-spec v1.1, Docker Image Manifest V2 Schema 2):
Docker schema 2 manifests and manifest lists, OCI image manifests and indexes, and OCI
artifacts (``artifactType``, ``subject``). The bytes are kept exactly as sent; this
module only reads them to learn what they reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

from regd.digest import Digest
from regd.errors import ErrorCode, RegistryError

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
IMAGE_CONFIG_TYPES = frozenset({DOCKER_CONFIG, OCI_CONFIG})

IMAGE_TYPES = frozenset({DOCKER_MANIFEST, OCI_MANIFEST})
INDEX_TYPES = frozenset({DOCKER_LIST, OCI_INDEX})
MANIFEST_TYPES = IMAGE_TYPES | INDEX_TYPES

# Layers that may live elsewhere (Windows base layers): when they carry ``urls`` the
# registry does not need their bytes.
FOREIGN_LAYER_TYPES = frozenset(
    {
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    urls: tuple[str, ...] = ()
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None
    platform: dict[str, Any] | None = None  # index entries (image-spec "platform")

    @property
    def is_foreign(self) -> bool:
        return bool(self.urls) and self.media_type in FOREIGN_LAYER_TYPES


@dataclass(frozen=True)
class Manifest:
    media_type: str
    digest: Digest
    size: int
    blobs: list[Descriptor] = field(default_factory=list)  # config first, then layers
    children: list[Descriptor] = field(default_factory=list)  # index entries
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES


def _invalid(message: str) -> RegistryError:
    return RegistryError(ErrorCode.MANIFEST_INVALID, message)


def _descriptor(value: Any, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise _invalid(f"{where}: descriptor must be an object")
    media_type = value.get("mediaType")
    digest = value.get("digest")
    size = value.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise _invalid(f"{where}: mediaType missing")
    if not isinstance(digest, str):
        raise _invalid(f"{where}: digest missing")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(f"{where}: size must be a non-negative integer")
    try:
        parsed = Digest.parse(digest)
    except RegistryError:
        raise _invalid(f"{where}: invalid digest {digest[:200]!r}") from None
    urls = value.get("urls", [])
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise _invalid(f"{where}: urls must be a list of strings")
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment or "#" in url:
            raise _invalid(f"{where}: url {url[:200]!r} must be http(s) without a fragment")
    artifact_type = value.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid(f"{where}: artifactType must be a string")
    platform = value.get("platform")
    if platform is not None and not isinstance(platform, dict):
        raise _invalid(f"{where}: platform must be an object")
    return Descriptor(
        media_type, parsed, size, tuple(urls), artifact_type, _annotations(value, where), platform
    )


def _annotations(value: dict[str, Any], where: str) -> dict[str, str] | None:
    annotations = value.get("annotations")
    if annotations is None:
        return None
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise _invalid(f"{where}: annotations must map strings to strings")
    return annotations


def _declared_type(body: dict[str, Any], content_type: str | None) -> str:
    in_body = body.get("mediaType")
    if in_body is not None and not isinstance(in_body, str):
        raise _invalid("mediaType must be a string")
    header = (content_type or "").split(";", 1)[0].strip().lower() or None
    if header in ("application/json", "application/octet-stream"):
        header = None
    if in_body and header and in_body != header:
        raise _invalid(f"Content-Type {header} does not match mediaType {in_body}")
    declared = in_body or header
    if declared is None:
        # OCI manifests may omit mediaType; tell them apart by shape.
        declared = OCI_INDEX if "manifests" in body else OCI_MANIFEST
    if declared in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED):
        raise _invalid("Docker schema 1 manifests are not supported; push with a current client")
    if declared not in MANIFEST_TYPES:
        raise _invalid(f"unsupported manifest media type {declared[:200]!r}")
    return declared


def parse(data: bytes, content_type: str | None) -> Manifest:
    """Validate ``data`` as a manifest of its declared type and list what it references."""
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise _invalid("manifest is not valid JSON") from None
    if not isinstance(body, dict):
        raise _invalid("manifest must be a JSON object")
    media_type = _declared_type(body, content_type)
    if body.get("schemaVersion") != 2:
        raise _invalid("schemaVersion must be 2")
    artifact_type = body.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid("artifactType must be a string")
    subject = _descriptor(body["subject"], "subject") if body.get("subject") is not None else None
    digest = Digest.of(data)
    annotations = _annotations(body, "manifest")
    if media_type in INDEX_TYPES:
        entries = body.get("manifests")
        if not isinstance(entries, list):
            raise _invalid("an index needs a manifests list")
        children = [_descriptor(e, f"manifests[{i}]") for i, e in enumerate(entries)]
        return Manifest(media_type, digest, len(data), [], children, subject, artifact_type, annotations)
    config = _descriptor(body.get("config"), "config")
    layers = body.get("layers")
    if not isinstance(layers, list):
        raise _invalid("an image manifest needs a layers list")
    blobs = [config, *(_descriptor(layer, f"layers[{i}]") for i, layer in enumerate(layers))]
    if media_type == DOCKER_MANIFEST and subject is not None:
        raise _invalid("Docker manifests cannot carry a subject")
    return Manifest(media_type, digest, len(data), blobs, [], subject, artifact_type, annotations)


def referrer_artifact_type(manifest: Manifest) -> str | None:
    """The artifact type the referrers API reports (spec: artifactType, else config's)."""
    if manifest.artifact_type:
        return manifest.artifact_type
    if manifest.blobs and not manifest.is_index:
        return manifest.blobs[0].media_type
    return None


def image_config(manifest: Manifest) -> Descriptor | None:
    """The config descriptor of an image (docker or OCI image config), else None."""
    if manifest.is_index or not manifest.blobs:
        return None
    config = manifest.blobs[0]
    return config if config.media_type in IMAGE_CONFIG_TYPES else None


def image_details(config: bytes) -> dict[str, Any]:
    """What Harbor shows of an image config as the artifact's ``extra_attrs``
    (``architecture``, ``os``, ``created``, ``author``, ``config``); the author falls back
    to the ``maintainer`` label, as in Harbor. A config that is not a JSON object: {}."""
    try:
        body = orjson.loads(config)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(body, dict):
        return {}
    settings = body.get("config")
    settings = settings if isinstance(settings, dict) else {}
    labels = settings.get("Labels")
    author = body.get("author")
    if not (isinstance(author, str) and author) and isinstance(labels, dict):
        author = labels.get("maintainer")
    return {
        "architecture": _text(body.get("architecture")),
        "os": _text(body.get("os")),
        "created": body.get("created") if isinstance(body.get("created"), str) else None,
        "author": _text(author),
        "config": settings,
    }


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
