"""The CUDA target against onnxruntime and the reference interpreter.

numba reads NUMBA_ENABLE_CUDASIM when it is first imported, so these tests run in a process of their
own, started by tests/test_cuda.py (with the simulator, or on a real GPU); the file name keeps the main
test session from collecting them. Shapes are tiny: the simulator runs every CUDA thread in Python.
"""
import json
import math
import os

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import irc
from irc.backend.cuda import device_status
from irc.frontend import import_onnx
from irc.ops.interpret import interpret
from tests.util import assert_close, node_model, run_ort

if device_status() is not None:
    pytest.skip(f"CUDA tests: {device_status()}", allow_module_level=True)

RNG = np.random.default_rng(7)
# on the simulator the generated float32 exp runs as numpy scalars, which warn where a GPU just converts
pytestmark = [pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning"),
              pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning")]


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def check(model, feeds, algos=None):
    """Compile for cuda, run, compare with onnxruntime and the reference; ``algos``: the kernels chosen."""
    compiled = irc.compile(model, target="cuda")
    got = compiled.run(feeds)
    ref = interpret(import_onnx(model), feeds)
    for (name, a), e, r in zip(got.items(), run_ort(model, feeds), ref):
        assert_close(a, e, what=f"{name} vs onnxruntime")
        assert_close(a, r.astype(a.dtype), what=f"{name} vs reference")
    if algos is not None:
        assert [s.algo for s in compiled.plan(feeds).steps] == algos
    return compiled


# (id, op, inputs, attrs, initializers, extra node_model arguments, kernels chosen or None)
CASES = [
    ("relu", "Relu", {"x": f32(3, 4)}, {}, {}, {}, [""]),
    ("add-broadcast", "Add", {"x": f32(2, 3, 4), "y": f32(3, 1)}, {}, {}, {}, None),
    ("where-3-operands", "Where", {"c": RNG.random((3, 1)) < 0.5, "x": f32(2, 3, 4), "y": f32(4)}, {}, {}, {},
     None),
    ("sigmoid", "Sigmoid", {"x": f32(5, 7) * 4}, {}, {}, {}, None),
    ("erf", "Erf", {"x": f32(4, 5)}, {}, {}, {}, None),
    ("exp-extremes", "Exp", {"x": np.array([-200, -50, 0, 1.5, 80, 100, np.inf, np.nan], np.float32)}, {}, {},
     {}, None),
    ("clip", "Clip", {"x": f32(3, 4)}, {}, {"lo": np.float32(-0.5), "hi": np.float32(0.5)}, {}, None),
    ("int-div", "Div", {"x": np.arange(-3, 3, dtype=np.int64).reshape(2, 3), "y": np.array([2, -3, 4], np.int64)},
     {}, {}, {}, None),
    ("greater-bool", "Greater", {"x": f32(3, 4), "y": f32(4)}, {}, {}, {}, None),
    ("relu-empty", "Relu", {"x": np.zeros((0, 3), np.float32)}, {}, {}, {}, None),
    ("matmul", "MatMul", {"a": f32(2, 3, 5), "b": f32(5, 4)}, {}, {}, {}, ["tiled-gemm"]),
    ("matmul-batch-broadcast", "MatMul", {"a": f32(2, 1, 3, 20), "b": f32(3, 20, 9)}, {}, {}, {}, None),
    ("matmul-vector", "MatMul", {"a": f32(5), "b": f32(2, 5, 3)}, {}, {}, {}, None),
    ("gemm-transposed", "Gemm", {"a": f32(5, 3), "b": f32(4, 5)},
     {"transA": 1, "transB": 1, "alpha": 0.5, "beta": 2.0}, {"c": f32(4)}, {}, ["tiled-gemm"]),
    ("gemm-column-c", "Gemm", {"a": f32(3, 17), "b": f32(17, 10)}, {}, {"c": f32(3, 1)}, {}, None),
    ("conv-implicit", "Conv", {"x": f32(1, 4, 6, 6)}, {"pads": [1, 2, 0, 1], "strides": [2, 1]},
     {"w": f32(6, 4, 3, 3), "b": f32(6)}, {}, ["implicit-gemm"]),
    ("conv-grouped-dilated", "Conv", {"x": f32(2, 4, 7, 7)}, {"group": 2, "dilations": [2, 1]},
     {"w": f32(6, 2, 2, 3)}, {}, ["implicit-gemm"]),
    ("conv-depthwise", "Conv", {"x": f32(2, 3, 5, 5)}, {"group": 3, "pads": [1, 1, 1, 1], "strides": [2, 2]},
     {"w": f32(6, 1, 3, 3), "b": f32(6)}, {}, ["depthwise"]),
    ("conv-winograd-weight", "Conv", {"x": f32(1, 16, 4, 4)}, {"pads": [1, 1, 1, 1]}, {"w": f32(16, 16, 3, 3) * 0.2},
     {}, ["implicit-gemm"]),
    ("conv-1x1", "Conv", {"x": f32(2, 4, 3, 5)}, {}, {"w": f32(6, 4, 1, 1), "b": f32(6)}, {}, ["gemm1x1"]),
    ("conv-same-upper", "Conv", {"x": f32(1, 2, 5, 4)}, {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
     {"w": f32(3, 2, 3, 3)}, {}, None),
    ("maxpool-padded", "MaxPool", {"x": f32(1, 2, 6, 6)}, {"kernel_shape": [3, 3], "strides": [2, 2],
                                                            "pads": [1, 1, 1, 1]}, {}, {}, ["window"]),
    ("maxpool-1d-ceil", "MaxPool", {"x": f32(1, 2, 7)}, {"kernel_shape": [3], "strides": [2], "ceil_mode": 1},
     {}, {}, None),
    ("avgpool-include-pad", "AveragePool", {"x": f32(1, 2, 5, 5)},
     {"kernel_shape": [3, 2], "pads": [1, 0, 1, 1], "count_include_pad": 1}, {}, {}, None),
    ("avgpool-exclude-pad", "AveragePool", {"x": f32(1, 2, 5, 5)},
     {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, {}, {}, None),
    ("global-avgpool", "GlobalAveragePool", {"x": f32(2, 3, 4, 4)}, {}, {}, {}, ["rows"]),
    ("global-maxpool", "GlobalMaxPool", {"x": f32(2, 3, 4, 4)}, {}, {}, {}, None),
    ("softmax-middle", "Softmax", {"x": f32(2, 3, 5)}, {"axis": 1}, {}, {}, ["rows"]),
    ("log-softmax", "LogSoftmax", {"x": f32(3, 6) * 30}, {"axis": -1}, {}, {}, None),
    ("layernorm", "LayerNormalization", {"x": f32(2, 3, 8)}, {"axis": -1}, {"s": f32(8), "b": f32(8)},
     {"n_outputs": 3}, None),
    ("layernorm-2-axes", "LayerNormalization", {"x": f32(2, 3, 4)}, {"axis": 1}, {"s": f32(4)}, {}, None),
    ("batchnorm", "BatchNormalization", {"x": f32(2, 3, 4, 4)}, {},
     {"s": f32(3), "b": f32(3), "m": f32(3), "v": np.abs(f32(3)) + 0.5}, {}, ["affine"]),
    ("instance-norm", "InstanceNormalization", {"x": f32(2, 3, 4, 4)}, {}, {"s": f32(3), "b": f32(3)}, {}, None),
    ("reduce-mean-apart", "ReduceMean", {"x": f32(2, 3, 4)}, {"keepdims": 1}, {"axes": np.array([0, 2])},
     {"opset": 18}, ["rows"]),
    ("reduce-sum-all", "ReduceSum", {"x": f32(3, 5)}, {"keepdims": 0}, {}, {"opset": 18}, None),
    ("reduce-l2", "ReduceL2", {"x": f32(3, 5)}, {}, {"axes": np.array([1])}, {"opset": 18}, None),
    ("reduce-max-last", "ReduceMax", {"x": f32(2, 3, 4)}, {"keepdims": 0}, {"axes": np.array([-1])},
     {"opset": 18}, None),
    ("reduce-log-sum-exp", "ReduceLogSumExp", {"x": f32(2, 3, 4) * 40}, {"keepdims": 0},
     {"axes": np.array([1])}, {"opset": 18}, None),
    ("transpose", "Transpose", {"x": f32(2, 3, 4)}, {"perm": [2, 0, 1]}, {}, {}, ["gather"]),
    ("slice-steps", "Slice", {"x": f32(4, 5)}, {},
     {"s": np.array([3, 0]), "e": np.array([0, 5]), "a": np.array([0, 1]), "st": np.array([-1, 2])}, {}, None),
    ("split", "Split", {"x": f32(4, 6)}, {"axis": 1}, {"sp": np.array([2, 4])}, {"n_outputs": 2}, None),
    ("gather", "Gather", {"x": f32(4, 5)}, {"axis": 1}, {"i": np.array([[0, 3], [4, -1]])}, {}, None),
    ("expand", "Expand", {"x": f32(3, 1)}, {}, {"s": np.array([2, 3, 4])}, {}, None),
    ("concat", "Concat", {"x": f32(2, 3), "y": f32(2, 2), "z": f32(2, 1)}, {"axis": 1}, {}, {}, ["scatter"]),
    ("reshape", "Reshape", {"x": f32(2, 6)}, {}, {"s": np.array([3, -1])}, {}, ["view"]),
    ("pad-on-host", "Pad", {"x": f32(2, 3)}, {"mode": "reflect"}, {"p": np.array([1, 0, 0, 2])}, {}, ["host"]),
    ("gather-run-indices", "Gather", {"x": f32(5, 3), "i": np.array([[0, 4], [-1, 2]])}, {}, {}, {}, ["take"]),
    ("gather-run-indices-axis-1", "Gather", {"x": f32(2, 4, 3), "i": np.array([3, -4, 1], np.int32)}, {"axis": 1},
     {}, {}, ["take"]),
    ("conv-transpose-strided", "ConvTranspose", {"x": f32(1, 3, 3, 4)},
     {"strides": [2, 2], "pads": [1, 0, 0, 1], "output_padding": [1, 0]}, {"w": f32(3, 2, 3, 3), "b": f32(2)}, {},
     ["implicit-gemm"]),
    ("conv-transpose-grouped-dilated", "ConvTranspose", {"x": f32(2, 4, 3, 3)},
     {"group": 2, "dilations": [2, 1], "strides": [1, 2]}, {"w": f32(4, 3, 2, 2)}, {}, None),
    ("conv-transpose-weight-from-run", "ConvTranspose", {"x": f32(1, 2, 3, 3), "w": f32(2, 3, 2, 2)},
     {"strides": [2, 2]}, {}, {}, None),
    ("conv-transpose-same-upper", "ConvTranspose", {"x": f32(1, 2, 3, 3)}, {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
     {"w": f32(2, 2, 3, 3)}, {}, None),
    ("resize-nearest", "Resize", {"x": f32(1, 2, 3, 4)}, {"mode": "nearest"},
     {"roi": np.zeros(0, np.float32), "sc": np.array([1, 1, 2, 1.5], np.float32)}, {}, ["nearest"]),
    ("resize-linear-half-pixel", "Resize", {"x": f32(1, 2, 3, 4)}, {"mode": "linear"},
     {"roi": np.zeros(0, np.float32), "sc": np.array([1, 1, 2, 0.5], np.float32)}, {}, ["linear"]),
    ("resize-linear-align-corners-sizes", "Resize", {"x": f32(2, 3, 4)},
     {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
     {"roi": np.zeros(0, np.float32), "sc": np.zeros(0, np.float32), "sz": np.array([2, 5, 7])}, {}, None),
    ("resize-cubic", "Resize", {"x": f32(1, 1, 4, 4)}, {"mode": "cubic"},
     {"roi": np.zeros(0, np.float32), "sc": np.array([1, 1, 1.5, 2], np.float32)}, {}, None),
    ("resize-scales-from-run", "Resize", {"x": f32(1, 2, 2, 3), "sc": np.array([1, 1, 2, 2], np.float32)},
     {"mode": "nearest", "nearest_mode": "round_prefer_ceil", "coordinate_transformation_mode": "asymmetric"},
     {"roi": np.zeros(0, np.float32)}, {"input_order": ["x", "roi", "sc"]}, None),
    ("lrn-odd", "LRN", {"x": f32(2, 5, 3, 3)}, {"size": 3, "alpha": 0.5, "beta": 0.75, "bias": 2.0}, {}, {},
     ["window"]),
    ("lrn-wider-than-channels", "LRN", {"x": f32(1, 4, 2, 2)}, {"size": 7}, {}, {}, None),
    ("group-norm", "GroupNormalization", {"x": f32(2, 6, 3, 3)}, {"num_groups": 3},
     {"s": f32(6), "b": f32(6)}, {"opset": 21}, ["rows"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_kernel(case):
    _, op, inputs, attrs, consts, extra, algos = case
    check(node_model(op, inputs, attrs, consts, **extra), inputs, algos)


# --------------------------------------------------------------------------------------------- models

def _model(nodes, inputs, outputs, inits, opset=17):
    graph = helper.make_graph(nodes, "m", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _bn(prefix, c):
    return {f"{prefix}_s": f32(c), f"{prefix}_b": f32(c), f"{prefix}_m": f32(c) * 0.1,
            f"{prefix}_v": np.abs(f32(c)) + 0.5}


def small_cnn():
    """conv+BN+relu, depthwise conv+BN+relu, 1x1 conv, max-pool, flatten, Gemm; dynamic batch."""
    inits = {"w1": f32(8, 3, 3, 3) * 0.3, "b1": f32(8), **_bn("bn1", 8), "w2": f32(8, 1, 3, 3) * 0.3,
             **_bn("bn2", 8), "w3": f32(6, 8, 1, 1) * 0.3, "b3": f32(6), "wf": f32(10, 24) * 0.3, "bf": f32(10)}
    bn = lambda p, x, y: helper.make_node("BatchNormalization", [x, f"{p}_s", f"{p}_b", f"{p}_m", f"{p}_v"], [y])
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        bn("bn1", "c1", "n1"), helper.make_node("Relu", ["n1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], group=8, strides=[2, 2], pads=[1, 1, 1, 1]),
        bn("bn2", "c2", "n2"), helper.make_node("Relu", ["n2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"]), helper.make_node("Relu", ["c3"], ["r3"]),
        helper.make_node("MaxPool", ["r3"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["fl"]),
        helper.make_node("Gemm", ["fl", "wf", "bf"], ["y"], transB=1),
    ]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])], inits)


def small_attention(seq=4, d=8, heads=2):
    """Two-head self-attention (MatMul, Reshape, Transpose, Softmax), residual Add, LayerNormalization."""
    dh = d // heads
    inits = {"wq": f32(d, d) * 0.4, "wk": f32(d, d) * 0.4, "wv": f32(d, d) * 0.4, "wo": f32(d, d) * 0.4,
             "scale": np.float32(1 / math.sqrt(dh)), "heads": np.array([1, seq, heads, dh]),
             "merged": np.array([1, seq, d]), "g": f32(d), "beta": f32(d)}
    mk = helper.make_node
    nodes = [mk("MatMul", ["x", w], [n]) for w, n in (("wq", "q0"), ("wk", "k0"), ("wv", "v0"))] + [
        mk("Reshape", ["q0", "heads"], ["q1"]), mk("Transpose", ["q1"], ["q"], perm=[0, 2, 1, 3]),
        mk("Reshape", ["k0", "heads"], ["k1"]), mk("Transpose", ["k1"], ["kt"], perm=[0, 2, 3, 1]),
        mk("Reshape", ["v0", "heads"], ["v1"]), mk("Transpose", ["v1"], ["v"], perm=[0, 2, 1, 3]),
        mk("MatMul", ["q", "kt"], ["s0"]), mk("Mul", ["s0", "scale"], ["s"]),
        mk("Softmax", ["s"], ["p"], axis=-1), mk("MatMul", ["p", "v"], ["o0"]),
        mk("Transpose", ["o0"], ["o1"], perm=[0, 2, 1, 3]), mk("Reshape", ["o1", "merged"], ["o2"]),
        mk("MatMul", ["o2", "wo"], ["o"]), mk("Add", ["x", "o"], ["r"]),
        mk("LayerNormalization", ["r", "g", "beta"], ["y"], axis=-1),
    ]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, seq, d])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, seq, d])], inits)


@pytest.mark.parametrize("batch", [1, 2])
def test_small_cnn(batch):
    compiled = check(small_cnn(), {"x": f32(batch, 3, 8, 8)})
    algos = [s.algo for s in compiled.plan({"x": f32(batch, 3, 8, 8)}).steps]
    assert {"implicit-gemm", "depthwise", "gemm1x1", "window", "tiled-gemm"} <= set(algos)


def test_small_attention_runs_as_one_device_attention():
    compiled = check(small_attention(), {"x": f32(1, 4, 8)})
    assert "tiled-attention" in _algos(compiled, {"x": f32(1, 4, 8)})


def attention_model(q, kt, v, mask=None, scale=None):
    """softmax(q @ kt [* scale] [+ mask]) @ v written out op by op (which fusion makes one attention) over
    graph inputs of those shapes."""
    mk, names = helper.make_node, ["q", "kt", "v"] + (["mask"] if mask is not None else [])
    nodes, x = [mk("MatMul", ["q", "kt"], ["s0"])], "s0"
    if scale is not None:
        nodes.append(mk("Mul", [x, "scale"], ["s1"]))
        x = "s1"
    if mask is not None:
        nodes.append(mk("Add", [x, "mask"], ["s2"]))
        x = "s2"
    nodes += [mk("Softmax", [x], ["p"], axis=-1), mk("MatMul", ["p", "v"], ["y"])]
    shapes = [q, kt, v] + ([mask] if mask is not None else [])
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(sh)) for n, sh in zip(names, shapes)]
    inits = {} if scale is None else {"scale": np.float32(scale)}
    return _model(nodes, inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)


