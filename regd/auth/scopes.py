"""Token scopes: ``repository:<name>:<action>[,<action>]`` and ``registry:catalog:*``
(Docker token specification, "Requesting a Token"; Harbor's ``parseScopes``).

Several scopes come as repeated ``scope`` parameters or separated by spaces. A name may
carry a resource class (``repository(plugin):name:pull``), which is dropped; the name
is everything between the first and the last colon.
"""

from __future__ import annotations

from collections.abc import Iterable

from regd.auth import Access


def parse_scopes(values: Iterable[str]) -> list[Access]:
    """Scopes of a token request, merged by resource; malformed ones are ignored."""
    merged: dict[tuple[str, str], list[str]] = {}
    for value in values:
        for scope in value.split():
            parsed = parse_scope(scope)
            if parsed is None:
                continue
            actions = merged.setdefault((parsed.type, parsed.name), [])
            actions += [a for a in parsed.actions if a not in actions]
    return [Access(kind, name, tuple(actions)) for (kind, name), actions in merged.items()]


def parse_scope(scope: str) -> Access | None:
    kind, sep, rest = scope.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not kind or not name:
        return None
    kind = kind.split("(", 1)[0]
    return Access(kind, name, tuple(a for a in actions.split(",") if a))
