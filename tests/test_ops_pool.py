"""Window pools, global pools and the H,W mean (kernels/cpu/pool.py, reduce.py) against onnxruntime and the
reference interpreter, over the paths the kernels take: maps narrower than depthwise.NARROW are gathered,
wider ones copied row by row (stride 1), de-interleaved (stride 2) or strided (3); padding, dilation,
ceil_mode and count_include_pad; NaN and infinities; batches, 1-D pools and float64. The small-map forms
are in test_ops_pool_norm.py."""
import numpy as np
import pytest

import irc
from irc.backend.registry import lowering
from irc.frontend import import_onnx
from irc.kernels.cpu.depthwise import NARROW
from irc.ops.interpret import interpret
from tests.util import assert_close, check_model, node_model


def rand(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def pool(k, s=1, p=0, **attrs):
    """Attributes of a square 2-D pool: kernel k, stride s, padding p on every side."""
    return {"kernel_shape": [k, k], "strides": [s, s], "pads": [p] * 4, **attrs}


W = NARROW + 5
# name: (op, x shape, attributes)
CASES = {
    "vgg_max_2x2_s2_wide": ("MaxPool", (1, 3, W + 1, W + 3), pool(2, 2)),
    "resnet_max_3x3_s2_pad1_wide": ("MaxPool", (2, 4, W, W), pool(3, 2, 1)),
    "max_3x3_s2_pad1_narrow": ("MaxPool", (1, 16, 14, 14), pool(3, 2, 1)),
    "max_3x3_s1_pad1_wide": ("MaxPool", (1, 2, 6, W), pool(3, 1, 1)),
    "max_stride3_asym_pads_wide": ("MaxPool", (1, 3, 9, W), {"kernel_shape": [3, 4], "strides": [3, 3],
                                                             "pads": [1, 0, 0, 2]}),
    "max_dilated_ceil_wide": ("MaxPool", (1, 2, 11, W), pool(3, 2, 1, dilations=[2, 2], ceil_mode=1)),
    "max_window_is_image": ("MaxPool", (2, 3, 5, 6), {"kernel_shape": [5, 6]}),
    "avg_3x3_s1_pad1_wide": ("AveragePool", (1, 3, 8, W), pool(3, 1, 1)),
    "avg_3x3_s2_pad1_count_pad_wide": ("AveragePool", (1, 3, W, W), pool(3, 2, 1, count_include_pad=1)),
    "avg_ceil_count_pad_narrow": ("AveragePool", (2, 3, 9, 10), pool(3, 2, 1, ceil_mode=1, count_include_pad=1)),
    "avg_ceil_wide": ("AveragePool", (1, 2, 7, W), pool(2, 3, 0, ceil_mode=1)),
    "avg_dilated_stride3": ("AveragePool", (1, 2, 13, 16), {"kernel_shape": [2, 3], "strides": [3, 3],
                                                            "dilations": [3, 2], "pads": [1, 2, 1, 2]}),
    "avg_same_upper_s2": ("AveragePool", (1, 4, 10, W), pool(3, 2, auto_pad="SAME_UPPER", pads=None)),
    "max_1d_wide": ("MaxPool", (2, 3, 3 * W), {"kernel_shape": [3], "strides": [2], "pads": [1, 1]}),
    "avg_1d": ("AveragePool", (1, 4, 11), {"kernel_shape": [4], "strides": [1], "pads": [2, 1]}),
    "max_2x2_s2_odd_floor": ("MaxPool", (2, 3, 9, 11), pool(2, 2)),
    "max_2x2_s2_odd_ceil": ("MaxPool", (1, 3, 9, 11), pool(2, 2, ceil_mode=1)),
    "avg_2x2_s2_batch2": ("AveragePool", (2, 4, 8, W + 1), pool(2, 2)),
    "avg_2x2_s2_padded": ("AveragePool", (1, 2, 8, 8), pool(2, 2, 1)),
    "max_2x2_s1": ("MaxPool", (1, 2, 8, 8), pool(2, 1)),
    "global_avg": ("GlobalAveragePool", (2, 12, 7, 7), {}),
    "global_avg_wide": ("GlobalAveragePool", (1, 3, W, W), {}),
    "global_max": ("GlobalMaxPool", (2, 5, 9, 11), {}),
}


def model(op, x, attrs):
    """The one-node model (AveragePool has dilations from opset 19 on)."""
    opset = 19 if op == "AveragePool" and "dilations" in attrs else 17
    return node_model(op, {"x": x}, {k: v for k, v in attrs.items() if v is not None}, opset=opset)


@pytest.mark.parametrize("name", list(CASES))
def test_pool(name):
    op, shape, attrs = CASES[name]
    x = rand(shape, len(name))
    check_model(model(op, x, attrs), {"x": x})


# the 2x2 stride-2 windows without padding that stay inside the image are read straight from the input
DIRECT_2X2 = {"vgg_max_2x2_s2_wide", "max_2x2_s2_odd_floor", "avg_2x2_s2_batch2"}


@pytest.mark.parametrize("name", [n for n, (op, _, _) in CASES.items() if op in ("MaxPool", "AveragePool")])
def test_algorithm(name):
    op, shape, attrs = CASES[name]
    [node] = [n for n in import_onnx(model(op, rand(shape), attrs)).nodes if n.op != "const"]
    assert lowering(node.op).fn(node).algo == ("direct-2x2" if name in DIRECT_2X2 else "direct")


@pytest.mark.parametrize("name", ["resnet_max_3x3_s2_pad1_wide", "avg_3x3_s2_pad1_count_pad_wide", "global_avg",
                                  "max_3x3_s2_pad1_narrow"])
def test_nan_and_infinities(name):
    """Infinities reach the windows that hold them and padding never wins a max (all inputs are below 0); a
    NaN spoils every mean that holds it (a max is left without: onnxruntime's MaxPool skips NaN, where
    the reference lets it win)."""
    op, shape, attrs = CASES[name]
    x = -np.abs(rand(shape, 1)) - 10
    x[0, 0, 0, 0], x[0, 1, 3, 4], x[0, 2, 5, 1] = -np.inf if op == "MaxPool" else np.nan, np.inf, -np.inf
    check_model(model(op, x, attrs), {"x": x})


@pytest.mark.parametrize("name", ["vgg_max_2x2_s2_wide", "avg_2x2_s2_batch2", "avg_ceil_count_pad_narrow",
                                  "global_max", "global_avg"])
def test_float64_matches_reference(name):
    op, shape, attrs = CASES[name]
    x = rand(shape, 2, np.float64)
    m = model(op, x, attrs)
    got = irc.compile(m).run({"x": x})["out0"]
    [ref] = interpret(import_onnx(m), {"x": x})
    assert_close(got, ref, tol=1e-12)


@pytest.mark.parametrize("shape", [(1, 1280, 7, 7), (2, 3, W, 5)])
def test_mean_over_height_and_width(shape):
    x = rand(shape, 3)
    for keepdims in (0, 1):
        m = node_model("ReduceMean", {"x": x}, {"axes": [2, 3], "keepdims": keepdims}, opset=13)
        [node] = [n for n in import_onnx(m).nodes if n.op == "reduce_mean"]
        assert lowering("reduce_mean").fn(node).algo == "row-mean"
        check_model(m, {"x": x})


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool", "MaxPool"])
def test_float16_pools_in_float32(op):
    x = rand((2, 5, 6, 7), 4, np.float16)
    check_model(model(op, x, pool(2, 2) if op == "MaxPool" else {}), {"x": x}, tol=5e-3)
