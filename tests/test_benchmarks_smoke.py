"""The benchmark harness runs end to end on a tiny configuration (no timing is asserted, only that it works).

It keeps ``benchmarks/`` from rotting as the library changes: the per-layer pass, the training step, the
PyTorch mirror with identical weights, the memory probe and the report writers are all exercised, on the
active backend (``MINIALEX_BACKEND=cupy`` runs them on the GPU). The report's GPU logic (labels, the GPU's own
GEMM rate, CuPy ÷ NumPy, the child process's timeout) is checked on a results dict with CPU and GPU rows.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minialex import backend

# benchmarks/ is a folder of the repository, not part of the installed package: import it from there.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import bench, charts, report, run


def test_tiny_run_writes_markdown_json_and_charts(tmp_path, capsys):
    assert run.main(["--tiny", "--no-memory", "--no-torch", "--out", str(tmp_path), "--name", "smoke"]) == 0
    md = (tmp_path / "smoke-tiny.md").read_text(encoding="utf-8")
    assert "## Per layer: mini, batch 4" in md and "| conv1 |" in md and "GEMM rate" in md
    data = json.loads((tmp_path / "smoke-tiny.json").read_text(encoding="utf-8"))
    assert data["steps"][0]["variant"] == "mini" and data["steps"][0]["median_s"]["minialex"] > 0
    assert data["device"] == ("gpu" if backend.on_gpu else "cpu")
    assert (tmp_path / "smoke-tiny-layers.png").stat().st_size > 0
    assert (tmp_path / "smoke-tiny-steps.png").stat().st_size > 0
    assert "BLAS" in capsys.readouterr().out


def test_batchnorm_mirror_adam_steps_and_updates_beside_torch(torch):
    """keras-cifar10's BatchNorm has a PyTorch twin with the same running statistics and outputs; an Adam step
    and an Adam update alone are timed for both frameworks."""
    model = bench.make_minialex("keras-cifar10")
    tmodel = bench.torch_mirror(model, torch)
    assert isinstance(tmodel.norm1, torch.nn.BatchNorm2d) and tmodel.norm1.momentum == pytest.approx(0.01)
    x, _ = bench.batch(model, 4)
    tmodel.drop6.eval(), tmodel.drop7.eval()  # dropout masks are random: off on both sides
    model["drop6"].eval(), model["drop7"].eval()
    with torch.no_grad():
        ours, theirs = backend.to_numpy(model.forward(backend.asarray(x))), tmodel(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-4 * np.abs(theirs).max())
    step = bench.train_steps("mini", 4, 1, torch, optimizer="adam", log=lambda m: None)
    assert step["optimizer"] == "adam" and set(step["median_s"]) == {"minialex", "torch"}
    update = bench.optimizer_updates("mini", "adam", 1, torch, log=lambda m: None)
    assert update["params"] == 166_634 and all(t > 0 for t in update["median_s"].values())
    md = report.markdown({**_results(), "steps": [{**step, "device": "cpu"}], "updates": [update]})
    assert "| mini (Adam) | 4 |" in md and "| adam | mini | 166,634 | cpu |" in md


def test_ablation_summarises_writes_and_continues(tmp_path, monkeypatch):
    """Mean ± sample std per normalisation, the three files, and a second call that trains nothing."""
    from benchmarks import ablation

    calls = []

    def fake_run(options, norm, seed, dataset, folder):
        calls.append((norm, seed))
        acc = {"lrn": 0.9, "batchnorm": 0.92, "none": 0.8}[norm] + 0.01 * seed
        history = [
            {"epoch": e, "lr": 0.02, "train_loss": 1.0 / e, "train_accuracy": acc, "val_loss": 0.5, "val_accuracy": acc}
            for e in (1, 2)
        ]
        return {"norm": norm, "seed": seed, "history": history, "val_accuracy": acc, "test_accuracy": acc,
                "test_loss": 0.3, "seconds": 1.0}  # fmt: skip

    monkeypatch.setattr(ablation, "run_one", fake_run)
    monkeypatch.setattr(ablation, "load_dataset", lambda name: None)
    argv = ["--seeds", "0,1,2", "--epochs", "2", "--out", str(tmp_path)]
    assert ablation.main(argv) == 0 and len(calls) == 9
    data = json.loads((tmp_path / "ablation.json").read_text())
    mean, std = data["summary"]["batchnorm"]["test_accuracy"]
    assert mean == pytest.approx(0.93) and std == pytest.approx(0.01)  # sample std of 0.92, 0.93, 0.94
    assert data["summary"]["none"]["val_curve_mean"] == pytest.approx([0.81, 0.81])
    md = (tmp_path / "ablation.md").read_text()
    assert "| BatchNorm | 3 | 93.00 ± 1.00 % | 93.00 ± 1.00 % | 92.0, 93.0, 94.0 |" in md
    assert (tmp_path / "ablation-curves.png").stat().st_size > 0
    assert ablation.main(argv) == 0 and len(calls) == 9  # every run recorded: nothing trains again
    assert ablation.main([*argv[:-2], "--epochs", "3", "--out", str(tmp_path)]) == 0 and len(calls) == 18


def test_memory_probe_reports_a_peak():
    from benchmarks import memory

    out = memory.measure("minialex", "mini", 2, steps=1, threads=1)
    assert out["peak_mb"] >= out["rss_ready_mb"] > 0


def test_torch_mirror_has_identical_weights_and_outputs(torch):
    model = bench.make_minialex("mini")
    model.eval()
    tmodel = bench.torch_mirror(model, torch).eval()
    x, _ = bench.batch(model, 3)
    ours = backend.to_numpy(model.forward(backend.asarray(x)))  # a device array in, a host array out
    with torch.no_grad():
        theirs = tmodel(torch.from_numpy(x)).numpy()
    assert type(ours) is np.ndarray
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())


def test_train_steps_with_torch_time_both_and_skip_a_model_without_a_twin(torch, monkeypatch):
    entry = bench.train_steps("mini", 2, 1, torch, log=lambda _: None)
    assert set(entry["median_s"]) == {"minialex", "torch"} and min(entry["median_s"].values()) > 0

    def no_twin(*args, **kwargs):
        raise TypeError("no PyTorch twin for layer bn1 (BatchNorm2d)")

    monkeypatch.setattr(bench, "torch_mirror", no_twin)
    entry = bench.train_steps("mini", 2, 1, torch, log=lambda _: None)
    assert set(entry["median_s"]) == {"minialex"} and "BatchNorm2d" in entry["torch_skipped"]


def test_fresh_memory_runs_between_configurations(torch):
    bench.fresh_memory(torch)
    bench.fresh_memory(None)


@pytest.mark.gpu
def test_gpu_step_memory_is_measured_per_framework(torch):
    entry = bench.train_steps("mini", 8, 1, torch, "cuda" if torch.cuda.is_available() else "cpu", (False, True))
    memory = entry["memory"]
    assert memory["minialex"]["peak_mb"] >= memory["minialex"]["resident_mb"] > 0
    if torch.cuda.is_available():
        assert set(memory) == {"minialex", "torch-tf32-off", "torch-tf32-on"}
        assert memory["torch-tf32-off"]["peak_mb"] >= memory["torch-tf32-off"]["allocated_peak_mb"] > 0


# -- the report on a run with CPU and GPU rows ---------------------------------------------------------------------


def _results() -> dict:
    layers = {
        "conv1": {
            "gflop_fwd": 2.0,
            "minialex": {"fwd_s": 0.01, "bwd_s": 0.02},
            "torch": {"fwd_s": 0.01, "bwd_s": 0.01},
        },
        "relu1": {
            "gflop_fwd": 0.0,
            "minialex": {"fwd_s": 0.001, "bwd_s": 0.001},
            "torch": {"fwd_s": 0.001, "bwd_s": 0.001},
        },
    }
    return {
        "command": "python -m benchmarks.run",
        "started": "today",
        "elapsed_s": 1.0,
        "machine_name": "test-machine",
        "machine": {
            "cpu": "Test CPU",
            "cpu_flags": ["avx2"],
            "logical_cpus": 2,
            "usable_cpus": 2,
            "python": "3.12",
            "numpy": "2",
            "scipy": "1",
            "minialex_backend": "numpy",
            "env": {},
            "gpu": "Test GPU",
            "gpu_details": {"memory_gib": 80.0, "cupy": "14.2.0"},
        },
        "blas_line": "openblas",
        "gemm_gflops": 100.0,
        "gemm_gflops_start": 100.0,
        "gemm_gflops_end": 90.0,
        "gemm_gflops_gpu": 50_000.0,
        "copy_gbps_gpu": 4000.0,
        "device_draws": {"fresh_generator_ms": 1.5, "reseeded_xorwow_ms": 0.5, "cached_philox_ms": 0.02},
        "device": "cpu",
        "per_layer": [
            {"variant": "paper", "batch": 128, "repeats": 1, "device": "cpu", "layers": layers},
            {"variant": "paper", "batch": 128, "repeats": 1, "device": "gpu", "layers": layers},
        ],
        "steps": [
            {
                "variant": "paper",
                "batch": 128,
                "device": "cpu",
                "gflop_step": 500.0,
                "median_s": {"minialex": 5.0, "torch": 8.0},
            },
            {
                "variant": "paper",
                "batch": 128,
                "device": "gpu",
                "gflop_step": 500.0,
                "median_s": {"minialex": 0.1, "torch-tf32-off": 0.05, "torch-tf32-on": 0.02},
                "memory": {"minialex": {"peak_mb": 3000.0}, "torch-tf32-off": {"peak_mb": 2000.0}},
            },
        ],
        "notes": [],
    }


def test_gpu_rows_are_labelled_cupy_and_measured_against_the_gpus_gemm_rate():
    md = report.markdown(_results())
    step_rows = [line for line in md.splitlines() if line.startswith("| paper | 128 |")]
    assert "| minialex (NumPy) | 5000 |" in step_rows[0]
    cupy = next(line for line in step_rows if "minialex (CuPy)" in line)
    assert "| 5000 | 10% |" in cupy  # 500 GFLOP in 0.1 s = 5000 GFLOP/s = 10% of the GPU's 50,000
    assert "| 0.50× | 3000 |" in cupy  # vs PyTorch TF32 off; the device memory
    assert any("PyTorch CUDA TF32 on" in line for line in step_rows)
    # The CPU row is measured against the CPU's rate: 500 / 5 = 100 GFLOP/s = 100%.
    assert "| 100 | 100% |" in step_rows[0]
    gpu_layers = md.split("on the GPU (PyTorch TF32 off)")[1]
    assert "minialex (CuPy) fwd ms" in gpu_layers and "PyTorch CUDA TF32 off fwd ms" in gpu_layers
    assert "of GEMM)" in gpu_layers and "(0% of GEMM)" in gpu_layers  # 6 GFLOP in 33 ms against 50,000 GFLOP/s
    assert "- GPU: Test GPU (80.0 GiB, CuPy 14.2.0)" in md
    assert "0.020 ms with minialex's cached Philox generator re-seeded per draw, 0.500 ms with a kept XORWOW" in md
    assert "1.500 ms with a new cuRAND generator per draw" in md


def test_gpu_targets_and_the_numpy_ratio():
    md = report.markdown(_results())
    assert "| paper, batch 128, GPU: CuPy ≥ 1× PyTorch CUDA TF32 off | 0.50× | **no** |" in md
    assert "| paper, batch 128: CuPy ≥ 30× minialex NumPy (this run's CPU rows) | 50.0× | yes |" in md
    assert "| paper | 128 | 5000 | 100.0 | 50.0× |" in md


def test_a_gpu_only_run_takes_numpy_from_the_cpu_reference(tmp_path):
    results = _results()
    cpu_run = {"machine_name": "two-cores", "started": "yesterday", "steps": [results["steps"][0]]}
    (tmp_path / "cpu.json").write_text(json.dumps(cpu_run), encoding="utf-8")
    results["steps"] = results["steps"][1:]
    results["per_layer"] = results["per_layer"][1:]
    results["device"] = "gpu"
    results["cpu_reference"] = run.load_cpu_reference(tmp_path / "cpu.json")
    md = report.markdown(results)
    assert "CuPy ≥ 30× minialex NumPy (`cpu.json` (two-cores)) | 50.0× | yes |" in md
    assert "NumPy times from `cpu.json` (two-cores)." in md
    assert "≥ 1.5× PyTorch CPU" not in md  # no CPU targets on a GPU-only run
    assert results["cpu_reference"]["steps"][0]["median_s"]["minialex"] == 5.0


def test_a_cpu_reference_without_cpu_rows_is_refused(tmp_path):
    (tmp_path / "gpu.json").write_text(json.dumps({"steps": [{"device": "gpu"}]}), encoding="utf-8")
    with pytest.raises(SystemExit, match="no CPU training-step rows"):
        run.load_cpu_reference(tmp_path / "gpu.json")


def test_chart_series_keep_cpu_and_gpu_apart_each_with_its_own_label():
    names, series = charts.step_series(_results())
    assert names == ["paper\nbatch 128"]
    labels = [label for label, _ in series]
    assert labels == [
        "minialex (NumPy)",
        "PyTorch CPU",
        "minialex (CuPy)",
        "PyTorch CUDA TF32 off",
        "PyTorch CUDA TF32 on",
    ]
    assert dict(series)["minialex (CuPy)"] == [1280.0] and dict(series)["minialex (NumPy)"] == [25.6]
    bars = [label for label, _ in charts.layer_bars(_results())]
    assert bars == [
        "minialex (NumPy)\nbatch 128",
        "PyTorch CPU\nbatch 128",
        "minialex (CuPy)\nbatch 128",
        "PyTorch CUDA TF32 off\nbatch 128",
    ]


def test_readme_sections_are_chosen_by_device(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(
        "a\n<!-- results:start -->\nold cpu\n<!-- results:end -->\nb\n<!-- gpu-results:start -->\nold gpu\n"
        "<!-- gpu-results:end -->\nc\n",
        encoding="utf-8",
    )
    results = _results()
    results["device"] = "gpu"
    assert report.update_readme(results, readme, "h200")
    text = readme.read_text(encoding="utf-8")
    assert "old cpu" in text and "old gpu" not in text and "[`results/h200.md`](results/h200.md)" in text
    assert text.startswith("a\n") and text.endswith("c\n")


def test_report_command_renders_a_recorded_json_again(tmp_path):
    path = tmp_path / "rec.json"
    path.write_text(json.dumps(_results()), encoding="utf-8")
    assert report.main([str(path), "--no-charts"]) == 0
    assert (tmp_path / "rec.md").read_text(encoding="utf-8").startswith("# minialex benchmarks: test-machine")


# -- the GPU child process ------------------------------------------------------------------------------------------


def _args(**kw) -> argparse.Namespace:
    values = {"tiny": False, "quick": False, "no_torch": False, "threads": 2, "gpu_timeout": 5.0}
    return argparse.Namespace(**{**values, **kw})


def test_the_gpu_child_gets_no_torch_threads_and_the_plan():
    cmd = run.gpu_child_command(_args(quick=True, no_torch=True, threads=7))
    assert cmd[1:] == ["-m", "benchmarks.run", "--gpu-child", "--no-memory", "--threads", "7", "--quick", "--no-torch"]
    assert "--no-torch" not in run.gpu_child_command(_args())


def test_a_gpu_child_that_times_out_keeps_the_cpu_results():
    results = _results()
    before = json.dumps(results)
    sleeper = [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(30)"]
    note = run.gpu_note(_args(gpu_timeout=1.0), results, cmd=sleeper)
    assert note == (
        "No GPU rows: the GPU run did not finish within 1 s (--gpu-timeout) and was stopped; "
        "the CPU results above are complete."
    )
    assert json.dumps(results) == before


def test_a_gpu_child_that_fails_is_reported_with_its_last_line():
    results = _results()
    failing = [
        sys.executable,
        "-c",
        "raise SystemExit('minialex.errors.BackendError: CuPy cannot draw random numbers')",
    ]
    note = run.gpu_note(_args(), results, cmd=failing)
    assert note.startswith("No GPU rows: the GPU run failed (exit status 1): minialex.errors.BackendError: CuPy")


def test_a_gpu_child_that_succeeds_is_merged():
    results = _results()
    child = {
        "per_layer": [],
        "steps": [{"variant": "mini", "batch": 4, "device": "gpu", "median_s": {"minialex": 0.001}}],
        "machine": {"gpu": "Child GPU", "minialex_backend": "cupy"},
        "gemm_gflops_gpu": 123.0,
    }
    ok = [sys.executable, "-c", f"print('log line'); print('JSON:' + {json.dumps(json.dumps(child))})"]
    note = run.gpu_note(_args(), results, cmd=ok)
    assert note.startswith("GPU rows measured on Child GPU")
    assert results["steps"][-1]["variant"] == "mini" and results["gemm_gflops_gpu"] == 123.0


def test_the_gpu_plan_adds_every_other_variant(monkeypatch):
    from minialex.models import variants

    monkeypatch.setattr(variants, "VARIANTS", (*variants.VARIANTS, "keras"))
    plan = run.choose_plan(_args(), "gpu")
    assert ("keras", 128) in plan["steps"] and ("paper", 128) in plan["steps"]
    assert run.choose_plan(_args(), "cpu") is run.FULL and run.choose_plan(_args(tiny=True), "gpu") is run.TINY


def test_an_interrupted_run_writes_what_it_measured(tmp_path, monkeypatch):
    """SIGINT (Ctrl-C, or a time limit's first signal) ends the measuring, not the report."""

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bench, "train_steps", interrupted)
    assert run.main(["--tiny", "--no-torch", "--out", str(tmp_path), "--name", "cut"]) == 0
    data = json.loads((tmp_path / "cut-tiny.json").read_text(encoding="utf-8"))
    assert len(data["per_layer"]) == 1 and data["steps"] == []
    assert data["notes"][0].startswith("Interrupted (SIGINT) after 1 of 3 configurations")
    assert "Interrupted (SIGINT)" in (tmp_path / "cut-tiny.md").read_text(encoding="utf-8")


