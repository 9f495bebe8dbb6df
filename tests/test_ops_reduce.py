"""Reductions, argmax/argmin, topk and cumsum: every case against onnxruntime and the reference interpreter,
with axes as the old attribute and as the newer operand."""
import numpy as np
import pytest

import irc
from irc.kernels.cpu.reduce import as_3d
from tests.util import check_model, node_model

rng = np.random.default_rng(1)

# ONNX op -> first opset where axes is an operand
REDUCTIONS = {"ReduceSum": 13, "ReduceMean": 18, "ReduceMax": 18, "ReduceMin": 18, "ReduceProd": 18,
              "ReduceL1": 18, "ReduceL2": 18, "ReduceSumSquare": 18, "ReduceLogSum": 18, "ReduceLogSumExp": 18}

# (id, axes or None for all, keepdims)
AXES = [("axis1", [1], 1), ("last-drop", [-1], 0), ("non-adjacent", [0, 2], 1), ("adjacent", [1, 2], 0),
        ("all", None, 1), ("all-drop", None, 0)]


def data(op, shape, dtype=np.float32):
    if op == "ReduceLogSum":
        return (rng.random(shape) + 0.5).astype(dtype)
    if op == "ReduceProd":
        return (rng.random(shape) + 0.5).astype(dtype)
    if dtype == np.int64:
        return rng.integers(-50, 50, shape).astype(dtype)
    return (rng.standard_normal(shape) * 3).astype(dtype)


def reduce_model(op, x, axes, keepdims, operand: bool, **attrs):
    if operand:
        consts = None if axes is None else {"axes": np.array(axes, np.int64)}
        return node_model(op, {"x": x}, {"keepdims": keepdims, **attrs}, consts, opset=REDUCTIONS[op])
    extra = {} if axes is None else {"axes": axes}
    return node_model(op, {"x": x}, {"keepdims": keepdims, **extra, **attrs}, opset=REDUCTIONS[op] - 2)


@pytest.mark.parametrize("form", ["attr", "operand"])
@pytest.mark.parametrize("axes_id,axes,keepdims", AXES, ids=[a[0] for a in AXES])
@pytest.mark.parametrize("op", list(REDUCTIONS))
def test_reduction(op, axes_id, axes, keepdims, form):
    x = data(op, (3, 4, 5))
    check_model(reduce_model(op, x, axes, keepdims, form == "operand"), {"x": x})


@pytest.mark.parametrize("op,dtype", [("ReduceSum", np.int64), ("ReduceMax", np.int64), ("ReduceMin", np.int32),
                                      ("ReduceProd", np.int64), ("ReduceMean", np.float64),
                                      ("ReduceSumSquare", np.float64), ("ReduceL2", np.float16),
                                      ("ReduceLogSumExp", np.float64)])
def test_reduction_dtypes(op, dtype):
    x = data(op, (2, 3, 4), dtype) if op != "ReduceProd" else rng.integers(-3, 4, (2, 3, 4)).astype(dtype)
    check_model(reduce_model(op, x, [1], 1, True), {"x": x})


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceL1", "ReduceMax"])
def test_noop_with_empty_axes_returns_the_input(op):
    x = data(op, (2, 3))
    got = check_model(reduce_model(op, x, None, 1, True, noop_with_empty_axes=1), {"x": x})
    np.testing.assert_allclose(got["out0"], np.abs(x) if op == "ReduceL1" else x, rtol=1e-6)


def test_axes_read_at_run_time():
    x = data("ReduceMean", (3, 4, 5))
    m = node_model("ReduceMean", {"x": x, "axes": np.array([0, -1], np.int64)}, {"keepdims": 0}, opset=18,
                   symbolic={"axes": ["n"]})
    check_model(m, {"x": x, "axes": np.array([0, -1], np.int64)})
    got = irc.compile(m).run({"x": x, "axes": np.array([1], np.int64)})["out0"]
    np.testing.assert_allclose(got, x.mean(axis=1), rtol=1e-5, atol=1e-6)
    with pytest.raises(irc.IrcError, match="reducemean_node.*out of range"):
        irc.compile(m).run({"x": x, "axes": np.array([3], np.int64)})


def test_large_values_do_not_overflow_log_sum_exp():
    x = (rng.standard_normal((4, 64)) * 10 + 200).astype(np.float32)
    check_model(reduce_model("ReduceLogSumExp", x, [1], 0, True), {"x": x})


def test_long_float32_sums_stay_accurate():
    x = (rng.random((2, 100_003)) + 1000).astype(np.float32)
    got = irc.compile(reduce_model("ReduceSum", x, [1], 0, True)).run({"x": x})["out0"]
    exact = x.astype(np.float64).sum(axis=1)
    assert np.abs(got - exact).max() <= 1e-6 * exact.max()


@pytest.mark.parametrize("shape,axes,moved", [((2, 3, 4, 5), (1, 2), False), ((2, 3, 4, 5), (0, 3), True),
                                              ((2, 3, 4, 5), (0, 2, 3), True), ((6,), (0,), False),
                                              ((2, 3), (), False)])
