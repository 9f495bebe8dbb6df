"""Softmax, log-softmax, the normalizations and fused attention on the CPU kernels: every case is compiled
by irc and compared with onnxruntime and the op table's reference (tests/util.check_model); the serial and
parallel forms of each row kernel agree; the vectorized exp and max helpers against numpy."""
from __future__ import annotations

import numpy as np
import pytest
from numba import njit
from onnx import helper, numpy_helper

import irc
from irc.errors import IrcError
from irc.kernels.cpu import fused, norm
from irc.kernels.cpu.vmath import vexp, vmax
from irc.frontend import import_onnx
from irc.ops.interpret import interpret
from tests.util import NP_TO_ONNX, assert_close, check_model, node_model

F32, F64 = np.float32, np.float64
RNG = np.random.default_rng(7)


def randn(*shape, dtype=F32, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(dtype)


# --- softmax and log-softmax ----------------------------------------------------------------------------

SOFTMAX = [
    ("tiny row", (1, 10), -1, F32, 1.0),
    ("one element rows", (3, 1), 1, F32, 1.0),
    ("axis 0 of 4-d", (2, 3, 7, 9), 0, F32, 1.0),
    ("axis 1 of 4-d", (2, 3, 7, 9), 1, F32, 1.0),
    ("axis 2 of 4-d", (2, 3, 7, 9), -2, F32, 1.0),
    ("last axis of 4-d", (2, 3, 7, 9), 3, F32, 1.0),
    ("odd long rows", (5, 1001), -1, F32, 3.0),
    ("large magnitudes", (4, 33), -1, F32, 300.0),
    ("rows split across the pool", (80, 600), -1, F32, 1.0),
    ("columns split across the pool", (70, 20, 40), 1, F32, 1.0),
    ("float64 rows", (6, 17), -1, F64, 5.0),
    ("float64 columns", (3, 17, 5), 1, F64, 5.0),
    ("no rows", (0, 5), -1, F32, 1.0),
    ("empty axis", (2, 0, 3), 1, F32, 1.0),
]


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("shape, axis, dtype, scale", [c[1:] for c in SOFTMAX], ids=[c[0] for c in SOFTMAX])
def test_softmax_matches_onnxruntime(op, shape, axis, dtype, scale):
    x = randn(*shape, dtype=dtype, scale=scale)
    # (the numpy reference cannot take the max of an empty axis: that case is checked against onnxruntime)
    check_model(node_model(op, {"x": x}, {"axis": axis}), {"x": x}, reference=shape[axis] > 0)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_softmax_of_infinities_and_nan(op):
    x = randn(4, 6)
    x[0, 2] = -np.inf           # a zero probability
    x[1, :] = -np.inf           # all masked: NaN, as in the reference
    x[2, 3] = np.nan            # NaN spreads over its row
    x[3, 1] = np.inf
    check_model(node_model(op, {"x": x}, {"axis": -1}), {"x": x})


# --- layer, group and instance normalization ------------------------------------------------------------

LAYERNORM = [
    # (id, x shape, axis, scale shape, with bias, dtype, constant parameters)
    ("bert row", (1, 128, 256), -1, (256,), True, F32, True),
    ("one row", (1, 1, 128), -1, (128,), True, F32, True),
    ("odd rows, no bias", (3, 5, 7), -1, (7,), False, F32, True),
    ("two normalized axes", (2, 5, 6), 1, (5, 6), True, F32, True),
    ("scale broadcast over the normalized axes", (2, 5, 6), -2, (1, 6), True, F32, True),
    ("axis 0: one row", (4, 3), 0, (4, 3), True, F32, True),
    ("many rows", (300, 256), -1, (256,), True, F32, True),
    ("parameters as inputs", (4, 9, 16), -1, (16,), True, F32, False),
    ("float64", (3, 6), -1, (6,), True, F64, True),
    ("no rows", (0, 4), -1, (4,), True, F32, True),
]


@pytest.mark.parametrize("shape, axis, pshape, bias, dtype, const", [c[1:] for c in LAYERNORM],
                         ids=[c[0] for c in LAYERNORM])
def test_layernorm_matches_onnxruntime(shape, axis, pshape, bias, dtype, const):
    x = randn(*shape, dtype=dtype, scale=2.0) + dtype(3)
    params = {"s": randn(*pshape, dtype=dtype)}
    if bias:
        params["b"] = randn(*pshape, dtype=dtype)
    inputs, consts = ({"x": x}, params) if const else ({"x": x, **params}, None)
    model = node_model("LayerNormalization", inputs, {"axis": axis, "epsilon": 1e-4}, consts=consts,
                       n_outputs=3)
    check_model(model, inputs)


CHANNEL_NORMS = [
    ("instance", "InstanceNormalization", (2, 6, 5, 5), {}, F32),
    ("instance, large planes", "InstanceNormalization", (2, 3, 40, 300), {}, F32),
    ("instance f64", "InstanceNormalization", (1, 3, 7), {}, F64),
    ("group", "GroupNormalization", (2, 6, 5, 5), {"num_groups": 3}, F32),
    ("group of one channel", "GroupNormalization", (2, 4, 3), {"num_groups": 4}, F32),
    ("group f64", "GroupNormalization", (2, 4, 3), {"num_groups": 2}, F64),
]


@pytest.mark.parametrize("op, shape, attrs, dtype", [c[1:] for c in CHANNEL_NORMS], ids=[c[0] for c in CHANNEL_NORMS])
def test_channel_norms_match_onnxruntime(op, shape, attrs, dtype):
    """(onnxruntime has no float64 instance or group norm: those are checked against the reference)"""
    x = randn(*shape, dtype=dtype) * dtype(3) - dtype(1)
    c = shape[1]
    consts = {"s": randn(c, dtype=dtype), "b": randn(c, dtype=dtype)}
    model = node_model(op, {"x": x}, {**attrs, "epsilon": 1e-3}, consts=consts,
                       opset=21 if op == "GroupNormalization" else 17)
    if dtype == F32:
        check_model(model, {"x": x})
    else:
        want = interpret(import_onnx(model), {"x": x})[0]
        assert_close(irc.compile(model).run({"x": x})["out0"], want)


def _serial_and_parallel(monkeypatch, kernel, *args):
    """The kernel's results with every row kernel serial, then split across the pool."""
    out = []
    for size in (1 << 62, 1):
        monkeypatch.setattr(norm, "SOFTMAX_PARALLEL_MIN", size)
        monkeypatch.setattr(norm, "NORMALIZE_PARALLEL_MIN", size)
        res = kernel.fn(*args)
        out.append(res if isinstance(res, tuple) else (res,))
    return out


class _Node:
    """What a lowering reads of a node: outputs' types, attributes, inputs' constants."""

    def __init__(self, op, dtypes, inputs=0, name="n", **attrs):
        self.op, self.name, self.attrs = op, name, attrs
        self.outputs = [type("V", (), {"type": irc.ir.TensorType(d, None)})() for d in dtypes]
        self.inputs = [type("V", (), {"const_value": None})() for _ in range(inputs)]


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("shape, axis", [((9, 300), 1), ((9, 40, 30), 1)])
def test_softmax_rows_split_across_the_pool_equal_the_serial_ones(monkeypatch, log, shape, axis):
    k = norm.lower_softmax(_Node("log_softmax" if log else "softmax", ["f32"], axis=axis))
    serial, parallel = _serial_and_parallel(monkeypatch, k, randn(*shape))
    np.testing.assert_array_equal(serial[0], parallel[0])


def test_layernorm_rows_split_across_the_pool_equal_the_serial_ones(monkeypatch):
    k = norm.lower_layernorm(_Node("layernorm", ["f32", "f32", "f32"], 3, axis=-1, epsilon=1e-5))
    serial, parallel = _serial_and_parallel(monkeypatch, k, randn(7, 11, 64), randn(64), randn(64))
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a, b)


