"""Run the external programs the e2e tests drive, with a timeout.

Finding them (``require_tool``) and the rule for a missing one are in
``tests/prerequisites.py``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

DEFAULT_TIMEOUT = 120.0


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
