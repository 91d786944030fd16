"""The site's logic, free of MkDocs and griffe so that the test suite can check it without them.

* :func:`external_files`, :func:`site_path`, :func:`rewrite_link`: which repository files are pages of the site,
  and how a link written for GitHub must read on the site;
* :func:`api_pages`: the API reference, one generated page per package of ``minialex``;
* :func:`to_markdown`: the docstrings' few reStructuredText habits, as Markdown.

``docs/hooks.py`` (MkDocs) and ``docs/griffe_rest.py`` (griffe) call these.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# repository files that are pages of the site, outside docs/ (globs, relative to the repository root)
EXTERNAL_PAGES = [
    "README.md",
    "tutorials/README.md",
    "tutorials/[0-9][0-9]_*.ipynb",
    "benchmarks/README.md",
    "benchmarks/results/*.md",
    "benchmarks/results/*.png",
]
API_TITLES = {
    "core": "Core",
    "layers": "Layers",
    "models": "Models",
    "optim": "Optimisers",
    "data": "Data",
    "training": "Training",
    "exercises": "Exercise graders",
}
NOT_IN_API = {"cli", "__main__"}  # the command line is documented by `minialex --help`, not as an API

ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|attr|data|obj|exc|const|term|ref|doc):`~?([^`]+)`")
LITERAL_INTRO = re.compile(r"(?m)(\S)::$")
BARE_LITERAL_INTRO = re.compile(r"(?m)^(\s*)::$")
INTRAWORD_STAR = re.compile(r"(?<=\w)\*(?=\w)")


def external_files(root: Path = ROOT) -> dict[str, str]:
    """Repository path -> site path of every page outside ``docs/`` (the README becomes ``index.md``)."""
    found = {}
    for pattern in EXTERNAL_PAGES:
        for path in sorted(root.glob(pattern)):
            repo_path = path.relative_to(root).as_posix()
            found[repo_path] = "index.md" if repo_path == "README.md" else repo_path
    return found


def site_path(repo_path: str, external: dict[str, str], root: Path = ROOT) -> str | None:
    """Where the repository file ``repo_path`` is in the site, or None when it is not part of it."""
    if repo_path in external:
        return external[repo_path]
    if repo_path.startswith("docs/") and (root / repo_path).is_file():
        return repo_path[len("docs/") :]
    return None


def rewrite_link(
    target: str,
    page_repo_path: str,
    page_site_path: str,
    external: dict[str, str],
    repo_url: str,
    root: Path = ROOT,
) -> str:
    """The link ``target``, written in the file ``page_repo_path`` for GitHub, as it must read on the site page
    ``page_site_path``: a page of the site by its relative path, another repository file or folder as an address
    in the repository, anything else unchanged (so that the strict build reports it)."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith(("#", "/")):
        return target  # an address, an anchor on the same page or an absolute path: unchanged
    path, _, fragment = target.partition("#")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(page_repo_path), path))
    if resolved.startswith(".."):
        return target  # outside the repository
    anchor = f"#{fragment}" if fragment else ""
    in_site = site_path(resolved, external, root)
    if in_site is not None:
        return posixpath.relpath(in_site, posixpath.dirname(page_site_path) or ".") + anchor
    if (root / resolved).is_dir():
        return f"{repo_url.rstrip('/')}/tree/main/{resolved}"
    if (root / resolved).is_file():
        return f"{repo_url.rstrip('/')}/blob/main/{resolved}{anchor}"
    return target


def public_modules(package: Path, root: Path = ROOT) -> list[str]:
    """Dotted names of the public modules below the package folder ``package`` (its own ``__init__`` excluded)."""
    names = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            if path.parent == package:
                continue
            parts = parts[:-1]
        if any(part.startswith("_") for part in parts):
            continue
        names.append(".".join(parts))
    return names


def api_pages(root: Path = ROOT) -> dict[str, str]:
    """Site path -> Markdown of the API reference: an index, the core modules, one page per package."""
    package_root = root / "minialex"
    core = [f"minialex.{p.stem}" for p in sorted(package_root.glob("*.py")) if not p.stem.startswith("_")]
    core = [name for name in core if name.split(".")[-1] not in NOT_IN_API]
    packages = sorted(
        p
        for p in package_root.iterdir()
        if (p / "__init__.py").is_file() and not p.name.startswith("_") and p.name not in NOT_IN_API
    )
    pages = {"api/core.md": "# Core\n\n" + "".join(f"::: {name}\n\n" for name in core)}
    rows = ["| [Core](core.md) | " + ", ".join(f"`{name.split('.', 1)[1]}`" for name in core) + " |"]
    for package in packages:
        title = API_TITLES.get(package.name, package.name.capitalize())
        modules = public_modules(package, root)
        body = f"# {title}\n\n::: minialex.{package.name}\n    options:\n      members: false\n\n"
        pages[f"api/{package.name}.md"] = body + "".join(f"::: {name}\n\n" for name in modules)
        listed = ", ".join(f"`{name.split('.', 1)[1]}`" for name in modules)
        rows.append(f"| [{title}]({package.name}.md) | {listed} |")
    pages["api/index.md"] = (
        "# API reference\n\nGenerated from the docstrings: each module gives its shapes, the forward formula and, "
        "for a layer, the derivation of its backward pass. A package imports only those listed above it, the core "
        "at the top.\n\n| page | modules |\n|---|---|\n" + "\n".join(rows) + "\n"
    )
    return pages


def to_markdown(text: str) -> str:
    """A docstring with reST roles as inline code, literal-block introductions (``::``) as a colon, and a ``*``
    between two word characters escaped outside code (``N*OH*OW`` is not emphasis)."""
    text = ROLE.sub(lambda m: f"`{m.group(1)}`", text)
    text = BARE_LITERAL_INTRO.sub(r"\1", text)
    text = LITERAL_INTRO.sub(r"\1:", text)
    lines = []
    for line in text.split("\n"):
        code = line.startswith("    ") or "`" in line  # an indented code block, or a line with inline code
        lines.append(line if code else INTRAWORD_STAR.sub(r"\*", line))
    return "\n".join(lines)
