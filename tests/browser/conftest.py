"""A real headless Chromium (Debian's `chromium` + `chromium-driver`) driven by Selenium against
pytest-django's live server. No browser is ever downloaded: the Debian packages are installed
when missing (`.ci/run` does it before the suite; this is the fallback for a bare `pytest`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
DEBIAN_PACKAGES = ("chromium", "chromium-driver")
# Where the key pages are saved; BROWSER_SCREENSHOTS=docs/screenshots refreshes the README's.
SCREENSHOTS = Path(os.environ.get("BROWSER_SCREENSHOTS", "var/screenshots"))
DESKTOP = (1280, 900)
TABLET = (820, 1180)


def _install_chromium() -> None:
    if os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.fail(f"Debian packages {DEBIAN_PACKAGES} are missing; install them (as root).")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=300)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", *DEBIAN_PACKAGES], check=True, env=env, timeout=600
    )


@pytest.fixture(scope="session")
def chromium():
    _install_chromium()
    profile = tempfile.mkdtemp(prefix="pp-chromium-")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        f"--window-size={DESKTOP[0]},{DESKTOP[1]}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    driver.implicitly_wait(5)  # elements of a page still loading
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def browser(chromium, live_server):
    """The session's browser, logged out and at desktop size, pointed at this test's server."""
    chromium.delete_all_cookies()
    chromium.set_window_size(*DESKTOP)
    chromium.base_url = live_server.url
    yield chromium
    chromium.delete_all_cookies()


def screenshot(driver, name: str) -> Path:
    """Save the whole page (the window grows to the page's height) as `<name>.png`."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    width = driver.get_window_size()["width"]
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(max(height + 120, 600), 2400))
    path = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path
