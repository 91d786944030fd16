"""The package's architecture, read from the code: its parts, their levels, the imports between them, a picture.

``python docs/architecture.py`` redraws ``docs/images/architecture.png`` from the imports that the code makes
today (every ``import`` and ``from ... import`` in ``minialex/``, the ones inside functions too), so the
picture cannot drift from the code. ``tests/test_architecture.py`` checks the rules with the same functions:
every import points to a lower level (or stays inside its part) and no module imports itself in a cycle.
"""

from __future__ import annotations

import ast
import sys
from collections import Counter
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "minialex"
CORE = {"backend", "errors", "validate", "atomic", "gradcheck", "_engine", "__init__"}
LEVELS: list[tuple[str, ...]] = [
    ("core",),
    ("layers", "reference"),
    ("models", "optim", "data"),
    ("distributed",),
    ("training",),
    ("exercises",),
    ("cli",),
    ("__main__",),
]
"""From the bottom up; a part may import its own modules and those of any lower level."""
LEVEL = {part: level for level, parts in enumerate(LEVELS) for part in parts}
ROLE = {
    "core": "NumPy/CuPy, errors, validation,\natomic writes, gradient checks, engine",
    "layers": "forward + hand-written backward",
    "reference": "naive loop versions",
    "models": "AlexNet variants",
    "optim": "SGD, Adam, schedules",
    "data": "data sets, photos, pipeline",
    "distributed": "two columns, data parallel (MPI)",
    "training": "the loop and its collaborators",
    "exercises": "tutorial graders",
    "cli": "arguments and messages",
}


def part_of(module: str) -> str:
    """``"minialex.layers.conv"`` -> ``"layers"``; the core modules (and the package itself) -> ``"core"``."""
    parts = module.split(".")
    head = parts[1] if len(parts) > 1 else "__init__"
    return "core" if head in CORE else head


def module_name(path: Path) -> str:
    """``minialex/layers/conv.py`` -> ``"minialex.layers.conv"``; a package's ``__init__.py`` -> the package."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _is_module(dotted: str) -> bool:
    path = PACKAGE.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or path.is_dir()


def imports_of_source(source: str, package: str) -> set[str]:
    """The ``minialex`` modules imported by ``source``, a module of ``package`` (for relative imports)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "minialex")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.split(".")[0] != "minialex":
                continue
            # ``from minialex.data import cifar`` imports the submodule minialex.data.cifar; a name that is not a
            # submodule (``from minialex.data import Dataset``) comes from the package itself.
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                found.add(submodule if _is_module(submodule) else target)
    return found


def imports_of(path: Path) -> set[str]:
    """The ``minialex`` modules that the file ``path`` imports."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    return imports_of_source(path.read_text(encoding="utf-8"), package) - {name}


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def upward_imports(name: str, targets: set[str]) -> list[str]:
    """The imports of module ``name`` that reach a part at its own level or above (other than its own part)."""
    here = part_of(name)
    return sorted(t for t in targets if t != "minialex" and part_of(t) != here and LEVEL[part_of(t)] >= LEVEL[here])


def part_edges() -> Counter[tuple[str, str]]:
    """How many modules of part a import part b, for every pair of different parts."""
    edges: Counter[tuple[str, str]] = Counter()
    for name, path in modules().items():
        for target in {part_of(t) for t in imports_of(path) if t != "minialex"} - {part_of(name)}:
            edges[(part_of(name), target)] += 1
    return edges


def draw(out: Path) -> None:
    """Draw the parts as boxes on their levels and the imports between parts as arrows (width ~ modules)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    counts = Counter(part_of(name) for name in modules())
    shown = [level for level in LEVELS if level != ("__main__",)]
    fig = Figure(figsize=(10, 7.5), dpi=110)
    ax = fig.add_subplot()
    ax.set_xlim(0, 10)
    ax.set_ylim(-0.3, len(shown) * 1.25)
    ax.axis("off")
    centre: dict[str, tuple[float, float]] = {}
    spans: dict[str, tuple[float, float]] = {}
    for row, parts in enumerate(shown):
        y = row * 1.25 + 0.2
        width = 8.6 / len(parts) - 0.4
        for i, part in enumerate(parts):
            x = 0.7 + i * (width + 0.4)
            ax.add_patch(FancyBboxPatch((x, y), width, 0.8, boxstyle="round,pad=0.02", fc="#e8eef8", ec="#3b5b92"))
            label = f"{part}/" if part not in ("core", "cli") else part
            noun = "module" if counts[part] == 1 else "modules"
            ax.text(
                x + width / 2, y + 0.55, f"{label}  ({counts[part]} {noun})", ha="center", fontsize=10, weight="bold"
            )
            ax.text(x + width / 2, y + 0.2, ROLE.get(part, ""), ha="center", fontsize=7.5, color="#333")
            centre[part] = (x + width / 2, y + 0.4)
            spans[part] = (x, x + width)
    for (a, b), n in sorted(part_edges().items()):
        if a not in centre or b not in centre:
            continue
        (x0, y0), (x1, y1) = centre[a], centre[b]
        low, high = spans[a]
        x0 = min(max(x1, low + 0.2), high - 0.2)  # leave a wide box above its target, not from its middle
        ax.add_patch(
            FancyArrowPatch(
                (x0, y0 - 0.4),
                (x1, y1 + 0.4),
                arrowstyle="-|>",
                mutation_scale=9,
                lw=0.4 + 0.25 * n,
                color="#8a9bb8",
                alpha=0.7,
                connectionstyle="arc3,rad=0.08",
            )
        )
    ax.set_title("minialex: every import points down (arrows: imports between parts, width ~ modules)", fontsize=10)
    fig.savefig(out, bbox_inches="tight")


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "images" / "architecture.png"
    draw(target)
    print(f"wrote {target}")
