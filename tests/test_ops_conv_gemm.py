"""conv2d, conv_transpose2d, matmul and gemm: each case against onnxruntime and the reference interpreter,
plus the kernel each conv lowers to, symbolic batches, opset forms and errors."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import irc
from irc.backend.registry import lowering
from irc.frontend import import_onnx
from tests.util import NP_TO_ONNX, check_model, node_model


def rand(shape, seed, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def one_node(model):
    """The graph's only node that is not a constant, after import."""
    nodes = [n for n in import_onnx(model).nodes if n.op != "const"]
    assert len(nodes) == 1, [n.op for n in nodes]
    return nodes[0]


def conv_model(op, x_shape, w_shape, attrs, bias=False, weight_input=False, seed=0, dtype=np.float32):
    """A Conv/ConvTranspose model and its feeds; the weight (and bias) are initializers unless weight_input."""
    x, w = rand(x_shape, seed, dtype), rand(w_shape, seed + 1, dtype)
    out_channels = w_shape[0] if op == "Conv" else w_shape[1] * attrs.get("group", 1)
    params = {"w": w}
    if bias:
        params["b"] = rand((out_channels,), seed + 2, dtype)
    inputs = {"x": x, **params} if weight_input else {"x": x}
    model = node_model(op, inputs, attrs, consts=None if weight_input else params)
    return model, inputs


