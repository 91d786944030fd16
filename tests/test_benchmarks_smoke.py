"""The benchmark harness runs end to end on a tiny configuration (no timing is asserted, only that it works).

It keeps ``benchmarks/`` from rotting as the library changes: the per-layer pass, the training step, the
PyTorch mirror with identical weights, the memory probe and the report writers are all exercised.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

# benchmarks/ is a folder of the repository, not part of the installed package: import it from there.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import bench


def test_tiny_run_writes_markdown_json_and_charts(tmp_path, capsys):
    from benchmarks import run

    assert run.main(["--tiny", "--no-memory", "--no-torch", "--out", str(tmp_path), "--name", "smoke"]) == 0
    md = (tmp_path / "smoke-tiny.md").read_text(encoding="utf-8")
    assert "## Per layer: mini, batch 4" in md and "| conv1 |" in md and "GEMM rate" in md
    data = json.loads((tmp_path / "smoke-tiny.json").read_text(encoding="utf-8"))
    assert data["steps"][0]["variant"] == "mini" and data["steps"][0]["median_s"]["minialex"] > 0
    assert (tmp_path / "smoke-tiny-layers.png").stat().st_size > 0
    assert (tmp_path / "smoke-tiny-steps.png").stat().st_size > 0
    assert "BLAS" in capsys.readouterr().out


def test_memory_probe_reports_a_peak():
    from benchmarks import memory

    out = memory.measure("minialex", "mini", 2, steps=1, threads=1)
    assert out["peak_mb"] >= out["rss_ready_mb"] > 0


def test_torch_mirror_has_identical_weights_and_outputs(torch):
    model = bench.make_minialex("mini")
    model.eval()
    tmodel = bench.torch_mirror(model, torch).eval()
    x, _ = bench.batch(model, 3)
    ours = np.asarray(model.forward(x))
    with torch.no_grad():
        theirs = tmodel(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())
