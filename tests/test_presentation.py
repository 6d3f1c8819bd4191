"""The teaching slides: build presentation/ and check the deck in headless Chromium.

The deck is built once per session into a temporary folder (the figures come from
images/, or from $SLIDES_IMAGES), then opened from a file:// URL and every slide is
visited. A slide fails when an image does not load, when its content spills over the
slide, when the console shows an error, or when the page requests anything that is not
file:, data: or blob:. One screenshot per slide goes to artifacts/slides/.

Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe), so the
test needs no Python package beyond pytest. It is skipped only when no Chromium is
installed (Debian: apt-get install chromium); node and npm must be there to build.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRESENTATION = ROOT / "presentation"
ARTIFACTS = ROOT / "artifacts" / "slides"
SLIDE_WIDTH, SLIDE_HEIGHT, MARGIN = 1280, 720, 0.04  # as in presentation/build.mjs
BUDGET_BYTES = 3 * 1024 * 1024
BUILD_TIMEOUT = 600


def find_chromium() -> str | None:
    """$CHROMIUM, else the first Chromium or Chrome on PATH."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    for name in (
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ):
        if path := shutil.which(name):
            return path
    return None


CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (Debian: apt-get install chromium)",
)


def build(out: Path, *args: str) -> subprocess.CompletedProcess:
    """Run presentation/build.sh with its output in `out`."""
    return subprocess.run(
        ["bash", str(PRESENTATION / "build.sh"), "--out", str(out), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        env={**os.environ, "CHROMIUM": CHROMIUM or ""},
    )


@pytest.fixture(scope="session")
def deck(tmp_path_factory) -> Path:
    """A fresh build (slides.html and slides.pdf) in a temporary folder."""
    out = tmp_path_factory.mktemp("deck")
    result = build(out)
    assert result.returncode == 0, (
        f"the slide build failed:\n{result.stderr}{result.stdout}"
    )
    return out


# ---------------------------------------------------------------------------
# A minimal DevTools-protocol client over --remote-debugging-pipe


class Browser:
    """Headless Chromium, driven with JSON messages on its fds 3 (to it) and 4 (from it)."""

    ARGS = (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--no-first-run",
        "--no-default-browser-check",
        "--hide-scrollbars",
        "--mute-audio",
        "--remote-debugging-pipe",
        # Even if the page asked for a web address, it would not resolve.
        "--host-resolver-rules=MAP * ~NOTFOUND",
    )

    def __init__(self, executable: str, profile: Path):
        to_chrome, self._write_fd = os.pipe()
        self._read_fd, from_chrome = os.pipe()
        # Copies at fd >= 10 so that the dup2 below cannot overwrite one with the other.
        child_in = fcntl.fcntl(to_chrome, fcntl.F_DUPFD_CLOEXEC, 10)
        child_out = fcntl.fcntl(from_chrome, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_chrome)
        os.close(from_chrome)
        try:
            # posix_spawn, not subprocess with preexec_fn: safe when the test process has
            # threads (TensorFlow's, in a full test run).
            self.pid = os.posix_spawn(
                executable,
                [executable, *self.ARGS, f"--user-data-dir={profile}", "about:blank"],
                os.environ,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                    (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
                    (os.POSIX_SPAWN_DUP2, child_in, 3),
                    (os.POSIX_SPAWN_DUP2, child_out, 4),
                ],
            )
        finally:
            os.close(child_in)
            os.close(child_out)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no answer from Chromium")
            ready, _, _ = select.select([self._read_fd], [], [], remaining)
            if ready:
                chunk = os.read(self._read_fd, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed the DevTools pipe")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(
        self, method: str, session: str | None = None, timeout: float = 30, **params
    ):
        """Send one command and return its result; events met on the way go to .events."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._write_fd, data) :]
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for_event(self, method: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events[i]
        while True:
            event = self._receive(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def close(self):
        try:
            self.call("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        deadline = time.monotonic() + 10
        while os.waitpid(self.pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                break
            time.sleep(0.05)
        os.close(self._write_fd)
        os.close(self._read_fd)


class Page:
    """One tab of `browser`, attached with a flat session."""

    def __init__(self, browser: Browser, width: int, height: int):
        self.browser = browser
        target = browser.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = browser.call(
            "Target.attachToTarget", targetId=target, flatten=True
        )["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def call(self, method: str, **params):
        return self.browser.call(method, session=self.session, **params)

    def evaluate(self, expression: str, timeout: float = 30):
        """The JSON value of a JavaScript expression (promises are awaited)."""
        result = self.browser.call(
            "Runtime.evaluate",
            session=self.session,
            timeout=timeout,
            expression=expression,
            returnByValue=True,
            awaitPromise=True,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"JavaScript error: {result['exceptionDetails']}")
        return result["result"].get("value")

    def goto(self, url: str, timeout: float = 60):
        self.browser.events.clear()
        self.call("Page.navigate", url=url)
        self.browser.wait_for_event("Page.loadEventFired", timeout=timeout)

    def screenshot(self, path: Path):
        png = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(png))


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = Browser(CHROMIUM, tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


# ---------------------------------------------------------------------------
# What a slide must satisfy, checked in the page

CHECK_SLIDE_JS = r"""
(() => {
  const slide = Reveal.getCurrentSlide();
  const {width, height} = Reveal.getConfig();
  const scale = Reveal.getScale();
  const box = document.querySelector('.reveal .slides').getBoundingClientRect();
  const problems = [];
  const describe = (el) => {
    const text = (el.textContent || el.alt || '').trim().replace(/\s+/g, ' ').slice(0, 60);
    const cls = el.getAttribute('class');
    return `<${el.tagName.toLowerCase()}${cls ? ' class="' + cls + '"' : ''}> "${text}"`;
  };
  slide.querySelectorAll('img').forEach((img) => {
    if (!img.complete || img.naturalWidth === 0) problems.push(`image did not load: ${describe(img)}`);
  });
  if (slide.offsetTop + slide.scrollHeight > height + 1 || slide.scrollWidth > width + 1) {
    problems.push(`slide content is ${slide.scrollWidth}x${slide.offsetTop + slide.scrollHeight}px, ` +
                  `the slide is ${width}x${height}px`);
  }
  // The part of an element that can be seen: its box clipped by every ancestor (inside the
  // slide) that does not let content overflow, in slide pixels.
  const visibleBox = (el) => {
    const r = el.getBoundingClientRect();
    let [l, t, rt, b] = [r.left, r.top, r.right, r.bottom];
    for (let a = el.parentElement; a && a !== slide; a = a.parentElement) {
      const s = getComputedStyle(a);
      if (s.overflowX !== 'visible' || s.overflowY !== 'visible') {
        const c = a.getBoundingClientRect();
        if (s.overflowX !== 'visible') [l, rt] = [Math.max(l, c.left), Math.min(rt, c.right)];
        if (s.overflowY !== 'visible') [t, b] = [Math.max(t, c.top), Math.min(b, c.bottom)];
      }
    }
    return [(l - box.left) / scale, (t - box.top) / scale, (rt - box.left) / scale, (b - box.top) / scale];
  };
  for (const el of slide.querySelectorAll('*')) {
    if (el.closest('.katex-mathml, aside.notes')) continue;
    const [left, top, right, bottom] = visibleBox(el);
    if (right - left <= 0 || bottom - top <= 0) continue;
    if (left < -1 || top < -1 || right > width + 1 || bottom > height + 1) {
      problems.push(`outside the slide (${Math.round(left)},${Math.round(top)})-(${Math.round(right)},` +
                    `${Math.round(bottom)}): ${describe(el)}`);
    }
    const style = getComputedStyle(el);
    if (/(auto|scroll|hidden)/.test(style.overflowX + style.overflowY) && !el.closest('.katex') &&
        (el.scrollWidth > el.clientWidth + 1 || el.scrollHeight > el.clientHeight + 1)) {
      problems.push(`content cut off (${el.scrollWidth}x${el.scrollHeight} in ${el.clientWidth}x` +
                    `${el.clientHeight}): ${describe(el)}`);
    }
  }
  const title = slide.querySelector('h1, h2');
  return {title: title ? title.textContent.trim() : '', problems: problems.slice(0, 10)};
})()
"""

NEXT_FRAMES_JS = "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))"


def page_errors(events: list[dict]) -> list[str]:
    """Console errors, uncaught exceptions and failed loads among the DevTools events."""
    errors = []
    for e in events:
        method, p = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in (
            "error",
            "assert",
        ):
            errors.append(
                "console: "
                + " ".join(
                    str(a.get("value", a.get("description", ""))) for a in p["args"]
                )
            )
        elif method == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            errors.append(
                f"exception: {d.get('exception', {}).get('description') or d.get('text')}"
            )
        elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
            errors.append(
                f"log: {p['entry']['text']} {p['entry'].get('url', '')}".strip()
            )
        elif method == "Network.loadingFailed":
            errors.append(
                f"load failed: {p.get('errorText')} {p.get('blockedReason', '')}".strip()
            )
    return errors


def remote_requests(events: list[dict]) -> list[str]:
    """Every request of the page whose URL is not file:, data: or blob:."""
    urls = [
        e["params"]["request"]["url"]
        for e in events
        if e.get("method") == "Network.requestWillBeSent"
    ]
    return [u for u in urls if not re.match(r"(file|data|blob):", u)]


# ---------------------------------------------------------------------------
# Tests


def test_every_slide_in_the_browser(deck, browser):
    """Visit every slide: images load, nothing overflows, no console error, no web request."""
    # A viewport of slide size * (1 + margin) shows the slide at scale 1 (screenshots 1:1).
    width, height = (
        round(SLIDE_WIDTH / (1 - MARGIN)),
        round(SLIDE_HEIGHT / (1 - MARGIN)),
    )
    page = Page(browser, width, height)
    page.goto((deck / "slides.html").as_uri())
    deadline = time.monotonic() + 30
    while not page.evaluate("typeof Reveal !== 'undefined' && Reveal.isReady()"):
        assert time.monotonic() < deadline, "reveal.js did not start"
        time.sleep(0.1)
    page.evaluate("document.fonts.ready.then(() => true)")
    page.evaluate(
        "Reveal.configure({transition: 'none', backgroundTransition: 'none'}), true"
    )

    total = page.evaluate("Reveal.getTotalSlides()")
    sections = page.evaluate(
        "document.querySelectorAll('.reveal .slides > section').length"
    )
    assert total == sections > 0

    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir(parents=True)
    failures = []
    for i in range(total):
        page.evaluate(f"Reveal.slide({i}), true")
        page.evaluate(NEXT_FRAMES_JS)
        result = page.evaluate(CHECK_SLIDE_JS)
        page.screenshot(ARTIFACTS / f"slide-{i + 1:02d}.png")
        failures += [
            f"slide {i + 1} ({result['title']}): {p}" for p in result["problems"]
        ]

    page.evaluate(NEXT_FRAMES_JS)
    errors = page_errors(browser.events)
    remote = remote_requests(browser.events)
    problems = failures + errors + [f"request leaves the machine: {u}" for u in remote]
    assert not problems, "\n".join(problems) + f"\n(screenshots in {ARTIFACTS})"


PRINT_LAYOUT_JS = r"""
(() => {
  const {width, height} = Reveal.getConfig();
  return [...document.querySelectorAll('.reveal .pdf-page')].map((page, i) => {
    const s = page.querySelector('section');
    const title = s.querySelector('h1, h2');
    return {i, title: title ? title.textContent.trim() : '',
            w: s.scrollWidth, h: s.scrollHeight, width, height};
  });
})()
"""


def test_print_layout_fits_the_pages(deck, browser):
    """In reveal.js's print mode (what the PDF is printed from) no slide spills over."""
    page = Page(browser, 1333, 750)
    page.goto((deck / "slides.html").as_uri() + "?print-pdf")
    deadline = time.monotonic() + 30
    while not page.evaluate(
        "document.querySelectorAll('.reveal .pdf-page').length > 0"
    ):
        assert time.monotonic() < deadline, "reveal.js did not lay out the print pages"
        time.sleep(0.1)
    page.evaluate("document.fonts.ready.then(() => true)")
    page.evaluate(NEXT_FRAMES_JS)
    pages = page.evaluate(PRINT_LAYOUT_JS)
    sections = page.evaluate(
        "document.querySelectorAll('.reveal .slides section').length"
    )
    assert len(pages) == sections, f"{len(pages)} print pages for {sections} slides"
    too_big = [
        f"page {p['i'] + 1} ({p['title']}): {p['w']}x{p['h']}px on {p['width']}x{p['height']}"
        for p in pages
        if p["w"] > p["width"] + 1 or p["h"] > p["height"] + 1
    ]
    assert not too_big, "\n".join(too_big)
    errors = page_errors(browser.events)
    assert not errors, "\n".join(errors)


def test_pdf_has_one_page_per_slide(deck):
    pdf = (deck / "slides.pdf").read_bytes()
    html = (deck / "slides.html").read_text(encoding="utf-8")
    slides = len(re.findall(r"<section\b", html))
    pages = len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf))
    assert pages == slides, f"{pages} PDF pages for {slides} slides"
    boxes = {
        tuple(float(v) for v in m.split())
        for m in re.findall(rb"/MediaBox\s*\[([^\]]*)\]", pdf)
    }
    assert len(boxes) == 1, boxes
    x0, y0, x1, y1 = boxes.pop()
    assert abs((x1 - x0) / (y1 - y0) - SLIDE_WIDTH / SLIDE_HEIGHT) < 0.01
    assert b"/CreationDate (D:2" not in pdf, "the PDF carries the build time"


