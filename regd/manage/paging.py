"""One page of a listing: what every list method of the services takes and returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Page:
    page: int = 1  # from 1
    size: int = 10

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.size


@dataclass(frozen=True)
class Listing(Generic[T]):
    total: int
    items: list[T]