def test_as_3d_groups_reduced_axes(shape, axes, moved):
    """Adjacent reduced axes are a view of x; others are moved last by a copy; the middle dim is what reduces."""
    x = rng.standard_normal(shape)
    x3 = as_3d(x, axes)
    want = np.moveaxis(x, axes, range(x.ndim - len(axes), x.ndim)) if moved else x
    assert x3.flags.c_contiguous and x3.shape[1] == np.prod([shape[a] for a in axes], dtype=int)
    assert np.shares_memory(x3, x) != moved
    np.testing.assert_array_equal(x3.reshape(-1), np.ascontiguousarray(want).reshape(-1))


def ties(*shape):
    return rng.integers(0, 3, shape).astype(np.float32)


def case(id, op, inputs, attrs=None, consts=None, opset=17, n_outputs=1):
    return pytest.param(op, inputs, attrs, consts, opset, n_outputs, id=id)


SCANS = [
    case("argmax-default", "ArgMax", {"x": ties(3, 4)}, opset=9),
    case("argmax-neg-drop", "ArgMax", {"x": ties(2, 3, 5)}, {"axis": -1, "keepdims": 0}),
    case("argmax-last-index", "ArgMax", {"x": ties(4, 6)}, {"axis": 1, "select_last_index": 1}, opset=12),
    case("argmin-int", "ArgMin", {"x": rng.integers(0, 3, (5, 3)).astype(np.int64)}, {"axis": 0}),
    case("argmin-last-index", "ArgMin", {"x": ties(3, 4, 2)}, {"axis": 1, "keepdims": 0, "select_last_index": 1},
         opset=13),
    case("topk-9-attr", "TopK", {"x": ties(3, 6)}, {"k": 3}, opset=9, n_outputs=2),
    case("topk-largest", "TopK", {"x": ties(4, 5)}, {"axis": 0}, consts={"k": np.array([2], np.int64)},
         opset=11, n_outputs=2),
    case("topk-smallest", "TopK", {"x": ties(2, 3, 7)}, {"axis": -1, "largest": 0},
         consts={"k": np.array([4], np.int64)}, n_outputs=2),
    case("topk-int-all", "TopK", {"x": rng.integers(-5, 5, (2, 6)).astype(np.int64)},
         consts={"k": np.array([6], np.int64)}, n_outputs=2),
    case("cumsum", "CumSum", {"x": rng.standard_normal((3, 4)).astype(np.float32)},
         consts={"a": np.array(1, np.int64)}, opset=11),
    case("cumsum-exclusive", "CumSum", {"x": rng.standard_normal((3, 4)).astype(np.float32)}, {"exclusive": 1},
         consts={"a": np.array(0, np.int32)}),
    case("cumsum-reverse", "CumSum", {"x": rng.integers(-9, 9, (2, 5)).astype(np.int64)}, {"reverse": 1},
         consts={"a": np.array(-1, np.int64)}),
    case("cumsum-both", "CumSum", {"x": rng.standard_normal((2, 3, 4)).astype(np.float64)},
         {"reverse": 1, "exclusive": 1}, consts={"a": np.array(1, np.int64)}),
]


@pytest.mark.parametrize("op,inputs,attrs,consts,opset,n_outputs", SCANS)
def test_scan(op, inputs, attrs, consts, opset, n_outputs):
    check_model(node_model(op, inputs, attrs, consts, n_outputs=n_outputs, opset=opset), inputs)


def test_bad_axes_are_irc_errors():
    x = data("ReduceSum", (2, 3))
    with pytest.raises(irc.IrcError, match="reducesum_node"):
        irc.compile(reduce_model("ReduceSum", x, [2], 1, True))
    with pytest.raises(irc.IrcError, match="repeat"):
        irc.compile(reduce_model("ReduceMax", x, [1, -1], 1, True))


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceProd", "ReduceMax", "ReduceL2"])
def test_reduction_over_no_elements_gives_the_identity(op):
    x = np.zeros((2, 0, 3), np.float32)
    check_model(reduce_model(op, x, [1], 0, True), {"x": x})


def test_reduction_of_a_scalar():
    x = np.array(-2.5, np.float32)
    check_model(reduce_model("ReduceL1", x, None, 0, True), {"x": x})


@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMin"])
@pytest.mark.parametrize("axis", [0, 1])
def test_extremes_propagate_nan(op, axis):
    """A NaN anywhere in the reduced entries gives NaN (onnxruntime only does so when the NaN comes first)."""
    x = rng.standard_normal((21, 19)).astype(np.float32)
    x[5, 7] = np.nan
    got = irc.compile(reduce_model(op, x, [axis], 0, True)).run({"x": x})["out0"]
    want = (np.max if op == "ReduceMax" else np.min)(x, axis=axis)
    np.testing.assert_array_equal(got, want)
