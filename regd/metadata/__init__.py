"""Metadata in SQLite: one writer connection, reader connections, versioned schema."""
