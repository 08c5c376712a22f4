"""Who may do what. The HTTP layer asks an ``Authorizer`` before each registry action."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web


@dataclass(frozen=True)
class Access:
    """One thing a request needs: ``actions`` on a repository (or on the catalog)."""

    type: str  # "repository" or "registry"
    name: str
    actions: tuple[str, ...]

    def scope(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"


@dataclass(frozen=True)
class Principal:
    name: str  # "" for anonymous
    is_admin: bool = False
    # Per repository, the actions the caller holds (a token: all it grants there).
    granted: dict[str, frozenset[str]] = field(default_factory=dict)

    def may(self, repository: str, action: str) -> bool:
        """Whether the request was granted ``action`` on ``repository`` (a need or a want)."""
        held = self.granted.get(repository, frozenset())
        return self.is_admin or action in held or "*" in held


ANONYMOUS = Principal("")


class Authorizer(Protocol):
    async def authorize(
        self, request: web.Request, needs: list[Access], wants: list[Access] | None = None
    ) -> Principal:
        """Return who is asking if every need is granted; raise RegistryError if not.
        ``wants`` are what the request would use if it may (the source of a mount): the
        principal's ``granted`` holds those it may, and those it may not are no error."""
        ...


class AllowAll:
    """No authentication: every request may do everything."""

    async def authorize(
        self, request: web.Request, needs: list[Access], wants: list[Access] | None = None
    ) -> Principal:
        return Principal("anonymous", is_admin=True)
