"""Pattern and elementwise fusion, and the simplify rewrites of chains: whole models against onnxruntime
and the reference interpreter (tests/util.py), the op counts they leave, and the golden cases of these
passes before and after them on random inputs."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import irc
from irc import IrcError
from irc.frontend import import_onnx
from irc.ir import parse_graph, verify
from irc.ops.interpret import interpret
from irc.passes import PassManager, pipeline
from tests.passes.fixtures import load_cases, random_feeds
from tests.util import check_model

RNG = np.random.default_rng(7)
F32 = np.float32
ONNX_TYPES = {np.dtype(F32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE,
              np.dtype(np.float16): TensorProto.FLOAT16, np.dtype(np.int32): TensorProto.INT32,
              np.dtype(np.int64): TensorProto.INT64, np.dtype(bool): TensorProto.BOOL}


def graph_model(nodes, inputs, consts=None, outputs=("y",)):
    """A model of ``nodes`` (helper.make_node arguments: op, inputs, outputs, attributes)."""
    made = [helper.make_node(op, ins, outs, name=f"n{i}", **attrs) for i, (op, ins, outs, attrs) in enumerate(nodes)]
    vin = [helper.make_tensor_value_info(k, ONNX_TYPES[v.dtype], v.shape) for k, v in inputs.items()]
    vout = [helper.make_empty_tensor_value_info(o) for o in outputs]
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in (consts or {}).items()]
    g = helper.make_graph(made, "g", vin, vout, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def optimized_counts(model):
    return irc.compile(model, opt_level=2).graph.op_counts()


def randn(*shape, dtype=F32):
    return RNG.standard_normal(shape).astype(dtype)


# --- elementwise chains -------------------------------------------------------------------------------
# (id, nodes, inputs, constants, the ops left beside the one fused_elementwise)
CHAINS = [
    ("broadcast mul-add-sigmoid",
     [("Mul", ["x", "a"], ["m"], {}), ("Add", ["m", "b"], ["s"], {}), ("Sigmoid", ["s"], ["y"], {})],
     {"x": randn(2, 3, 4), "a": randn(4), "b": randn(3, 1)}, {}, {}),
    ("mixed dtypes: int add, cast, compare, where",
     [("Add", ["i", "j"], ["k"], {}), ("Cast", ["k"], ["f"], {"to": TensorProto.FLOAT}),
      ("Greater", ["x", "f"], ["g"], {}), ("Mul", ["x", "two"], ["x2"], {}), ("Where", ["g", "x2", "f"], ["y"], {})],
     {"i": RNG.integers(-3, 4, (3, 4)).astype(np.int32), "j": RNG.integers(-3, 4, (4,)).astype(np.int32),
      "x": randn(3, 4)}, {"two": np.array(2.0, F32)}, {}),
    ("float64 exp, tanh, log",
     [("Exp", ["x"], ["e"], {}), ("Tanh", ["e"], ["t"], {}), ("Add", ["t", "x"], ["s"], {}),
      ("Abs", ["s"], ["a"], {}), ("Log", ["a"], ["y"], {})],
     {"x": randn(5, 7, dtype=np.float64)}, {}, {}),
    ("a value read twice inside the chain",
     [("Sub", ["x", "one"], ["d"], {}), ("Mul", ["d", "d"], ["sq"], {}), ("Neg", ["sq"], ["y"], {})],
     {"x": randn(64, 33)}, {"one": np.array([1.0], F32)}, {}),
    ("a transposed (strided) operand",
     [("Transpose", ["x"], ["xt"], {"perm": [1, 0]}), ("Add", ["xt", "b"], ["s"], {}), ("Relu", ["s"], ["r"], {}),
      ("LeakyRelu", ["r"], ["y"], {"alpha": 0.3})],
     {"x": randn(6, 5), "b": randn(5, 1)}, {}, {"transpose": 1}),
    ("float16",
     [("Mul", ["x", "x"], ["m"], {}), ("Add", ["m", "b"], ["s"], {}), ("Relu", ["s"], ["y"], {})],
     {"x": randn(3, 8, dtype=np.float16), "b": randn(8, dtype=np.float16)}, {}, {}),
    ("a value read outside the chain (exp, by reduce_sum) stays out of it",
     [("Exp", ["x"], ["e"], {}), ("Neg", ["e"], ["n"], {}), ("Abs", ["n"], ["y"], {}),
      ("ReduceSum", ["e"], ["r"], {"keepdims": 1}), ("Sqrt", ["r"], ["q"], {}), ("Add", ["y", "q"], ["z"], {}),
      ("Sin", ["z"], ["w"], {})],
     {"x": randn(4, 4)}, {}, {"exp": 1, "reduce_sum": 1}),
]


@pytest.mark.parametrize("nodes, inputs, consts, left", [c[1:] for c in CHAINS], ids=[c[0] for c in CHAINS])
def test_elementwise_chain_fuses_and_matches_onnxruntime(nodes, inputs, consts, left):
    outputs = ("w",) if nodes[-1][2] == ["w"] else ("y",)
    model = graph_model(nodes, inputs, consts, outputs)
    check_model(model, inputs)
    assert optimized_counts(model) == {"fused_elementwise": 1, **left}


def test_fused_elementwise_round_trips_through_the_artifact(tmp_path):
    """The tree and its float parameters are data in the artifact; the loaded model computes the same."""
    nodes = [("Add", ["x", "b"], ["s"], {}), ("LeakyRelu", ["s"], ["r"], {"alpha": 0.3}),
             ("HardSigmoid", ["r"], ["y"], {"alpha": 0.25, "beta": 0.4})]
    feeds = {"x": randn(3, 4), "b": randn(4)}
    m = irc.compile(graph_model(nodes, feeds))
    assert m.graph.op_counts() == {"fused_elementwise": 1}
    m.save(tmp_path / "m.bin")
    loaded = irc.load(tmp_path / "m.bin")
    np.testing.assert_array_equal(loaded.run(feeds)["y"], m.run(feeds)["y"])
    assert [n.attrs for n in loaded.graph.nodes if n.op != "const"] == \
        [n.attrs for n in m.graph.nodes if n.op != "const"]


def test_fused_elementwise_names_an_op_off_the_whitelist():
    text = """graph main(%x: f32[2]) {
  %0 = fused_elementwise(%x) {expr=["conv2d", [0]], params=[]} : f32[2]
  return %0 as "y"
}
"""
    with pytest.raises(IrcError, match="'conv2d' is not an elementwise op"):
        verify(parse_graph(text))


def test_fused_elementwise_names_an_operand_out_of_range():
    text = """graph main(%x: f32[2]) {
  %0 = fused_elementwise(%x) {expr=["neg", [3]], params=[]} : f32[2]
  return %0 as "y"
}
"""
    with pytest.raises(IrcError, match="operand reference 3"):
        verify(parse_graph(text))


# --- GELU ---------------------------------------------------------------------------------------------

def _gelu_erf_nodes(x):
    return [("Div", [x, "sqrt2"], ["t"], {}), ("Erf", ["t"], ["e"], {}), ("Add", ["e", "one"], ["p"], {}),
            ("Mul", [x, "p"], ["xp"], {}), ("Mul", ["xp", "half"], ["y"], {})]


GELU_CONSTS = {"sqrt2": np.array(np.sqrt(2.0), F32), "one": np.array(1.0, F32), "half": np.array(0.5, F32),
               "c": np.array(0.044715, F32), "k": np.array(np.sqrt(2 / np.pi), F32), "three": np.array(3.0, F32)}


def test_gelu_erf_after_a_matmul_fuses_into_it_and_matches_onnxruntime():
    nodes = [("MatMul", ["x", "w"], ["h"], {})] + _gelu_erf_nodes("h")
    model = graph_model(nodes, {"x": randn(2, 5, 8)}, {"w": randn(8, 16), **GELU_CONSTS})
    check_model(model, {"x": randn(2, 5, 8)})
    assert optimized_counts(model) == {"matmul": 1}


def test_gelu_tanh_with_pow_becomes_one_gelu_and_matches_onnxruntime():
    nodes = [("Pow", ["x", "three"], ["x3"], {}), ("Mul", ["c", "x3"], ["cx3"], {}), ("Add", ["x", "cx3"], ["s"], {}),
             ("Mul", ["k", "s"], ["u"], {}), ("Tanh", ["u"], ["t"], {}), ("Add", ["one", "t"], ["p"], {}),
             ("Mul", ["x", "p"], ["xp"], {}), ("Mul", ["half", "xp"], ["y"], {})]
    model = graph_model(nodes, {"x": randn(4, 9)}, GELU_CONSTS)
    check_model(model, {"x": randn(4, 9) * 3})
    assert optimized_counts(model) == {"gelu": 1}


def test_written_out_layernorm_becomes_one_layernorm_and_matches_onnxruntime():
    nodes = [("ReduceMean", ["x"], ["m"], {"axes": [-1]}), ("Sub", ["x", "m"], ["d"], {}),
             ("Pow", ["d", "two"], ["d2"], {}), ("ReduceMean", ["d2"], ["v"], {"axes": [-1]}),
             ("Add", ["v", "eps"], ["ve"], {}), ("Sqrt", ["ve"], ["s"], {}), ("Div", ["d", "s"], ["n"], {}),
             ("Mul", ["n", "g"], ["ng"], {}), ("Add", ["ng", "b"], ["y"], {})]
    consts = {"two": np.array(2.0, F32), "eps": np.array(1e-5, F32), "g": randn(16), "b": randn(16)}
    model = graph_model(nodes, {"x": randn(3, 5, 16)}, consts)
    check_model(model, {"x": randn(3, 5, 16) * 4 + 1})
    assert optimized_counts(model) == {"layernorm": 1}


# --- attention ----------------------------------------------------------------------------------------

def _attention_model(scale_op="Div", mask_shape=(2, 1, 1, 5), axis=-1, rank=4, dtype=F32):
    """q [.., S, D] @ transpose(k) / 2 (+ mask), softmax, @ v with S = T = 5, D = 4, Dv = 6."""
    batch = (2, 3)[:rank - 2]
    feeds = {"q": randn(*batch, 5, 4, dtype=dtype), "k": randn(*batch, 5, 4, dtype=dtype),
             "v": randn(*batch, 5, 6, dtype=dtype)}
    perm = list(range(rank - 2)) + [rank - 1, rank - 2]
    nodes = [("Transpose", ["k"], ["kt"], {"perm": perm}), ("MatMul", ["q", "kt"], ["s"], {}),
             (scale_op, ["s", "c"], ["scaled"], {})]
    last = "scaled"
    if mask_shape is not None:
        feeds["mask"] = np.where(RNG.random(mask_shape) < 0.3, -10000.0, 0.0).astype(dtype)
        nodes.append(("Add", ["scaled", "mask"], ["masked"], {}))
        last = "masked"
    nodes += [("Softmax", [last], ["p"], {"axis": axis}), ("MatMul", ["p", "v"], ["y"], {})]
    c = {"Div": 2.0, "Mul": 0.5}[scale_op]
    return graph_model(nodes, feeds, {"c": np.array(c, dtype)}), feeds


@pytest.mark.parametrize("scale_op, mask_shape, rank, dtype", [
    ("Div", (2, 1, 1, 5), 4, F32), ("Mul", None, 4, F32), ("Div", (2, 3, 5, 5), 4, F32), ("Mul", (5, 5), 3, F32),
    ("Div", (1, 5), 2, F32), ("Div", (2, 1, 5, 5), 4, np.float64)])
def test_attention_becomes_one_node_and_matches_onnxruntime(scale_op, mask_shape, rank, dtype):
    model, feeds = _attention_model(scale_op, mask_shape, rank=rank, dtype=dtype)
    check_model(model, feeds)
    counts = optimized_counts(model)
    assert counts.get("attention") == 1 and "softmax" not in counts and "matmul" not in counts, counts


def test_softmax_over_another_axis_is_no_attention():
    model, feeds = _attention_model(axis=2)
    check_model(model, feeds)
    assert "attention" not in optimized_counts(model)


# --- the golden cases of these passes, before and after, on random inputs -----------------------------

CASES = [c for c in load_cases() if c.file in ("fuse_elementwise.ir", "fuse_patterns.ir", "simplify_chains.ir")]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_golden_case_keeps_its_outputs(case):
    before = parse_graph(case.before)
    after = PassManager(case.passes, verify_each=True).run(parse_graph(case.before))
    for seed in (0, 1):
        want, got = interpret(before, random_feeds(before, seed)), interpret(after, random_feeds(after, seed))
        for a, b in zip(want, got):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


# --- the zoo ------------------------------------------------------------------------------------------

def _imported_and_optimized(zoo, name):
    imported = sum(import_onnx(zoo.path(name)).op_counts().values())
    optimized = PassManager(pipeline(2)).run(import_onnx(zoo.path(name))).op_counts()
    return imported, optimized


def test_bert_keeps_no_erf_and_at_most_half_its_ops(zoo):
    imported, optimized = _imported_and_optimized(zoo, "bert")
    assert "erf" not in optimized and optimized.get("attention") == 4, optimized
    assert sum(optimized.values()) <= imported / 2, (imported, optimized)


def test_mobilenetv2_keeps_at_most_sixty_percent_of_its_ops(zoo):
    imported, optimized = _imported_and_optimized(zoo, "mobilenetv2")
    assert sum(optimized.values()) <= 0.6 * imported, (imported, optimized)
