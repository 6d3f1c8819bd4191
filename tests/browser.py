"""Headless Chromium for the browser tests, driven with Playwright for Python.

Playwright never downloads a browser here: `chromium()` launches the system one
(`find_chromium()`), and skips the calling test with a clear reason when there is none.
The browser cannot resolve host names, so the web is out of reach while 127.0.0.1 stays
reachable (for a local server); `watch()` also blocks and records
every request whose URL is not allowed, along with console errors and uncaught exceptions.

    from browser import chromium, watch

    @pytest.fixture(scope="module")
    def browser():
        with chromium() as b:
            yield b

    def test_page(browser):
        context = browser.new_context()
        problems = watch(context)        # allow=(..., "http://127.0.0.1:") for a local server
        page = context.new_page()
        page.goto(path.as_uri())
        ...
        assert not problems, "\\n".join(problems)
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from playwright.sync_api import Browser, BrowserContext, Route, sync_playwright

NO_CHROMIUM = "Chromium is not installed (Debian: apt-get install chromium, or set $CHROMIUM)"
LOCAL = ("file:", "data:", "blob:")
ARGS = (
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # nothing on the web; a local server is
    "--disable-gpu",
    "--hide-scrollbars",
    "--mute-audio",
)


def find_chromium() -> str | None:
    """$CHROMIUM, else the first Chromium or Chrome on PATH."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    names = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
    return next((path for name in names if (path := shutil.which(name))), None)


@contextmanager
def chromium(*args: str) -> Iterator[Browser]:
    """The system Chromium, headless, through Playwright (extra command-line flags in `args`)."""
    executable = find_chromium()
    if executable is None:
        pytest.skip(NO_CHROMIUM)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=[*ARGS, *args])
        try:
            yield browser
        finally:
            browser.close()


def watch(context: BrowserContext, allow: tuple[str, ...] = LOCAL) -> list[str]:
    """A list that fills up with what goes wrong in `context`'s pages; requests not allowed are blocked.

    `allow` holds URL prefixes (by default file:, data: and blob:). Recorded: every request
    to another URL (and it is aborted), console errors and assertions, uncaught exceptions,
    and failed loads.
    """
    problems: list[str] = []

    def block(route: Route) -> None:
        if route.request.url.startswith(allow):
            route.continue_()
        else:
            route.abort("blockedbyclient")

    context.route("**/*", block)
    context.on("request", lambda r: r.url.startswith(allow) or problems.append(f"request leaves the machine: {r.url}"))
    context.on(
        "requestfailed",
        lambda r: r.url.startswith(allow) and problems.append(f"load failed: {r.failure} {r.url}"),
    )
    context.on(
        "console",
        lambda m: m.type in ("error", "assert") and problems.append(f"console {m.type}: {m.text} {m.location['url']}"),
    )
    context.on("weberror", lambda e: problems.append(f"exception: {e.error}"))
    return problems
