"""The ``regd`` command: ``serve``, ``check-config``, ``gc``, ``scrub``, ``backup``, ``restore``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from regd import __version__
from regd.config import Config, ConfigError, load_config
from regd.errors import StartupError
from regd.storage.fsio import PRIVATE_UMASK

log = logging.getLogger("regd")


def _overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    overrides: dict[str, dict[str, Any]] = {}
    if getattr(args, "listen", None):
        overrides.setdefault("server", {})["listen"] = args.listen
    if getattr(args, "data_dir", None):
        overrides.setdefault("storage", {})["data_dir"] = args.data_dir
    return overrides


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config, overrides=_overrides(args))


def worker_count(config: Config) -> int:
    """``[server] workers``: the number given, or for "auto" one per CPU (regd.cpus)."""
    if isinstance(config.server.workers, int):
        return config.server.workers
    from regd.cpus import available_cpus

    return available_cpus()


def _run(coro: Any) -> None:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(coro)


def _hold_data_dir(config: Config) -> int:
    """The data directory's daemon lock (regd/datadir.py), held until the process ends."""
    from regd.datadir import DataDirBusyError, lock

    try:
        return lock(config.data_dir)
    except DataDirBusyError as e:
        raise StartupError(str(e)) from None
    except OSError as e:
        reason = os.strerror(e.errno) if e.errno else str(e)
        raise StartupError(f"cannot use data directory {config.data_dir}: {reason}") from None


def _raise_file_limit() -> None:
    """Every connection is a file descriptor: a shell's usual soft limit of 1,024 would let
    a thousand idle clients starve everyone else. Raise it to the hard limit, as Go's
    runtime does for distribution (the systemd unit sets LimitNOFILE as well)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):  # e.g. above fs.nr_open: keep the limit we have
        pass


def cmd_serve(args: argparse.Namespace) -> int:
    config = _config(args)
    _raise_file_limit()
    _hold_data_dir(config)  # kept open: the kernel drops the lock when the daemon ends
    workers = worker_count(config)
    if workers > 1:
        # Before prometheus_client is first imported (regd.metrics): its multiprocess mode.
        metrics_dir = tempfile.mkdtemp(prefix="regd-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        from regd.workers import supervise  # worker processes: see regd/workers.py

        try:
            return supervise(config, lambda: _config(args), workers)
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


def cmd_scrub(args: argparse.Namespace) -> int:
    """Check every blob now, also while the daemon runs on the same data directory.
    Exit 0: all good; 3: damaged or missing blobs were quarantined; 1: another scrub runs."""
    from regd.scrub import ScrubBusyError

    config = _config(args)
    lines: list[str] = []
    found: list[bool] = []

    async def scrub() -> None:
        from regd.app import open_services

        services = await open_services(config)
        try:
            report = await services.scrub.run("MANUAL", rate=args.rate_limit)
            found.append(not report.clean)
            lines.append(f"scrub: {report.summary()}")
            _, quarantined = await services.scrub.status()
            for q, affected in quarantined:
                images = ", ".join(f"{a.repository}@{a.digest}" for a in affected) or "no image"
                lines.append(f"quarantined {q.digest} ({q.reason}); affects {images}")
        finally:
            await services.db.close()

    try:
        _run(scrub())
    except ScrubBusyError as e:
        print(f"regd: {e}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 3 if found[0] else 0


def cmd_backup(args: argparse.Namespace) -> int:
    """A consistent copy of a running registry in DEST (see regd/backup.py)."""
    return _copy_command(args, backup=True)


def cmd_restore(args: argparse.Namespace) -> int:
    """A backup brought back into an empty data directory (no daemon running on it)."""
    return _copy_command(args, backup=False)


def _copy_command(args: argparse.Namespace, backup: bool) -> int:
    from regd import backup as copies

    config = _config(args)
    try:
        if backup:
            counts = copies.backup(config.data_dir, Path(args.dest))
        else:
            counts = copies.restore(Path(args.backup), config.data_dir)
    except copies.BackupError as e:
        print(f"regd: {e}", file=sys.stderr)
        return 1
    if backup:
        print(f"backup of {config.data_dir} in {args.dest}: {counts.summary()}")
    else:
        print(f"restored {args.backup} into {config.data_dir}: {counts.summary()}")
    return 0


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

    scrub = sub.add_parser(
        "scrub", help="re-read every blob against its checksum (safe while the daemon runs)"
    )
    common(scrub)
    scrub.add_argument(
        "--rate-limit", type=int, help="bytes read per second at most ([scrub] rate_limit; 0: no limit)"
    )
    scrub.set_defaults(func=cmd_scrub)

    backup = sub.add_parser("backup", help="copy the registry to DEST, consistently (safe while it runs)")
    common(backup)
    backup.add_argument("dest", help="an empty or new directory (hard links when on the same file system)")
    backup.set_defaults(func=cmd_backup)

    restore = sub.add_parser("restore", help="bring a backup back into an empty data directory")
    common(restore)
    restore.add_argument("backup", help="a directory made by regd backup")
    restore.set_defaults(func=cmd_restore)
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
