"""The web interface in a real browser (headless Chromium through Selenium) against a
running ``regd serve``, walking what Harbor's "Pulling and Pushing Images" sends users
to the interface for: sign in; create a project; ``docker push`` into it with the real
docker CLI; find the repository; edit its description with Markdown and a ``<script>``
that must stay inert; copy a pull command; delete a tag; "GC Now" and see the freed
bytes in the history; sign out. And the certificate download from a regd serving HTTPS
with a test CA. A failing test saves the browser's screen (see ``browser``)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.certs import PrivateCA
from tests.prerequisites import regd_only
from tests.regd_process import RegdProcess

from .browser import Browser
from .conftest import CALL_FAILED
from .daemons import Dockerd, Target
from .images import make_image, push, remove_local
from .tools import run

pytestmark = pytest.mark.e2e

ADMIN_PASSWORD = "WebAdmin123"
PROJECT = "webdemo"


@pytest.fixture(scope="module")
def regd(tmp_path_factory: pytest.TempPathFactory, target: Target) -> Iterator[RegdProcess]:
    """``regd serve`` with access control on, and a GC grace period of 0 so that a
    collection frees at once what a deletion let go."""
    if target is not Target.REGD:
        regd_only("the web interface")
    server = RegdProcess(
        tmp_path_factory.mktemp("web"),
        {"auth": {"enabled": True}, "gc": {"grace_period": 0}},
        env={"REGD_ADMIN_PASSWORD": ADMIN_PASSWORD},
    )
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    browser = Browser(tmp_path_factory.mktemp("downloads"))
    try:
        yield browser
    finally:
        browser.quit()


def _failure_path(request: pytest.FixtureRequest) -> Path:
    directory = os.environ.get("REGD_FAILURE_SCREENSHOTS_DIR") or os.path.join(
        tempfile.gettempdir(), "regd-web-failures"
    )
    return Path(directory) / (re.sub(r"[^\w.-]", "_", request.node.name) + ".png")


@pytest.fixture
def browser(chromium: Browser, request: pytest.FixtureRequest) -> Iterator[Browser]:
    """The shared browser; on failure its screen is saved and the path printed."""
    yield chromium
    if request.node.stash.get(CALL_FAILED, False):
        path = _failure_path(request)
        chromium.save_failure(path)
        print(f"screenshot of the failure: {path}")


def sign_in(browser: Browser, base: str, user: str, password: str) -> None:
    browser.get(base + "/")
    browser.type("#sign-in-form input[name=principal]", user)
    browser.type("#sign-in-form input[name=password]", password)
    browser.click("#sign-in-form button[type=submit]")
    browser.wait("signed in", lambda: browser.text("#current-user").startswith(user))


def test_the_harbor_flows_in_a_browser(browser: Browser, regd: RegdProcess, dockerd: Dockerd) -> None:
    base = f"http://127.0.0.1:{regd.port}"
    host = f"127.0.0.1:{regd.port}"

    # Anonymous: public projects read-only, and the Sign in form.
    browser.get(base + "/")
    assert "library" in browser.text("#listing") and browser.find("#sign-in-form")
    sign_in(browser, base, "admin", ADMIN_PASSWORD)

    # New Project, with the error next to the field first.
    browser.click("#new-project summary")
    browser.type("#new-project-form input[name=name]", "library")
    browser.click("#new-project-form button[type=submit]")
    assert browser.wait_for("#name-error").text == "The project named library already exists"
    browser.type("#new-project-form input[name=name]", PROJECT)
    browser.click("#new-project-form button[type=submit]")
    browser.wait("the new project's page", lambda: browser.find("h1").text.startswith(PROJECT))
    assert "No repositories yet: docker push" in browser.text("#no-repositories")

    # docker push into it with the real docker CLI.
    for tag in ("v1", "v2"):
        make_image(dockerd, f"{host}/{PROJECT}/app:{tag}", layers=2)
    run(
        [dockerd.cli, "login", "--username", "admin", "--password-stdin", host],
        env=dockerd.env,
        input=ADMIN_PASSWORD.encode(),
        timeout=60,
    )
    try:
        for tag in ("v1", "v2"):
            push(dockerd, f"{host}/{PROJECT}/app:{tag}")
    finally:
        dockerd.docker("logout", host)
        for tag in ("v1", "v2"):
            remove_local(dockerd, f"{host}/{PROJECT}/app:{tag}")

    # Find the repository with the search box (htmx replaces the list as one types).
    browser.get(f"{base}/projects/{PROJECT}")
    browser.type("input[name=q]", "ap")
    browser.wait("the search result", lambda: f"{PROJECT}/app" in browser.text("#listing"))
    browser.shot("project")
    browser.find(f'#listing a[href="/projects/{PROJECT}/repositories/app"]').click()
    browser.wait("the Artifacts tab", lambda: browser.find('#tab-artifacts[aria-current="page"]'))
    assert len(browser.find_all(".tag")) == 2
    browser.shot("artifacts")

    # Copy pull command: the clipboard holds the docker pull command.
    button = browser.find('.tag[data-tag="v2"] button.copy')
    button.click()
    browser.wait("Copied", lambda: button.text == "Copied")
    assert browser.clipboard() == f"docker pull {host}/{PROJECT}/app:v2"

    # Info: Edit, Markdown with a <script> attempt, Save (through htmx), rendered inert.
    browser.click("#tab-info")
    browser.click("#description-edit")
    browser.wait_for("#description-form textarea")
    browser.type(
        "#description-form textarea",
        "# Web demo\n\nBuilt **nightly**.\n\n<script>alert('xss')</script>\n\n[bad](javascript:alert(1))",
    )
    browser.click("#description-save")
    browser.wait("the saved description", lambda: browser.find("#description-view h1").text == "Web demo")
    view = browser.find("#description-view")
    assert browser.find("#description-view strong").text == "nightly"
    assert "<script>alert('xss')</script>" in view.text  # shown as text
    assert not view.find_elements("css selector", "script") and not browser.has_alert()
    assert not [
        a for a in view.find_elements("css selector", "a") if "javascript" in (a.get_attribute("href") or "")
    ]
    browser.shot("info")

    # Delete a tag, after a confirmation that names it.
    browser.click("#tab-artifacts")
    browser.find('.tag[data-tag="v1"] a.danger').click()
    assert browser.wait_for("#confirm-title").text == "Delete tag v1?"
    browser.click("#confirm-delete")
    browser.wait("v1 gone", lambda: len(browser.find_all(".tag")) == 1)
    assert browser.find_all('.tag[data-tag="v2"]')

    # GC Now (with untagged artifacts: v1's image has no tag left) and the freed bytes.
    browser.click('a[href="/admin/gc"]')
    checkbox = browser.find("#gc-run input[name=delete_untagged]")
    if not checkbox.is_selected():
        checkbox.click()
    browser.click("#gc-now")
    browser.wait(
        "the run to succeed",
        lambda: browser.find("#gc-history tbody tr").get_attribute("data-status") == "Success",
    )
    freed = browser.text("#gc-history tbody tr .freed")
    assert re.fullmatch(r"\d+(\.\d)? (KiB|MiB)", freed), freed
    browser.shot("gc")
    browser.find("#gc-history tbody tr a").click()
    assert "freed" in browser.wait_for("#gc-log").text.lower() or browser.text("#gc-log")

    browser.get(base + "/admin/users")
    browser.shot("users")
    browser.get(base + "/")
    browser.dark(True)
    browser.shot("projects-dark")
    browser.dark(False)
    browser.shot("projects-phone", width=390)

    # No page broke its Content-Security-Policy (htmx and app.js run from /static only).
    assert not [e for e in browser.console_errors() if "Content Security Policy" in e]

    # Log out.
    browser.click("#log-out")
    browser.wait("signed out", lambda: browser.find("#sign-in-link"))
    browser.get(f"{base}/projects/{PROJECT}")
    assert "401" in browser.text("#page-error")


@pytest.fixture(scope="module")
def https_regd(
    tmp_path_factory: pytest.TempPathFactory, target: Target
) -> Iterator[tuple[RegdProcess, PrivateCA]]:
    if target is not Target.REGD:
        regd_only("the web interface")
    root = tmp_path_factory.mktemp("web-https")
    ca = PrivateCA(root / "pki", "regd web")
    cert = ca.issue("server", ["127.0.0.1"])
    server = RegdProcess(
        root,
        {
            "auth": {"enabled": True},
            "server": {"tls_cert": str(cert.chain), "tls_key": str(cert.key), "ca_cert": str(ca.ca_cert)},
        },
        env={"REGD_ADMIN_PASSWORD": ADMIN_PASSWORD},
    )
    try:
        server.start()
        yield server, ca
    finally:
        server.close()


def test_registry_certificate_downloads_the_ca_over_https(
    https_regd: tuple[RegdProcess, PrivateCA], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    server, ca = https_regd
    # Its own browser: this one accepts the test CA's certificate without trusting it.
    secure = Browser(tmp_path / "downloads", insecure_certs=True)
    try:
        base = f"https://127.0.0.1:{server.port}"
        sign_in(secure, base, "admin", ADMIN_PASSWORD)
        secure.get(base + "/projects/library")
        secure.shot("certificate")
        secure.click("#registry-certificate")
        target = secure.downloads / "ca.crt"
        secure.wait(
            "ca.crt downloaded", lambda: target.exists() and target.read_bytes() == ca.ca_cert.read_bytes()
        )
        cookies = {c["name"]: c for c in secure.driver.get_cookies()}
        assert cookies["sid"]["secure"] and cookies["sid"]["httpOnly"] and cookies["sid"]["sameSite"] == "Lax"
    except BaseException:
        secure.save_failure(_failure_path(request))
        raise
    finally:
        secure.quit()
        shutil.rmtree(tmp_path / "downloads", ignore_errors=True)
