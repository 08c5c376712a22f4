"""The OCI distribution-spec conformance programs against a real ``regd serve`` with
access control on, as ``admin`` (issue 12): the v1.1.1 release and the rewritten program
of the spec's main branch. Every check either program runs must pass; the failures are
printed by name with the program's reason.

The programs are built for this machine in ``../shared/tools/oci-conformance/`` beside
the checkout (or ``$REGD_CONFORMANCE_DIR``, or ``/work/shared/tools/oci-conformance``).
The main program runs twice: as released (OCI_VERSION 1.1) and with the checks of what
the spec's main branch adds (OCI_VERSION=dev). Without the programs the tests skip
saying so, except under CI=true, where that fails. Each program writes its reports into
its working directory: a fresh temporary one.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from .accounts import ADMIN_PASSWORD, start_secured
from .daemons import RegistryServer, ServerFactory, Target
from .tools import run

pytestmark = pytest.mark.e2e

RELEASE = "conformance-v1.1.1"
MAIN = "conformance-main-967efdc"
NAMESPACE = "library/conformance"
CROSSMOUNT = "library/crossmount"
TIMEOUT = 900.0

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def conformance_dir() -> Path:
    """The folder holding both programs; skips (a failure under CI: tests/prerequisites.py) when none does."""
    checkout = Path(__file__).resolve().parents[2]
    candidates = [
        *([Path(os.environ["REGD_CONFORMANCE_DIR"])] if os.environ.get("REGD_CONFORMANCE_DIR") else []),
        checkout.parent / "shared" / "tools" / "oci-conformance",
        Path("/work/shared/tools/oci-conformance"),
    ]
    for folder in candidates:
        if all(os.access(folder / program, os.X_OK) for program in (RELEASE, MAIN)):
            return folder
    tried = ", ".join(str(c) for c in candidates)
    pytest.skip(f"the OCI conformance programs ({RELEASE}, {MAIN}) are not in any of: {tried}")
    raise AssertionError("unreachable")


@pytest.fixture
def programs() -> Path:
    return conformance_dir()


@pytest.fixture
def secured(regd_server: ServerFactory, target: Target) -> RegistryServer:
    return start_secured(regd_server, target)


def credentials() -> dict[str, str]:
    return {"OCI_USERNAME": "admin", "OCI_PASSWORD": ADMIN_PASSWORD}


def test_release_v1_1_1_passes_every_spec(programs: Path, secured: RegistryServer, tmp_path: Path) -> None:
    env = {
        **credentials(),
        "OCI_ROOT_URL": secured.url,
        "OCI_NAMESPACE": NAMESPACE,
        "OCI_CROSSMOUNT_NAMESPACE": CROSSMOUNT,
        "OCI_TEST_PULL": "1",
        "OCI_TEST_PUSH": "1",
        "OCI_TEST_CONTENT_DISCOVERY": "1",
        "OCI_TEST_CONTENT_MANAGEMENT": "1",
        "OCI_HIDE_SKIPPED_WORKFLOWS": "0",
        # regd mounts only what ``from=`` names; without it, a new session (202): the
        # spec's answer, which this runs the check for.
        "OCI_AUTOMATIC_CROSSMOUNT": "0",
        "OCI_REPORT_DIR": str(tmp_path),
    }
    result = _run(programs / RELEASE, env, tmp_path)
    output = _ANSI.sub("", result.stdout + result.stderr)
    counts = re.search(r"(\d+) Passed \| (\d+) Failed \| (\d+) Pending \| (\d+) Skipped", output)
    assert counts is not None, f"no summary from {RELEASE} (exit {result.returncode}):\n{output[-4000:]}"
    passed, failed, _, skipped = map(int, counts.groups())
    print(f"\n{RELEASE}: {passed} passed, {failed} failed, {skipped} skipped")
    failures = output.partition("Summarizing")[2].partition("\nRan ")[0].strip()
    assert failed == 0 and result.returncode == 0, (
        f"{RELEASE}: {failed} failed (exit {result.returncode}); reports in {tmp_path}\n{failures}"
    )
    assert passed > 0


@pytest.mark.parametrize("version", ["1.1", "dev"])
def test_main_967efdc_passes_every_check(
    programs: Path, secured: RegistryServer, tmp_path: Path, version: str
) -> None:
    """``dev`` adds the checks of what the spec's main branch adds after v1.1.1: upload
    cancel, the digest header, tags pushed with ``?tag=`` (``OCI-Tag``)."""
    env = {
        **credentials(),
        "OCI_VERSION": version,
        "OCI_REGISTRY": secured.host,
        "OCI_TLS": "disabled",
        "OCI_REPO1": NAMESPACE,
        "OCI_REPO2": CROSSMOUNT,
        "OCI_RESULTS_DIR": str(tmp_path / "results"),
    }
    result = _run(programs / MAIN, env, tmp_path)
    summary = result.stdout.partition("OCI Conformance Result:")[2]
    counts = {
        name: int(value)
        for name, value in re.findall(r"^\s+(Pass|FAIL|Skip|Disabled|Error)\.+:\s+(\d+)$", summary, re.M)
    }
    assert "Pass" in counts, f"no summary from {MAIN} (exit {result.returncode}):\n{result.stdout[-4000:]}"
    print(f"\n{MAIN} (OCI_VERSION={version}): {counts}")
    failures = [line for line in result.stderr.splitlines() if "failed test" in line]
    assert counts.get("FAIL", 0) == counts.get("Error", 0) == 0 and result.returncode == 0, (
        f"{MAIN}: {counts} (exit {result.returncode}); reports in {tmp_path}\n" + "\n".join(failures)
    )
    assert counts["Pass"] > 0


def _run(program: Path, env: dict[str, str], workdir: Path) -> subprocess.CompletedProcess[str]:
    # The programs write report files into their working directory: never the checkout.
    return run([str(program)], timeout=TIMEOUT, check=False, env=env, cwd=workdir)