ATTENTION = [  # (id, q, kt, v, mask, scale)
    ("heads-padding-mask", (2, 3, 4, 5), (2, 3, 5, 6), (2, 3, 6, 3), (2, 1, 1, 6), 0.4),
    ("one-batch-axis-square-mask", (3, 9, 4), (3, 4, 9), (3, 9, 10), (9, 9), None),
    ("no-batch-no-mask", (5, 17), (17, 3), (3, 4), None, 2.0),
]


@pytest.mark.parametrize("case", ATTENTION, ids=[c[0] for c in ATTENTION])
def test_attention(case):
    _, q, kt, v, mask, scale = case
    feeds = {"q": f32(*q), "kt": f32(*kt), "v": f32(*v)}
    if mask is not None:
        feeds["mask"] = np.where(RNG.random(mask) < 0.3, -np.inf, f32(*mask)).astype(np.float32)
        feeds["mask"].reshape(-1, mask[-1])[:, 0] = 0  # no row masked whole
    compiled = check(attention_model(q, kt, v, mask, scale), feeds)
    assert _algos(compiled, feeds) == ["tiled-attention"]


def _algos(compiled, feeds):
    return [s.algo for s in compiled.plan(feeds).steps]


def tiny_unet():
    """Encoder conv+BN+relu, max-pool, conv; decoder ConvTranspose and a linear Resize of the bottleneck,
    both concatenated with the skip connection; 1x1 conv head."""
    inits = {"w1": f32(4, 2, 3, 3) * 0.4, **_bn("bn1", 4), "w2": f32(8, 4, 3, 3) * 0.3, "b2": f32(8),
             "wt": f32(8, 4, 2, 2) * 0.3, "bt": f32(4), "roi": np.zeros(0, np.float32),
             "sc": np.array([1, 1, 2, 2], np.float32), "wh": f32(3, 16, 1, 1) * 0.3, "bh": f32(3)}
    mk = helper.make_node
    nodes = [
        mk("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        mk("BatchNormalization", ["c1", "bn1_s", "bn1_b", "bn1_m", "bn1_v"], ["n1"]), mk("Relu", ["n1"], ["e1"]),
        mk("MaxPool", ["e1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        mk("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]), mk("Relu", ["c2"], ["e2"]),
        mk("ConvTranspose", ["e2", "wt", "bt"], ["up"], strides=[2, 2]),
        mk("Resize", ["e2", "roi", "sc"], ["rs"], mode="linear"),
        mk("Concat", ["up", "rs", "e1"], ["cat"], axis=1),
        mk("Conv", ["cat", "wh", "bh"], ["y"]),
    ]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])], inits)


