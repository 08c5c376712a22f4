"""regd: a container image registry daemon in pure asyncio Python."""

__version__ = "0.1.0"
