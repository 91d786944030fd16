"""Open pages of the built site in a real headless Chromium and check what a reader would see.

For every page checked:

* every ``<img>`` loaded (``complete`` and ``naturalWidth > 0``): figures of the notebooks, the charts of the
  benchmark results, the README's picture;
* where the page has mathematics, MathJax typeset it: rendered formulas are present, none is a MathJax error,
  and no raw ``$$`` or ``\\(`` is left in the visible text;
* every link to another page of the site points at a file that exists.

The site is served from a loopback HTTP server started here. Nothing leaves the machine: a request for MathJax
from its CDN is answered from a local copy of MathJax 2.7 (Debian's ``libjs-mathjax``,
``/usr/share/javascript/mathjax``, or ``--mathjax DIR``), and every other outside request is refused and listed.

Usage (after ``mkdocs build --strict``)::

    python docs/check_site.py                      # the default pages of site/
    python docs/check_site.py --screenshots shots  # also save a full-page PNG of each
    python docs/check_site.py --all                # every HTML page of the site

Needs ``playwright`` (the Python package; its own browser download is not used) and a Chromium
(``apt-get install chromium``; ``--chromium PATH`` or ``$CHROMIUM`` to choose one). Exit status 0 when every page
passes, 1 when one fails, 2 when the check cannot run.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import shutil
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

MATHJAX_CDN = "https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.7/"
DEFAULT_MATHJAX = Path("/usr/share/javascript/mathjax")
# (page, must have mathematics; None: check it if the page has any): the landing page, the tutorials' index and
# four notebooks, the API reference of the layers, the benchmark results with their charts
DEFAULT_PAGES = [
    ("index.html", None),
    ("tutorials/index.html", True),
    ("tutorials/01_chain_rule.html", True),
    ("tutorials/02_convolution_as_gemm.html", True),
    ("tutorials/04_local_response_norm.html", True),
    ("tutorials/06_training.html", True),
    ("api/layers.html", None),
    ("benchmarks/results/amd-epyc-2cpu.html", None),
]
PAGE_TIMEOUT_MS = 60_000

# Runs in the page: what was rendered. MathJax 2 marks typeset formulas with .MathJax_CHTML (CommonHTML output)
# or .MathJax (HTML-CSS output) and TeX errors with .mjx-merror (CommonHTML), merror or .MathJax_Error.
INSPECT = """
async () => {
  if (window.MathJax && window.MathJax.Hub) {
    await new Promise(resolve => window.MathJax.Hub.Queue(() => resolve(true)));
  }
  const images = [...document.images].map(img => ({
    src: img.currentSrc || img.src, ok: img.complete && img.naturalWidth > 0, width: img.naturalWidth,
  }));
  const text = document.body.innerText;
  const rawArithmatex = [...document.querySelectorAll('.arithmatex')]
    .filter(el => !el.querySelector('.MathJax_CHTML, .MathJax, .MathJax_Display, mjx-container'))
    .map(el => el.textContent.slice(0, 60));
  return {
    images,
    mathjax: !!(window.MathJax && window.MathJax.Hub),
    formulas: document.querySelectorAll('.MathJax_CHTML, .MathJax, mjx-container').length,
    errors: [...document.querySelectorAll('.MathJax_Error, .mjx-merror, merror, [data-mjx-error]')].map(e => e.textContent.slice(0, 80)),
    rawDollars: (text.match(/\\$\\$/g) || []).length,
    rawParens: (text.match(/\\\\\\(/g) || []).length,
    rawArithmatex,
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
  };
}
"""


@dataclass
class PageReport:
    page: str
    problems: list[str] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # no access log on the terminal
        pass


def serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """A loopback HTTP server for ``root`` on a free port, running in a daemon thread."""
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def find_chromium(explicit: str | None) -> str | None:
    for candidate in (explicit, os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (shutil.which(candidate) or Path(candidate).is_file()):
            return shutil.which(candidate) or candidate
    return None


def site_file(site: Path, base: str, url: str) -> Path | None:
    """The file of the site that the same-origin ``url`` names (None for other origins)."""
    if not url.startswith(base):
        return None
    path = unquote(urlsplit(url).path).lstrip("/")
    target = site / path
    return target / "index.html" if path == "" or path.endswith("/") else target


def expects_math(html: str) -> bool:
    """Whether a built page holds TeX for MathJax: Markdown math (arithmatex) or a notebook's markdown with $."""
    return 'class="arithmatex"' in html or ("jp-MarkdownCell" in html and "$" in html)


def check_page(
    context, site: Path, base: str, page: str, has_math: bool | None, screenshots: Path | None
) -> PageReport:
    """Load ``page`` and check its images, its mathematics (``has_math`` None: if it has any) and its links."""
    report = PageReport(page)
    if has_math is None:
        has_math = expects_math((site / page).read_text(encoding="utf-8", errors="replace"))
    browser_page = context.new_page()
    errors: list[str] = []
    browser_page.on("pageerror", lambda exc: errors.append(str(exc)[:120]))
    try:
        response = browser_page.goto(base + page, wait_until="load", timeout=PAGE_TIMEOUT_MS)
        if response is None or response.status != 200:
            report.problems.append(f"HTTP status {None if response is None else response.status}")
            return report
        seen = browser_page.evaluate(INSPECT)
        if screenshots is not None:
            out = screenshots / (page.replace("/", "__").removesuffix(".html") + ".png")
            browser_page.screenshot(path=str(out), full_page=True)
    finally:
        browser_page.close()
    broken_images = [img["src"][:100] for img in seen["images"] if not img["ok"]]
    if broken_images:
        report.problems.append(f"{len(broken_images)} image(s) did not load: {broken_images[:3]}")
    report.facts.append(f"{len(seen['images'])} images loaded" if not broken_images else "")
    if has_math:
        if not seen["mathjax"]:
            report.problems.append("MathJax is not on the page")
        if seen["formulas"] == 0:
            report.problems.append("no typeset formula found")
        if seen["errors"]:
            report.problems.append(f"MathJax errors: {seen['errors'][:3]}")
        if seen["rawDollars"] or seen["rawParens"] or seen["rawArithmatex"]:
            report.problems.append(
                f"raw TeX left in the text: {seen['rawDollars']} '$$', {seen['rawParens']} '\\(', "
                f"untypeset: {seen['rawArithmatex'][:3]}"
            )
        report.facts.append(f"{seen['formulas']} formulas typeset")
    missing = sorted({url for url in seen["links"] if (f := site_file(site, base, url)) is not None and not f.exists()})
    if missing:
        report.problems.append(f"{len(missing)} link(s) to missing pages: {missing[:3]}")
    report.facts.append(f"{len(seen['links'])} links")
    if errors:
        report.facts.append(f"script errors (reported, not failed): {errors[:2]}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site", type=Path, default=Path("site"), help="the built site (default: site/)")
    parser.add_argument("--mathjax", type=Path, default=DEFAULT_MATHJAX, help="a local MathJax 2.7 folder")
    parser.add_argument("--chromium", help="the Chromium executable (default: $CHROMIUM, then chromium on PATH)")
    parser.add_argument("--screenshots", type=Path, help="save a full-page screenshot of each page here")
    parser.add_argument("--all", action="store_true", help="check every HTML page, not only the default ones")
    parser.add_argument("pages", nargs="*", help="pages to check (paths inside the site), instead of the default")
    args = parser.parse_args(argv)

    site = args.site.resolve()
    if not (site / "index.html").is_file():
        print(f"check_site: {site} has no index.html; build the site first (mkdocs build --strict)", file=sys.stderr)
        return 2
    if not (args.mathjax / "MathJax.js").is_file():
        print(
            f"check_site: no MathJax.js in {args.mathjax}; apt-get install libjs-mathjax or pass --mathjax DIR",
            file=sys.stderr,
        )
        return 2
    chromium = find_chromium(args.chromium)
    if chromium is None:
        print("check_site: no Chromium found; apt-get install chromium or pass --chromium PATH", file=sys.stderr)
        return 2
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("check_site: the playwright package is missing (pip install -e '.[docs]')", file=sys.stderr)
        return 2

    if args.pages:
        pages = [(page, None) for page in args.pages]
    elif args.all:
        pages = [(p.relative_to(site).as_posix(), None) for p in sorted(site.rglob("*.html"))]
    else:
        pages = DEFAULT_PAGES
    if args.screenshots is not None:
        args.screenshots.mkdir(parents=True, exist_ok=True)
    mathjax_root = args.mathjax.resolve()
    refused: set[str] = set()

    def route(route_request) -> None:
        url = route_request.request.url
        if url.startswith(MATHJAX_CDN):
            local = (mathjax_root / unquote(urlsplit(url).path.split("/2.7.7/", 1)[1])).resolve()
            if local.is_file() and local.is_relative_to(mathjax_root):
                route_request.fulfill(path=str(local))
                return
        if url.startswith(base):
            route_request.continue_()
            return
        refused.add(urlsplit(url).netloc + urlsplit(url).path)
        route_request.abort()

    server, base = serve(site)
    failed = 0
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.route("**/*", route)
            for page, has_math in pages:
                if not (site / page).is_file():
                    print(f"FAIL {page}: not in the site")
                    failed += 1
                    continue
                report = check_page(context, site, base, page, has_math, args.screenshots)
                facts = "; ".join(f for f in report.facts if f)
                if report.problems:
                    failed += 1
                    print(f"FAIL {page}: {' | '.join(report.problems)} ({facts})")
                else:
                    print(f"ok   {page}: {facts}")
            browser.close()
    finally:
        server.shutdown()
    if refused:
        print(
            f"refused {len(refused)} outside request(s) (the published site loads them normally): {sorted(refused)[:5]}"
        )
    print(f"{len(pages) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
