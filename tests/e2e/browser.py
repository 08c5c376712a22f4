"""A real browser for the web interface's tests: Debian's headless Chromium driven by
Selenium through Debian's chromedriver (``/usr/bin/chromedriver``: Selenium downloads
nothing). The network is closed, so every background service of Chromium is off. A
missing browser skips, which tests/conftest.py turns into a failure under CI.

``Browser.shot(name)`` saves a PNG into ``$REGD_SCREENSHOTS_DIR`` when it is set (the
README's screenshots are taken this way: ``REGD_SCREENSHOTS_DIR=docs/screenshots``); a
failing test's last screen is saved by the fixture in ``tests/e2e/test_web_browser.py``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WINDOW = (1280, 800)
ARGUMENTS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-extensions",
    "--hide-scrollbars",
    f"--window-size={WINDOW[0]},{WINDOW[1]}",
)
WAIT = 30.0


class Browser:
    def __init__(self, downloads: Path, insecure_certs: bool = False) -> None:
        try:
            from selenium import webdriver
            from selenium.webdriver.chrome.service import Service
        except ImportError:
            pytest.skip("selenium is not installed (pip install -e .[test])")
            raise
        for path in (CHROMIUM, CHROMEDRIVER):
            if not os.access(path, os.X_OK):
                pytest.skip(f"{path} is missing (bash tests/run.sh installs chromium, chromium-driver)")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in ARGUMENTS:
            options.add_argument(argument)
        options.accept_insecure_certs = insecure_certs
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        downloads.mkdir(parents=True, exist_ok=True)
        options.add_experimental_option(
            "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
        )
        self.downloads = downloads
        self.driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        self.driver.set_window_size(*WINDOW)
        self.driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
        )
        self.driver.execute_cdp_cmd(
            "Browser.grantPermissions", {"permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]}
        )

    # -- finding and waiting ---------------------------------------------------------

    def get(self, url: str) -> None:
        self.driver.get(url)

    def find(self, css: str) -> Any:
        return self.driver.find_element("css selector", css)

    def find_all(self, css: str) -> list[Any]:
        return list(self.driver.find_elements("css selector", css))

    def wait(self, what: str, condition: Callable[[], Any], timeout: float = WAIT) -> Any:
        """Poll ``condition`` (exceptions count as not yet) until it is truthy."""
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.support.ui import WebDriverWait

        def check(_: Any) -> Any:
            try:
                return condition()
            except (WebDriverException, LookupError):
                return False

        return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(check, f"waiting for {what}")

    def wait_for(self, css: str, timeout: float = WAIT) -> Any:
        return self.wait(css, lambda: self.find(css), timeout)

    def text(self, css: str) -> str:
        return str(self.find(css).text)

    def type(self, css: str, text: str) -> None:
        element = self.find(css)
        element.clear()
        element.send_keys(text)

    def click(self, css: str) -> None:
        self.find(css).click()

    # -- what the page did -----------------------------------------------------------

    def clipboard(self) -> str:
        script = (
            "const done = arguments[arguments.length - 1];"
            "navigator.clipboard.readText().then(done, e => done('ERROR ' + e));"
        )
        return str(self.driver.execute_async_script(script))

    def has_alert(self) -> bool:
        from selenium.common.exceptions import NoAlertPresentException

        try:
            self.driver.switch_to.alert  # noqa: B018 (the lookup is the check)
        except NoAlertPresentException:
            return False
        return True

    def console_errors(self) -> list[str]:
        return [str(e["message"]) for e in self.driver.get_log("browser") if e.get("level") == "SEVERE"]

    def dark(self, on: bool) -> None:
        features = [{"name": "prefers-color-scheme", "value": "dark" if on else "light"}]
        self.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": features})

    def shot(self, name: str, width: int | None = None) -> None:
        """A README screenshot, when ``REGD_SCREENSHOTS_DIR`` is set."""
        directory = os.environ.get("REGD_SCREENSHOTS_DIR")
        if not directory:
            return
        Path(directory).mkdir(parents=True, exist_ok=True)
        if width is not None:
            self.driver.set_window_size(width, WINDOW[1])
        self.driver.save_screenshot(str(Path(directory) / f"{name}.png"))
        if width is not None:
            self.driver.set_window_size(*WINDOW)

    def save_failure(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(path))

    def quit(self) -> None:
        self.driver.quit()
        shutil.rmtree(self.downloads, ignore_errors=True)
