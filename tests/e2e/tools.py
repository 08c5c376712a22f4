"""Find the external programs the e2e tests drive, and run them with a timeout.

The policy for a missing program lives here and only here: under CI (``CI=true``) it is
a failure, because CI installs everything and a skip there would hide a broken setup;
on a developer machine it is a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

# The docker.io package installs the CLI that matches its dockerd (20.10) here; a newer
# client elsewhere on PATH also works but warns that it lacks buildx on every build.
_PREFERRED = {"docker": Path("/usr/bin/docker")}

DEFAULT_TIMEOUT = 120.0


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def unavailable(reason: str) -> None:
    """Fail under CI, skip elsewhere: the one place that decides."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: missing prerequisites are failures)", pytrace=False)
    pytest.skip(reason)


def require_tool(name: str) -> str:
    """Return the path of program ``name``; fail or skip (see ``unavailable``) if absent."""
    preferred = _PREFERRED.get(name)
    if preferred is not None and os.access(preferred, os.X_OK):
        return str(preferred)
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed (bash tests/run.sh installs it)")
    assert path is not None
    return path


def require_root() -> None:
    if os.geteuid() != 0:
        unavailable("dockerd and containerd need root")


def run(
    args: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a program to completion (in ``cwd``, with ``env`` added to this process's
    environment); on failure or timeout, fail with its output."""
    __tracebackhide__ = True
    merged = {**os.environ, **env} if env is not None else None
    try:
        result = subprocess.run(
            list(args),
            capture_output=True,
            timeout=timeout,
            env=merged,
            input=input,
            check=False,
            cwd=cwd,
        )
    except subprocess.TimeoutExpired as exc:
        output = _output(exc.stdout, exc.stderr)
        pytest.fail(f"timed out after {timeout}s: {_quote(args)}\n{output}")
    completed = subprocess.CompletedProcess(
        result.args,
        result.returncode,
        result.stdout.decode(errors="replace"),
        result.stderr.decode(errors="replace"),
    )
    if check and completed.returncode != 0:
        output = _output(completed.stdout, completed.stderr)
        pytest.fail(f"exit {completed.returncode}: {_quote(args)}\n{output}")
    return completed


def _quote(args: Sequence[str]) -> str:
    return " ".join(args)


def _output(stdout: bytes | str | None, stderr: bytes | str | None) -> str:
    def text(data: bytes | str | None) -> str:
        if isinstance(data, bytes):
            return data.decode(errors="replace")
        return data or ""

    return f"--- stdout\n{text(stdout)}\n--- stderr\n{text(stderr)}"
