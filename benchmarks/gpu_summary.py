"""What a GPU check found, in a few lines: the tests, the default training run and the benchmark's key figures.

``benchmarks/gpu_check.sh`` calls it twice: ``--record-train`` turns a finished ``minialex train`` run directory
into one ``train.json`` (the run's ``metrics.json`` and ``history.json`` with the wall time the script measured),
and at the end it prints the summary of the output folder::

    python -m benchmarks.gpu_summary OUT_DIR
    python -m benchmarks.gpu_summary --record-train RUN_DIR --wall-s 41 --command "..." --out OUT_DIR/train.json

The same summary can be printed again from the files a GPU session brought back.
"""

from __future__ import annotations

import argparse
import json
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any


def junit_counts(path: Path) -> dict[str, Any]:
    """Tests, failures, errors and skips of a pytest JUnit file, and the names of the first failing tests."""
    root = ElementTree.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {key: sum(int(s.get(key, 0)) for s in suites) for key in ("tests", "failures", "errors", "skipped")}
    counts["seconds"] = sum(float(s.get("time", 0.0)) for s in suites)
    failed = []
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(f"{case.get('classname', '')}::{case.get('name', '')}")
    counts["failed"] = failed
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return counts


def record_training(run_dir: Path, wall_s: float, command: str) -> dict[str, Any]:
    """One record of a training run: its metrics and history, the command and the wall time around it."""
    record: dict[str, Any] = {"command": command, "wall_s": wall_s, "run_dir": str(run_dir)}
    for name in ("metrics", "history"):
        path = run_dir / f"{name}.json"
        record[name] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    return record


def training_line(record: dict[str, Any]) -> str:
    metrics = record.get("metrics") or {}
    wall = record.get("wall_s", float("nan"))
    if not metrics:
        return f"training: no metrics.json (wall {wall:.0f} s; the run failed or was stopped before its first epoch)"
    head = f"training ({metrics.get('status')}, {metrics.get('epochs')} epochs, {metrics.get('backend')})"
    accuracy, seconds, rate = (
        metrics.get("test_accuracy"),
        metrics.get("train_seconds"),
        metrics.get("images_per_second"),
    )
    if accuracy is None or seconds is None or rate is None:
        return f"{head}: no held-out accuracy recorded (wall {wall:.0f} s)"
    return (
        f"{head}: held-out accuracy {accuracy:.2%}; training steps {seconds:.1f} s ({rate:.0f} images/s); "
        f"wall {wall:.0f} s for the whole command"
    )


def benchmark_lines(results: dict[str, Any]) -> list[str]:
    """The paper step at batch 128 (or the largest measured) on the run's device: images/s per framework."""
    lines = []
    for entry in results.get("steps", []):
        if entry.get("device") != results.get("device"):
            continue
        rates = ", ".join(f"{fw} {entry['batch'] / t:.0f}" for fw, t in entry["median_s"].items())
        lines.append(f"  {entry['variant']} batch {entry['batch']} images/s: {rates}")
    return lines


def summary(folder: Path) -> list[str]:
    """Every line of the summary of a GPU check's output folder."""
    out = [f"== summary of {folder}"]
    for name, label in (("tests-core.xml", "tests, core"), ("tests-more.xml", "tests, the rest")):
        path = folder / name
        if not path.is_file():
            out.append(f"{label}: no result file (not run, or stopped before pytest could write it)")
            continue
        c = junit_counts(path)
        out.append(
            f"{label}: {c['passed']} passed, {c['failures']} failed, {c['errors']} errors, {c['skipped']} skipped "
            f"of {c['tests']} in {c['seconds']:.0f} s"
        )
        out += [f"  FAILED {name}" for name in c["failed"][:20]]
    train = folder / "train.json"
    if train.is_file():
        out.append(training_line(json.loads(train.read_text(encoding="utf-8"))))
    else:
        out.append("training: no train.json")
    for path in sorted(folder.glob("*.json")):
        if path.name == "train.json":
            continue
        results = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(results, dict) and "steps" in results:
            out.append(f"benchmark {path.name} ({results.get('device')}, {results.get('elapsed_s', 0):.0f} s):")
            out += benchmark_lines(results)
            out += [f"  note: {note}" for note in results.get("notes", [])]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, nargs="?", help="the GPU check's output folder")
    parser.add_argument("--record-train", type=Path, metavar="RUN_DIR", help="write train.json for this run")
    parser.add_argument("--wall-s", type=float, default=float("nan"))
    parser.add_argument("--command", default="")
    parser.add_argument("--out", type=Path, help="where --record-train writes")
    args = parser.parse_args(argv)
    if args.record_train is not None:
        if args.out is None:
            parser.error("--record-train needs --out")
        record = record_training(args.record_train, args.wall_s, args.command)
        args.out.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        print(training_line(record))
        return 0
    if args.folder is None:
        parser.error("give the output folder (or --record-train)")
    print("\n".join(summary(args.folder)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
