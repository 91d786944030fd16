"""The website: its link rewriting, its generated API pages and navigation, the docstring conversion, and the
headless-browser check (which must pass a good page and fail a broken one).

The pure logic (``docs/sitelib.py``) needs neither MkDocs nor a browser and always runs. The browser test needs
playwright, a Chromium and a local MathJax (``.ci/site`` installs them) and is skipped, saying which is missing,
without them; the full strict build needs the ``docs`` extra and is marked slow.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
REPO_URL = "https://github.com/minialex/minialex"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"minialex_docs_{name}", DOCS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


sitelib = _load("sitelib")
check_site = _load("check_site")


def _nav_paths() -> list[str]:
    """Every page path listed under ``nav:`` in mkdocs.yml (read as text: no YAML parser needed)."""
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = text.split("\nnav:\n", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^\s*- (?:[^:\n]+: )?([\w./-]+\.(?:md|ipynb))\s*$", nav, flags=re.M)


# -- links -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "page_repo", "page_site", "expected"),
    [
        # the README is the landing page: its picture lives in docs/images, its links to READMEs are pages
        ("docs/images/curves.png", "README.md", "index.md", "images/curves.png"),
        ("tutorials/README.md", "README.md", "index.md", "tutorials/README.md"),
        ("docs/robustness.md#signals", "README.md", "index.md", "robustness.md#signals"),
        # a tutorial page links to a notebook beside it, and to a source file that is not a page
        ("01_chain_rule.ipynb", "tutorials/README.md", "tutorials/README.md", "01_chain_rule.ipynb"),
        ("build.py", "tutorials/README.md", "tutorials/README.md", f"{REPO_URL}/blob/main/tutorials/build.py"),
        ("solutions/", "tutorials/README.md", "tutorials/README.md", f"{REPO_URL}/tree/main/tutorials/solutions"),
        ("../minialex/layers", "tutorials/README.md", "tutorials/README.md", f"{REPO_URL}/tree/main/minialex/layers"),
        # a page under docs/ reaching the benchmarks' README
        ("../benchmarks/README.md", "docs/robustness.md", "robustness.md", "benchmarks/README.md"),
        # left alone: addresses, anchors, and what does not exist (the strict build reports it)
        ("https://example.org/x", "README.md", "index.md", "https://example.org/x"),
        ("#quick-start", "README.md", "index.md", "#quick-start"),
        ("minialex/no_such_file.py", "README.md", "index.md", "minialex/no_such_file.py"),
        ("../../outside.md", "tutorials/README.md", "tutorials/README.md", "../../outside.md"),
    ],
)
def test_links_written_for_github_resolve_on_the_site(target, page_repo, page_site, expected):
    external = sitelib.external_files()
    assert sitelib.rewrite_link(target, page_repo, page_site, external, REPO_URL) == expected


def test_external_pages_are_the_readmes_notebooks_and_benchmark_results():
    external = sitelib.external_files()
    assert external["README.md"] == "index.md"
    notebooks = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "tutorials").glob("[0-9][0-9]_*.ipynb"))
    assert notebooks and all(external[nb] == nb for nb in notebooks)
    assert "benchmarks/README.md" in external
    assert not [path for path in external if path.startswith(("tutorials/source", "tutorials/solutions"))]


# -- navigation and the API reference -----------------------------------------------------------------------


def test_every_page_of_the_site_is_in_the_nav_and_every_nav_entry_exists():
    nav = _nav_paths()
    assert len(nav) == len(set(nav)), "a page is listed twice in the nav of mkdocs.yml"
    pages = {site for site in sitelib.external_files().values() if site.endswith((".md", ".ipynb"))}
    pages |= set(sitelib.api_pages())
    pages |= {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    missing = sorted(pages - set(nav))
    assert not missing, f"pages not in the nav of mkdocs.yml (add one line each): {missing}"
    assert not sorted(set(nav) - pages), "the nav of mkdocs.yml lists pages that do not exist"


def test_the_api_reference_lists_every_public_module_once():
    pages = sitelib.api_pages()
    documented = re.findall(r"^::: (\S+)$", "".join(pages.values()), flags=re.M)
    modules = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in (ROOT / "minialex").rglob("*.py")
    }
    public = {m for m in modules if not any(part.startswith("_") for part in m.split("."))}
    public = {m for m in public if m != "minialex" and m.split(".")[:2] != ["minialex", "cli"]}  # the command
    assert sorted(public - set(documented)) == [], "public modules missing from the API reference"
    assert len(documented) == len(set(documented)), "a module is documented twice"
    assert "minialex.exercises._grading" not in documented and "minialex._engine.parallel" not in documented
    assert "[Layers](layers.md)" in pages["api/index.md"]


def test_docstrings_become_markdown():
    text = """See :func:`minialex.seed` and :class:`~minialex.layers.Conv2d`.