# (x shape, w shape, attributes, bias, algorithm)
CONV_CASES = {
    "3x3_pad1_bias": ((1, 3, 8, 8), (4, 3, 3, 3), {"pads": [1, 1, 1, 1]}, True, "im2col"),
    "batch2_stride2_asym_pads": ((2, 5, 9, 7), (6, 5, 3, 2), {"strides": [2, 2], "pads": [0, 1, 2, 1]}, False,
                                 "im2col"),
    "dilation2": ((1, 4, 11, 10), (3, 4, 3, 3), {"dilations": [2, 2], "pads": [2, 2, 2, 2]}, True, "im2col"),
    "dilation_stride_mixed": ((2, 3, 12, 9), (5, 3, 2, 3), {"dilations": [3, 1], "strides": [1, 2]}, True,
                              "im2col"),
    "groups2_stride21": ((2, 6, 7, 7), (4, 3, 3, 3), {"group": 2, "strides": [2, 1], "pads": [1, 0, 1, 2]}, True,
                         "grouped-direct"),
    "groups3_kernel_shape": ((1, 6, 6, 5), (9, 2, 3, 3), {"group": 3, "kernel_shape": [3, 3]}, False,
                             "grouped-direct"),
    "groups2_dilated_wide": ((2, 18, 7, 9), (4, 9, 3, 3), {"group": 2, "dilations": [1, 2], "pads": [1, 2, 0, 1]},
                             True, "im2col"),
    "depthwise": ((2, 8, 10, 9), (8, 1, 3, 3), {"group": 8, "pads": [1, 1, 1, 1]}, True, "depthwise"),
    "depthwise_multiplier2_stride2_dilated": ((1, 4, 9, 11), (8, 1, 3, 3),
                                             {"group": 4, "strides": [2, 2], "dilations": [1, 2],
                                              "pads": [0, 2, 1, 1]}, True, "depthwise"),
    "depthwise_stride32_dilation23": ((1, 3, 11, 13), (3, 1, 3, 3), {"group": 3, "strides": [3, 2],
                                                                    "dilations": [2, 3], "pads": [2, 1, 0, 2]},
                                     True, "depthwise"),
    "grouped_stride2": ((1, 8, 9, 8), (8, 2, 3, 3), {"group": 4, "strides": [2, 2], "pads": [1, 1, 1, 1]}, True,
                        "grouped-direct"),
    "depthwise_5x5_same_upper": ((1, 6, 7, 8), (6, 1, 5, 5), {"group": 6, "auto_pad": "SAME_UPPER",
                                                              "strides": [2, 2]}, False, "depthwise"),
    "pointwise": ((2, 16, 5, 7), (8, 16, 1, 1), {}, True, "gemm1x1"),
    "pointwise_groups": ((1, 20, 4, 3), (6, 10, 1, 1), {"group": 2}, False, "gemm1x1"),
    "pointwise_small_groups": ((2, 8, 4, 3), (6, 4, 1, 1), {"group": 2}, True, "grouped-direct"),
    "1x1_stride2": ((1, 5, 7, 7), (3, 5, 1, 1), {"strides": [2, 2]}, True, "im2col"),
    "1x1_padded": ((1, 5, 3, 4), (3, 5, 1, 1), {"pads": [1, 0, 0, 1]}, False, "im2col"),
    "same_upper_stride2": ((1, 3, 7, 8), (4, 3, 3, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, True,
                           "im2col"),
    "same_lower_even_kernel": ((2, 3, 6, 7), (2, 3, 2, 4), {"auto_pad": "SAME_LOWER"}, False, "im2col"),
    "valid": ((1, 2, 6, 6), (3, 2, 3, 3), {"auto_pad": "VALID", "strides": [1, 2]}, True, "im2col"),
    "row_kernel": ((1, 3, 4, 17), (2, 3, 1, 5), {"pads": [0, 2, 0, 2]}, False, "im2col"),
    "kernel_covers_image": ((1, 2, 3, 3), (4, 2, 3, 3), {}, True, "im2col"),
}


@pytest.mark.parametrize("name", list(CONV_CASES))
def test_conv2d(name):
    x_shape, w_shape, attrs, bias, algo = CONV_CASES[name]
    model, feeds = conv_model("Conv", x_shape, w_shape, attrs, bias, seed=len(name))
    assert lowering("conv2d").fn(one_node(model)).algo == algo
    check_model(model, feeds)


@pytest.mark.parametrize("name", ["3x3_pad1_bias", "depthwise", "groups2_stride21", "pointwise"])
def test_conv2d_weight_as_input(name):
    """Weights that are not constants are packed at run time."""
    x_shape, w_shape, attrs, bias, _ = CONV_CASES[name]
    check_model(*conv_model("Conv", x_shape, w_shape, attrs, bias, weight_input=True))


def test_conv2d_float16_runs_in_float32():
    check_model(*conv_model("Conv", (1, 3, 6, 6), (4, 3, 3, 3), {"pads": [1, 1, 1, 1]}, True, dtype=np.float16),
                tol=5e-3)


def test_conv2d_symbolic_batch():
    w, b = rand((4, 3, 3, 3), 1), rand((4,), 2)
    model = node_model("Conv", {"x": rand((2, 3, 8, 8), 0)}, {"pads": [1, 1, 1, 1], "strides": [2, 2]},
                       consts={"w": w, "b": b}, symbolic={"x": ["N", 3, 8, 8]})
    assert one_node(model).outputs[0].type.shape == ("N", 4, 4, 4)
    for batch in (1, 3):
        check_model(model, {"x": rand((batch, 3, 8, 8), batch)})


def test_conv1d_imports_through_a_height_one_conv2d():
    model, feeds = conv_model("Conv", (2, 3, 10), (4, 3, 3), {"pads": [1, 2], "strides": [2], "dilations": [1],
                                                              "kernel_shape": [3]}, bias=True)
    ops = [n.op for n in import_onnx(model).nodes if n.op != "const"]
    assert ops == ["unsqueeze", "unsqueeze", "conv2d", "squeeze"]
    check_model(model, feeds)


def test_conv1d_depthwise_same():
    check_model(*conv_model("Conv", (1, 4, 9), (8, 1, 4), {"group": 4, "auto_pad": "SAME_UPPER"}, bias=True))


def test_conv3d_is_unsupported():
    model, _ = conv_model("Conv", (1, 2, 4, 4, 4), (3, 2, 3, 3, 3), {})
    with pytest.raises(irc.errors.UnsupportedError, match="only 1-D and 2-D Conv") as err:
        irc.compile(model)
    assert "conv_node" in str(err.value)


@pytest.mark.parametrize("x_shape, w_shape, attrs, match", [
    ((1, 4, 5, 5), (2, 3, 3, 3), {}, "4 channels"),
    ((1, 4, 5, 5), (2, 4, 3, 3), {"kernel_shape": [2, 2]}, "kernel_shape"),
    ((1, 4, 2, 2), (2, 4, 3, 3), {}, "spatial size"),
    ((1, 4, 5, 5), (2, 4, 3, 3), {"strides": [1]}, "strides needs 2 values"),
])
def test_conv2d_bad_models_raise_irc_error(x_shape, w_shape, attrs, match):
    model, _ = conv_model("Conv", x_shape, w_shape, attrs)
    with pytest.raises(irc.IrcError, match=match):
        irc.compile(model)


# (x shape, w shape, attributes, bias)
CONV_TRANSPOSE_CASES = {
    "basic_bias": ((1, 4, 5, 5), (4, 3, 3, 3), {}, True),
    "stride2_pads_output_padding": ((2, 4, 5, 6), (4, 2, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1],
                                                                  "output_padding": [1, 1]}, True),
    "groups2_dilation2": ((1, 6, 4, 5), (6, 2, 3, 3), {"group": 2, "dilations": [2, 2]}, True),
    "depthwise_groups": ((1, 3, 4, 4), (3, 1, 3, 3), {"group": 3, "strides": [2, 2]}, False),
    "same_upper_stride2": ((1, 3, 5, 4), (3, 2, 3, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, True),
    "same_lower_odd_cut": ((2, 2, 3, 4), (2, 3, 4, 4), {"auto_pad": "SAME_LOWER", "strides": [2, 3]}, False),
    "valid": ((1, 2, 3, 3), (2, 2, 3, 2), {"auto_pad": "VALID", "strides": [2, 1]}, True),
    "output_shape": ((1, 3, 5, 6), (3, 2, 3, 3), {"strides": [2, 2], "output_shape": [10, 12]}, True),
    "output_shape_same_upper": ((1, 2, 5, 5), (2, 2, 3, 3), {"strides": [2, 2], "output_shape": [8, 9],
                                                             "auto_pad": "SAME_UPPER"}, False),
    "output_shape_past_full": ((1, 2, 5, 4), (2, 1, 3, 3), {"strides": [2, 2], "output_shape": [12, 10]}, True),
    "asym_pads_stride12": ((1, 3, 4, 5), (3, 4, 3, 2), {"strides": [1, 2], "pads": [0, 1, 2, 0]}, True),
    "unet_up_2x2_stride2": ((2, 8, 4, 4), (8, 4, 2, 2), {"strides": [2, 2], "kernel_shape": [2, 2]}, True),
}


@pytest.mark.parametrize("name", list(CONV_TRANSPOSE_CASES))
def test_conv_transpose2d(name):
    x_shape, w_shape, attrs, bias = CONV_TRANSPOSE_CASES[name]
    check_model(*conv_model("ConvTranspose", x_shape, w_shape, attrs, bias, seed=len(name)))


def test_conv_transpose2d_weight_as_input_and_float16():
    x_shape, w_shape, attrs, bias = CONV_TRANSPOSE_CASES["stride2_pads_output_padding"]
    check_model(*conv_model("ConvTranspose", x_shape, w_shape, attrs, bias, weight_input=True))
    check_model(*conv_model("ConvTranspose", x_shape, w_shape, attrs, bias, dtype=np.float16), tol=5e-3)


def test_conv_transpose1d_and_symbolic_batch():
    check_model(*conv_model("ConvTranspose", (2, 3, 6), (3, 2, 3), {"strides": [2], "pads": [1, 0],
                                                                     "output_padding": [1]}, bias=True))
    model = node_model("ConvTranspose", {"x": rand((1, 4, 3, 3), 0)}, {"strides": [2, 2]},
                       consts={"w": rand((4, 2, 2, 2), 1)}, symbolic={"x": ["N", 4, 3, 3]})
    assert one_node(model).outputs[0].type.shape == ("N", 2, 6, 6)
    check_model(model, {"x": rand((3, 4, 3, 3), 2)})


# (a shape, b shape); b an initializer when marked "const"
MATMUL_CASES = [
    ((3, 4), (4, 5)),
    ((1, 7), (7, 1)),
    ((4,), (4, 5)),
    ((3, 4), (4,)),
    ((4,), (4,)),
    ((2, 3, 4), (4, 5)),
    ((2, 3, 4), (4, 5), "const"),
    ((2, 3, 4), (2, 4, 5)),
    ((2, 1, 3, 4), (3, 4, 5)),
    ((1, 3, 4), (2, 4, 5)),
    ((2, 3, 4, 5), (5,)),
    ((5,), (2, 5, 3)),
    ((3, 4), (2, 4, 6)),
    ((1, 2, 6, 8), (1, 2, 8, 6)),
]


@pytest.mark.parametrize("case", MATMUL_CASES, ids=str)
def test_matmul(case):
    a_shape, b_shape, *const = case
    a, b = rand(a_shape, 0), rand(b_shape, 1)
    model = node_model("MatMul", {"a": a}, consts={"b": b}) if const else node_model("MatMul", {"a": a, "b": b})
    check_model(model, {"a": a} if const else {"a": a, "b": b})


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32, np.int64])
def test_matmul_dtypes(dtype):
    a = (rand((2, 3, 4), 0) * 4).astype(dtype)
    b = (rand((2, 4, 5), 1) * 4).astype(dtype)
    check_model(node_model("MatMul", {"a": a, "b": b}), {"a": a, "b": b}, tol=5e-3)


