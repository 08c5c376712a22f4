"""``[server] workers = N``: N worker processes sharing one listening socket.

One Python process spends most of a busy registry's CPU in one thread (HTTP parsing,
the event loop, aiohttp); hashing and disk writes already run in threads beside it.
Worker processes put the second core to work for the loop too. Everything they share
lives on disk and is safe across processes: SQLite (WAL, ``BEGIN IMMEDIATE``), upload
sessions (their state is a row, their running hash is re-computed from disk when a
request lands on another worker), the lookup caches' generation counter, ``gc.lock``.

The supervisor (this module, the process systemd starts):

1. opens the data directory and the database once, with the start-up recovery (upload
   sessions cut off mid-write, a dead collection's trash), then closes them;
2. binds the listening socket (a port in use stops it here, in one line);
3. forks the workers, once it has no thread left but its own (``single_threaded``: a
   thread of the start-up still ending when the fork comes can hold a lock, OpenSSL's
   among them, that then stays held forever in the worker);
   each runs the single-process daemon (``regd.daemon``) on the inherited socket, with
   no start-up recovery, and only worker 0 runs the background tasks (upload janitor,
   GC scheduler);
4. relays systemd's notify protocol: the workers' NOTIFY_SOCKET is a socket of the
   supervisor's, which tells systemd READY=1 once every worker is ready, and pings the
   watchdog itself while they all live;
5. forwards SIGHUP (reload) to the workers; on SIGTERM or SIGINT forwards SIGTERM,
   waits for them (each drains for ``[server] shutdown_grace``) and exits 0;
6. restarts a worker that dies unexpectedly, at most once a second, and first returns
   the upload sessions it was writing or committing to ACTIVE (their rows name the
   writing process), so that the client resumes them at once.

The data directory's lock (``regd.datadir``) is taken before any of this and inherited
by every worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import select
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from regd.config import Config
from regd.errors import StartupError
from regd.services import Role
from regd.systemd import Notifier

log = logging.getLogger("regd")

_STOP = (signal.SIGTERM, signal.SIGINT)
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _run(coro: object) -> None:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(coro)  # type: ignore[arg-type]


def listen(config: Config) -> socket.socket:
    """The listening socket all workers accept on."""
    host = config.server.host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, config.server.port), family=family, backlog=1024)
    except OSError as e:
        reason = os.strerror(e.errno) if e.errno else str(e)
        raise StartupError(f"cannot listen on {config.server.listen}: {reason}") from None
    sock.set_inheritable(True)
    return sock


class Supervisor:
    def __init__(self, config: Config, reread: Callable[[], Config], count: int) -> None:
        self.config = config
        self.reread = reread
        self.count = count
        self.workers: dict[int, int] = {}  # pid -> worker index
        self.ready: set[int] = set()
        self.stopping = False
        self.started = False  # every worker said READY=1 once
        self.failed_start = False
        self.pending: list[int] = []
        self.notifier = Notifier()
        self._relay_dir = Path(tempfile.mkdtemp(prefix="regd-notify-"))
        self.relay = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.relay.bind(str(self._relay_dir / "notify"))
        self.relay.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)

    def run(self) -> int:
        from regd.daemon import Daemon

        _run(Daemon(self.config, self.reread).prepare())
        single_threaded()
        sock = listen(self.config)
        # A signal wakes the select() of the loop at once (its handler only queues it).
        self._wake, wake_w = socket.socketpair()
        for end in (self._wake, wake_w):
            end.setblocking(False)
        signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        for sig in (*_STOP, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, self._on_signal)
        try:
            for index in range(self.count):
                self._spawn(index, sock)
            self._loop(sock)
        finally:
            signal.set_wakeup_fd(-1)
            wake_w.close()
            self._wake.close()
            sock.close()
            self.relay.close()
            with contextlib.suppress(OSError):
                (self._relay_dir / "notify").unlink()
                self._relay_dir.rmdir()
            self.notifier.close()
        if self.failed_start:
            log.error("a worker failed to start; stopped")
            return 1
        log.info("stopped")
        return 0

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.pending.append(signum)

    def _spawn(self, index: int, sock: socket.socket) -> None:
        supervisor = os.getpid()
        pid = os.fork()
        if pid:
            self.workers[pid] = index
            return
        code = 1
        try:
            _die_with(supervisor)
            signal.set_wakeup_fd(-1)
            for sig in (*_STOP, signal.SIGHUP, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            os.environ["NOTIFY_SOCKET"] = str(self._relay_dir / "notify")
            os.environ.pop("WATCHDOG_USEC", None)  # the supervisor pings for everyone
            code = _worker(self.config, self.reread, sock, index)
        except BaseException:
            log.exception("worker %d failed", index)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _loop(self, sock: socket.socket) -> None:
        interval = self.notifier.watchdog_interval
        next_ping = time.monotonic()
        last_spawn = 0.0
        while self.workers or not self.stopping:
            self._handle_signals(sock)
            if interval is not None and time.monotonic() >= next_ping and not self.stopping:
                self.notifier.notify("WATCHDOG=1")
                next_ping = time.monotonic() + interval / 2
            self._reap()
            restart = not self.stopping and not self.failed_start
            if restart and len(self.workers) < self.count and time.monotonic() - last_spawn > 1:
                missing = set(range(self.count)) - set(self.workers.values())
                for index in sorted(missing):
                    log.warning("worker %d died; starting it again", index)
                    self._spawn(index, sock)
                last_spawn = time.monotonic()
            timeout = 0.5 if interval is None else max(0.0, min(0.5, next_ping - time.monotonic()))
            with contextlib.suppress(InterruptedError):
                readable, _, _ = select.select([self.relay, self._wake], [], [], timeout)
                if self._wake in readable:
                    with contextlib.suppress(BlockingIOError):
                        self._wake.recv(4096)
                if self.relay in readable:
                    self._relay_message()

    def _handle_signals(self, sock: socket.socket) -> None:
        while self.pending:
            signum = self.pending.pop(0)
            if signum == signal.SIGCHLD:
                continue
            if signum == signal.SIGHUP:
                # systemd hears RELOADING=1 now and READY=1 once every worker reloaded.
                log.info("SIGHUP: reloading %d workers", len(self.workers))
                self.notifier.reloading()
                self.ready.clear()
                self._send_all(signal.SIGHUP)
            elif not self.stopping:
                self.stopping = True
                log.info("%s: stopping %d workers", signal.Signals(signum).name, len(self.workers))
                self.notifier.stopping(f"stopping on {signal.Signals(signum).name}")
                self._send_all(signal.SIGTERM)
                # The workers close theirs at once; with this last copy closed too, new
                # connections are refused while requests in flight drain.
                sock.close()
            else:  # a second stop signal: the workers cut off what is left at once
                # SIGINT, not SIGTERM again: a worker that has not yet run its handler
                # for the first SIGTERM would see two pending SIGTERMs as one (the
                # kernel merges a pending signal with itself) and wait out the grace time.
                self._send_all(signal.SIGINT)

    def _send_all(self, sig: signal.Signals) -> None:
        for pid in list(self.workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def _reap(self) -> None:
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.workers.clear()
                return
            if pid == 0:
                return
            index = self.workers.pop(pid, None)
            self.ready.discard(pid)
            if index is not None and not self.stopping:
                log.error(
                    "worker %d (pid %d) exited: status %d", index, pid, os.waitstatus_to_exitcode(status)
                )
                if not self.started:  # it could not start (its reason is logged): nor can the rest
                    self.failed_start = True
                    self.pending.append(signal.SIGTERM)
            if index is not None:
                self._release_uploads(pid)

    def _release_uploads(self, pid: int) -> None:
        """The upload sessions a dead worker was writing or committing resume at once
        (as the start-up recovery does for a whole daemon): ACTIVE at their recorded size."""
        from regd.metadata.uploads import release_writer_sync
        from regd.storage.layout import Layout

        try:
            released = release_writer_sync(Layout(self.config.data_dir).database, pid)
        except Exception:  # the supervisor must outlive any database trouble
            log.exception("could not release the upload sessions of worker pid %d", pid)
            return
        if released:
            log.warning("%d upload sessions of dead worker pid %d can resume", released, pid)

    def _relay_message(self) -> None:
        try:
            data, ancillary, _flags, _addr = self.relay.recvmsg(4096, socket.CMSG_SPACE(12))
        except (BlockingIOError, InterruptedError):
            return
        pid = 0
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = int.from_bytes(payload[:4], sys.byteorder)
        lines = data.decode(errors="replace").splitlines()
        if "READY=1" in lines and pid in self.workers:
            self.ready.add(pid)
            if len(self.ready) == self.count and not self.stopping:
                self.started = True
                self.notifier.ready(f"regd listening on {self.config.external_url} with {self.count} workers")


def single_threaded(timeout: float = 10.0) -> bool:
    """Wait until this process runs no thread but the calling one, as a fork needs: the
    start-up's pools are shut down without waiting (the password hashing pool's threads
    may still be ending, running OpenSSL's thread clean-up, which takes a global lock;
    a worker forked then hung for good at its first hash). Python's threads are joined;
    the kernel's list of the process's tasks shows those that have left Python but not
    yet ended. Whether it got there within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
    while True:
        try:
            tasks = len(os.listdir("/proc/self/task"))
        except OSError:  # no /proc: Python's own list is all there is
            return threading.active_count() == 1
        if tasks <= 1:
            return True
        if time.monotonic() >= deadline:
            log.warning("forking the workers with %d threads still running", tasks - 1)
            return False
        time.sleep(0.001)


def _die_with(supervisor: int) -> None:
    """A worker dies with its supervisor (PR_SET_PDEATHSIG): kill -9 of the daemon stops
    every process of it, as it would a single one, and frees the port for the restart,
    whose start-up recovery then finds the uploads cut off."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != supervisor:  # it died before the prctl
        os._exit(1)


def _worker(config: Config, reread: Callable[[], Config], sock: socket.socket, index: int) -> int:
    from regd.daemon import Daemon

    role = Role(startup_recovery=False, background=index == 0)
    _run(Daemon(config, reread, sock=sock, role=role).run())
    return 0


def supervise(config: Config, reread: Callable[[], Config], count: int) -> int:
    return Supervisor(config, reread, count).run()