def test_html_is_self_contained(deck):
    """No element or stylesheet points at another file or the web; a CSP forbids it too."""
    html = (deck / "slides.html").read_text(encoding="utf-8")
    styles = "".join(re.findall(r"<style>(.*?)</style>", html, flags=re.DOTALL))
    markup = re.sub(r"<(script|style)>.*?</\1>", "", html, flags=re.DOTALL)
    refs = re.findall(r"""\b(?:src|href|poster|data)\s*=\s*["']?([^"'\s>]+)""", markup)
    refs += re.findall(r"""url\(\s*["']?([^"')\s]+)""", styles)
    assert refs, "found no image or font at all"
    assert [r for r in refs if not r.startswith(("data:", "#"))] == []
    assert not re.search(r"<(link|iframe|object|embed)\b", markup)
    assert "default-src 'none'" in html


def test_size_budget(deck):
    for name in ("slides.html", "slides.pdf"):
        size = (deck / name).stat().st_size
        assert size < BUDGET_BYTES, (
            f"{name} is {size / 2**20:.1f} MiB, over the 3 MiB budget: save the figures in "
            "images/ at a lower dpi or size"
        )


def test_build_is_reproducible(deck, tmp_path):
    result = build(tmp_path)
    assert result.returncode == 0, result.stderr
    for name in ("slides.html", "slides.pdf"):
        assert (tmp_path / name).read_bytes() == (deck / name).read_bytes(), (
            f"{name} differs between two builds"
        )


def test_missing_figure_fails_the_build(tmp_path):
    empty = tmp_path / "no-figures"
    empty.mkdir()
    result = build(tmp_path, "--images", str(empty), "--no-pdf")
    assert result.returncode != 0
    assert (
        "missing figure" in result.stderr and "images/overview.png" in result.stderr
    ), result.stderr
    assert not (tmp_path / "slides.html").exists()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
