"""Repository names and tags: the grammar of the OCI Distribution Spec v1.1.

A repository name is ``<project>/<path>``: regd (as Harbor) requires at least the
project component, and the first component is the project. Names can never contain
``..``, a leading ``/`` or any character that could leave the data directory.
"""

from __future__ import annotations

import re

from regd.errors import ErrorCode, RegistryError

# OCI spec "Pulling manifests": <name> grammar
NAME_RE = re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$")
TAG_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
MAX_NAME_LENGTH = 255


def is_valid_name(name: str) -> bool:
    return len(name) <= MAX_NAME_LENGTH and NAME_RE.match(name) is not None


def check_name(name: str) -> str:
    if not is_valid_name(name):
        raise RegistryError(ErrorCode.NAME_INVALID, f"invalid repository name {name[:300]!r}")
    return name


def is_valid_tag(tag: str) -> bool:
    return TAG_RE.match(tag) is not None


def check_tag(tag: str) -> str:
    if not is_valid_tag(tag):
        raise RegistryError(ErrorCode.TAG_INVALID, f"invalid tag {tag[:200]!r}")
    return tag


def project_of(name: str) -> str:
    return name.split("/", 1)[0]
