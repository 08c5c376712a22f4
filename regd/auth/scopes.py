"""Token scopes: ``repository:<name>:<action>[,<action>]`` and ``registry:catalog:*``
(Docker token specification, "Requesting a Token"; Harbor's ``parseScopes``).

Several scopes come as repeated ``scope`` parameters or separated by spaces. A name may
carry a resource class (``repository(plugin):name:pull``), which is dropped; the name
is everything between the first and the last colon.

A token request is cheap to make and runs on the event loop, so parsing is linear in
the size of the request and bounded: at most ``MAX_SCOPES`` scopes per request (a 400
naming the cap beyond it; docker, containerd and buildkit send a handful), resource
types other than ``repository`` and ``registry`` and actions no role grants are dropped
before anything is merged, so each resource keeps at most four actions.
"""

from __future__ import annotations

from collections.abc import Iterable

from regd.auth import Access
from regd.errors import ErrorCode, RegistryError

MAX_SCOPES = 50
RESOURCE_TYPES = frozenset({"repository", "registry"})
# Every action a role, robot or administrator can hold (regd/auth/roles.py); a token
# never carries another, so others are not worth keeping.
KNOWN_ACTIONS = ("pull", "push", "delete", "*")


def parse_scopes(values: Iterable[str]) -> list[Access]:
    """Scopes of a token request, merged by resource; malformed ones and unknown
    resource types are ignored. More than ``MAX_SCOPES`` raise 400."""
    merged: dict[tuple[str, str], set[str]] = {}
    count = 0
    for value in values:
        for scope in value.split():
            count += 1
            if count > MAX_SCOPES:
                raise RegistryError(
                    ErrorCode.BAD_REQUEST, f"too many scopes: at most {MAX_SCOPES} per token request"
                )
            parsed = parse_scope(scope)
            if parsed is None or parsed.type not in RESOURCE_TYPES:
                continue
            merged.setdefault((parsed.type, parsed.name), set()).update(parsed.actions)
    return [
        Access(kind, name, tuple(a for a in KNOWN_ACTIONS if a in actions))
        for (kind, name), actions in merged.items()
    ]


def parse_scope(scope: str) -> Access | None:
    kind, sep, rest = scope.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not kind or not name:
        return None
    kind = kind.split("(", 1)[0]
    return Access(kind, name, tuple(a for a in actions.split(",") if a))
