"""Build the tutorial notebooks from their readable sources, and execute them.

Each notebook ``tutorials/NN_name.ipynb`` is generated from ``tutorials/source/NN_name.py``, a Python file in
the "percent" format that Jupytext and VS Code also understand::

    # %% [markdown]
    # # A heading
    # Text with $\\LaTeX$ math, one comment line per markdown line.

    # %%
    code = "a code cell"

    # %% [exercise]
    def relu_backward(x, dy):          # a cell the learner edits (tagged "exercise")
        raise NotImplementedError

    # %% [check]
    exercises.check_relu_backward(relu_backward)   # the cell that grades it (tagged "check")

Why sources: a notebook's JSON makes every prose edit an unreadable diff; the ``.py`` source reviews like any
other code, and ``tests/test_tutorials.py`` fails when a committed notebook and its source drift apart.

Usage (from the repository root)::

    python tutorials/build.py                 # regenerate every notebook and execute it (outputs kept)
    python tutorials/build.py 03 04           # only the notebooks whose names start with 03 or 04
    python tutorials/build.py --no-execute    # cells only, no outputs
    python tutorials/build.py --prose-only 06 # after editing markdown only: keep the committed outputs

Executed notebooks are normalised so that re-running them changes as little as possible: no execution
counts, no timing metadata, no kernel or Python version, cell ids derived from the cell's content.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
SOURCE_DIR = HERE / "source"
CELL_MARK = "# %%"
KINDS = {"": "code", "[markdown]": "markdown", "[exercise]": "exercise", "[check]": "check"}


def source_files() -> list[Path]:
    """The notebook sources, in tutorial order."""
    return sorted(SOURCE_DIR.glob("[0-9][0-9]_*.py"))


def notebook_path(source: Path) -> Path:
    """``tutorials/source/NN_name.py`` -> ``tutorials/NN_name.ipynb``."""
    return HERE / (source.stem + ".ipynb")


def _markdown_text(lines: list[str]) -> str:
    out = []
    for line in lines:
        if line.startswith("# "):
            out.append(line[2:])
        elif line.rstrip() == "#":
            out.append("")
        else:
            raise ValueError(f"markdown lines must start with '# ' or be a lone '#': {line!r}")
    return "\n".join(out)


def parse_source(path: Path) -> nbformat.NotebookNode:
    """Read a percent-format source into an (unexecuted) notebook."""
    cells: list[tuple[str, list[str]]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith(CELL_MARK):
            header = line[len(CELL_MARK) :].strip()
            if header not in KINDS:
                raise ValueError(f"{path.name}: unknown cell header {line!r}; expected one of {sorted(KINDS)}")
            cells.append((KINDS[header], []))
        elif cells:
            cells[-1][1].append(line)
        # lines before the first cell marker (the file's own docstring) are not part of the notebook

    nb = nbformat.v4.new_notebook()
    seen: dict[str, int] = {}
    for kind, lines in cells:
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        if kind == "markdown":
            cell = nbformat.v4.new_markdown_cell(_markdown_text(lines))
        else:
            cell = nbformat.v4.new_code_cell("\n".join(lines))
            if kind in ("exercise", "check"):
                cell.metadata["tags"] = [kind]
        digest = hashlib.sha1(f"{cell.cell_type}\n{cell.source}".encode()).hexdigest()[:8]
        seen[digest] = seen.get(digest, 0) + 1
        cell.id = digest if seen[digest] == 1 else f"{digest}-{seen[digest]}"
        nb.cells.append(cell)
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
        "language_info": {"name": "python"},
    }
    return nb


def kernel_manager(workdir: Path):
    """A kernel manager whose ``python3`` kernel is *this* interpreter (the venv running the build or the tests),
    whatever kernelspecs the user has installed elsewhere."""
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    kernels = workdir / "kernels"
    write_kernel_spec(kernels / "python3")
    return KernelManager(kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))


def execute(nb: nbformat.NotebookNode, cwd: Path, timeout: int = 120) -> nbformat.NotebookNode:
    """Run every cell top to bottom in a fresh kernel (raises ``nbclient.exceptions.CellExecutionError``)."""
    from nbclient import NotebookClient

    with tempfile.TemporaryDirectory() as tmp:
        km = kernel_manager(Path(tmp))
        client = NotebookClient(
            nb, km=km, timeout=timeout, resources={"metadata": {"path": str(cwd)}}, record_timing=False
        )
        try:
            # nbclient leaves a kernel it did not create running unless told to clean it up
            client.execute(cleanup_kc=True)
        finally:
            if km.has_kernel:
                km.shutdown_kernel(now=True)
    return nb


def normalise(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop what changes from run to run without teaching anything: counts, timings, versions."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.execution_count = None
        cell.metadata.pop("execution", None)
        for output in cell.outputs:
            if "execution_count" in output:
                output.execution_count = None
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
        "language_info": {"name": "python"},
    }
    return nb


def reuse_outputs(nb: nbformat.NotebookNode, path: Path) -> nbformat.NotebookNode:
    """Copy the outputs of the committed notebook at ``path`` into ``nb``, provided that every code cell is
    unchanged (same sources in the same order): then only prose changed, and the outputs are still valid."""
    old = nbformat.read(path, as_version=4)
    old_code = [c for c in old.cells if c.cell_type == "code"]
    new_code = [c for c in nb.cells if c.cell_type == "code"]
    if [c.source for c in old_code] != [c.source for c in new_code]:
        raise SystemExit(f"{path.name}: code cells changed since the last build; run without --prose-only")
    for new, previous in zip(new_code, old_code, strict=True):
        new.outputs = previous.outputs
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("only", nargs="*", help="build only notebooks whose names start with these prefixes")
    parser.add_argument("--no-execute", action="store_true", help="write the cells without running them")
    parser.add_argument(
        "--prose-only", action="store_true", help="only markdown changed: keep the committed notebook's outputs"
    )
    args = parser.parse_args(argv)
    # Figures are captured as PNG outputs by the kernel's inline backend, which an inherited Agg would disable.
    os.environ.pop("MPLBACKEND", None)
    os.environ["MINIALEX_BACKEND"] = "numpy"
    os.environ.setdefault("TQDM_DISABLE", "1")
    for source in source_files():
        if args.only and not any(source.stem.startswith(prefix) for prefix in args.only):
            continue
        nb = parse_source(source)
        start = time.perf_counter()
        if args.prose_only:
            reuse_outputs(nb, notebook_path(source))
        elif not args.no_execute:
            execute(nb, cwd=HERE)
        nbformat.validate(nb)
        nbformat.write(normalise(nb), notebook_path(source))
        print(f"{notebook_path(source).name}: {len(nb.cells)} cells, {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
