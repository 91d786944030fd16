"""The package's layers: imports point one way, from the command line down to the core, and never in a cycle.

Every ``import`` and ``from ... import`` in ``minialex/`` is read with :mod:`ast` (the ones inside functions
too), so a lazy import that climbs the wrong way is caught as well. The layers are those of
``docs/architecture.md``::

    cli                              argument parsing and messages
    exercises                        tutorial graders
    training, distributed            the application: the loop, run directories, checkpoints, MPI
    models, optim, data              networks, optimisers, data sets and pipelines
    layers, reference                the layers with their backward passes, and their naive loop versions
    core                             backend, errors, validate, atomic, gradcheck, _engine

A module may import its own part and any part of a lower layer, nothing above. ``training`` may use
``distributed``'s communicators, ``distributed`` nothing of ``training``.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "minialex"
CORE = {"backend", "errors", "validate", "atomic", "gradcheck", "_engine", "__init__"}
LEVEL = {
    "core": 0,
    "layers": 1,
    "reference": 1,
    "models": 2,
    "optim": 2,
    "data": 2,
    "distributed": 3,
    "training": 4,
    "exercises": 5,
    "cli": 6,
    "__main__": 7,
}


def part_of(module: str) -> str:
    """``"minialex.layers.conv"`` -> ``"layers"``; the core modules -> ``"core"``."""
    parts = module.split(".")
    head = parts[1] if len(parts) > 1 else "__init__"
    return "core" if head in CORE else head


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """The ``minialex`` modules that ``path`` imports (absolute and relative, anywhere in the file)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    return imports_of_source(path.read_text(encoding="utf-8"), package)


def imports_of_source(source: str, package: str) -> set[str]:
    """The ``minialex`` modules imported by ``source``, a module of ``package`` (for relative imports)."""
    tree = ast.parse(source)
    found: set[str] = set()
    for node in ast.walk(tree):
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


def _is_module(dotted: str) -> bool:
    path = PACKAGE.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or path.is_dir()


def upward_imports(name: str, targets: set[str]) -> list[str]:
    """The imports of module ``name`` that reach a part at its own level or above (other than its own part)."""
    here = part_of(name)
    return sorted(t for t in targets if t != "minialex" and part_of(t) != here and LEVEL[part_of(t)] >= LEVEL[here])


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {name: imports_of(path) - {name} for name, path in MODULES.items()}


def test_every_part_has_a_level():
    unknown = sorted({part_of(name) for name in MODULES} - set(LEVEL))
    assert not unknown, f"parts of minialex with no place in the architecture: {unknown}; add them to LEVEL and docs"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down(name):
    upward = upward_imports(name, GRAPH[name])
    assert not upward, f"{name} ({part_of(name)}) imports {upward}, which are not below it"


def test_no_import_cycles():
    edges = defaultdict(set)
    for name, targets in GRAPH.items():
        for target in targets:
            owner = target if target in MODULES else target.rpartition(".")[0]
            if owner in MODULES and owner != name and owner != "minialex":
                edges[name].add(owner)
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(MODULES):
        if node not in state:
            visit(node)


def test_the_checker_sees_a_wrong_way_import(tmp_path):
    """The rule can fail: a lazy import of the trainer inside a layer is found and flagged; a sibling is not."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import numpy\nfrom minialex.layers.base import Layer\n\ndef f():\n    from minialex.training import Trainer\n"
    )
    found = imports_of_source(bad.read_text(), package="minialex.layers")
    assert found == {"minialex.layers.base", "minialex.training"}
    assert upward_imports("minialex.layers.bad", found) == ["minialex.training"]
    assert upward_imports("minialex.training.loop", {"minialex.layers.base", "minialex.distributed"}) == []
    assert upward_imports("minialex.distributed.data", {"minialex.training"}) == ["minialex.training"]
