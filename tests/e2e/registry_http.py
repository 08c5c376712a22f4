"""What the registry under test serves, read over plain HTTP without credentials (for a
registry with access control off), to check what a client pushed."""

from __future__ import annotations

import urllib.request

from .daemons import RegistryServer

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


def manifest_served(registry: RegistryServer, name: str, reference: str) -> tuple[str, str]:
    """(Content-Type, Docker-Content-Digest) of ``GET /v2/<name>/manifests/<reference>``."""
    request = urllib.request.Request(
        f"{registry.url}/v2/{name}/manifests/{reference}", headers={"Accept": MANIFEST_TYPES}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
        return response.headers["Content-Type"], response.headers["Docker-Content-Digest"]