def test_tiny_unet():
    feeds = {"x": f32(1, 2, 8, 8)}
    algos = _algos(check(tiny_unet(), feeds), feeds)
    assert {"implicit-gemm", "linear", "scatter"} <= set(algos) and "host" not in algos


def tiny_gpt(seq=5, d=8, heads=2, vocab=11):
    """Token and position embeddings, LayerNormalization, two-head causal self-attention (the mask a
    constant added to the scores), residual Add, a Gelu MLP, logits against the tied embedding."""
    dh = d // heads
    causal = np.triu(np.full((seq, seq), -np.inf, np.float32), 1)
    inits = {"wte": f32(vocab, d), "wpe": f32(seq, d), "pos": np.arange(seq), "g": f32(d), "beta": f32(d),
             "wq": f32(d, d) * 0.4, "wk": f32(d, d) * 0.4, "wv": f32(d, d) * 0.4, "wo": f32(d, d) * 0.4,
             "scale": np.float32(1 / math.sqrt(dh)), "mask": causal, "heads": np.array([1, seq, heads, dh]),
             "merged": np.array([1, seq, d]), "w1": f32(d, 2 * d) * 0.4, "w2": f32(2 * d, d) * 0.4}
    inits["wte_t"] = np.ascontiguousarray(inits["wte"].T)
    mk = helper.make_node
    nodes = [
        mk("Gather", ["wte", "ids"], ["tok"]), mk("Gather", ["wpe", "pos"], ["posv"]),
        mk("Add", ["tok", "posv"], ["x"]), mk("LayerNormalization", ["x", "g", "beta"], ["h"], axis=-1),
        *[mk("MatMul", ["h", w], [n]) for w, n in (("wq", "q0"), ("wk", "k0"), ("wv", "v0"))],
        mk("Reshape", ["q0", "heads"], ["q1"]), mk("Transpose", ["q1"], ["q"], perm=[0, 2, 1, 3]),
        mk("Reshape", ["k0", "heads"], ["k1"]), mk("Transpose", ["k1"], ["kt"], perm=[0, 2, 3, 1]),
        mk("Reshape", ["v0", "heads"], ["v1"]), mk("Transpose", ["v1"], ["v"], perm=[0, 2, 1, 3]),
        mk("MatMul", ["q", "kt"], ["s0"]), mk("Mul", ["s0", "scale"], ["s1"]), mk("Add", ["s1", "mask"], ["s"]),
        mk("Softmax", ["s"], ["p"], axis=-1), mk("MatMul", ["p", "v"], ["o0"]),
        mk("Transpose", ["o0"], ["o1"], perm=[0, 2, 1, 3]), mk("Reshape", ["o1", "merged"], ["o2"]),
        mk("MatMul", ["o2", "wo"], ["o"]), mk("Add", ["x", "o"], ["r"]),
        mk("MatMul", ["r", "w1"], ["m0"]), mk("Gelu", ["m0"], ["m1"], domain=""), mk("MatMul", ["m1", "w2"], ["m2"]),
        mk("Add", ["r", "m2"], ["r2"]), mk("MatMul", ["r2", "wte_t"], ["y"]),
    ]
    return _model(nodes, [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, seq])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, seq, vocab])], inits, opset=20)


