"""The in-numba BLAS GEMM (kernels/cpu/blas.py), its parallel splits (kernels/cpu/gemm.py) and the
single-threaded-BLAS policy of runs."""
import threading

import numpy as np
import pytest
from onnx import helper

import irc
from irc.kernels.cpu import blas
from irc.kernels.cpu.gemm import gemm_batched, gemm_parallel
from tests.util import check_model, graph_model

# small ones run on the calling thread; (40, 70, 300) splits columns and (300, 50, 40) rows across the pool
SHAPES = [(1, 1, 1), (7, 5, 9), (3, 64, 200), (130, 17, 2), (64, 1, 33), (40, 70, 300), (300, 50, 40)]


def _operands(m, k, n, dtype, layout, rng):
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    if layout == "transposed":  # views with a unit stride along rows, read in place
        a, b = np.ascontiguousarray(a.T).T, np.ascontiguousarray(b.T).T
    elif layout == "strided":  # views into wider arrays
        a = np.pad(a, ((0, 0), (2, 3)))[:, 2:2 + k]
        b = np.pad(b, ((0, 0), (1, 0)))[:, 1:]
    return a, b


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "strided"])
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_gemm_matches_numpy(m, k, n, dtype, layout):
    rng = np.random.default_rng(m * 100 + n)
    a, b = _operands(m, k, n, dtype, layout, rng)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    for fn in (blas.gemm, blas.gemm_loops):
        c = c0.copy()
        fn(a, b, c, 0.5)
        np.testing.assert_allclose(c, a.astype(np.float64) @ b + 0.5 * c0, rtol=tol, atol=tol * k)
    wide = np.zeros((m, n + 7), dtype)  # a result view inside a wider array: the columns around stay 0
    gemm_parallel(a, b, wide[:, 3:3 + n], 0.0, 2)
    np.testing.assert_allclose(wide[:, 3:3 + n], a.astype(np.float64) @ b, rtol=tol, atol=tol * k)
    assert not wide[:, :3].any() and not wide[:, 3 + n:].any()


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_gemm_batched_broadcasts_a_stride_zero_batch(batch):
    rng = np.random.default_rng(batch)
    a = rng.standard_normal((batch, 60, 40)).astype(np.float32)  # big enough to use the pool
    b = np.broadcast_to(rng.standard_normal((1, 40, 70)).astype(np.float32), (batch, 40, 70))
    c = np.empty((batch, 60, 70), np.float32)
    gemm_batched(a, b, c, 2)
    np.testing.assert_allclose(c, np.matmul(a, b), rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not blas.AVAILABLE, reason="no CBLAS library loaded by numpy")
def test_blas_is_single_threaded_inside_and_restored_after():
    get = blas.blas_threads
    before = get()
    barrier, seen = threading.Barrier(2), []

    def worker():
        with blas.single_threaded_blas():
            barrier.wait()
            seen.append(get())
            barrier.wait()
    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [1, 1] and get() == before


# -- the fused GEMM kernel (bias row and relu/clip inside the GEMM): which path runs, and its results ------

def _epilogue_nodes(act, src):
    if act == "relu":
        return [helper.make_node("Relu", [src], ["y"])]
    if act == "clip":
        return [helper.make_node("Clip", [src, "lo", "hi"], ["y"])]
    return [helper.make_node("Identity", [src], ["y"])]


CLIP_BOUNDS = {"lo": np.array(-0.5, np.float32), "hi": np.array(0.75, np.float32)}


@pytest.mark.parametrize("act", ["none", "relu", "clip"])
@pytest.mark.parametrize("c_shape,trans_b,alpha,beta,fused", [
    ((48,), 1, 1.0, 1.0, True), ((1, 48), 0, 0.5, 2.0, True), (None, 1, 1.5, 1.0, True),
    ((5, 48), 0, 1.0, 1.0, False), ((5, 1), 1, 2.0, 0.5, False)])
def test_gemm_bias_and_clamp(act, c_shape, trans_b, alpha, beta, fused):
    rng = np.random.default_rng(len(act))
    consts = {"w": rng.standard_normal((48, 600) if trans_b else (600, 48)).astype(np.float32), **CLIP_BOUNDS}
    operands = ["x", "w"]
    if c_shape is not None:
        consts["c"] = rng.standard_normal(c_shape).astype(np.float32)
        operands.append("c")
    nodes = [helper.make_node("Gemm", operands, ["g"], alpha=alpha, beta=beta, transB=trans_b)]
    model = graph_model("gemm", nodes + _epilogue_nodes(act, "g"), {"x": [5, 600]}, {"y": [5, 48]}, consts)
    x = rng.standard_normal((5, 600)).astype(np.float32)
    x[0, 0] = np.nan  # a NaN row stays NaN through the bias and the clamp
    check_model(model, {"x": x})
    node = next(n for n in irc.compile(model).graph.nodes if n.op == "gemm")
    assert (node.attrs.get("epilogue") or []) == ([] if act == "none" else [act])
    assert _fused_gemm(model) == fused


@pytest.mark.parametrize("act", ["none", "relu", "clip"])
@pytest.mark.parametrize("rows", [[3, 7, 256], [1, 40]])
def test_matmul_bias_row_and_clamp(act, rows):
    rng = np.random.default_rng(7)
    consts = {"w": rng.standard_normal((rows[-1], 96)).astype(np.float32),
              "b": rng.standard_normal((96,)).astype(np.float32), **CLIP_BOUNDS}
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["a"])]
    out = rows[:-1] + [96]
    model = graph_model("mm", nodes + _epilogue_nodes(act, "a"), {"x": rows}, {"y": out}, consts)
    check_model(model, {"x": rng.standard_normal(rows).astype(np.float32)})
    assert _fused_gemm(model)


def _fused_gemm(model):
    """Whether the model's gemm/matmul node runs the fused GEMM kernel (its plan step's algorithm)."""
    m = irc.compile(model)
    shape = [d if isinstance(d, int) else 1 for d in m.graph.inputs[0].type.shape]
    step = next(s for s in m.plan({"x": np.zeros(shape, np.float32)}).steps if s.node.op in ("gemm", "matmul"))
    return step.algo == "fused-gemm"
