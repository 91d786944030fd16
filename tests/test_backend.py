"""The array backend: chosen once at import from MINIALEX_BACKEND, and the one seedable random stream.

Backend selection happens when minialex is first imported, so it is tested in fresh interpreters
(``sys.executable -c ...``) with the variable set; the rest runs in this process on the active backend.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

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


def test_auto_without_a_gpu_says_why_it_fell_back(gpu_available):
    if gpu_available:
        pytest.skip("a GPU is present here, so MINIALEX_BACKEND=auto chooses CuPy")
    code = "import json, minialex.backend as b; print(json.dumps(b.fallback_reason)); print(b.describe())"
    result = python(code, "auto")
    assert result.returncode == 0, result.stderr
    reason, described = result.stdout.strip().splitlines()
    assert json.loads(reason).startswith("CuPy ") and len(reason) > 10
    assert "MINIALEX_BACKEND=auto fell back: CuPy" in described
    plain = python(code, "numpy")
    assert plain.stdout.strip().splitlines()[0] == '""'  # no fallback, no reason


# -- the selection logic, in this process, with stand-ins that are clearly not CuPy -------------------------------


class StandIn:
    """Not CuPy: a namespace with just the calls :func:`backend.probe_cupy` makes, backed by NumPy.

    ``broken`` names the one call that raises ``error`` (the way a missing CUDA library shows up);
    ``wrong`` names one that returns a wrong value.
    """

    def __init__(self, broken: str | None = None, error: Exception | None = None, wrong: str | None = None, devices=1):
        self.broken, self.error, self.wrong = broken, error, wrong

        def draws(seed, method):
            assert method == self.cuda.curand.CURAND_RNG_PSEUDO_PHILOX4_32_10  # the generator minialex uses
            rng = np.random.default_rng(int(seed))
            return SimpleNamespace(random_sample=lambda shape, dtype: rng.random(shape, dtype=dtype))

        self.cuda = SimpleNamespace(
            runtime=SimpleNamespace(getDeviceCount=self._call("getDeviceCount", lambda: devices)),
            curand=SimpleNamespace(CURAND_RNG_PSEUDO_PHILOX4_32_10=5),
        )
        self.random = SimpleNamespace(RandomState=self._call("RandomState", draws))
        self.asarray = self._call("asarray", np.array)
        self.asnumpy = np.asarray
        self.matmul = self._call("matmul", np.matmul)
        self.ElementwiseKernel = self._call("ElementwiseKernel", lambda *signature: lambda x: 2 * x + 1)

    def _call(self, name, fn):
        def call(*args, **kwargs):
            if name == self.broken:
                raise self.error
            out = fn(*args, **kwargs)
            if name == self.wrong:
                return out + 1 if name != "ElementwiseKernel" else (lambda x: out(x) + 1)
            return out

        return call


def test_probe_accepts_a_stand_in_whose_every_call_works():
    assert backend.probe_cupy(StandIn()) == ""


@pytest.mark.parametrize(
    ("broken", "error", "stage"),
    [
        ("getDeviceCount", RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected"), "sees no usable GPU"),
        ("asarray", MemoryError("out of memory allocating 1,048,576 bytes"), "cannot copy data to the GPU and back"),
        (
            "ElementwiseKernel",
            RuntimeError("nvrtc: error: failed to open libnvrtc-builtins.so.12.\nMake sure that it is installed."),
            "cannot compile and run a kernel (NVRTC)",
        ),
        (
            "RandomState",
            ImportError("libcurand.so.10: cannot open shared object file"),
            "cannot draw random numbers (cuRAND)",
        ),
        ("matmul", OSError("libcublas.so.12: cannot open shared object file"), "cannot multiply matrices (cuBLAS)"),
    ],
    ids=["no-device", "no-memory", "no-nvrtc", "no-curand", "no-cublas"],
)
def test_probe_names_the_stage_that_failed_and_the_error(broken, error, stage):
    reason = backend.probe_cupy(StandIn(broken=broken, error=error))
    assert reason.startswith(f"CuPy {stage} ({type(error).__name__}: ")
    assert str(error).split()[0] in reason
    assert "\n" not in reason and len(reason) < 300  # one line, whatever the library printed


@pytest.mark.parametrize(
    ("wrong", "says"),
    [
        ("asarray", "the data came back changed"),
        ("ElementwiseKernel", "the kernel computed wrong values"),
        ("RandomState", "not uniform in [0, 1)"),
        ("matmul", "the product is wrong"),
    ],
)
def test_probe_checks_every_result(wrong, says):
    if wrong == "RandomState":  # draws shifted by 1 leave [0, 1)
        stand_in = StandIn()
        stand_in.random = SimpleNamespace(
            RandomState=lambda seed, method: SimpleNamespace(random_sample=lambda shape, dtype: np.ones(shape, dtype))
        )
    else:
        stand_in = StandIn(wrong=wrong)
    assert says in backend.probe_cupy(stand_in)


def test_probe_reports_a_machine_without_gpus():
    assert backend.probe_cupy(StandIn(devices=0)) == "CuPy sees no GPU (device count 0)"


def test_a_long_multi_line_error_is_cut_to_one_line():
    error = RuntimeError("line one\n" + "x" * 1000)
    reason = backend.probe_cupy(StandIn(broken="ElementwiseKernel", error=error))
    assert "\n" not in reason and reason.endswith("...)") and len(reason) < 300


def _loader(module, reason=""):
    calls = []

    def load():
        calls.append(1)
        return module, reason

    return load, calls


def test_choose_numpy_never_touches_cupy():
    load, calls = _loader(None, "should not be asked")
    for value in ("numpy", " NumPy ", ""):
        assert backend.choose(value, load) == (np, "numpy", "")
    assert calls == []


def test_choose_auto_falls_back_to_numpy_with_the_reason():
    load, calls = _loader(None, "CuPy cannot draw random numbers (cuRAND) (ImportError: libcurand.so.10)")
    module, name, reason = backend.choose("auto", load)
    assert module is np and name == "numpy" and "libcurand" in reason and calls == [1]


def test_choose_cupy_that_does_not_work_is_a_one_line_error_naming_the_reason():
    load, _ = _loader(None, "CuPy cannot draw random numbers (cuRAND) (ImportError: libcurand.so.10)")
    with pytest.raises(BackendError) as info:
        backend.choose("CuPy", load)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("MINIALEX_BACKEND=cupy was requested but CuPy cannot draw random numbers (cuRAND)")
    assert message.endswith("unset it or use MINIALEX_BACKEND=numpy")


@pytest.mark.parametrize("value", ["cupy", "auto", " AUTO "])
def test_choose_takes_a_working_cupy(value):
    stand_in = object()
    load, _ = _loader(stand_in)
    assert backend.choose(value, load) == (stand_in, "cupy", "")


def test_choose_rejects_unknown_values_before_importing_anything():
    load, calls = _loader(None, "should not be asked")
    with pytest.raises(
        BackendError, match=r"MINIALEX_BACKEND='gpu' is not a known backend: expected one of numpy, cupy, auto"
    ):
        backend.choose("gpu", load)
    assert calls == []


def test_the_cuda_extras_bring_the_libraries_cupy_loads_at_run_time():
    """``pip install "minialex[cuda12]"`` must give a CuPy that can draw, compile and multiply: the ``ctk`` extra."""
    import tomllib
    from pathlib import Path

    extras = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    extras = extras["project"]["optional-dependencies"]
    for major in ("12", "13"):
        (requirement,) = extras[f"cuda{major}"]
        assert requirement.startswith(f"cupy-cuda{major}x[ctk]>=14"), requirement  # ctk exists from CuPy 14 on


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


def test_release_cached_memory_runs_on_either_backend():
    a = backend.asarray(np.ones((256, 256)))
    del a
    backend.release_cached_memory()


@pytest.mark.gpu
def test_arrays_live_on_the_gpu():
    import cupy

    d = backend.asarray(np.ones(3))
    assert isinstance(d, cupy.ndarray)
    assert isinstance(backend.uniform((2, 2)), cupy.ndarray)
    assert isinstance(backend.normal((2, 2)), cupy.ndarray)
    assert type(backend.to_numpy(d)) is np.ndarray


@pytest.mark.gpu
def test_the_real_cupy_passes_the_probe():
    import cupy

    assert backend.probe_cupy(cupy) == ""


@pytest.mark.gpu
def test_release_cached_memory_empties_cupy_pool():
    import cupy

    pool = cupy.get_default_memory_pool()
    backend.release_cached_memory()
    before = pool.total_bytes()  # what live arrays (of this and earlier tests) hold
    a = cupy.ones((64, 2**20), dtype=cupy.uint8)
    del a
    assert pool.total_bytes() >= before + 64 * 2**20  # the freed block stays in the pool...
    backend.release_cached_memory()
    assert pool.total_bytes() <= before  # ...until it is handed back


def test_numpy_draws_are_the_host_generators_own():
    """On NumPy the device draws are the host stream's draws, bit for bit (resume tests rely on this)."""
    if backend.on_gpu:
        pytest.skip("on CuPy the draws come from a cuRAND generator seeded from the host stream")
    minialex.seed(5)
    u, z = backend.uniform((3, 4), np.float32), backend.normal((7,), std=0.5, dtype=np.float64)
    rng = np.random.default_rng(5)
    np.testing.assert_array_equal(u, rng.random((3, 4), dtype=np.float32))
    np.testing.assert_array_equal(z, rng.standard_normal((7,), dtype=np.float64) * 0.5)


@pytest.mark.gpu
def test_each_device_draw_takes_one_host_integer_and_reuses_one_generator():
    minialex.seed(5)
    for _ in range(20):
        backend.uniform((33,), np.float32)
        backend.normal((5,), dtype=np.float64)  # an odd size: cuRAND draws pairs
    expected = np.random.default_rng(5)
    expected.integers(2**63 - 1, size=40)
    assert backend.get_rng_state() == expected.bit_generator.state
    assert len(backend._device_generators) == 1  # one generator for the device, re-seeded per draw


@pytest.mark.gpu
def test_device_draws_depend_only_on_the_host_state():
    minialex.seed(8)
    state = backend.get_rng_state()
    first = [host(backend.uniform((1000,))), host(backend.normal((999,), std=2.0))]
    backend.uniform((5,))  # move on, then come back
    backend.set_rng_state(state)
    again = [host(backend.uniform((1000,))), host(backend.normal((999,), std=2.0))]
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0][:999], first[1] / 2.0)


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