def _ids(*values):
    return {"ids": np.array([values], np.int64)}


def test_tiny_gpt_block_with_causal_mask():
    feeds = _ids(3, 0, 10, -2, 7)
    algos = _algos(check(tiny_gpt(), feeds), feeds)
    assert {"take", "tiled-attention", "tiled-gemm", "rows"} <= set(algos) and "host" not in algos


def test_token_out_of_range_names_the_gather_then_the_model_runs_again():
    model = tiny_gpt()
    compiled = irc.compile(model, target="cuda")
    with pytest.raises(irc.IrcError, match="node gather .*: gather indices out of range for an axis of size 11"):
        compiled.run(_ids(3, 0, 11, 1, 2))
    good = _ids(3, 0, 10, 1, 2)
    assert_close(compiled.run(good)["y"], run_ort(model, good)[0], what="after the failed run")


def _epilogue_model(producer, extra_inputs, tail, inits):
    """``producer`` (a node making "p") followed by ``tail`` nodes ending in "y", which fusion folds into it."""
    ins = [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(v.shape)) for k, v in extra_inputs.items()]
    return _model([producer, *tail], ins, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)


EPILOGUES = [
    ("conv-add-relu", helper.make_node("Conv", ["x", "w", "b"], ["p"], pads=[1, 1, 1, 1]),
     {"x": f32(1, 2, 4, 4), "r": f32(1, 3, 4, 4)},
     [helper.make_node("Add", ["p", "r"], ["s"]), helper.make_node("Relu", ["s"], ["y"])],
     {"w": f32(3, 2, 3, 3), "b": f32(3)}),
    ("depthwise-clip", helper.make_node("Conv", ["x", "w"], ["p"], group=2),
     {"x": f32(1, 2, 4, 4)}, [helper.make_node("Clip", ["p", "lo", "hi"], ["y"])],
     {"w": f32(2, 1, 2, 2), "lo": np.float32(-0.3), "hi": np.float32(0.6)}),
    ("matmul-add-sigmoid", helper.make_node("MatMul", ["x", "w"], ["p"]), {"x": f32(2, 3, 5)},
     [helper.make_node("Add", ["p", "c"], ["s"]), helper.make_node("Sigmoid", ["s"], ["y"])],
     {"w": f32(5, 4), "c": f32(4)}),
    ("gemm-leaky-relu", helper.make_node("Gemm", ["x", "w"], ["p"], transB=1), {"x": f32(3, 5)},
     [helper.make_node("LeakyRelu", ["p"], ["y"], alpha=0.2)], {"w": f32(4, 5)}),
]


