"""MkDocs hooks: the repository's own pages join the site where they live, and links keep working.

The site is built from ``docs/`` plus pages that live elsewhere in the repository and are not copied: the README
(the landing page), the tutorials' README and executed notebooks, the benchmarks' README and recorded results
(with their charts), and the API reference, one generated page per package of ``minialex`` listing every public
module in it, so that a new module appears by itself (a new package or notebook needs its one line in the ``nav``
of ``mkdocs.yml``, or the strict build says so). The logic lives in ``docs/sitelib.py``.
"""

from __future__ import annotations

import posixpath
import re
import sys
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sitelib

LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)((?:\s+\"[^\"]*\")?\))")
NOTEBOOK_HREF = re.compile(r'href="([^"#:]+)\.ipynb(#[^"]*)?"')


def _repo_path(file: File) -> str:
    """The path in the repository of a site file (for a generated API page: where it would be under docs/)."""
    if file.abs_src_path is None:
        return f"docs/{file.src_uri}"
    return Path(file.abs_src_path).resolve().relative_to(sitelib.ROOT).as_posix()


@event_priority(100)  # before mkdocs-jupyter turns the notebooks into pages
def on_files(files: Files, config) -> Files:
    for repo_path, path in sitelib.external_files().items():
        if path == repo_path:
            files.append(File(repo_path, str(sitelib.ROOT), config["site_dir"], config["use_directory_urls"]))
        elif files.get_file_from_path(path) is None:  # a docs/index.md would win over the README
            files.append(File.generated(config, path, abs_src_path=str(sitelib.ROOT / repo_path)))
    for path, content in sitelib.api_pages().items():
        files.append(File.generated(config, path, content=content))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Links resolved against the file's place in the repository; a results page shows its charts."""
    external = sitelib.external_files()
    page_repo_path = _repo_path(page.file)
    repo_url = config["repo_url"] or ""

    def replace(match: re.Match) -> str:
        target = sitelib.rewrite_link(match.group(2), page_repo_path, page.file.src_uri, external, repo_url)
        return f"{match.group(1)}{target}{match.group(3)}"

    markdown = LINK.sub(replace, markdown)
    if page_repo_path.startswith("benchmarks/results/") and page_repo_path.endswith(".md"):
        stem = Path(page_repo_path).stem
        charts = sorted(p.name for p in (sitelib.ROOT / "benchmarks" / "results").glob(f"{stem}-*.png"))
        if charts:
            markdown += "\n\n## Charts\n\n" + "\n\n".join(f"![{name}]({name})" for name in charts) + "\n"
    return markdown


def on_page_content(html: str, page, config, files) -> str:
    """In a notebook page, a link to another notebook goes to that notebook's page, not to its download."""
    if not page.file.src_uri.endswith(".ipynb"):
        return html
    here = posixpath.dirname(page.file.src_uri)

    def replace(match: re.Match) -> str:
        linked = files.get_file_from_path(posixpath.normpath(posixpath.join(here, match.group(1) + ".ipynb")))
        if linked is None:
            return match.group(0)
        return f'href="{posixpath.relpath(linked.dest_uri, here or ".")}{match.group(2) or ""}"'

    return NOTEBOOK_HREF.sub(replace, html)
