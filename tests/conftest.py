"""Fixtures shared by the whole suite.

The suite runs on whichever backend ``MINIALEX_BACKEND`` selects (NumPy by default): tests build data on the
host and convert it with ``minialex.backend.asarray`` / ``to_numpy`` (see ``tests/helpers.py``), so
``MINIALEX_BACKEND=cupy pytest`` runs the very same tests on a GPU.

* ``seeded`` (autouse): ``minialex.seed(0)`` before every test, so initialisation and dropout are reproducible.
* Tests marked ``@pytest.mark.gpu`` are skipped, with the reason shown, unless the backend is CuPy on a GPU.
* ``torch``: the PyTorch module, or a visible skip when it is not installed (it is an optional oracle).
* Hypothesis runs derandomized and without an example database, so CI is deterministic.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

import minialex
from minialex import backend

settings.register_profile(
    "minialex",
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    # The autouse ``seeded`` fixture is function-scoped; tests that draw examples re-seed inside their body.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile("minialex")

GPU_SKIP_REASON = (
    f"needs MINIALEX_BACKEND=cupy and a CUDA GPU; this run uses the {backend.name} backend ({backend.describe()})"
)
TORCH_SKIP_REASON = "PyTorch is not installed: it is the independent oracle (pip install 'minialex[torch]')"


@pytest.fixture(autouse=True)
def seeded() -> None:
    """Every test starts from the same random state."""
    minialex.seed(0)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if backend.on_gpu:
        return
    skip_gpu = pytest.mark.skip(reason=GPU_SKIP_REASON)
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def torch():
    """PyTorch in float64-friendly single-threaded mode, or a skip with the reason."""
    torch = pytest.importorskip("torch", reason=TORCH_SKIP_REASON)
    torch.set_num_threads(1)  # pytest -n 2 already uses both cores
    return torch


@pytest.fixture(scope="module")
def one_blas_thread_per_xdist_worker():
    """Under ``pytest -n 2`` both workers train at once: two BLAS threads each would oversubscribe two cores."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield
