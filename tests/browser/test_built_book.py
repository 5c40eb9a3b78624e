"""The built book as a reader sees it, in headless Chromium (``make check-book``).

Checks every page listed in ``_toc.yml``: reachable from the home page's navigation, math
typeset by the offline MathJax (no raw TeX left), every image loaded, no console errors, no
request leaving the machine. Screenshots go to ``_build/screenshots/``.

Skipped unless the book was built (``_build/html/index.html``) and Chromium is installed; run
``make check-book``, which builds the book and installs Chromium first.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = os.environ.get("CCA_BOOK_CHROMIUM") or shutil.which("chromium")
# The flags that keep Chromium from reaching for the network (background services, updates,
# sync) and that let it run headless as root in a container (no sandbox, no GPU).
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (HTML / "index.html").is_file(), reason="book not built"),
    pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed"),
]


def toc_pages() -> list[str]:
    """HTML paths (relative to _build/html) of every page in the toc."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("file"), str):
                files.append(node["file"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(toc.get("parts", toc.get("chapters", [])))
    return [f.removesuffix(".ipynb").removesuffix(".md") + ".html" for f in files]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


def open_page(browser, rel: str):
    page = browser.new_page(viewport={"width": 1280, "height": 1600})
    errors: list[str] = []
    outside: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def route(r):
        if urlparse(r.request.url).scheme in ("file", "data", "blob"):
            return r.continue_()
        outside.append(r.request.url)
        return r.abort()

    page.route("**/*", route)
    page.goto((HTML / rel).as_uri(), wait_until="load")
    # MathJax typesets asynchronously: wait for it to finish when the page has math.
    page.wait_for_function(
        "() => !window.MathJax || !MathJax.startup || !MathJax.startup.promise ? true :"
        " MathJax.startup.promise.then(() => true)", timeout=30_000)
    return page, errors, outside


def test_every_toc_page_is_linked_from_the_navigation(browser):
    # the root page itself: index.html only redirects to it, and reading the navigation before
    # the redirect has happened finds no links (a race that failed one CI run)
    page, _, _ = open_page(browser, toc_pages()[0])
    page.wait_for_selector("nav.bd-links a", timeout=30_000)
    hrefs = page.eval_on_selector_all(
        "nav.bd-links a, .bd-sidebar-primary a", "els => els.map(e => e.href)")
    linked = {urlparse(h).path for h in hrefs}
    for rel in toc_pages()[1:]:
        target = urlparse((HTML / rel).as_uri()).path
        assert target in linked, f"{rel} not in the navigation"
    page.close()


@pytest.mark.parametrize("rel", toc_pages())
def test_page_renders(browser, rel):
    assert (HTML / rel).is_file(), f"{rel} was not built"
    page, errors, outside = open_page(browser, rel)
    raw_math = page.eval_on_selector_all(
        ".math",
        "els => els.filter(e => !e.querySelector('mjx-container')).map(e => e.textContent)")
    assert not raw_math, f"{rel}: math left as raw TeX: {raw_math[:2]}"
    broken = page.eval_on_selector_all(
        "img", "els => els.filter(e => !(e.complete && e.naturalWidth > 0)).map(e => e.src)")
    assert not broken, f"{rel}: images that did not load: {broken}"
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / (rel.replace("/", "_").removesuffix(".html") + ".png")),
                    full_page=True)
    text = page.inner_text("main") if page.query_selector("main") else page.inner_text("body")
    for junk, what in (("Traceback (most recent call last)", "a Python traceback"),
                       ("%|", "a progress bar's output"), ("\x1b[", "terminal escape codes")):
        assert junk not in text, f"{rel}: the page shows {what}"
    assert not errors, f"{rel}: console errors: {errors}"
    assert not outside, f"{rel}: requests leaving the machine: {outside}"
    page.close()


def test_index_redirects_to_the_root_page(browser):
    page, _, _ = open_page(browser, "index.html")
    page.wait_for_url(f"**/{toc_pages()[0]}", timeout=30_000)
    page.close()


def test_chapters_show_figures_and_math():
    """Every executed experiment chapter has at least one figure."""
    for rel in toc_pages():
        if "/executed/" in rel and not rel.endswith("/method.html"):
            text = (HTML / rel).read_text()
            assert "<img" in text, f"{rel} has no figure"


def _tracked_at_head() -> set[str] | None:
    import subprocess

    out = subprocess.run(["git", "-C", str(ROOT), "ls-tree", "-r", "--name-only", "HEAD"],
                         capture_output=True, text=True)
    return set(out.stdout.splitlines()) if out.returncode == 0 else None


def test_launch_buttons_open_notebooks_tracked_at_head(browser):
    """Every Binder and Colab URL on every page names the configured repository and branch and a
    notebook that git tracks at HEAD (the executed copies under book/executed/ are not)."""
    import re

    import yaml

    tracked = _tracked_at_head()
    if tracked is None:
        pytest.skip("not a git checkout")
    repo = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    org_repo, branch = repo["url"].removeprefix("https://github.com/").strip("/"), repo["branch"]
    binder = re.compile(r"^https://mybinder\.org/v2/gh/(?P<repo>[^/]+/[^/]+)/(?P<branch>[^?]+)"
                        r"\?urlpath=(?:lab/)?tree/(?P<path>.+)$")
    colab = re.compile(r"^https://colab\.research\.google\.com/github/(?P<repo>[^/]+/[^/]+)/blob/"
                       r"(?P<branch>[^/]+)/(?P<path>.+)$")
    launched = 0
    for rel in toc_pages():
        page, _, _ = open_page(browser, rel)
        hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
        page.close()
        for href in hrefs:
            for kind, prefix, pattern in (("Binder", "https://mybinder.org/", binder),
                                          ("Colab", "https://colab.research.google.com/", colab)):
                if not href.startswith(prefix):
                    continue
                m = pattern.match(href)
                assert m, f"{rel}: unexpected {kind} URL {href}"
                assert (m["repo"], m["branch"]) == (org_repo, branch), f"{rel}: {href}"
                assert m["path"] in tracked, f"{rel}: {kind} opens {m['path']}, not tracked at HEAD"
                launched += 1
        if "/executed/" in rel:
            kinds = {k for k, p in (("Binder", binder), ("Colab", colab))
                     for h in hrefs if p.match(h)}
            assert kinds == {"Binder", "Colab"}, f"{rel}: launch buttons found: {kinds}"
    assert launched, "no launch button on any page"


def chapter_pages() -> list[str]:
    return [rel for rel in toc_pages() if "/executed/" in rel]


def _figures(page) -> list[dict]:
    """Every image a chapter's code cells output, as the reader sees it."""
    return page.eval_on_selector_all(
        "main .cell_output img",
        """els => els.map(e => {
            const fig = e.closest('figure');
            const cap = fig ? fig.querySelector('figcaption') : null;
            return {src: e.src, alt: e.getAttribute('alt') || '', natural: e.naturalWidth,
                    shown: e.getBoundingClientRect().width,
                    number: cap && cap.querySelector('.caption-number')
                        ? cap.querySelector('.caption-number').textContent.trim() : '',
                    caption: cap && cap.querySelector('.caption-text')
                        ? cap.querySelector('.caption-text').textContent.trim() : '',
                    id: fig ? fig.id : ''};
        })""")


def _report(src: str) -> dict | None:
    """The figure report the PNG carries (cca_lib.plotting.figure_png), or None."""
    import json
    from urllib.request import url2pathname

    from PIL import Image

    from cca_lib import plotting

    with Image.open(url2pathname(urlparse(src).path)) as im:
        im.load()
        text = getattr(im, "text", {}).get(plotting.REPORT_KEY)
    return json.loads(text) if text else None


@pytest.mark.parametrize("rel", chapter_pages())
def test_figure_text_is_legible_at_page_width(browser, rel):
    """Every chapter figure records its size and smallest text (cca_lib.plotting), and that text
    is at least plotting.MIN_FONT_PX pixels at the width the figure is displayed at in a 1280-px
    window."""
    from cca_lib import plotting

    page, _, _ = open_page(browser, rel)
    figures = _figures(page)
    page.close()
    small = []
    for fig in figures:
        report = _report(fig["src"])
        assert report is not None, f"{rel}: {fig['src']} carries no figure report"
        assert report["width_px"] == fig["natural"], f"{rel}: {fig['src']}: report of another size"
        shown = plotting.displayed_min_font(report, fig["shown"])
        if shown < plotting.MIN_FONT_PX:
            small.append(f"{fig['number'] or fig['src']}: {report['width_px']} px wide shown at "
                         f"{fig['shown']:.0f} px, text {report['min_font_text']!r} "
                         f"{shown:.1f} px")
    assert not small, f"{rel}: text under {plotting.MIN_FONT_PX} px: {small}"


@pytest.mark.parametrize("rel", chapter_pages())
def test_figures_are_numbered_with_captions_and_alt_text(browser, rel):
    """Every chapter figure is a numbered figure with a caption, a target the text can refer to
    and alt text that describes it (not the file's path)."""
    page, _, _ = open_page(browser, rel)
    figures = _figures(page)
    text = page.inner_text("main")
    page.close()
    for fig in figures:
        where = f"{rel}: {fig['src'].rsplit('/', 1)[-1]}"
        assert fig["number"].startswith("Fig."), f"{where}: not a numbered figure"
        assert len(fig["caption"].split()) >= 8, f"{where}: caption {fig['caption']!r}"
        assert fig["id"], f"{where}: the figure has no name to refer to"
        alt = fig["alt"]
        assert "_images" not in alt and not alt.endswith(".png"), f"{where}: alt text is a path"
        assert len(alt.split()) >= 8, f"{where}: alt text {alt!r} does not describe the figure"
        # referred to by number from the text (a {numref} renders the number itself)
        assert text.count(fig["number"]) >= 2, f"{where}: {fig['number']} never referred to"


@pytest.mark.parametrize("rel", toc_pages())
def test_nothing_overflows_the_column(browser, rel):
    """No printed output line, table, figure or shell command in the text is wider than the text
    column (cut off or hidden behind a scroll bar), and no table is shortened to '... rows x
    columns'. (Code cells may scroll: their lines are code a reader copies.)"""
    import re

    page, _, _ = open_page(browser, rel)
    wide = page.eval_on_selector_all(
        "main .cell_output pre, main .cell_output table, main .cell_output img,"
        " main article .table-wrapper, main article table, main .cell_output .output,"
        " main article div.highlight-bash pre, main article div.highlight-shell pre",
        """els => {
            const article = document.querySelector('main article') || document.body;
            const right = article.getBoundingClientRect().right;
            return els.filter(e => e.scrollWidth > e.clientWidth + 1
                                   || e.getBoundingClientRect().right > right + 1)
                      .map(e => e.tagName + ': ' + (e.textContent || e.src || '')
                                .trim().slice(0, 80));
        }""")
    text = page.inner_text("main")
    page.close()
    assert not wide, f"{rel}: wider than the column: {wide}"
    truncated = re.findall(r"\d+ rows [×x] \d+ columns", text)
    assert not truncated, f"{rel}: tables shortened: {truncated}"