@pytest.mark.parametrize("case", EPILOGUES, ids=[c[0] for c in EPILOGUES])
def test_fused_epilogue(case):
    _, producer, feeds, tail, inits = case
    compiled = check(_epilogue_model(producer, feeds, tail, inits), feeds)
    steps = compiled.plan(feeds).steps
    assert len(steps) == 1 and steps[0].node.attrs.get("epilogue"), "the tail should be fused"


ARTIFACTS = json.loads(os.environ.get("IRC_CUDA_ARTIFACTS", "{}"))


@pytest.mark.parametrize("name", sorted(ARTIFACTS))
def test_whole_model_plans_every_step_on_the_device(name):
    """A zoo or light_* model compiled for CUDA by the parent test (without a GPU), loaded here: every
    step of its plan at batch 1 has a device kernel, nothing runs on the host."""
    steps = irc.load(ARTIFACTS[name]).plan().steps
    assert [f"{s.node.op} {s.node.name}" for s in steps if s.algo == "host"] == []


def _transfers(monkeypatch, compiled, feeds):
    """(uploads, downloads) of one run of ``compiled``, after a first run that built its plan."""
    from irc.kernels.cuda import device
    compiled.run(feeds)
    calls = {"up": 0, "down": 0}
    up, down = device.upload, device.download

    def count(kind, fn):
        def wrapped(a):
            calls[kind] += 1
            return fn(a)
        return wrapped
    monkeypatch.setattr(device, "upload", count("up", up))
    monkeypatch.setattr(device, "download", count("down", down))
    compiled.run(feeds)
    return calls["up"], calls["down"]


