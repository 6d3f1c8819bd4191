"""The teaching slides: build presentation/ and check the deck in headless Chromium.

The deck is built once per session into a temporary folder (the figures come from
images/, or from $SLIDES_IMAGES), then opened from a file:// URL and every slide is
visited. A slide fails when an image does not load, when its content spills over the
slide, when the console shows an error, or when the page requests anything that is not
file:, data: or blob: (such requests are blocked and recorded). One screenshot per slide
goes to artifacts/slides/. Every slide must have speaker notes, the first slide after the
title must be the learning objectives, and every raster figure must have at least the
pixels it occupies on a 1920x1080 screen.

Chromium is the system one, driven with Playwright for Python (tests/browser.py; pinned in
requirements.txt, no browser download). The tests are skipped only when no Chromium is
installed (Debian: apt-get install chromium); node and npm must be there to build.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from browser import NO_CHROMIUM, chromium, find_chromium, watch

ROOT = Path(__file__).resolve().parents[1]
PRESENTATION = ROOT / "presentation"
ARTIFACTS = ROOT / "artifacts" / "slides"
SLIDE_WIDTH, SLIDE_HEIGHT, MARGIN = 1280, 720, 0.04  # as in presentation/build.mjs
# On a 1920x1080 screen the 1280x720 slide is drawn 1.5 times larger; a figure must have at
# least that many pixels to stay sharp (build.mjs shrinks none below it).
SCREEN_SCALE = 1920 / SLIDE_WIDTH
# As BUDGET_MIB in build.mjs: a dozen figures sharp at 1920x1080 need several MiB.
BUDGET_MIB = 10
BUDGET_BYTES = BUDGET_MIB * 1024 * 1024
BUILD_TIMEOUT = 600

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)


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
    assert result.returncode == 0, f"the slide build failed:\n{result.stderr}{result.stdout}"
    return out


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def open_deck(browser, deck: Path, width: int, height: int, query: str = ""):
    """A page of `deck`'s slides.html in a fresh context, and the list watch() fills."""
    context = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=1)
    context.set_default_timeout(120_000)  # a busy machine (2 shared cores) may be slow
    problems = watch(context)
    page = context.new_page()
    page.goto((deck / "slides.html").as_uri() + query)
    return page, problems


def open_slides(browser, deck: Path):
    """The deck at the viewport that shows the slide at scale 1 (1280x720 CSS px), ready to step through."""
    width, height = round(SLIDE_WIDTH / (1 - MARGIN)), round(SLIDE_HEIGHT / (1 - MARGIN))
    page, problems = open_deck(browser, deck, width, height)
    page.wait_for_function("() => typeof Reveal !== 'undefined' && Reveal.isReady()")
    page.evaluate("document.fonts.ready.then(() => true)")
    page.evaluate("Reveal.configure({transition: 'none', backgroundTransition: 'none'}), true")
    return page, problems


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

# Every raster image of the current slide: its pixels and the size it is drawn at, in slide
# pixels (the slide is 1280x720 whatever the window). SVG has no pixels to count.
FIGURE_SIZES_JS = r"""
(() => {
  const scale = Reveal.getScale();
  return [...Reveal.getCurrentSlide().querySelectorAll('img')]
    .filter((img) => !/^data:image\/svg/.test(img.currentSrc || img.src))
    .map((img) => {
      const r = img.getBoundingClientRect();
      return {alt: img.alt, naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight,
              width: r.width / scale, height: r.height / scale};
    });
})()
"""

# The speaker notes of every slide, as reveal.js's speaker view shows them (aside.notes).
NOTES_JS = r"""
[...document.querySelectorAll('.reveal .slides > section')].map((s, i) => {
  const title = s.querySelector('h1, h2');
  const aside = s.querySelector('aside.notes');
  return {i, title: title ? title.textContent.trim() : '',
          notes: aside ? aside.textContent.trim().replace(/\s+/g, ' ') : '',
          reveal: (Reveal.getSlideNotes(s) || '').trim() !== ''};
})
"""


# ---------------------------------------------------------------------------
# Tests


def test_every_slide_in_the_browser(deck, browser):
    """Visit every slide: images load, nothing overflows, no console error, no web request."""
    # The slide at scale 1, so that the screenshots are 1:1.
    page, problems = open_slides(browser, deck)

    total = page.evaluate("Reveal.getTotalSlides()")
    sections = page.locator(".reveal .slides > section").count()
    assert total == sections > 0

    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir(parents=True)
    failures = []
    for i in range(total):
        page.evaluate(f"Reveal.slide({i}), true")
        page.evaluate(NEXT_FRAMES_JS)
        result = page.evaluate(CHECK_SLIDE_JS)
        page.screenshot(path=ARTIFACTS / f"slide-{i + 1:02d}.png")
        failures += [f"slide {i + 1} ({result['title']}): {p}" for p in result["problems"]]

    page.evaluate(NEXT_FRAMES_JS)
    problems = failures + problems
    assert not problems, "\n".join(problems) + f"\n(screenshots in {ARTIFACTS})"


