"""The CI rule (tests/prerequisites.py): under CI a skipped test fails the run, whatever
its skip condition says; elsewhere it skips. Checked by running pytest on a small test
file with the suite's conftest as a plugin."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SKIPPING = '''
import pytest
from tests.prerequisites import regd_only, require_tool

def test_missing_tool():
    require_tool("no-such-program-regd-test")

@pytest.mark.skipif(True, reason="a condition that is always true")
def test_marked():
    pass

def test_regd_only():
    regd_only("regd's own feature")

def test_runs():
    pass
'''


def _run(tmp_path: Path, **env: str) -> str:
    test = tmp_path / "test_skipping.py"
    test.write_text(SKIPPING)
    base = {k: v for k, v in os.environ.items() if k not in ("CI", "REGD_E2E_TARGET")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "-rA", str(test)],
        cwd=ROOT, env={**base, "PYTHONPATH": str(ROOT), **env},
        capture_output=True, text=True, timeout=120, check=False,
    )
    return result.stdout + result.stderr


@pytest.mark.parametrize("value", ["true", "1", "yes"])
def test_every_skip_fails_under_ci(tmp_path: Path, value: str) -> None:
    out = _run(tmp_path, CI=value)
    assert "FAILED" in out and "test_missing_tool" in out, out
    # A skip at setup (a skipif mark) reports as an error, one in the test as a failure.
    assert "2 failed, 1 passed, 1 error" in out, out
    assert "no-such-program-regd-test is not installed" in out


def test_a_regd_only_skip_stands_under_ci_when_targeting_distribution(tmp_path: Path) -> None:
    out = _run(tmp_path, CI="true", REGD_E2E_TARGET="distribution")
    assert "1 failed, 1 passed, 1 skipped, 1 error" in out, out


@pytest.mark.parametrize("value", ["", "false", "0"])
def test_outside_ci_a_missing_tool_skips(tmp_path: Path, value: str) -> None:
    out = _run(tmp_path, CI=value)
    assert "1 passed, 3 skipped" in out, out
