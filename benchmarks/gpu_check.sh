#!/usr/bin/env bash
# The GPU check of minialex, made to fit a short lease on a GPU machine (benchmarks/README.md, "The GPU check").
#
#   bash benchmarks/gpu_check.sh               on the GPU machine: CuPy, results into $OUT (at most 8 files)
#   bash benchmarks/gpu_check.sh --rehearse    on a CPU: the same steps on NumPy, the long ones shrunk
#
# Steps, each under its own time limit and all within one budget (GPU_CHECK_BUDGET_S, default 420 s):
#   1 environment   nvidia-smi, python, the versions of CuPy, PyTorch, NumPy
#   2 install       the carried wheels (.whl/, see gpu_wheels.sh) into /tmp/minialex-site, then minialex itself
#                   with pip install --no-deps --no-build-isolation, and an import of the installed copy
#   3 probe         MINIALEX_BACKEND=cupy must choose CuPy (backend.probe_cupy); if not, the GPU steps are skipped
#   4 core tests    every layer's gradient check and PyTorch cross-check, the backend, optimiser, model and
#                   gradcheck tests, on CuPy, in parallel (JUnit: tests-core.xml)
#   5 training      the default `minialex train` on CuPy: accuracy and time (train.json)
#   6 benchmark     python -m benchmarks.run on the GPU: per-layer tables, CuPy vs PyTorch CUDA (TF32 off and
#                   on), device memory, CuPy ÷ NumPy against the recorded 2-core CPU run (<name>.md/.json/.png)
#   7 more tests    the rest of the non-slow suite on CuPy, in whatever time is left (tests-more.xml)
#   8 summary       python -m benchmarks.gpu_summary: the lines to report, printed last
#
# A step that reaches its limit gets SIGINT first (pytest then writes its JUnit file, `minialex train` saves a
# checkpoint and its records, the benchmark writes the configurations it finished), SIGKILL 15 s later.
# Everything printed also goes to $OUT/gpu_check.log.
set -uo pipefail

MODE=gpu
STEP=""  # internal: the script runs one step in a child of `timeout` as `gpu_check.sh [--rehearse] --step NAME`
while [[ $# -gt 0 ]]; do
    case $1 in
        --rehearse) MODE=rehearse ;;
        --step) STEP=${2:-}; shift ;;
        *) echo "usage: bash benchmarks/gpu_check.sh [--rehearse]" >&2; exit 2 ;;
    esac
    shift
done
SCRIPT=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
shopt -s nullglob
OUT=${OUT:-$ROOT/benchmarks/results/tmp/gpu-check}
PY=${PYTHON:-python3}
WHEEL_SITE=/tmp/minialex-wheels     # the carried wheels, on PYTHONPATH for every step
INSTALL_SITE=/tmp/minialex-install  # minialex installed from this tree, imported once to prove the install works
RESERVE_S=20  # kept for the summary
if [[ $MODE == gpu ]]; then
    BACKEND=cupy
    BUDGET_S=${GPU_CHECK_BUDGET_S:-420}
    WORKERS=${GPU_CHECK_WORKERS:-8}
    NAME=${GPU_CHECK_NAME:-}
    SCALE=1                                    # the step limits below are for the GPU machine
    TRAIN_ARGS=()                              # the default run: mini on MNIST-5k, 18 epochs
    BENCH_ARGS=()                              # the full GPU plan
else
    BACKEND=numpy
    BUDGET_S=${GPU_CHECK_BUDGET_S:-1500}       # a shared 2-core machine is slower than 16 idle ones
    WORKERS=${GPU_CHECK_WORKERS:-2}
    NAME=${GPU_CHECK_NAME:-rehearsal-cpu}
    SCALE=3                                    # every step limit ×3: two shared cores are slow
    TRAIN_ARGS=(--epochs 2)                    # shrunk: the default run takes minutes on two cores
    BENCH_ARGS=(--tiny)                        # shrunk: the full plan takes 10 minutes on two cores
fi
CORE_TESTS=(tests/test_backend.py tests/test_gradcheck*.py tests/test_layers*.py tests/test_im2col.py
    tests/test_optim*.py tests/test_models.py tests/test_numerics_stress.py)
START_S=$SECONDS
STEPS=()
GPU_OK=1

mkdir -p "$OUT"
[[ -z $STEP ]] && rm -f "$OUT"/gpu_check.log

left_s() { echo $((BUDGET_S - (SECONDS - START_S))); }

# step NAME LIMIT_S FUNCTION: run FUNCTION (in a fresh copy of this script) under min(LIMIT_S, what the budget
# has left), and record how it ended.
step() {
    local name=$1 limit=$2
    shift 2
    local left=$(($(left_s) - RESERVE_S))
    limit=$((limit * SCALE))
    ((limit > left)) && limit=$left
    if ((limit < 10)); then
        echo "== $name: skipped, the budget is spent"
        STEPS+=("$name: skipped (no time left)")
        return 0
    fi
    echo "== $name (limit ${limit} s, at +$((SECONDS - START_S)) s)"
    local t0=$SECONDS rc mode_flag=()
    [[ $MODE == rehearse ]] && mode_flag=(--rehearse)
    timeout -s INT --kill-after=15 "$limit" bash "$SCRIPT" "${mode_flag[@]}" --step "$1"
    rc=$?
    local took=$((SECONDS - t0)) status
    case $rc in
        0) status="ok" ;;
        124 | 137) status="STOPPED at its ${limit} s limit" ;;
        *) status="FAILED (exit status $rc)" ;;
    esac
    echo "== $name: $status after ${took} s"
    STEPS+=("$name: $status, ${took} s")
    return $rc
}