def test_every_slide_has_speaker_notes(deck, browser):
    """A teacher presents from the notes (key S): every slide has some, in reveal.js's aside.notes."""
    page, problems = open_slides(browser, deck)
    slides = page.evaluate(NOTES_JS)
    assert slides
    missing = [f"slide {s['i'] + 1} ({s['title']})" for s in slides if len(s["notes"]) < 40 or not s["reveal"]]
    assert not missing, "no speaker notes (a `Note:` block of a few sentences) on: " + ", ".join(missing)
    assert not problems, "\n".join(problems)


def test_learning_objectives_come_first(deck, browser):
    """The first slide after the title states the learning objectives, as a list."""
    page, _ = open_slides(browser, deck)
    page.evaluate("Reveal.slide(1), true")
    title = page.evaluate("Reveal.getCurrentSlide().querySelector('h2')?.textContent.trim() || ''")
    items = page.evaluate("Reveal.getCurrentSlide().querySelectorAll('li').length")
    assert title.lower().startswith("learning objectives"), f"slide 2 is {title!r}, not the learning objectives"
    assert items >= 3, f"the learning objectives slide lists {items} objectives"


def test_figures_are_sharp_on_a_1920x1080_screen(deck, browser):
    """Every raster figure has at least the pixels it occupies when the deck fills a 1920x1080 screen."""
    page, problems = open_slides(browser, deck)
    total = page.evaluate("Reveal.getTotalSlides()")
    blurry, figures = [], 0
    for i in range(total):
        page.evaluate(f"Reveal.slide({i}), true")
        page.evaluate(NEXT_FRAMES_JS)
        title = page.evaluate("Reveal.getCurrentSlide().querySelector('h1, h2')?.textContent.trim() || ''")
        for f in page.evaluate(FIGURE_SIZES_JS):
            figures += 1
            need_w, need_h = f["width"] * SCREEN_SCALE, f["height"] * SCREEN_SCALE
            if f["naturalWidth"] < need_w - 1 or f["naturalHeight"] < need_h - 1:
                blurry.append(
                    f"slide {i + 1} ({title}): {f['alt']!r} has {f['naturalWidth']}x{f['naturalHeight']} px, "
                    f"drawn at {f['width']:.0f}x{f['height']:.0f} slide px, needs {need_w:.0f}x{need_h:.0f} px "
                    "at 1920x1080 (save it at a higher dpi, or as SVG)"
                )
    assert figures, "found no figure"
    assert not blurry + problems, "\n".join(blurry + problems)


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
    page, problems = open_deck(browser, deck, 1333, 750, query="?print-pdf")
    page.wait_for_function("() => document.querySelectorAll('.reveal .pdf-page').length > 0")
    page.evaluate("document.fonts.ready.then(() => true)")
    page.evaluate(NEXT_FRAMES_JS)
    pages = page.evaluate(PRINT_LAYOUT_JS)
    sections = page.locator(".reveal .slides section").count()
    assert len(pages) == sections, f"{len(pages)} print pages for {sections} slides"
    too_big = [
        f"page {p['i'] + 1} ({p['title']}): {p['w']}x{p['h']}px on {p['width']}x{p['height']}"
        for p in pages
        if p["w"] > p["width"] + 1 or p["h"] > p["height"] + 1
    ]
    assert not too_big + problems, "\n".join(too_big + problems)


def test_pdf_has_one_page_per_slide(deck):
    pdf = (deck / "slides.pdf").read_bytes()
    html = (deck / "slides.html").read_text(encoding="utf-8")
    slides = len(re.findall(r"<section\b", html))
    pages = len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf))
    assert pages == slides, f"{pages} PDF pages for {slides} slides"
    boxes = {tuple(float(v) for v in m.split()) for m in re.findall(rb"/MediaBox\s*\[([^\]]*)\]", pdf)}
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
            f"{name} is {size / 2**20:.1f} MiB, over the {BUDGET_MIB} MiB budget: save the figures in "
            "images/ smaller (no more pixels than 1920x1080 each, JPEG for photos)"
        )


def test_build_is_reproducible(deck, tmp_path):
    result = build(tmp_path)
    assert result.returncode == 0, result.stderr
    for name in ("slides.html", "slides.pdf"):
        assert (tmp_path / name).read_bytes() == (deck / name).read_bytes(), f"{name} differs between two builds"


def test_missing_figure_fails_the_build(tmp_path):
    empty = tmp_path / "no-figures"
    empty.mkdir()
    result = build(tmp_path, "--images", str(empty), "--no-pdf")
    assert result.returncode != 0
    assert "missing figure" in result.stderr and "images/overview.jpg" in result.stderr, result.stderr
    assert not (tmp_path / "slides.html").exists()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
