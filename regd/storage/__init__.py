"""Bytes only: where files live and how they move. Knows digests, not HTTP or SQL."""