# -- the GPU check script ---------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
GPU_CHECK = ROOT / "benchmarks" / "gpu_check.sh"


def _bash(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", *args], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)


def test_gpu_check_script_is_valid_bash_and_refuses_unknown_arguments():
    assert _bash("-n", str(GPU_CHECK)).returncode == 0
    assert _bash("-n", str(ROOT / "benchmarks" / "gpu_wheels.sh")).returncode == 0
    wrong = _bash(str(GPU_CHECK), "--bogus")
    assert wrong.returncode == 2 and "usage: bash benchmarks/gpu_check.sh [--rehearse]" in wrong.stderr
    unknown = _bash(str(GPU_CHECK), "--rehearse", "--step", "rm")  # only the script's own steps can be run
    assert unknown.returncode == 2 and "unknown step 'rm'" in unknown.stderr


def test_gpu_check_probe_step_runs_here(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path)}
    result = _bash(str(GPU_CHECK), "--rehearse", "--step", "probe", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("numpy ")  # a rehearsal always runs on NumPy


def test_the_documented_device_call_fits_the_tool():
    """benchmarks/README.md gives the exact call a GPU session makes: a command under 2,000 characters that
    runs the script, carrying the wheels, with a limit above the script's budget and within the tool's 600 s."""
    text = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    line = next(ln.strip() for ln in text.splitlines() if ln.strip().startswith('{"command": "bash benchmarks/gpu'))
    call = json.loads(line)
    assert call["command"] == "bash benchmarks/gpu_check.sh" and len(call["command"]) < 2000
    assert call["carry"] == [".whl"]
    budget = int(re.search(r"GPU_CHECK_BUDGET_S:-(\d+)", GPU_CHECK.read_text(encoding="utf-8")).group(1))
    assert budget + 30 <= call["timeout_s"] <= 600
    assert "/.whl/" in (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()  # the wheels stay out of git


def test_gpu_summary_reads_junit_training_and_benchmark_files(tmp_path):
    from benchmarks import gpu_summary

    (tmp_path / "tests-core.xml").write_text(
        '<?xml version="1.0"?><testsuites><testsuite name="pytest" tests="4" failures="1" errors="0" skipped="1" '
        'time="12.5"><testcase classname="tests.test_optim" name="test_sgd_kernel"><failure message="x"/></testcase>'
        '<testcase classname="t" name="ok"/><testcase classname="t" name="ok2"/>'
        '<testcase classname="t" name="skip"><skipped/></testcase></testsuite></testsuites>',
        encoding="utf-8",
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    metrics = {"status": "complete", "epochs": 18, "backend": "cupy", "test_accuracy": 0.989}
    metrics |= {"train_seconds": 20.0, "images_per_second": 3150.0}
    (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    record = gpu_summary.record_training(run_dir, 31.0, "minialex train")
    assert record["metrics"]["test_accuracy"] == 0.989 and record["history"] is None
    (tmp_path / "train.json").write_text(json.dumps(record), encoding="utf-8")
    (tmp_path / "gpu.json").write_text(json.dumps({**_results(), "device": "gpu"}), encoding="utf-8")
    lines = gpu_summary.summary(tmp_path)
    assert "tests, core: 2 passed, 1 failed, 0 errors, 1 skipped of 4 in 12 s" in lines
    assert "  FAILED tests.test_optim::test_sgd_kernel" in lines
    assert any(line.startswith("tests, the rest: no result file") for line in lines)
    assert any("held-out accuracy 98.90%; training steps 20.0 s (3150 images/s); wall 31 s" in line for line in lines)
    assert "  paper batch 128 images/s: minialex 1280, torch-tf32-off 2560, torch-tf32-on 6400" in lines
