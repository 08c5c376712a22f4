"""``regd serve``: the daemon's life from start to exit.

1. Start: logging as configured; the TLS context (when ``tls_cert`` is set); the app,
   whose start opens the data directory and the database; the listening socket. Any
   failure there is a ``StartupError``: one line, exit 1, no traceback.
2. Ready: systemd hears ``READY=1`` (``regd.systemd``), and ``WATCHDOG=1`` every half
   ``WatchdogSec`` from then on.
3. SIGHUP: re-read the configuration and apply what can change at run time (``RELOADABLE``:
   a new TLS certificate and key for new handshakes, logging, the CA file handed out,
   upload expiry); log which other changes wait for a restart. A configuration or
   certificate that does not load is logged and the running one kept. Connections and
   uploads in flight are not touched.
4. SIGTERM or SIGINT: stop listening, let in-flight requests finish for up to
   ``[server] shutdown_grace`` seconds (their responses close their connections), then
   close every connection and cancel what is left (an upload keeps the bytes that
   reached the disk and resumes after the restart), close the database, exit 0.
   A second SIGTERM or SIGINT ends the wait at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import socket
import sqlite3
import ssl
from collections.abc import Callable
from typing import Any

from aiohttp import web

from regd import __version__, logs, tls
from regd.api import observe
from regd.api.connections import GuardedRunner
from regd.app import create_app
from regd.config import Config, ConfigError
from regd.datadir import DatabaseMissingError
from regd.errors import StartupError
from regd.metadata.db import DatabaseDamagedError, SchemaTooNewError
from regd.services import SERVICES, Role
from regd.systemd import Notifier

log = logging.getLogger("regd")

# (section, key) of the settings a SIGHUP applies; any other change needs a restart.
# tls_cert/tls_key reload as long as they stay set (HTTP <-> HTTPS needs a restart).
RELOADABLE: frozenset[tuple[str, str]] = frozenset(
    {
        ("server", "tls_cert"),
        ("server", "tls_key"),
        ("server", "ca_cert"),
        ("server", "access_log"),
        ("server", "log_format"),
        ("server", "log_level"),
        ("uploads", "expire_after"),
        ("uploads", "janitor_interval"),
    }
)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Seconds aiohttp gives the requests still running after the grace time, once to end
# and once more to unwind after they are cancelled.
CUT_OFF_TIMEOUT = 2.0


def _changes(old: Config, new: Config) -> list[tuple[str, str]]:
    changed = []
    for section in dataclasses.fields(old):
        before, after = getattr(old, section.name), getattr(new, section.name)
        for key in dataclasses.fields(before):
            if getattr(before, key.name) != getattr(after, key.name):
                changed.append((section.name, key.name))
    return changed


def merge_reloadable(old: Config, new: Config) -> tuple[Config, list[str], list[str]]:
    """``old`` with the reloadable settings of ``new``; the names applied and deferred."""
    applied: list[str] = []
    deferred: list[str] = []
    sections: dict[str, dict[str, Any]] = {}
    tls_toggled = bool(old.server.tls_cert) != bool(new.server.tls_cert)
    for section, key in _changes(old, new):
        name = f"[{section}] {key}"
        if (section, key) in RELOADABLE and not (tls_toggled and key in ("tls_cert", "tls_key")):
            sections.setdefault(section, {})[key] = getattr(getattr(new, section), key)
            applied.append(name)
        else:
            deferred.append(name)
    merged = dataclasses.replace(
        old, **{s: dataclasses.replace(getattr(old, s), **keys) for s, keys in sections.items()}
    )
    return merged, applied, deferred


def _reason(error: OSError) -> str:
    # uvloop's bind error carries an errno but a long message and no strerror.
    return os.strerror(error.errno) if error.errno else str(error)


class Daemon:
    def __init__(
        self,
        config: Config,
        reread: Callable[[], Config],
        sock: socket.socket | None = None,
        role: Role | None = None,
    ) -> None:
        self.config = config
        self._reread = reread
        self._sock = sock  # a worker serves the supervisor's listening socket (regd.workers)
        self._role = role
        self._notifier = Notifier()
        self._signals: asyncio.Queue[signal.Signals] = asyncio.Queue()
        self._ssl: ssl.SSLContext | None = None
        self._app: web.Application | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (*STOP_SIGNALS, signal.SIGHUP):
            loop.add_signal_handler(sig, self._signals.put_nowait, sig)
        runner, site = await self._start()
        watchdog = asyncio.create_task(self._notifier.watchdog())
        try:
            await self._serve()
            await site.stop()  # no new connections
            await self._drain()
        finally:
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)
            await runner.cleanup()  # closes connections, cancels what is left, closes the DB
            self._notifier.close()
        log.info("stopped")

    async def prepare(self) -> None:
        """Open the data directory and the database once, with start-up recovery, and
        close them again: what the supervisor does before it starts workers."""
        logs.configure(self.config.server)
        try:  # the workers load these again; a bad file stops the daemon here, in one line
            tls.validate(self.config.server)
        except tls.TLSError as e:
            raise StartupError(str(e)) from None
        self._app = create_app(self.config, role=Role(startup_recovery=True, background=False))
        runner = web.AppRunner(self._app, handle_signals=False)
        await self._setup(runner)
        await runner.cleanup()

    async def _start(self) -> tuple[web.AppRunner, web.BaseSite]:
        config = self.config
        logs.configure(config.server)
        try:
            # Blocking file reads, before anything else runs on the loop.
            self._ssl = tls.server_context(config.server)
            tls.check_ca_cert(config.server.ca_cert)
        except tls.TLSError as e:
            raise StartupError(str(e)) from None
        self._app = create_app(config, role=self._role)
        runner = GuardedRunner(
            self._app,
            config.server,
            handle_signals=False,
            shutdown_timeout=CUT_OFF_TIMEOUT,  # the grace time is waited in _drain
            **observe.runner_options(),
        )
        await self._setup(runner)
        site: web.BaseSite
        if self._sock is not None:
            site = web.SockSite(runner, self._sock, ssl_context=self._ssl)
        else:
            site = web.TCPSite(
                runner, config.server.host, config.server.port, backlog=1024, ssl_context=self._ssl
            )
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            raise StartupError(f"cannot listen on {config.server.listen}: {_reason(e)}") from None
        status = f"regd {__version__} listening on {config.external_url} (data in {config.data_dir})"
        log.info("%s", status)
        self._notifier.ready(status)
        return runner, site

    async def _setup(self, runner: web.AppRunner) -> None:
        """Open the data directory and the database (the app's start), in one line on failure."""
        try:
            await runner.setup()
        except OSError as e:
            await self._close_database()
            reason = _reason(e)
            raise StartupError(f"cannot use data directory {self.config.data_dir}: {reason}") from None
        except DatabaseMissingError as e:
            await self._close_database()
            raise StartupError(str(e)) from None
        except DatabaseDamagedError as e:
            await self._close_database()
            path = self.config.data_dir / "regd.db"
            raise StartupError(
                f"database {path} is damaged ({e}); it was left as it is: restore it from a backup "
                "(regd restore BACKUP) or run sqlite3's .recover on a copy"
            ) from None
        except (sqlite3.Error, SchemaTooNewError) as e:
            await self._close_database()
            path = self.config.data_dir / "regd.db"
            raise StartupError(f"cannot open database {path}: {e}") from None

    async def _close_database(self) -> None:
        # A half-open database holds a non-daemon thread that would keep the process alive.
        if self._app is not None:
            await self._app[SERVICES].db.close()

    async def _serve(self) -> None:
        while True:
            sig = await self._signals.get()
            if sig == signal.SIGHUP:
                await self.reload()
                continue
            grace = self.config.server.shutdown_grace
            log.info("%s: stopping; in-flight requests get up to %.0fs", sig.name, grace)
            self._notifier.stopping(f"stopping on {sig.name}")
            return

    async def _drain(self) -> None:
        """Wait for in-flight requests, up to the grace time or a second stop signal."""
        assert self._app is not None
        drain = asyncio.create_task(self._app[observe.IN_FLIGHT].drain(self.config.server.shutdown_grace))
        again = asyncio.create_task(self._next_stop_signal())
        await asyncio.wait({drain, again}, return_when=asyncio.FIRST_COMPLETED)
        for task in (drain, again):
            task.cancel()
        await asyncio.gather(drain, again, return_exceptions=True)
        left = len(self._app[observe.IN_FLIGHT].tasks)
        if left:
            reason = "second signal" if again.done() and not again.cancelled() else "grace time over"
            log.warning("%s: cutting off %d requests still in flight", reason, left)

    async def _next_stop_signal(self) -> None:
        while await self._signals.get() not in STOP_SIGNALS:
            log.info("reload ignored: stopping")

    async def reload(self) -> None:
        """SIGHUP: apply the run-time settings of the configuration as it is now."""
        self._notifier.reloading()
        loop = asyncio.get_running_loop()
        try:
            new = await loop.run_in_executor(None, self._reread)
            await loop.run_in_executor(None, tls.validate, new.server)
        except (ConfigError, tls.TLSError) as e:
            log.error("reload failed, the running configuration stays: %s", e)
        except Exception:  # a reload must never take the registry down
            log.exception("reload failed, the running configuration stays")
        else:
            self._apply(new)
        self._notifier.ready(f"regd {__version__} serving {self.config.external_url}")

    def _apply(self, new: Config) -> None:
        merged, applied, deferred = merge_reloadable(self.config, new)
        if self._ssl is not None and merged.server.tls_cert:
            try:
                tls.reload(self._ssl, merged.server)
            except tls.TLSError as e:  # changed again since it was validated
                log.error("reload: the running certificate stays: %s", e)
            else:
                applied.append("TLS certificate reloaded")
        logs.configure(merged.server)
        self.config = merged
        if self._app is not None:
            self._app[SERVICES].config = merged
        log.info("reloaded: %s", ", ".join(applied) or "nothing changed")
        if deferred:
            log.warning("changed but applied only at the next start: %s", ", ".join(deferred))


async def serve(config: Config, reread: Callable[[], Config]) -> None:
    await Daemon(config, reread).run()