# --- attention ----------------------------------------------------------------------------------------

def attention_model(q, k, v, mask, scale_op="Div", kt_input=False):
    """softmax(q @ k^T / 2 (or * 0.5) + mask) @ v as exporters write it: k^T by a Transpose node (or
    given as an input), the mask an input (None: no mask)."""
    rank, dtype = q.ndim, q.dtype
    perm = list(range(rank - 2)) + [rank - 1, rank - 2]
    inputs = {"q": q, "kt" if kt_input else "k": k, "v": v}
    nodes = [] if kt_input else [helper.make_node("Transpose", ["k"], ["kt"], perm=perm)]
    nodes += [helper.make_node("MatMul", ["q", "kt"], ["s"]), helper.make_node(scale_op, ["s", "c"], ["z"])]
    last = "z"
    if mask is not None:
        inputs["mask"] = mask
        nodes.append(helper.make_node("Add", ["z", "mask"], ["zm"]))
        last = "zm"
    nodes += [helper.make_node("Softmax", [last], ["p"], axis=-1), helper.make_node("MatMul", ["p", "v"], ["y"])]
    g = helper.make_graph(
        nodes, "attention",
        [helper.make_tensor_value_info(n, NP_TO_ONNX[a.dtype], a.shape) for n, a in inputs.items()],
        [helper.make_empty_tensor_value_info("y")],
        [numpy_helper.from_array(np.array(2.0 if scale_op == "Div" else 0.5, dtype), "c")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), inputs


def padding_mask(batch, t, dtype=F32):
    """[B, 1, 1, T]: the last positions of each sequence masked by a large negative number."""
    m = np.zeros((batch, 1, 1, t), dtype)
    for b in range(batch):
        m[b, ..., t - 1 - b:] = -1e4
    return m


def causal_mask(s, t, dtype=F32):
    """[S, T]: -inf above the diagonal (query i sees keys up to i + T - S)."""
    return np.triu(np.full((s, t), -np.inf, dtype), k=t - s + 1)


ATTENTION = [
    # (id, batch axes, S, T, D, Dv, mask maker(batch axes, S, T, dtype) or None, dtype)
    ("bert shape, padding mask", (1, 4), 128, 128, 64, 64, lambda b, s, t, d: padding_mask(b[0], t, d), F32),
    ("no mask", (2, 3), 16, 16, 8, 8, None, F32),
    ("causal mask", (1, 2), 12, 12, 8, 8, lambda b, s, t, d: causal_mask(s, t, d), F32),
    ("causal mask, cached keys", (1, 2), 3, 10, 8, 4, lambda b, s, t, d: causal_mask(s, t, d), F32),
    ("full mask per head", (2, 3), 9, 7, 5, 6, lambda b, s, t, d: randn(*b, s, t, dtype=d, scale=3), F32),
    ("mask per head, broadcast over batch", (2, 3), 5, 6, 4, 4, lambda b, s, t, d: randn(1, b[1], s, t, dtype=d), F32),
    ("one query (decoding)", (1, 4), 1, 32, 32, 32, lambda b, s, t, d: randn(1, 1, 1, t, dtype=d), F32),
    ("odd sizes", (3, 5), 7, 5, 3, 9, lambda b, s, t, d: padding_mask(b[0], t, d), F32),
    ("rank 3", (6,), 33, 17, 8, 8, lambda b, s, t, d: randn(s, t, dtype=d), F32),
    ("rank 2", (), 10, 12, 4, 3, lambda b, s, t, d: randn(s, t, dtype=d), F32),
    ("rank 5, mask over the outer batch axis", (2, 2, 3), 5, 6, 4, 4,
     lambda b, s, t, d: randn(2, 1, 1, 1, t, dtype=d), F32),
    ("rank 5, mask over the inner batch axes", (2, 2, 3), 5, 6, 4, 4, lambda b, s, t, d: randn(2, 3, s, t, dtype=d), F32),
    ("heads split into row blocks", (1, 1), 200, 96, 16, 16, lambda b, s, t, d: padding_mask(1, t, d), F32),
    ("float64", (2, 2), 9, 11, 6, 5, lambda b, s, t, d: padding_mask(b[0], t, d), F64),
]


@pytest.mark.parametrize("batch, s, t, d, dv, mask, dtype", [c[1:] for c in ATTENTION], ids=[c[0] for c in ATTENTION])
def test_attention_matches_onnxruntime(batch, s, t, d, dv, mask, dtype):
    q, k, v = randn(*batch, s, d, dtype=dtype), randn(*batch, t, d, dtype=dtype), randn(*batch, t, dv, dtype=dtype)
    model, feeds = attention_model(q, k, v, None if mask is None else mask(batch, s, t, dtype))
    check_model(model, feeds)
    assert irc.compile(model).graph.op_counts().get("attention") == 1


def test_attention_with_k_transposed_given_and_scale_as_product():
    q, kt, v = randn(2, 2, 6, 4), randn(2, 2, 4, 9), randn(2, 2, 9, 5)
    model, feeds = attention_model(q, kt, v, padding_mask(2, 9), scale_op="Mul", kt_input=True)
    check_model(model, feeds)


def test_attention_of_transposed_views_reads_them_in_place():
    k = fused.lower_attention(_Node("attention", ["f32"], scale=0.25))
    q, key, v = randn(2, 5, 3, 8), randn(2, 7, 3, 8), randn(2, 7, 3, 4)   # [B, S, H, D] as projected
    qv, ktv, vv = q.transpose(0, 2, 1, 3), key.transpose(0, 2, 3, 1), v.transpose(0, 2, 1, 3)
    mask = padding_mask(2, 7)
    want = k.fn(*(np.ascontiguousarray(a) for a in (qv, ktv, vv)), mask)
    np.testing.assert_allclose(k.fn(qv, ktv, vv, mask), want, rtol=1e-6, atol=1e-6)


def test_attention_split_across_the_pool_equals_serial(monkeypatch):
    k = fused.lower_attention(_Node("attention", ["f32"], scale=0.5))
    args = randn(2, 3, 20, 8), randn(2, 3, 8, 24), randn(2, 3, 24, 8), padding_mask(2, 24)
    monkeypatch.setattr(fused, "ATTENTION_PARALLEL_MIN", 1 << 62)
    serial = k.fn(*args)
    monkeypatch.setattr(fused, "ATTENTION_PARALLEL_MIN", 1)
    np.testing.assert_array_equal(k.fn(*args), serial)


def test_attention_operands_that_do_not_chain_name_the_node():
    k = fused.lower_attention(_Node("attention", ["f32"], name="att7", scale=1.0))
    with pytest.raises(IrcError, match="att7.*do not chain"):
        k.fn(randn(1, 2, 4, 8), randn(1, 2, 6, 5), randn(1, 2, 5, 3))
    with pytest.raises(IrcError, match="att7.*mask"):
        k.fn(randn(1, 2, 4, 8), randn(1, 2, 8, 5), randn(1, 2, 5, 3), randn(3, 5))


# --- the vectorized helpers ---------------------------------------------------------------------------

@njit(cache=True)
def _exp_all(x, out):
    for i in range(x.shape[0]):
        out[i] = vexp(x[i])


@njit(cache=True)
def _max_of(x):
    return vmax(x)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_vexp_against_numpy(dtype):
    x = np.concatenate([np.linspace(-110, 95, 20001), [0.0, -0.0, np.inf, -np.inf, np.nan]]).astype(dtype)
    got = np.empty_like(x)
    _exp_all(x, got)
    with np.errstate(invalid="ignore", over="ignore"):
        want = np.exp(x.astype(np.float64)).astype(dtype)
        ok = np.isclose(got, want, rtol=2e-7 if dtype == F32 else 1e-15, atol=0) | \
            (np.isinf(want) & np.isinf(got)) | (np.isnan(want) & np.isnan(got))
        # float32 subnormals and underflow: an absolute error below the smallest normal's rounding
        ok |= (want < 1e-37) & np.isfinite(x) & (np.abs(got - want) < 1e-44)
    assert ok.all(), x[~ok]


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("values", [
    [3.0], [-1.0, -2.0], [-0.0, -1.0], [-np.inf, -np.inf], [-np.inf, -5.0, -7.5], [1e-45, -1e-45, 0.0],
    [np.inf, 2.0], list(np.linspace(-50, -1, 37))], ids=str)
def test_vmax_against_numpy(dtype, values):
    x = np.array(values, dtype)
    assert _max_of(x) == x.max()


def test_vmax_of_a_row_with_nan_is_nan():
    assert np.isnan(_max_of(np.array([1.0, np.nan, 2.0], F32)))