def test_matmul_transposed_operand_from_another_node():
    """A non-contiguous operand (here a transposed view) goes through the same path."""
    x, w = rand((2, 5, 3), 0), rand((2, 5, 4), 1)
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["xt", "w"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape),
                                           helper.make_tensor_value_info("w", TensorProto.FLOAT, w.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    check_model(model, {"x": x, "w": w})


def test_matmul_symbolic_batch():
    model = node_model("MatMul", {"a": rand((2, 3, 4), 0)}, consts={"b": rand((4, 6), 1)},
                       symbolic={"a": ["B", "S", 4]})
    assert one_node(model).outputs[0].type.shape == ("B", "S", 6)
    for batch, seq in ((1, 1), (3, 5)):
        check_model(model, {"a": rand((batch, seq, 4), batch)})


def test_matmul_inner_dim_mismatch_raises():
    with pytest.raises(irc.IrcError, match="inner dims 4 and 3"):
        irc.compile(node_model("MatMul", {"a": rand((2, 4), 0), "b": rand((3, 5), 1)}))


# (A shape, B shape, C shape or None, attributes, opset)
GEMM_CASES = {
    "plain_vector_c": ((3, 4), (4, 5), (5,), {}, 17),
    "trans_a": ((4, 3), (4, 5), (3, 5), {"transA": 1}, 17),
    "trans_b_alpha_beta": ((3, 4), (5, 4), (1, 5), {"transB": 1, "alpha": 0.5, "beta": 2.0}, 17),
    "trans_both_column_c": ((4, 3), (5, 4), (3, 1), {"transA": 1, "transB": 1, "beta": -1.0}, 17),
    "scalar_c": ((2, 6), (6, 3), (), {"alpha": 2.0}, 17),
    "no_c_alpha": ((3, 4), (4, 5), None, {"alpha": 3.0}, 13),
    "beta_zero": ((3, 4), (4, 5), (3, 5), {"beta": 0.0}, 17),
    "opset7": ((3, 4), (4, 5), (5,), {"transB": 0}, 7),
    "opset9_trans_b": ((1, 8), (2, 8), (2,), {"transB": 1}, 9),
}


@pytest.mark.parametrize("name", list(GEMM_CASES))
@pytest.mark.parametrize("b_const", [False, True], ids=["b_input", "b_const"])
def test_gemm(name, b_const):
    a_shape, b_shape, c_shape, attrs, opset = GEMM_CASES[name]
    a, b = rand(a_shape, 0), rand(b_shape, 1)
    params = {"b": b} if c_shape is None else {"b": b, "c": rand(c_shape, 2)}
    inputs = {"a": a} if b_const else {"a": a, **params}
    model = node_model("Gemm", inputs, attrs, consts=params if b_const else None, opset=opset)
    check_model(model, inputs)


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_gemm_dtypes(dtype):
    a, b, c = rand((3, 4), 0, dtype), rand((5, 4), 1, dtype), rand((5,), 2, dtype)
    check_model(node_model("Gemm", {"a": a, "b": b, "c": c}, {"transB": 1, "alpha": 0.5}), {"a": a, "b": b, "c": c},
                tol=5e-3)


def test_gemm_symbolic_rows():
    model = node_model("Gemm", {"a": rand((2, 4), 0)}, {"transB": 1}, consts={"b": rand((6, 4), 1),
                                                                            "c": rand((6,), 2)},
                       symbolic={"a": ["N", 4]})
    assert one_node(model).outputs[0].type.shape == ("N", 6)
    for n in (1, 7):
        check_model(model, {"a": rand((n, 4), n)})


@pytest.mark.parametrize("inputs, attrs, opset, match", [
    ({"a": np.ones((3, 4), np.float32), "b": np.ones((5, 4), np.float32)}, {}, 17, "inner dims 4 and 5"),
    ({"a": np.ones((3, 4), np.float32), "b": np.ones((4, 5), np.float32)}, {}, 9, "C is required"),
    ({"a": np.ones((3, 4), np.float32), "b": np.ones((4, 5), np.float32), "c": np.ones((2, 5), np.float32)},
     {}, 17, "does not broadcast"),
])
def test_gemm_bad_models_raise_irc_error(inputs, attrs, opset, match):
    with pytest.raises(irc.IrcError, match=match):
        irc.compile(node_model("Gemm", inputs, attrs, opset=opset))


# -- the -O2 rewrites the kernels honour: Winograd convs and fused epilogues -------------------------------

def compiled_nodes(model, **kw):
    """The non-constant nodes of the model compiled at -O2."""
    return [n for n in irc.compile(model, **kw).graph.nodes if n.op != "const"]


# (x shape, w shape, attributes, bias, output tile the cost rule picks)
WINOGRAD_CASES = {
    "f4_pad1_bias": ((1, 16, 28, 28), (16, 16, 3, 3), {"pads": [1, 1, 1, 1]}, True, 4),
    "f4_ragged_tiles_batch2": ((2, 16, 25, 23), (24, 16, 3, 3), {}, False, 4),
    "f2_small_asym_pads": ((1, 32, 9, 9), (16, 32, 3, 3), {"pads": [0, 1, 2, 1]}, True, 2),
    "f2_same_upper_batch2": ((2, 16, 8, 11), (16, 16, 3, 3), {"auto_pad": "SAME_UPPER"}, True, 2),
}


@pytest.mark.parametrize("name", list(WINOGRAD_CASES))
def test_conv2d_winograd(name):
    x_shape, w_shape, attrs, bias, m = WINOGRAD_CASES[name]
    model, feeds = conv_model("Conv", x_shape, w_shape, attrs, bias, seed=len(name))
    [conv] = compiled_nodes(model)
    assert (conv.attrs["algo"], conv.attrs["winograd_m"]) == ("winograd", m)
    assert lowering("conv2d").fn(conv).algo == "winograd"
    check_model(model, feeds)


@pytest.mark.parametrize("x_shape, w_shape, attrs", [
    ((1, 8, 16, 16), (16, 8, 3, 3), {"pads": [1, 1, 1, 1]}),     # too few input channels to pay
    ((1, 16, 16, 16), (16, 16, 3, 3), {"strides": [2, 2]}),
    ((1, 16, 16, 16), (16, 16, 3, 3), {"dilations": [2, 2]}),
    ((1, 16, 16, 16), (16, 16, 5, 5), {}),
    ((1, 16, 5, 5), (16, 16, 3, 3), {}),                          # 3x3 output: smaller than one tile
    ((1, 64, 7, 7), (64, 64, 3, 3), {"pads": [1, 1, 1, 1]}),      # 7x7 output: im2col measured faster
])
def test_conv2d_without_winograd(x_shape, w_shape, attrs):
    [conv] = compiled_nodes(conv_model("Conv", x_shape, w_shape, attrs)[0])
    assert conv.attrs["algo"] != "winograd"


def test_conv2d_winograd_disabled_keeps_im2col():
    model, feeds = conv_model("Conv", (1, 16, 28, 28), (16, 16, 3, 3), {"pads": [1, 1, 1, 1]})
    [conv] = compiled_nodes(model, disable_passes=("winograd",))
    assert conv.attrs["algo"] is None and lowering("conv2d").fn(conv).algo == "im2col"


# Error of the Winograd kernel against the float64 convolution, relative to max|result|, on N(0, 1) inputs
# and weights scaled to keep results O(1). F(m, 3) computes the correlation exactly in real arithmetic; the
# float32 error comes from its transforms, whose entries grow with the interpolation points: F(2,3) uses
# 0, +-1 (entries <= 1: it rounds like im2col, measured 2e-7..7e-7), F(4,3) also +-2 (B^T entries up to 5,
# A^T up to 8, G down to 1/24), measured 3e-6..1.1e-5 over 16..512 channels. Each bound is ~5x the worst
# measured.
WINOGRAD_ERROR_BOUND = {2: 4e-6, 4: 5e-5}


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("channels, size", [(16, 12), (128, 14)])
def test_winograd_kernel_error_is_bounded(m, channels, size):
    from irc.kernels.cpu.conv import Geometry
    from irc.kernels.cpu.winograd import winograd_conv
    from irc.ops.nn import conv2d, winograd_filter
    x = rand((2, channels, size, size), m)
    w = rand((channels, channels, 3, 3), channels) / np.float32(3 * np.sqrt(channels))
    g = Geometry(2, channels, size, size, channels, size, size, 1, 3, 3, 1, 1, 1, 1, 1, 1)
    y = winograd_conv(g, m, np.float32)(x, winograd_filter(w, m))
    ref = conv2d(x.astype(np.float64), w.astype(np.float64), pads=[1, 1, 1, 1], strides=[1, 1], dilations=[1, 1],
                 group=1, auto_pad="NOTSET", winograd_m=None)
    err = np.abs(y - ref).max() / np.abs(ref).max()
    assert err <= WINOGRAD_ERROR_BOUND[m], err


def chain_model(nodes, inputs, consts, opset=17):
    """A model of ``nodes`` (helper.make_node) whose output is "y"."""
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info(k, NP_TO_ONNX[v.dtype], v.shape)
                                           for k, v in inputs.items()],
                          [helper.make_empty_tensor_value_info("y")],
                          [numpy_helper.from_array(v, k) for k, v in consts.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _n(op, ins, out, **attrs):
    return helper.make_node(op, ins, [out], **attrs)


F = np.float32
# name: (nodes, inputs, constants, the producer's epilogue after -O2)
EPILOGUE_CASES = {
    "conv_residual_relu": ([_n("Conv", ["x", "w", "b"], "c", pads=[1, 1, 1, 1]), _n("Add", ["r", "c"], "s"),
                            _n("Relu", ["s"], "y")],
                           {"x": rand((2, 3, 6, 5), 0), "r": rand((2, 4, 6, 5), 1)},
                           {"w": rand((4, 3, 3, 3), 2), "b": rand((4,), 3)}, ["add", "relu"]),
    "conv_relu6_winograd": ([_n("Conv", ["x", "w"], "c", pads=[1, 1, 1, 1]), _n("Clip", ["c", "lo", "hi"], "y")],
                            {"x": rand((1, 16, 8, 8), 4)},
                            {"w": rand((16, 16, 3, 3), 5), "lo": np.array(0, F), "hi": np.array(6, F)}, ["clip"]),
    "depthwise_leaky_relu": ([_n("Conv", ["x", "w"], "c", group=4, pads=[1, 1, 1, 1]),
                              _n("LeakyRelu", ["c"], "y", alpha=0.2)],
                             {"x": rand((1, 4, 5, 5), 6)}, {"w": rand((4, 1, 3, 3), 7)}, ["leaky_relu"]),
    "gemm_bias_hard_swish": ([_n("Gemm", ["x", "w", "c0"], "g", transB=1, alpha=0.5),
                              _n("Add", ["g", "b"], "s"), _n("HardSwish", ["s"], "y")],
                             {"x": rand((3, 5), 8)}, {"w": rand((4, 5), 9), "c0": rand((4,), 10),
                                                      "b": rand((3, 1), 11)}, ["add", "hard_swish"]),
    "matmul_silu_tanh": ([_n("MatMul", ["x", "w"], "m"), _n("Sigmoid", ["m"], "s"), _n("Mul", ["m", "s"], "p"),
                          _n("Tanh", ["p"], "y")],
                         {"x": rand((2, 3, 5), 12)}, {"w": rand((5, 4), 13)}, ["silu", "tanh"]),
    "matmul_bias_sigmoid": ([_n("MatMul", ["x", "w"], "m"), _n("Add", ["m", "b"], "s"), _n("Sigmoid", ["s"], "y")],
                            {"x": rand((3, 5), 14)}, {"w": rand((5, 4), 15), "b": rand((4,), 16)},
                            ["add", "sigmoid"]),
}


@pytest.mark.parametrize("name", list(EPILOGUE_CASES))
def test_fused_epilogue(name):
    nodes, inputs, consts, epilogue = EPILOGUE_CASES[name]
    model = chain_model(nodes, inputs, consts)
    [node] = compiled_nodes(model)
    assert node.attrs["epilogue"] == epilogue
    check_model(model, inputs)


def test_fused_epilogue_float16():
    x, w = rand((3, 5), 0, np.float16), rand((5, 4), 1, np.float16)
    model = chain_model([_n("MatMul", ["x", "w"], "m"), _n("Relu", ["m"], "y")], {"x": x}, {"w": w})
    check_model(model, {"x": x}, tol=5e-3)
