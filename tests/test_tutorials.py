"""The tutorials: every notebook runs top to bottom, its exercise checks accept the reference solutions and
report unsolved stubs without crashing, and each committed notebook matches its readable source.

The notebooks run in a real Jupyter kernel through nbclient. The kernel is this test's own interpreter
(``tutorials/build.py`` writes a ``python3`` kernelspec for ``sys.executable`` into a temporary directory), so a
fresh virtual environment from ``.ci/run`` needs no ``ipykernel install`` and no user kernelspec can interfere.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
from pathlib import Path

import pytest

from minialex import backend

nbformat = pytest.importorskip("nbformat", reason="the notebooks extra (nbformat, nbclient, ipykernel) is missing")

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
CELL_TIMEOUT_S = 300  # generous: the shared CI machine can be several times slower than an idle one


def _load_build():
    spec = importlib.util.spec_from_file_location("minialex_tutorials_build", TUTORIALS / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_build()
SOURCES = build.source_files()
NAMES = [source.stem for source in SOURCES]


def _tagged(nb, tag: str) -> list:
    return [cell for cell in nb.cells if tag in cell.metadata.get("tags", [])]


def _summary(nb) -> list[tuple[str, str, list[str]]]:
    return [(cell.cell_type, cell.source, list(cell.metadata.get("tags", []))) for cell in nb.cells]


FIRST_SEVEN = [
    "01_chain_rule",
    "02_convolution_as_gemm",
    "03_relu_pool_dropout",
    "04_local_response_norm",
    "05_assembling_alexnet",
    "06_training",
    "07_cpu_vs_gpu",
]


def test_every_notebook_has_its_source_solutions_and_readme_entry():
    assert NAMES[:7] == FIRST_SEVEN, f"expected the seven core tutorials first in {build.SOURCE_DIR}, found {NAMES}"
    committed = sorted(path.stem for path in TUTORIALS.glob("*.ipynb"))
    assert committed == NAMES, "every tutorials/source/NN_*.py has its tutorials/NN_*.ipynb and vice versa"
    readme = (TUTORIALS / "README.md").read_text(encoding="utf-8")
    for name in NAMES:
        assert f"{name}.ipynb" in readme, f"tutorials/README.md does not mention {name}.ipynb"
        nb = build.parse_source(build.SOURCE_DIR / f"{name}.py")
        exercises, checks = _tagged(nb, "exercise"), _tagged(nb, "check")
        assert exercises, f"{name} has no exercise cell"
        assert len(checks) == len(exercises), f"{name}: every exercise cell needs its check cell"
        assert (TUTORIALS / "solutions" / f"{name}.py").is_file(), f"tutorials/solutions/{name}.py is missing"


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_matches_its_source(name):
    committed = nbformat.read(TUTORIALS / f"{name}.ipynb", as_version=4)
    nbformat.validate(committed)
    fresh = build.parse_source(build.SOURCE_DIR / f"{name}.py")
    assert _summary(committed) == _summary(fresh), (
        f"tutorials/{name}.ipynb is out of date with tutorials/source/{name}.py: run `python tutorials/build.py {name[:2]}`"
    )
    code = [cell for cell in committed.cells if cell.cell_type == "code"]
    for cell in code:  # prose that lost its "# %% [markdown]" header ends up as comments in a code cell
        stray = [line for line in cell.source.splitlines() if line == "#" or re.match(r"# #{1,6} ", line)]
        assert not stray, (
            f"tutorials/source/{name}.py: markdown inside a code cell (missing '# %% [markdown]'?): {stray}"
        )
    assert any(cell.outputs for cell in code), (
        f"{name}: committed without outputs (tutorials/README.md says why we keep them)"
    )
    for cell in code:
        assert cell.execution_count is None and "execution" not in cell.metadata, "run the build's normalise step"
        assert not [o for o in cell.outputs if o.output_type == "error"], f"{name}: a committed cell shows an error"
        stderr = [o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stderr"]
        assert not stderr, f"{name}: a committed cell printed warnings or errors: {stderr}"


@pytest.mark.parametrize("name", NAMES)
def test_reference_solutions_pass_the_notebooks_checks(name):
    """Each check cell of the notebook, run after the solutions file, prints PASS (no kernel needed)."""
    if backend.name != "numpy":
        pytest.skip(f"the tutorials and their graders run on the NumPy backend (this run uses {backend.name})")
    namespace: dict = {"__name__": f"solutions_{name}"}
    solution = TUTORIALS / "solutions" / f"{name}.py"
    exec(compile(solution.read_text(encoding="utf-8"), str(solution), "exec"), namespace)
    exec("from minialex import exercises", namespace)
    checks = _tagged(build.parse_source(build.SOURCE_DIR / f"{name}.py"), "check")
    for cell in checks:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(cell.source, f"{name} check cell", "exec"), namespace)
        lines = out.getvalue().strip().splitlines()
        assert lines and all(line.startswith("PASS ") for line in lines), f"{name}: {cell.source!r} printed {lines}"


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom(name, monkeypatch):
    """Execute the committed notebook in a fresh kernel with its exercises unsolved, as a learner meets it."""
    pytest.importorskip("nbclient", reason="the notebooks extra (nbclient) is missing")
    from nbclient.exceptions import CellExecutionError

    monkeypatch.setenv("MPLBACKEND", "Agg")  # the kernel inherits this environment
    monkeypatch.setenv("MINIALEX_BACKEND", "numpy")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    # CI runs two test workers on two cores: one BLAS thread per kernel avoids oversubscription (OpenBLAS threads
    # spin while they wait, and a notebook with two of them ran 4x slower next to another busy worker).
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(var, "1")
    nb = nbformat.read(TUTORIALS / f"{name}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    try:
        build.execute(nb, cwd=TUTORIALS, timeout=CELL_TIMEOUT_S)
    except CellExecutionError as exc:
        pytest.fail(f"tutorials/{name}.ipynb failed:\n{exc}")
    for cell in _tagged(nb, "check"):
        text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
        assert re.search(r"not yet implemented", text), f"{name}: the unsolved check cell printed {text!r}"


# --------------------------------------------------------------------------------------------------------
# The graders must be able to fail: each gets a classic wrong answer and must say FAIL (with its hint).


def _solution(name: str) -> dict:
    namespace: dict = {"__name__": f"solutions_{name}"}
    path = TUTORIALS / "solutions" / f"{name}.py"
    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), namespace)
    return namespace


def _wrong_answers() -> list[tuple[str, str, object, str]]:
    """(checker, description, wrong function, a phrase the verdict must contain)."""
    import numpy as np

    from minialex.exercises.batchnorm import batchnorm_backward_variant
    from minialex.exercises.lrn import lrn_backward_variant
    from minialex.exercises.photographs import covariance_variant, noise_variant

    s1, s2 = _solution("01_chain_rule"), _solution("02_convolution_as_gemm")
    s4, s5 = _solution("04_local_response_norm"), _solution("05_assembling_alexnet")
    s6, s7 = _solution("06_training"), _solution("07_cpu_vs_gpu")

    def softmax_ce_no_mean(logits, labels):
        return s1["softmax_ce_backward"](logits, labels) * len(labels)

    def softmax_ce_unstable(logits, labels):
        p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        p[np.arange(len(labels)), labels] -= 1
        return p / len(labels)

    def im2col_wrong_row_order(x, kh, kw, stride=1, padding=0):
        cols = s2["im2col_naive"](x, kh, kw, stride, padding)
        c = x.shape[1]
        return cols.reshape(c, kh * kw, -1).transpose(1, 0, 2).reshape(cols.shape)  # rows (i, j, c)

    def col2im_assign(cols, x_shape, kh, kw, stride=1, padding=0):
        n, c, h, w = x_shape
        oh, ow = (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1
        dpad = np.zeros((n, c, h + 2 * padding, w + 2 * padding))
        col = 0
        for b in range(n):
            for r in range(oh):
                for q in range(ow):
                    dpad[b, :, r * stride : r * stride + kh, q * stride : q * stride + kw] = cols[:, col].reshape(
                        c, kh, kw
                    )
                    col += 1
        return dpad[:, :, padding : padding + h, padding : padding + w]

    def relu_in_place(x, dy):
        dy[x <= 0] = 0
        return dy

    def maxpool_assign(x, dy, k, stride):
        dx = np.zeros_like(x)
        for idx in np.ndindex(*dy.shape):
            b, ch, r, q = idx
            window = x[b, ch, r * stride : r * stride + k, q * stride : q * stride + k]
            i, j = np.unravel_index(np.argmax(window), window.shape)
            dx[b, ch, r * stride + i, q * stride + j] = dy[idx]
        return dx

    def maxpool_last_max(x, dy, k, stride):
        dx = np.zeros_like(x)
        for idx in np.ndindex(*dy.shape):
            b, ch, r, q = idx
            window = x[b, ch, r * stride : r * stride + k, q * stride : q * stride + k].ravel()[::-1]
            flat = window.size - 1 - int(np.argmax(window))  # the last maximum
            i, j = divmod(flat, k)
            dx[b, ch, r * stride + i, q * stride + j] += dy[idx]
        return dx

    def lrn_alpha_over_n(a, size, alpha, beta, k):
        return s4["lrn_forward"](a, size, alpha / size, beta, k)

    def lrn_first_term_only(a, dy, size, alpha, beta, k):
        b = s4["lrn_forward"](a, size, alpha, beta, k)
        return dy * b / a

    def conv_forward_no_bias(x, w, b, stride, padding, groups):
        return s2["conv_forward_naive"](x, w, 0 * b, stride, padding, groups)

    def conv_forward_flipped(x, w, b, stride, padding, groups):
        return s2["conv_forward_naive"](x, w[:, :, ::-1, ::-1], b, stride, padding, groups)

    def conv_forward_groups_ignored(x, w, b, stride, padding, groups):
        return s2["conv_forward_naive"](x, w, b, stride, padding, 1)

    def conv_backward_assign(x, w, dy, stride, padding, groups):
        """dx with '=' where overlapping windows must add (dw and db right)."""
        n, _, h, wd = x.shape
        c_out, c_group, kh, kw = w.shape
        per_group = c_out // groups
        dxpad = np.zeros((n, x.shape[1], h + 2 * padding, wd + 2 * padding))
        for i in range(n):
            for r in range(dy.shape[2]):
                for q in range(dy.shape[3]):
                    rows, cols = slice(r * stride, r * stride + kh), slice(q * stride, q * stride + kw)
                    for g in range(groups):
                        filters = range(g * per_group, (g + 1) * per_group)
                        window = sum(dy[i, o, r, q] * w[o] for o in filters)
                        dxpad[i, g * c_group : (g + 1) * c_group, rows, cols] = window
        _, dw, db = s2["conv_backward_naive"](x, w, dy, stride, padding, groups)
        return dxpad[:, :, padding : padding + h, padding : padding + wd], dw, db

    def conv_backward_db_mean(x, w, dy, stride, padding, groups):
        dx, dw, _ = s2["conv_backward_naive"](x, w, dy, stride, padding, groups)
        return dx, dw, dy.mean(axis=(0, 2, 3))

    def conv_backward_groups_ignored(x, w, dy, stride, padding, groups):
        dx, dw, db = s2["conv_backward_naive"](x, w, dy, stride, padding, groups)
        if groups > 1:  # every filter's gradient taken from the first group's channels
            xs = np.repeat(x[:, : w.shape[1]], groups, axis=1)
            dw = s2["conv_backward_naive"](xs, w, dy, stride, padding, groups)[1]
        return dx, dw, db

    def conv_backward_not_cropped(x, w, dy, stride, padding, groups):
        dx, dw, db = s2["conv_backward_naive"](x, w, dy, stride, padding, groups)
        return np.pad(dx, ((0, 0), (0, 0), (padding, padding), (padding, padding))), dw, db

    def lrn_backward_unmirrored(a, dy, size, alpha, beta, k):
        return lrn_backward_variant(a, dy, size, alpha, beta, k, mirrored=False)

    def lrn_backward_alpha_over_n(a, dy, size, alpha, beta, k):
        return s4["lrn_backward"](a, dy, size, alpha / size, beta, k)

    def sgd_pytorch_buffer(w, v, grad, lr, momentum, weight_decay):
        buf = momentum * v + grad + weight_decay * w  # PyTorch: b <- mu b + g + lambda w ; w <- w - lr b
        return w - lr * buf, buf

    def linear_db_not_summed(x, weight, dy):
        dx, dw, _ = s1["linear_backward"](x, weight, dy)
        return dx, dw, dy.mean(axis=0)

    def conv_cost_no_bias(c_in, c_out, k, groups, out_h, out_w):
        params, macs = s5["conv_cost"](c_in, c_out, k, groups, out_h, out_w)
        return params - c_out, macs

    def pool5_side_rounding(image_size):
        side = round((image_size - 11) / 4 + 1)  # rounds 54.25 to 54, but 55.75 up to 56
        for k, s, p in [(3, 2, 0), (5, 1, 2), (3, 2, 0), (3, 1, 1), (3, 1, 1), (3, 1, 1), (3, 2, 0)]:
            side = (side + 2 * p - k) // s + 1
        return side

    def sgd_decay_not_scaled(w, v, grad, lr, momentum, weight_decay):
        v_new = momentum * v - weight_decay * w - lr * grad
        return w + v_new, v_new

    def sgd_in_place(w, v, grad, lr, momentum, weight_decay):
        v *= momentum
        v -= weight_decay * lr * w + lr * grad
        w += v
        return w, v

    def confusion_transposed(labels, predictions, num_classes):
        return s6["my_confusion_matrix"](labels, predictions, num_classes).T

    def im2col_bytes_no_padding(n, c, h, w, k, stride, padding, itemsize=4):
        return s7["im2col_bytes"](n, c, h, w, k, stride, 0, itemsize)

    def intensity_macs(m, k, n, itemsize=4):
        return s7["gemm_intensity"](m, k, n, itemsize) / 2

    def batchnorm_mistake(mistake):
        return lambda x, gamma, dy, eps: batchnorm_backward_variant(x, gamma, dy, eps, mistake)

    def covariance_mistake(mistake):
        return lambda images: covariance_variant(images, mistake)

    def noise_mistake(mistake):
        return lambda x, eigvals, eigvecs, alpha: noise_variant(x, eigvals, eigvecs, alpha, mistake)

    def noise_in_place(x, eigvals, eigvecs, alpha):
        x += ((alpha * eigvals) @ eigvecs.T)[:, :, None, None]
        return x

    def noise_per_pixel(x, eigvals, eigvecs, alpha):
        per_pixel = np.random.default_rng(0).normal(0, 0.1, (x.shape[0], x.shape[2], x.shape[3], 3))
        return x + ((per_pixel * eigvals) @ eigvecs.T).transpose(0, 3, 1, 2)

    def allgather_whole(c, h, w, p, itemsize):
        return ((p - 1) * c * h * w * itemsize,) * 2

    def allgather_one_peer(c, h, w, p, itemsize):
        return (c // p * h * w * itemsize,) * 2

    def allgather_elements(c, h, w, p, itemsize):
        return ((p - 1) * c // p * h * w,) * 2

    def allgather_free_backward(c, h, w, p, itemsize):
        return (p - 1) * c // p * h * w * itemsize, 0

    def crashes(*args):
        return args[0] @ np.ones((999, 1))

    def stub(*args):
        raise NotImplementedError

    return [
        ("check_linear_backward", "db averaged", linear_db_not_summed, "dbias differs"),
        ("check_linear_backward", "dW transposed", lambda x, w, dy: (dy @ w, x.T @ dy, dy.sum(0)), "shape"),
        ("check_softmax_ce_backward", "no 1/N", softmax_ce_no_mean, "N times too large"),
        ("check_softmax_ce_backward", "naive exp", softmax_ce_unstable, "maximum before exp"),
        ("check_conv_forward_naive", "no bias", conv_forward_no_bias, "forgot the bias"),
        ("check_conv_forward_naive", "flipped kernel", conv_forward_flipped, "cross-correlation"),
        ("check_conv_forward_naive", "groups ignored", conv_forward_groups_ignored, "its group"),
        ("check_conv_backward_naive", "= instead of +=", conv_backward_assign, "never assign"),
        ("check_conv_backward_naive", "db averaged", conv_backward_db_mean, "You averaged"),
        ("check_conv_backward_naive", "groups ignored in dw", conv_backward_groups_ignored, "its group"),
        ("check_conv_backward_naive", "padding not cut off", conv_backward_not_cropped, "cut the padding off"),
        ("check_im2col", "rows (i, j, c)", im2col_wrong_row_order, "row order"),
        ("check_col2im", "= instead of +=", col2im_assign, "+="),
        ("check_relu_backward", "writes into dy", relu_in_place, "modified"),
        ("check_relu_backward", "x >= 0", lambda x, dy: dy * (x >= 0), "at x = 0"),
        ("check_maxpool_backward", "= instead of +=", maxpool_assign, "+="),
        ("check_maxpool_backward", "last maximum on ties", maxpool_last_max, "first maximum"),
        ("check_lrn_forward", "alpha / n", lrn_alpha_over_n, "PyTorch"),
        ("check_lrn_backward", "first term only", lrn_first_term_only, "second term"),
        ("check_lrn_backward", "window not mirrored", lrn_backward_unmirrored, "mirrored"),
        ("check_lrn_backward", "alpha / n", lrn_backward_alpha_over_n, "divided α by n"),
        ("check_conv_cost", "no bias", conv_cost_no_bias, "bias"),
        (
            "check_conv_cost",
            "groups ignored",
            lambda ci, co, k, g, oh, ow: s5["conv_cost"](ci, co, k, 1, oh, ow),
            "groups",
        ),
        ("check_pool5_side", "rounds instead of flooring", pool5_side_rounding, "expected"),
        ("check_sgd_paper_step", "decay not times lr", sgd_decay_not_scaled, "scaled by the learning rate"),
        ("check_sgd_paper_step", "updates in place", sgd_in_place, "modified"),
        ("check_sgd_paper_step", "PyTorch's buffer", sgd_pytorch_buffer, "PyTorch's buffer"),
        ("check_confusion_matrix", "transposed", confusion_transposed, "Rows are the true class"),
        ("check_im2col_bytes", "padding ignored", im2col_bytes_no_padding, "real buffer"),
        ("check_gemm_intensity", "MACs, not FLOPs", intensity_macs, "2 FLOPs per multiply-add"),
        ("check_batchnorm_backward", "no mean term", batchnorm_mistake("no-mean-term"), "through μ"),
        ("check_batchnorm_backward", "no variance term", batchnorm_mistake("no-variance-term"), "through σ²"),
        ("check_batchnorm_backward", "mu, sigma constant", batchnorm_mistake("constants"), "as constants"),
        ("check_batchnorm_backward", "M - 1", batchnorm_mistake("n-minus-1"), "M − 1"),
        ("check_batchnorm_backward", "dgamma averaged", batchnorm_mistake("averaged"), "not means"),
        ("check_batchnorm_backward", "dgamma from x", batchnorm_mistake("dgamma-from-x"), "x̂"),
        ("check_batchnorm_backward", "batch axis only", batchnorm_mistake("batch-axis-only"), "N·H·W"),
        ("check_rgb_covariance", "not centred", covariance_mistake("uncentred"), "subtract the mean"),
        ("check_rgb_covariance", "np.cov's P - 1", covariance_mistake("P - 1"), "P − 1"),
        ("check_rgb_covariance", "reshape mixes images", covariance_mistake("mixed reshape"), "transpose"),
        ("check_rgb_covariance", "0..255 units", covariance_mistake("0..255"), "divide them by 255"),
        ("check_rgb_covariance", "mean of per-image covariances", covariance_mistake("per image"), "all pixels"),
        ("check_pca_colour_noise", "sqrt of the eigenvalues", noise_mistake("sqrt"), "√λ"),
        ("check_pca_colour_noise", "eigenvectors as rows", noise_mistake("rows"), "rows"),
        ("check_pca_colour_noise", "one alpha for all images", noise_mistake("one alpha"), "its own α_n"),
        ("check_pca_colour_noise", "in place", noise_in_place, "modified"),
        ("check_pca_colour_noise", "alpha per pixel", noise_per_pixel, "same shift"),
        ("check_allgather_bytes", "the whole activation", allgather_whole, "only its block"),
        ("check_allgather_bytes", "one peer only", allgather_one_peer, "P − 1"),
        ("check_allgather_bytes", "elements, not bytes", allgather_elements, "itemsize"),
        ("check_allgather_bytes", "backward sends nothing", allgather_free_backward, "reduce-scatter"),
        ("check_im2col", "crashes", crashes, "raised"),
        ("check_lrn_backward", "unsolved stub", stub, "not yet implemented"),
    ]


def test_graders_reject_classic_mistakes():
    if backend.name != "numpy":
        pytest.skip(f"the tutorials and their graders run on the NumPy backend (this run uses {backend.name})")
    from minialex import exercises

    for checker, description, wrong, phrase in _wrong_answers():
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            getattr(exercises, checker)(wrong)
        verdict = out.getvalue().strip()
        assert not verdict.startswith("PASS"), f"{checker} accepted a wrong answer ({description})"
        assert phrase in verdict, f"{checker} on '{description}': expected {phrase!r} in {verdict!r}"
