"""Content digests: ``algorithm:encoded`` (OCI image-spec "Digests")."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

import xxhash

from regd.errors import ErrorCode, RegistryError

# The grammar of the image spec; regd stores only sha256 and sha512 content, whose
# encodings are fixed-length lower-case hex, so a valid digest can never name a path
# outside the blob store.
_GRAMMAR = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_HEX_LENGTHS = {"sha256": 64, "sha512": 128}


@dataclass(frozen=True, order=True)
class Digest:
    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse a digest; anything malformed or unsupported is DIGEST_INVALID."""
        if not _GRAMMAR.match(text):
            raise RegistryError(ErrorCode.DIGEST_INVALID, f"invalid digest {text[:200]!r}")
        algorithm, _, encoded = text.partition(":")
        length = _HEX_LENGTHS.get(algorithm)
        if length is None:
            raise RegistryError(ErrorCode.DIGEST_INVALID, f"unsupported digest algorithm {algorithm!r}")
        if len(encoded) != length or not all(c in "0123456789abcdef" for c in encoded):
            raise RegistryError(ErrorCode.DIGEST_INVALID, f"invalid {algorithm} digest {text[:200]!r}")
        return cls(algorithm, encoded)

    @classmethod
    def is_digest(cls, text: str) -> bool:
        return ":" in text

    def hasher(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())


def xxh3_hex(data: bytes) -> str:
    """The xxh3-128 checksum regd records for each blob (the scrub re-reads against it)."""
    return xxhash.xxh3_128_hexdigest(data)


@dataclass
class ContentHash:
    """A blob's digest and its xxh3-128 checksum, fed in one pass over its bytes (xxh3
    costs a small fraction of sha256)."""

    algorithm: str = "sha256"
    digest: hashlib._Hash = field(init=False)
    xxh3: xxhash.xxh3_128 = field(init=False, default_factory=xxhash.xxh3_128)

    def __post_init__(self) -> None:
        self.digest = hashlib.new(self.algorithm)

    def update(self, data: bytes | memoryview) -> None:
        self.digest.update(data)
        self.xxh3.update(data)
