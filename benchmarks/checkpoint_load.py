"""What verifying a checkpoint costs: :func:`minialex.training.checkpoint.load_checkpoint` beside a plain read.

``load_checkpoint`` checks the header against the file, streams the sha256 from the file in chunks, then reads
the tensors and checks that they are finite; ``safetensors.numpy.load_file`` only reads them. Both read the same
file of the paper's AlexNet (61 M float32 parameters, 233 MiB), warm in the page cache, in alternating rounds in
one process; the medians and their ratio are printed::

    python -m benchmarks.checkpoint_load            # 7 rounds
    python -m benchmarks.checkpoint_load --rounds 3 --model mini
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from safetensors.numpy import load_file

from minialex.models import alexnet
from minialex.training.checkpoint import load_checkpoint, save_checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="paper", help="AlexNet variant (default paper)")
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds (default 7)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.safetensors"
        model = alexnet(args.model)
        save_checkpoint(path, model)
        del model
        size = path.stat().st_size
        load_file(str(path))  # warm the page cache
        times: dict[str, list[float]] = {"load_checkpoint": [], "load_file": []}
        for _ in range(args.rounds):
            for name, read in (("load_checkpoint", load_checkpoint), ("load_file", lambda p: load_file(str(p)))):
                started = time.perf_counter()
                read(path)
                times[name].append(time.perf_counter() - started)
    verified, plain = (statistics.median(times[k]) for k in ("load_checkpoint", "load_file"))
    print(f"{args.model} checkpoint, {size / 2**20:.0f} MiB, median of {args.rounds} alternating rounds:")
    print(f"  load_checkpoint (verified) {verified * 1e3:8.1f} ms   {size / 2**20 / verified:7.0f} MiB/s")
    print(f"  safetensors load_file      {plain * 1e3:8.1f} ms   {size / 2**20 / plain:7.0f} MiB/s")
    print(f"  ratio {verified / plain:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
