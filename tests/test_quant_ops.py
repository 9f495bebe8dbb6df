"""Quantized ops against onnxruntime and the reference: QuantizeLinear, DequantizeLinear,
DynamicQuantizeLinear, MatMulInteger, ConvInteger, QLinearConv, QLinearMatMul; per tensor and per axis,
int8 and uint8, round half to even, saturation; and the int8 GEMM kernel of the fused ops."""
import numpy as np
import pytest
from onnx import TensorProto

import irc
from irc import IrcError
from irc.frontend import import_onnx
from irc.ops.interpret import interpret
from tests.util import assert_close, check_model, node_model

RNG = np.random.default_rng(7)
I8, U8 = np.int8, np.uint8


def ints(dtype, shape):
    lo, hi = np.iinfo(dtype).min, np.iinfo(dtype).max
    return RNG.integers(lo, hi, shape, endpoint=True).astype(dtype)


def floats(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def f32(*values):
    return np.array(values, np.float32).reshape(-1) if len(values) > 1 else np.array(values[0], np.float32)


# -- QuantizeLinear -----------------------------------------------------------------------------------------------
QUANTIZE = [
    # id, x, scale, zero point (None: omitted), attrs, opset
    ("u8-per-tensor", floats(2, 3, 4, scale=3), f32(0.05), np.array(128, U8), {}, 13),
    ("i8-per-tensor", floats(2, 3, 4, scale=3), f32(0.05), np.array(-3, I8), {}, 13),
    ("no-zero-point-is-uint8", floats(5, 6), f32(0.02), None, {}, 13),
    ("opset10", floats(5, 6), f32(0.02), np.array(10, U8), {}, 10),
    ("half-to-even", np.arange(-6, 7, dtype=np.float32) * 0.5, f32(1.0), np.array(0, I8), {}, 13),
    ("saturates", np.array([-1e6, -200, 200, 1e6, np.inf, -np.inf], np.float32), f32(1.0), np.array(0, I8), {}, 13),
    ("per-axis-1", floats(2, 3, 4), f32(0.01, 0.02, 0.05), np.array([0, 5, -5], I8), {"axis": 1}, 13),
    ("per-axis-0", floats(3, 4), f32(0.01, 0.02, 0.05), np.array([0, 128, 255], U8), {"axis": 0}, 13),
    ("per-axis-negative", floats(2, 4), f32(0.01, 0.02, 0.05, 0.1), np.array([1, 2, 3, 4], U8), {"axis": -1}, 13),
    ("int16", floats(4, 5, scale=100), f32(0.01), np.array(-7, np.int16), {}, 21),
    ("uint16", floats(4, 5, scale=100), f32(0.01), np.array(30000, np.uint16), {}, 21),
    ("output-dtype-int8", floats(4, 5), f32(0.01), None, {"output_dtype": TensorProto.INT8}, 21),
    ("blocked", floats(2, 6), RNG.uniform(0.01, 0.1, (2, 3)).astype(np.float32), ints(I8, (2, 3)),
     {"axis": 1, "block_size": 2}, 21),
]


@pytest.mark.parametrize("case", QUANTIZE, ids=[c[0] for c in QUANTIZE])
def test_quantize_linear(case):
    _, x, scale, zp, attrs, opset = case
    consts = {"scale": scale} if zp is None else {"scale": scale, "zp": zp}
    check_model(node_model("QuantizeLinear", {"x": x}, attrs, consts, opset=opset), {"x": x})


def test_quantize_linear_float16_input():
    x = floats(3, 4).astype(np.float16)
    check_model(node_model("QuantizeLinear", {"x": x}, {}, {"scale": np.array(0.01, np.float16),
                                                             "zp": np.array(3, U8)}, opset=19), {"x": x})


# -- DequantizeLinear ---------------------------------------------------------------------------------------------
DEQUANTIZE = [
    ("u8-per-tensor", ints(U8, (2, 3, 4)), f32(0.05), np.array(128, U8), {}, 13),
    ("i8-per-tensor", ints(I8, (2, 3, 4)), f32(0.05), np.array(-3, I8), {}, 13),
    ("i32-bias", ints(np.int32, (7,)) // 1000, f32(0.001), np.array(0, np.int32), {}, 13),
    ("no-zero-point", ints(I8, (5, 6)), f32(0.02), None, {}, 13),
    ("opset10", ints(U8, (5, 6)), f32(0.02), np.array(10, U8), {}, 10),
    ("per-axis-1", ints(I8, (2, 3, 4)), f32(0.01, 0.02, 0.05), np.array([0, 5, -5], I8), {"axis": 1}, 13),
    ("per-axis-0", ints(U8, (3, 4)), f32(0.01, 0.02, 0.05), np.array([0, 128, 255], U8), {"axis": 0}, 13),
    ("int16", ints(np.int16, (4, 5)), f32(0.01), np.array(-7, np.int16), {}, 21),
    ("uint16", ints(np.uint16, (4, 5)), f32(0.01), np.array(300, np.uint16), {}, 21),
    ("blocked", ints(I8, (2, 6)), RNG.uniform(0.01, 0.1, (2, 3)).astype(np.float32), ints(I8, (2, 3)),
     {"axis": 1, "block_size": 2}, 21),
]


@pytest.mark.parametrize("case", DEQUANTIZE, ids=[c[0] for c in DEQUANTIZE])
def test_dequantize_linear(case):
    _, x, scale, zp, attrs, opset = case
    consts = {"scale": scale} if zp is None else {"scale": scale, "zp": zp}
    check_model(node_model("DequantizeLinear", {"x": x}, attrs, consts, opset=opset), {"x": x})


def test_dequantize_linear_scale_as_input():
    """Scale and zero point fed at run time (not constants) take the same kernel."""
    x, scale, zp = ints(U8, (3, 5)), f32(0.1, 0.2, 0.3), np.array([1, 2, 3], U8)
    feeds = {"x": x, "scale": scale, "zp": zp}
    check_model(node_model("DequantizeLinear", feeds, {"axis": 0}), feeds)


# -- DynamicQuantizeLinear ----------------------------------------------------------------------------------------
DYNAMIC = [("mixed", floats(3, 7)), ("positive", np.abs(floats(10))), ("negative", -np.abs(floats(2, 5))),
           ("ties", np.array([0.0, 1.0, 2.5, -2.5, 255.0], np.float32))]


@pytest.mark.parametrize("case", DYNAMIC, ids=[c[0] for c in DYNAMIC])
def test_dynamic_quantize_linear(case):
    x = case[1]
    check_model(node_model("DynamicQuantizeLinear", {"x": x}, n_outputs=3, opset=11), {"x": x})


def test_dynamic_quantize_linear_of_zeros_is_zero():
    """An all-zero input has scale 0 (onnxruntime agrees): the result is zeros, not NaN casts."""
    x = np.zeros((2, 3), np.float32)
    got = irc.compile(node_model("DynamicQuantizeLinear", {"x": x}, n_outputs=3, opset=11)).run({"x": x})
    y, scale, zp = got.values()
    assert not y.any() and scale == 0 and zp == 0


# -- MatMulInteger ------------------------------------------------------------------------------------------------
MATMUL_INTEGER = [
    # id, a, b, a_zp, b_zp, b constant
    ("u8u8", ints(U8, (5, 12)), ints(U8, (12, 7)), np.array(3, U8), np.array(200, U8), True),
    ("u8i8", ints(U8, (5, 12)), ints(I8, (12, 7)), np.array(128, U8), np.array(0, I8), True),
    ("i8i8", ints(I8, (4, 33)), ints(I8, (33, 9)), np.array(-5, I8), np.array(4, I8), False),
    ("batched-a", ints(U8, (2, 3, 20)), ints(I8, (20, 6)), np.array(7, U8), None, True),
    ("per-column-b-zp", ints(U8, (4, 8)), ints(U8, (8, 5)), np.array(9, U8), ints(U8, (5,)), True),
    ("vector-a", ints(U8, (8,)), ints(U8, (8, 5)), None, None, True),
    ("batched-b", ints(U8, (2, 3, 8)), ints(U8, (2, 8, 4)), np.array(1, U8), np.array(2, U8), False),
]


@pytest.mark.parametrize("case", MATMUL_INTEGER, ids=[c[0] for c in MATMUL_INTEGER])
def test_matmul_integer(case):
    _, a, b, a_zp, b_zp, b_const = case
    zps = {k: v for k, v in (("a_zp", a_zp), ("b_zp", b_zp)) if v is not None}
    order = ["a", "b", "a_zp" if a_zp is not None else "", "b_zp" if b_zp is not None else ""]
    inputs = {"a": a} if b_const else {"a": a, "b": b}
    consts = {**({"b": b} if b_const else {}), **zps}
    model = node_model("MatMulInteger", inputs, consts=consts, input_order=order, opset=10)
    check_model(model, inputs)


def test_matmul_integer_per_row_a_zero_point():
    """a_zero_point per row of A (onnxruntime accepts only per-tensor: the reference is the oracle)."""
    a, b, a_zp = ints(U8, (4, 6)), ints(U8, (6, 3)), ints(U8, (4,))
    model = node_model("MatMulInteger", {"a": a}, consts={"b": b, "a_zp": a_zp}, input_order=["a", "b", "a_zp"])
    got = irc.compile(model).run({"a": a})["out0"]
    expected = (a.astype(np.int64) - a_zp[:, None].astype(np.int64)) @ b.astype(np.int64)
    np.testing.assert_array_equal(got, expected.astype(np.int32))


# -- ConvInteger / QLinearConv ------------------------------------------------------------------------------------
CONV = [
    # id, x shape, w shape, attrs
    ("3x3-pad", (1, 3, 9, 9), (8, 3, 3, 3), {"pads": [1, 1, 1, 1]}),
    ("stride2", (2, 4, 10, 9), (6, 4, 3, 3), {"strides": [2, 2], "pads": [1, 0, 1, 2]}),
    ("1x1", (1, 16, 5, 5), (32, 16, 1, 1), {}),
    ("dilated", (1, 2, 9, 9), (3, 2, 3, 3), {"dilations": [2, 2]}),
    ("grouped", (1, 8, 7, 7), (8, 2, 3, 3), {"group": 4, "pads": [1, 1, 1, 1]}),
    ("depthwise", (1, 6, 8, 8), (6, 1, 3, 3), {"group": 6, "pads": [1, 1, 1, 1], "strides": [2, 2]}),
    ("same-upper", (1, 3, 7, 8), (4, 3, 3, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
]


@pytest.mark.parametrize("case", CONV, ids=[c[0] for c in CONV])
def test_conv_integer(case):
    _, xs, ws, attrs = case
    x, w = ints(U8, xs), ints(U8, ws)
    consts = {"w": w, "x_zp": np.array(131, U8), "w_zp": np.array(120, U8)}
    check_model(node_model("ConvInteger", {"x": x}, attrs, consts, opset=10), {"x": x})


def test_conv_integer_without_zero_points():
    x, w = ints(U8, (1, 2, 5, 5)), ints(U8, (3, 2, 3, 3))
    check_model(node_model("ConvInteger", {"x": x}, {}, {"w": w}, opset=10), {"x": x})


def _qlinear_conv_model(x, w, w_scale, w_zp, y_dtype, attrs, bias=True, w_const=True):
    out = w.shape[0]
    consts = {"x_scale": f32(0.02), "x_zp": np.array(5 if x.dtype == I8 else 130, x.dtype),
              "w": w, "w_scale": w_scale, "w_zp": w_zp,
              "y_scale": f32(0.3), "y_zp": np.array(-4 if y_dtype == I8 else 120, y_dtype)}
    if bias:
        consts["B"] = RNG.integers(-3000, 3000, out).astype(np.int32)
    inputs = {"x": x}
    if not w_const:
        inputs["w"] = consts.pop("w")
    order = ["x", "x_scale", "x_zp", "w", "w_scale", "w_zp", "y_scale", "y_zp"] + (["B"] if bias else [])
    return node_model("QLinearConv", inputs, attrs, consts, input_order=order, opset=10), inputs


QLINEAR_CONV = [
    # id, x dtype, w dtype, y dtype, per channel, x shape, w shape, attrs
    ("u8-per-tensor", U8, U8, U8, False, (1, 3, 9, 9), (8, 3, 3, 3), {"pads": [1, 1, 1, 1]}),
    ("i8-per-channel", I8, I8, I8, True, (2, 4, 8, 8), (16, 4, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("u8-act-i8-weight", U8, I8, U8, True, (1, 8, 6, 6), (4, 8, 1, 1), {}),
    ("grouped", U8, U8, U8, False, (1, 8, 6, 6), (4, 2, 3, 3), {"group": 4}),
    ("depthwise", I8, I8, I8, True, (1, 8, 7, 7), (8, 1, 3, 3), {"group": 8, "pads": [1, 1, 1, 1]}),
]


@pytest.mark.parametrize("case", QLINEAR_CONV, ids=[c[0] for c in QLINEAR_CONV])
def test_qlinear_conv(case):
    _, xd, wd, yd, per_channel, xs, ws, attrs = case
    x, w = ints(xd, xs), ints(wd, ws)
    n = ws[0] if per_channel else 1
    w_scale = RNG.uniform(0.002, 0.02, n).astype(np.float32).reshape(-1 if per_channel else ())
    w_zp = np.zeros(n if per_channel else (), wd) if wd == I8 else np.full(n if per_channel else (), 128, wd)
    model, inputs = _qlinear_conv_model(x, w, w_scale, w_zp, yd, attrs)
    check_model(model, inputs)


def test_qlinear_conv_weight_as_input():
    """A weight fed at run time is packed on every run."""
    x, w = ints(U8, (1, 3, 6, 6)), ints(U8, (4, 3, 3, 3))
    model, inputs = _qlinear_conv_model(x, w, f32(0.01), np.array(127, U8), U8, {}, bias=False, w_const=False)
    check_model(model, inputs)


# -- QLinearMatMul ------------------------------------------------------------------------------------------------
QLINEAR_MATMUL = [
    ("u8-2d", U8, (5, 12), (12, 7)),
    ("i8-2d", I8, (5, 40), (40, 3)),
    ("u8-3d", U8, (2, 4, 16), (16, 5)),
    ("i8-batched-b", I8, (2, 4, 16), (2, 16, 5)),
]


@pytest.mark.parametrize("case", QLINEAR_MATMUL, ids=[c[0] for c in QLINEAR_MATMUL])
def test_qlinear_matmul(case):
    _, dt, ashape, bshape = case
    a = ints(dt, ashape)
    zp = np.array(3 if dt == I8 else 128, dt)
    consts = {"a_scale": f32(0.02), "a_zp": zp, "b": ints(dt, bshape), "b_scale": f32(0.01), "b_zp": zp,
              "y_scale": f32(0.2), "y_zp": zp}
    order = ["a", "a_scale", "a_zp", "b", "b_scale", "b_zp", "y_scale", "y_zp"]
    check_model(node_model("QLinearMatMul", {"a": a}, consts=consts, input_order=order, opset=10), {"a": a})


# -- errors -------------------------------------------------------------------------------------------------------
ERRORS = [
    ("scale-length", "QuantizeLinear", {"x": floats(2, 3)}, {"axis": 1},
     {"scale": f32(0.1, 0.2), "zp": np.array([0, 0], U8)}, "not per tensor or per axis"),
    ("axis-range", "DequantizeLinear", {"x": ints(U8, (2, 3))}, {"axis": 2},
     {"scale": f32(0.1, 0.2, 0.3)}, "axis 2 is out of range"),
    ("float-matmul-integer", "MatMulInteger", {"a": floats(2, 3)}, {}, {"b": ints(U8, (3, 2))}, "int8 or uint8"),
]


@pytest.mark.parametrize("case", ERRORS, ids=[c[0] for c in ERRORS])
def test_bad_operands_are_irc_errors_naming_the_node(case):
    _, op, inputs, attrs, consts, message = case
    with pytest.raises(IrcError, match=message) as info:
        irc.compile(node_model(op, inputs, attrs, consts))
    assert f"{op.lower()}_node" in str(info.value)


def test_conv_integer_1d_is_unsupported():
    x, w = ints(U8, (1, 2, 9)), ints(U8, (3, 2, 3))
    with pytest.raises(irc.IrcError, match="only 2-D ConvInteger"):
        irc.compile(node_model("ConvInteger", {"x": x}, {}, {"w": w}, opset=10))


# -- the int8 GEMM kernel -----------------------------------------------------------------------------------------
def test_int8_gemm_matches_reference_on_wide_accumulations():
    """Large K with extreme values: the int32 accumulation and the zero-point expansion stay exact."""
    a = np.full((3, 4099), 255, U8)
    a[1] = 0
    b = np.full((4099, 5), -128, I8)
    model = node_model("MatMulInteger", {"a": a}, consts={"b": b, "a_zp": np.array(1, U8)},
                       input_order=["a", "b", "a_zp"], opset=10)
    got = irc.compile(model).run({"a": a})["out0"]
    ref = interpret(import_onnx(model), {"a": a})[0]
    assert_close(got, ref)


@pytest.mark.parametrize("mode", ["int32", "float32", "int8", "uint8"])
def test_portable_and_vnni_gemm_kernels_agree(mode):
    """The portable kernel (hosts without AVX-512 VNNI) and, where the host has it, the VNNI kernel against
    the reference, in every epilogue, with channel and pixel counts off the tile sizes."""
    from irc.kernels.cpu import quant as kq
    rows, k, n = 13, 37, 45
    x, w = ints(U8, (rows, k)), ints(I8, (n, k))
    w_zp, bias, scale = ints(I8, (n,)) // 8, RNG.integers(-500, 500, n), RNG.uniform(0.001, 0.01, n)
    ep = kq.epilogue_of(np.dtype(mode), 3, -100 if mode == "int8" else None, None)
    acc = (x.astype(np.int64) - 7) @ (w.astype(np.int64) - w_zp[:, None]).T + bias
    xt, xsum = kq.activation_rows(rows, k)
    kq._rows_u8(x, 0, xt[:, :k], xsum)
    outs = []
    for vnni in (False, True) if kq.VNNI else (False,):
        out = np.empty((rows, n), ep.dtype)
        kq.run_gemm(xt, xsum, kq.pack(w, w_zp, 7, bias, scale, vnni), ep, out, True)
        outs.append(out)
    s32 = scale.astype(np.float32)
    expected = {"int32": acc.astype(np.int32), "float32": acc.astype(np.float32) * s32,
                "int8": np.clip(np.rint(acc.astype(np.float32) * s32) + 3, -100, 127).astype(I8),
                "uint8": np.clip(np.rint(acc.astype(np.float32) * s32) + 3, 0, 255).astype(U8)}[mode]
    for out in outs:
        np.testing.assert_array_equal(out, expected)