pytest_args() {  # the common options of both test steps: $1 = JUnit file
    local args=(-q -p no:cacheprovider -m "not slow" -n "$WORKERS" --junitxml="$1" -o junit_family=xunit2)
    if "$PY" -c "import pytest_timeout" 2>/dev/null; then
        args+=(--timeout=120)  # one hung test must not take the whole step
    fi
    printf '%s\n' "${args[@]}"
}

environment() {
    echo "mode $MODE, backend $BACKEND, output $OUT, budget ${BUDGET_S} s, $(nproc) CPUs"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version,clocks.sm,clocks.max.sm,temperature.gpu \
            --format=csv
    else
        echo "no nvidia-smi here"
    fi
    "$PY" - <<'EOF'
import importlib.metadata as md, platform, sys
print("python", platform.python_version(), sys.executable)
for name in ("numpy", "scipy", "cupy-cuda13x", "cupy-cuda12x", "torch", "pytest", "pytest-xdist", "hypothesis",
             "matplotlib", "safetensors", "tqdm", "pooch"):
    try:
        print(f"  {name} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"  {name} (not installed)")
EOF
}

install() {
    rm -rf "$WHEEL_SITE" "$INSTALL_SITE" && mkdir -p "$WHEEL_SITE" "$INSTALL_SITE" || return 1
    local wheels=(.whl/*.whl)
    if ((${#wheels[@]})); then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WHEEL_SITE" \
            "${wheels[@]}" || return 1
    else
        echo "no wheels in .whl/: run benchmarks/gpu_wheels.sh here and name .whl in the call's carry list"
    fi
    # minialex itself, from this working tree, into its own folder (never into the image's environment)
    "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --target "$INSTALL_SITE" . \
        || return 1
    rm -rf build minialex.egg-info
    (cd /tmp && PYTHONPATH="$INSTALL_SITE:$WHEEL_SITE" "$PY" -c "import minialex, minialex.data.embedded as e; \
print('installed minialex', minialex.__version__, 'at', minialex.__file__); print('MNIST-5k digits at', e.locate())")
}

probe() {
    MINIALEX_BACKEND=$BACKEND "$PY" -c "import minialex.backend as b; print(b.describe())"
}

core_tests() {
    local args
    mapfile -t args < <(pytest_args "$OUT/tests-core.xml")
    MINIALEX_BACKEND=$BACKEND "$PY" -m pytest "${args[@]}" "${CORE_TESTS[@]}"
}

more_tests() {
    local args core ignore=()
    mapfile -t args < <(pytest_args "$OUT/tests-more.xml")
    for core in "${CORE_TESTS[@]}" tests/test_tutorials.py; do  # the notebooks need Jupyter: not on that machine
        ignore+=(--ignore="$core")
    done
    MINIALEX_BACKEND=$BACKEND "$PY" -m pytest "${args[@]}" "${ignore[@]}" tests
}

training() {
    local run=/tmp/minialex-gpu-check-run t0=$SECONDS rc
    rm -rf "$run"
    local cmd=("$PY" -m minialex train --out-dir "$run" --no-progress "${TRAIN_ARGS[@]}")
    MINIALEX_BACKEND=$BACKEND "${cmd[@]}"
    rc=$?
    "$PY" -m benchmarks.gpu_summary --record-train "$run" --wall-s $((SECONDS - t0)) \
        --command "MINIALEX_BACKEND=$BACKEND ${cmd[*]}" --out "$OUT/train.json"
    return $rc
}

benchmark() {
    local name=$NAME
    if [[ -z $name ]]; then
        name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr 'A-Z ' 'a-z-')
        name=${name:-gpu}
    fi
    MINIALEX_BACKEND=$BACKEND "$PY" -m benchmarks.run --no-gpu --no-memory "${BENCH_ARGS[@]}" \
        --cpu-reference benchmarks/results/amd-epyc-2cpu.json --out "$OUT" --name "$name"
}

main() {
    # Limits on the GPU machine (×3 in a rehearsal). Worst case: 10 s of set-up, then 150 + 100 + 140 s, and the
    # more tests get nothing; the budget clips any step that would end past it.
    step environment 30 environment
    step install 120 install
    if ! step probe 90 probe; then
        GPU_OK=0
    fi
    if ((GPU_OK)); then
        step "core tests" 150 core_tests
        step training 100 training
        step benchmark 140 benchmark
        step "more tests" 120 more_tests
    else
        echo "== the backend is not usable (see the probe's message above): the GPU steps are skipped"
        STEPS+=("core tests, training, benchmark, more tests: skipped (backend $BACKEND not usable)")
    fi
    echo
    echo "== steps (mode $MODE, $((SECONDS - START_S)) s of the ${BUDGET_S} s budget)"
    printf '  %s\n' "${STEPS[@]}"
    "$PY" -m benchmarks.gpu_summary "$OUT"
    echo "== files in $OUT (the device call brings back at most 8, no deeper than 2 folders):"
    ls -l "$OUT"
    local count
    count=$(find "$OUT" -type f | wc -l)
    ((count > 8)) && echo "WARNING: $count files in $OUT; only 8 come back"
    return 0
}

export PYTHONPATH="$WHEEL_SITE${PYTHONPATH:+:$PYTHONPATH}"  # the carried wheels; code is imported from ./minialex
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
if [[ -n $STEP ]]; then
    case $STEP in
        environment | install | probe | core_tests | training | benchmark | more_tests) "$STEP"; exit $? ;;
        *) echo "gpu_check.sh: unknown step '$STEP'" >&2; exit 2 ;;
    esac
fi
main 2>&1 | tee "$OUT/gpu_check.log"
