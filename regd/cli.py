"""The ``regd`` command: ``serve``, ``check-config``, ``gc``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from regd import __version__
from regd.config import Config, ConfigError, load_config
from regd.storage.fsio import PRIVATE_UMASK

log = logging.getLogger("regd")


class StartupError(Exception):
    """Stops the daemon at start with one line (no traceback)."""


def _overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    overrides: dict[str, dict[str, Any]] = {}
    if getattr(args, "listen", None):
        overrides.setdefault("server", {})["listen"] = args.listen
    if getattr(args, "data_dir", None):
        overrides.setdefault("storage", {})["data_dir"] = args.data_dir
    return overrides


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config, overrides=_overrides(args))


def _run(coro: Any) -> None:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(coro)


def cmd_serve(args: argparse.Namespace) -> int:
    config = _config(args)
    if config.server.workers > 1:
        # Before prometheus_client is first imported (regd.metrics): its multiprocess mode.
        metrics_dir = tempfile.mkdtemp(prefix="regd-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        from regd.workers import supervise  # worker processes: see regd/workers.py

        try:
            return supervise(config, lambda: _config(args))
        finally:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    from regd.daemon import serve  # signals, TLS, systemd notify: see regd/daemon.py

    _run(serve(config, lambda: _config(args)))
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _config(args)
    print(f"configuration is valid; regd would listen on {config.server.listen}, data in {config.data_dir}")
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    """One garbage collection now, also while the daemon runs on the same data directory."""
    from regd.gc import GCBusyError, Parameters
    from regd.gc.service import collect_once

    config = _config(args)
    delete_untagged = args.delete_untagged or config.gc.delete_untagged
    parameters = Parameters(delete_untagged=delete_untagged, dry_run=args.dry_run)
    result: list[Any] = []

    async def collect() -> None:
        result.append(await collect_once(config, parameters))

    try:
        _run(collect())
    except GCBusyError as e:
        print(f"regd: {e}", file=sys.stderr)
        return 1
    run_id, report = result[0]
    print(f"garbage collection {run_id}: {'dry run, ' if report.dry_run else ''}{report.summary()}")
    return 3 if report.stopped else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="regd", description="container image registry daemon")
    parser.add_argument("--version", action="version", version=f"regd {__version__}")
    sub = parser.add_subparsers(dest="command")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", "-c", help="TOML configuration file")
        p.add_argument("--data-dir", help="data directory ([storage] data_dir)")

    serve = sub.add_parser("serve", help="run the registry")
    common(serve)
    serve.add_argument("--listen", help="HOST:PORT to listen on ([server] listen)")
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check-config", help="validate the configuration and exit")
    common(check)
    check.add_argument("--listen", help="HOST:PORT")
    check.set_defaults(func=cmd_check_config)

    gc = sub.add_parser("gc", help="collect garbage now (safe while the daemon runs)")
    common(gc)
    gc.add_argument("--dry-run", action="store_true", help="report what would be freed, delete nothing")
    gc.add_argument(
        "--delete-untagged", action="store_true", help="also delete manifests no tag or index keeps"
    )
    gc.set_defaults(func=cmd_gc)
    from regd.admin import add_commands  # project, user, member, robot

    add_commands(sub, common, _config)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        args = parser.parse_args(["serve", *(argv or sys.argv[1:])])
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # Every command works on the data directory, whose files hold password hashes,
    # robot secret hashes and private layers: whatever the caller's umask, what regd
    # creates is its user's only (0700 directories, 0600 files; SQLite's -wal and -shm
    # take the database's mode).
    os.umask(PRIVATE_UMASK)
    try:
        code = args.func(args)
    except (ConfigError, StartupError) as e:
        print(f"regd: {e}", file=sys.stderr)
        code = 2 if isinstance(e, ConfigError) else 1
    except KeyboardInterrupt:
        code = 0
    sys.exit(code)
