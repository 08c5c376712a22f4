"""Where regd's log lines go and how they look: ``[server] log_format`` and ``log_level``.

Every line goes to stderr (journald keeps it under systemd), one record a line:

- ``text``: ``2026-11-27T07:04:36.123Z INFO regd.access: GET /v2/ 200 ...``
- ``json``: one JSON object a line, ``{"time", "level", "logger", "message"}``; a record
  that carries structured fields (``extra={"fields": {...}}``, as the access log's
  method, path, status...: see ``regd.api.observe``) has them instead of its message,
  which only renders the same fields as text.

``configure`` may run again (SIGHUP): it swaps the format and level of the one handler
it installed.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson
from aiohttp.http_exceptions import HttpProcessingError

from regd.config import ServerConfig

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        else:
            entry["message"] = record.getMessage()
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``configure`` installed (found again on a reload)."""


class ParserErrorFilter(logging.Filter):
    """aiohttp's server logs a request it cannot parse with the exception, whose message
    quotes the offending raw line: an ``Authorization`` header with a space before its
    colon, or one over 8 KiB, would put Basic credentials in the log. Such records keep
    only the exception's class (the client got its 400 already)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.args = (record.getMessage(), exc.__class__.__name__)
            record.msg = "%s; malformed request: %s"
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def level(name: str) -> int:
    return _LEVELS.get(name.lower(), logging.INFO)


def configure(server: ServerConfig) -> None:
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, _Handler)), None)
    if handler is None:
        for other in list(root.handlers):
            root.removeHandler(other)
        handler = _Handler(sys.stderr)
        root.addHandler(handler)
    handler.setFormatter(JsonFormatter() if server.log_format == "json" else TextFormatter())
    root.setLevel(level(server.log_level))
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, ParserErrorFilter) for f in server_log.filters):
        server_log.addFilter(ParserErrorFilter())
    # aiosqlite's debug lines print every SQL parameter (password hashes among them).
    logging.getLogger("aiosqlite").setLevel(max(level(server.log_level), logging.INFO))
