"""conv2d, conv_transpose2d, matmul and gemm: each case against onnxruntime and the reference interpreter,
plus the kernel each conv lowers to, symbolic batches, opset forms and errors."""
import numpy as np
import pytest
from onnx import TensorProto, helper

import irc
from irc.backend.registry import lowering
from irc.frontend import import_onnx
from tests.util import check_model, node_model


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
