"""The array backend: chosen once at import from MINIALEX_BACKEND, and the one seedable random stream.

Backend selection happens when minialex is first imported, so it is tested in fresh interpreters
(``sys.executable -c ...``) with the variable set; the rest runs in this process on the active backend.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import dev, host

import minialex
from minialex import backend
from minialex.errors import BackendError, MinialexError

PRINT_BACKEND = "import minialex.backend as b; print(b.name, b.xp.__name__, b.on_gpu)"
# Whether this machine has a usable GPU, asked of CuPy directly rather than of minialex.
PROBE_GPU = "import cupy; assert cupy.cuda.runtime.getDeviceCount() > 0"


def python(code: str, backend_value: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MINIALEX_BACKEND"}
    if backend_value is not None:
        env["MINIALEX_BACKEND"] = backend_value
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def gpu_available() -> bool:
    return python(PROBE_GPU, None).returncode == 0


@pytest.mark.parametrize("value", [None, "numpy", "NumPy", " numpy "], ids=["unset", "numpy", "case", "spaces"])
def test_numpy_is_the_default(value):
    result = python(PRINT_BACKEND, value)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["numpy", "numpy", "False"]


@pytest.mark.parametrize("value", ["bogus", "torch", "gpu"])
def test_unknown_backend_fails_at_import_naming_the_variable_and_the_value(value):
    result = python("import minialex.backend", value)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("minialex.errors.BackendError: ")
    assert "MINIALEX_BACKEND" in last and repr(value) in last
    assert "numpy, cupy, auto" in last  # and what would have been accepted


def test_cupy_without_a_gpu_fails_at_import_naming_the_reason(gpu_available):
    if gpu_available:
        pytest.skip("a GPU is present here, so MINIALEX_BACKEND=cupy is expected to work")
    result = python("import minialex.backend", "cupy")
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("minialex.errors.BackendError: ")
    assert "MINIALEX_BACKEND=cupy" in last
    assert "CuPy cannot be imported" in last or "no usable GPU" in last or "sees no GPU" in last


def test_auto_falls_back_to_numpy_without_a_gpu(gpu_available):
    result = python(PRINT_BACKEND, "auto")
    assert result.returncode == 0, result.stderr
    expected = ["cupy", "cupy", "True"] if gpu_available else ["numpy", "numpy", "False"]
    assert result.stdout.split() == expected


def test_backend_error_is_a_runtime_error_and_a_minialex_error():
    assert issubclass(BackendError, RuntimeError) and issubclass(BackendError, MinialexError)


# -- in this process, on the active backend ---------------------------------------------------------------------------


def test_active_backend_is_consistent():
    assert backend.name in ("numpy", "cupy")
    assert backend.xp.__name__ == backend.name
    assert backend.on_gpu == (backend.name == "cupy")
    assert backend.name in backend.describe()
    backend.synchronize()  # a no-op on NumPy; must not fail on either


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.uint8])
def test_asarray_and_to_numpy_round_trip(dtype):
    a = np.arange(12, dtype=dtype).reshape(3, 4)
    d = backend.asarray(a)
    assert isinstance(d, backend.xp.ndarray) and d.dtype == dtype and d.shape == (3, 4)
    back = backend.to_numpy(d)
    assert type(back) is np.ndarray
    np.testing.assert_array_equal(back, a)


def test_asarray_converts_dtype_and_lists():
    d = backend.asarray([[1, 2], [3, 4]], dtype=np.float32)
    assert d.dtype == np.float32
    np.testing.assert_array_equal(backend.to_numpy(d), [[1.0, 2.0], [3.0, 4.0]])
    assert type(backend.to_numpy(3.0)) is np.ndarray  # scalars and lists come back as arrays too


@pytest.mark.gpu
def test_arrays_live_on_the_gpu():
    import cupy

    d = backend.asarray(np.ones(3))
    assert isinstance(d, cupy.ndarray)
    assert isinstance(backend.uniform((2, 2)), cupy.ndarray)
    assert isinstance(backend.normal((2, 2)), cupy.ndarray)
    assert type(backend.to_numpy(d)) is np.ndarray


# -- randomness ------------------------------------------------------------------------------------------------------


def _draws() -> list[np.ndarray]:
    return [
        host(backend.uniform((3, 4), np.float32)),
        host(backend.normal((5,), std=2.0, dtype=np.float64)),
        backend.host_rng().permutation(10),
    ]


def test_same_seed_same_draws_other_seed_other_draws():
    minialex.seed(42)
    first = _draws()
    minialex.seed(42)
    again = _draws()
    minialex.seed(43)
    other = _draws()
    for a, b, c in zip(first, again, other, strict=True):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)


def test_draws_have_the_requested_shape_dtype_and_scale():
    minialex.seed(1)
    u = backend.uniform((1000,), np.float32)
    assert u.dtype == np.float32 and u.shape == (1000,)
    assert 0.0 <= float(u.min()) and float(u.max()) < 1.0
    z = host(backend.normal((20_000,), std=3.0, dtype=np.float64))
    assert z.dtype == np.float64
    # The sample std of 20,000 N(0, 9) draws is 3 ± 0.015 (σ/√(2n)); 0.1 is > 6 of those.
    assert abs(z.std() - 3.0) < 0.1 and abs(z.mean()) < 0.15


def test_layer_initialisation_is_reproducible():
    from minialex.layers import Conv2d

    minialex.seed(7)
    a = host(Conv2d(3, 4, 3).params["weight"])
    minialex.seed(7)
    b = host(Conv2d(3, 4, 3).params["weight"])
    np.testing.assert_array_equal(a, b)


def test_rng_state_round_trips_through_json():
    minialex.seed(9)
    _draws()
    state = json.loads(json.dumps(backend.get_rng_state()))  # what a checkpoint stores
    expected = _draws()
    _draws()  # move on
    backend.set_rng_state(state)
    for a, b in zip(_draws(), expected, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True, None])
def test_seed_rejects_non_integers(bad):
    with pytest.raises(ValueError, match="non-negative integer"):
        minialex.seed(bad)


def test_seed_accepts_numpy_integers():
    minialex.seed(np.int64(5))
    a = host(backend.uniform((3,)))
    minialex.seed(5)
    np.testing.assert_array_equal(a, host(backend.uniform((3,))))


def test_dev_and_host_helpers_agree_with_the_backend():
    a = np.linspace(0, 1, 5)
    np.testing.assert_array_equal(host(dev(a)), a)