Shapes::

    y = a*b
as a (C_out, N*OH*OW) matrix
the product ``a*b`` in code"""
    out = sitelib.to_markdown(text)
    assert "`minialex.seed`" in out and "`minialex.layers.Conv2d`" in out and ":func:" not in out
    assert "Shapes:\n" in out and "::" not in out
    assert "    y = a*b" in out  # inside the code block: untouched
    assert r"(C_out, N\*OH\*OW)" in out  # not emphasis
    assert "``a*b``" in out  # inline code: untouched


# -- the browser check -------------------------------------------------------------------------------------


def _browser_or_skip() -> str:
    pytest.importorskip("playwright.sync_api", reason="the docs extra (playwright) is not installed")
    chromium = check_site.find_chromium(None)
    if chromium is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium)")
    if not (check_site.DEFAULT_MATHJAX / "MathJax.js").is_file():
        pytest.skip(f"no local MathJax in {check_site.DEFAULT_MATHJAX} (apt-get install libjs-mathjax)")
    return chromium


PNG_1X1 = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
MATHJAX_TAG = f'<script src="{check_site.MATHJAX_CDN}MathJax.js?config=TeX-AMS_CHTML-full,Safe"></script>'
CONFIG_TAG = (
    '<script type="text/x-mathjax-config">MathJax.Hub.Config({tex2jax: {inlineMath: [["$","$"]], '
    'displayMath: [["$$","$$"]]}, messageStyle: "none"});</script>'
)


def _page(body: str, mathjax: bool = True) -> str:
    head = (CONFIG_TAG + MATHJAX_TAG) if mathjax else ""
    return f"<html><head>{head}</head><body><div class='jp-MarkdownCell'>{body}</div></body></html>"


def test_browser_check_passes_a_good_page_and_fails_broken_ones(tmp_path, capsys):
    chromium = _browser_or_skip()
    (tmp_path / "index.html").write_text(
        _page(f"<p>$$\\frac{{\\partial L}}{{\\partial x}}$$ and $a^2$</p><img src='{PNG_1X1}'><a href='b.html'>b</a>"),
        encoding="utf-8",
    )
    (tmp_path / "b.html").write_text(_page("<p>$x$</p>"), encoding="utf-8")
    (tmp_path / "broken_image.html").write_text(_page("<p>$x$</p><img src='missing.png'>"), encoding="utf-8")
    (tmp_path / "no_mathjax.html").write_text(_page("<p>$$x^2$$ stays raw</p>", mathjax=False), encoding="utf-8")
    (tmp_path / "bad_tex.html").write_text(_page("<p>$$\\frac{1}{$$</p>"), encoding="utf-8")
    (tmp_path / "dead_link.html").write_text(_page("<p>$x$</p><a href='nowhere.html'>x</a>"), encoding="utf-8")
    args = ["--site", str(tmp_path), "--chromium", chromium]

    assert check_site.main([*args, "index.html", "b.html"]) == 0
    assert "2 passed, 0 failed" in capsys.readouterr().out
    broken = {
        "broken_image.html": "image(s) did not load",
        "no_mathjax.html": "MathJax is not on the page",
        "bad_tex.html": "MathJax errors",
        "dead_link.html": "link(s) to missing pages",
    }
    assert check_site.main([*args, *broken]) == 1
    verdicts = {
        line.split()[1].rstrip(":"): line
        for line in capsys.readouterr().out.splitlines()
        if line[:4] in ("ok  ", "FAIL")
    }
    for page, phrase in broken.items():
        assert verdicts[page].startswith("FAIL") and phrase in verdicts[page], verdicts[page]


def test_browser_check_refuses_to_run_without_a_built_site(tmp_path, capsys):
    assert check_site.main(["--site", str(tmp_path)]) == 2
    assert "build the site first" in capsys.readouterr().err


def test_pages_with_math_are_recognised():
    assert check_site.expects_math('<span class="arithmatex">\\(x\\)</span>')
    assert check_site.expects_math('<div class="jp-MarkdownCell">$x$</div>')
    assert not check_site.expects_math("<p>no math, $5 only in prose</p>")


# -- the whole build ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra (mkdocs) is not installed")
    pytest.importorskip("mkdocs_jupyter", reason="the docs extra (mkdocs-jupyter) is not installed")
    if shutil.which("mkdocs") is None and not (Path(sys.executable).parent / "mkdocs").exists():
        pytest.skip("the mkdocs command is not installed")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for page in ("index.html", "tutorials/01_chain_rule.html", "api/layers.html", "benchmarks/index.html"):
        assert (tmp_path / "site" / page).is_file(), page
    layers = (tmp_path / "site" / "api" / "layers.html").read_text(encoding="utf-8")
    assert "minialex.layers.conv" in layers and "col2im" in layers
