"""What a test needs from the machine, and the one rule for when it is missing.

A test that lacks a program, root or an OS feature calls ``pytest.skip`` (through
``require_tool``, ``require_root`` or ``pytest.skip`` itself). Whether that skip is
allowed is decided in one place, ``tests/conftest.py``'s report hook: under CI
(``in_ci()``) every skip is turned into a failure, because CI installs everything
(``tests/run.sh``) and a skip there would hide a broken setup. The one exception is a
test of regd's own features while the e2e tests target CNCF distribution
(``REGD_E2E_TARGET=distribution``): it skips with ``regd_only`` and that is allowed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# The docker.io package installs the CLI that matches its dockerd (20.10) here; a newer
# client elsewhere on PATH also works but warns that it lacks buildx on every build.
_PREFERRED = {"docker": Path("/usr/bin/docker")}

REGD_ONLY = "regd-only test: "


def in_ci() -> bool:
    """True under any CI convention (CI=true, CI=1, CI=yes...), not only ``CI=true``."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no", "off")


def targets_distribution() -> bool:
    return os.environ.get("REGD_E2E_TARGET", "regd") == "distribution"


def skip_allowed(reason: str) -> bool:
    """Whether a skip with ``reason`` may stand under CI (see the module docstring)."""
    return reason.startswith(REGD_ONLY) and targets_distribution()


def regd_only(what: str) -> None:
    """Skip a test of regd's own features when the e2e target is CNCF distribution."""
    pytest.skip(REGD_ONLY + what)


def require_tool(name: str) -> str:
    """The path of program ``name``; skips when it is absent (a failure under CI)."""
    preferred = _PREFERRED.get(name)
    if preferred is not None and os.access(preferred, os.X_OK):
        return str(preferred)
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (bash tests/run.sh installs it)")
    assert path is not None
    return path


def require_root(why: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"needs root: {why}")
