"""Every test that docs/robustness.md names exists (a renamed test must not leave a row pointing at nothing)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_test_named_in_the_robustness_page_exists():
    cited: list[tuple[str, str]] = []
    for line in (ROOT / "docs" / "robustness.md").read_text().splitlines():
        current = None
        for match in re.finditer(r"`(test_\w+\.py)(?:::(test_\w+))?`|`::(test_\w+)`", line):
            file, name, continued = match.groups()
            if file:
                current = file
            if (name or continued) and current:
                cited.append((current, name or continued))
    assert len(cited) > 40
    missing = []
    for file, name in cited:
        path = ROOT / "tests" / file
        tree = ast.parse(path.read_text()) if path.exists() else ast.Module(body=[], type_ignores=[])
        names = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
        if name not in names:
            missing.append(f"{file}::{name}")
    assert missing == []
