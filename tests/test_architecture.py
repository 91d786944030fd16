"""The package's layers: imports point one way, from the command line down to the core, and never in a cycle.

The rules and the import reader live in ``docs/architecture.py`` (which also draws the picture in
``docs/architecture.md`` from the same data): every ``import`` and ``from ... import`` in ``minialex/`` is read
with :mod:`ast`, the ones inside functions too, so a lazy import that climbs the wrong way is caught as well.
"""

from __future__ import annotations

import importlib.util
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_architecture():
    spec = importlib.util.spec_from_file_location("minialex_docs_architecture", ROOT / "docs" / "architecture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


arch = _load_architecture()
MODULES = arch.modules()
GRAPH = {name: arch.imports_of(path) for name, path in MODULES.items()}


def test_every_part_has_a_level():
    unknown = sorted({arch.part_of(name) for name in MODULES} - set(arch.LEVEL))
    assert not unknown, (
        f"parts of minialex with no place in the architecture: {unknown}; add them to docs/architecture.py"
    )


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down(name):
    upward = arch.upward_imports(name, GRAPH[name])
    assert not upward, f"{name} ({arch.part_of(name)}) imports {upward}, which are not below it"


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles():
    edges: dict[str, set[str]] = defaultdict(set)
    for name, targets in GRAPH.items():
        for target in targets:
            owner = target if target in MODULES else target.rpartition(".")[0]
            if owner in MODULES and owner not in (name, "minialex"):
                edges[name].add(owner)
    cycle = _cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_checks_can_fail():
    """A lazy import of the trainer inside a layer is found and flagged, a sibling import is not; a cycle is found."""
    source = (
        "import numpy\nfrom minialex.layers.base import Layer\n\ndef f():\n    from minialex.training import Trainer\n"
    )
    found = arch.imports_of_source(source, package="minialex.layers")
    assert found == {"minialex.layers.base", "minialex.training"}
    assert arch.upward_imports("minialex.layers.bad", found) == ["minialex.training"]
    assert arch.upward_imports("minialex.training.loop", {"minialex.layers.base", "minialex.distributed"}) == []
    assert arch.upward_imports("minialex.distributed.comm", {"minialex.training"}) == ["minialex.training"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}}) is None