def test_one_copy_in_per_input_and_one_out_per_output(monkeypatch):
    """Constants go up when the plan is built; a run then uploads its inputs only, downloads its outputs only."""
    assert _transfers(monkeypatch, irc.compile(small_cnn(), target="cuda"), {"x": f32(1, 3, 8, 8)}) == (1, 1)


def test_gpt_block_copies_its_ids_in_and_logits_out_plus_the_gather_status(monkeypatch):
    assert _transfers(monkeypatch, irc.compile(tiny_gpt(), target="cuda"), _ids(1, 2, 3, 4, 5)) == (1, 2)


def test_artifact_round_trip(tmp_path):
    model = small_attention()
    feeds = {"x": f32(1, 4, 8)}
    compiled = irc.compile(model, target="cuda")
    compiled.save(tmp_path / "m.bin")
    loaded = irc.load(tmp_path / "m.bin")
    assert loaded.target == "cuda" and loaded.artifact.manifest["target"] == "cuda"
    np.testing.assert_array_equal(loaded.run(feeds)["y"], compiled.run(feeds)["y"])


def test_float64_conv_names_the_node():
    model = node_model("Conv", {"x": np.zeros((1, 2, 4, 4))}, {}, {"w": np.zeros((3, 2, 3, 3))})
    compiled = irc.compile(model, target="cuda")
    with pytest.raises(irc.IrcError, match="conv_node.*f64 has no CUDA kernel"):
        compiled.run({"x": np.zeros((1, 2, 4, 4))})
