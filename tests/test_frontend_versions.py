"""Which op versions the importer reads (irc/frontend/onnx_versions.py) and the inlining of ONNX functions
(irc/frontend/onnx_functions.py): schema functions, context-dependent ones, and a model's own functions."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import irc
from irc.errors import UnsupportedError
from irc.frontend import import_onnx
from irc.frontend import onnx as frontend
from irc.frontend.onnx_versions import BASE_OPSET, MAX_OPSET, changes, implemented_version, version_problem
from tests.util import check_model, node_model

F = TensorProto.FLOAT


def _rand(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# -- versions ----------------------------------------------------------------------------------------------

def _converted_ops():
    import_onnx(node_model("Relu", {"x": _rand((2,))}))  # registers the converters
    return sorted(set(frontend.CONVERTERS) | set(frontend._ops.BY_ONNX))


# The optional attributes added, up to MAX_OPSET, to ops irc converts: a node must leave them at their default.
ADDED_ATTRIBUTES = {"Cast": ("round_mode",), "CastLike": ("round_mode",), "Range": ("stash_type",),
                    "SpaceToDepth": ("mode",)}


def test_every_newer_version_of_a_converted_op_only_adds_types_or_optional_attributes():
    """The review of onnx's versions up to MAX_OPSET, pinned: a new onnx release that changes one of irc's
    ops beyond element types shows up here."""
    added = {}
    for op in _converted_ops():
        implemented = implemented_version(op)
        newest = onnx.defs.get_schema(op, MAX_OPSET, "").since_version
        breaking, extra = changes(op, implemented, newest)
        assert not breaking, f"{op} {implemented} -> {newest}: {breaking}"
        if extra:
            added[op] = extra
    assert added == ADDED_ATTRIBUTES


def test_changes_name_new_inputs_and_attributes():
    breaking, added = changes("Attention", 23, 25)
    assert len(breaking) == 1 and "nonpad_kv_seqlen" in breaking[0]
    assert added == ("left_window_size", "right_window_size")
    assert changes("Reshape", 23, 25) == ((), ())


@pytest.mark.parametrize("op,opset,attrs,problem", [
    ("Reshape", 25, {}, None),
    ("Relu", MAX_OPSET + 3, {}, None),                      # unchanged since: read as the newest known
    ("Cast", 25, {"to": F}, None),
    ("Cast", 25, {"to": F, "round_mode": "up"}, None),       # set to its default
    ("Cast", 25, {"to": F, "round_mode": "down"}, "attribute 'round_mode' of version 25 is not supported"),
    ("SpaceToDepth", 28, {"blocksize": 2, "mode": "CRD"}, "attribute 'mode' of version 28 is not supported"),
    ("Attention", 24, {}, "inputs ['Q', 'K', 'V', 'attn_mask', 'past_key', 'past_value', 'nonpad_kv_seqlen']"),
    ("Swish", 24, {}, None),                                 # not implemented: an unsupported op, not a version
])
def test_version_problem(op, opset, attrs, problem):
    node = helper.make_node(op, ["x"], ["y"], **attrs)
    got = version_problem(node, opset)
    if problem is None:
        assert got is None
    else:
        version = onnx.defs.get_schema(op, opset, "").since_version
        assert got.startswith(f"version {version} of {op} is not read (irc implements version "
                              f"{implemented_version(op)})") and problem in got


def test_implemented_version_is_the_one_in_effect_at_the_base_opset_unless_listed():
    assert implemented_version("Reshape") == onnx.defs.get_schema("Reshape", BASE_OPSET, "").since_version
    assert implemented_version("Swish") is None
    assert implemented_version("BitShift") == 28 and version_problem(helper.make_node("BitShift", [], []), 28) \
        is None


NEWER = [  # (op, opset, inputs, consts, attrs)
    ("Reshape", 25, {"x": _rand((2, 3, 4))}, {"s": np.array([4, -1], np.int64)}, {}),
    ("Transpose", 25, {"x": _rand((2, 3, 4))}, {}, {"perm": [2, 0, 1]}),
    ("Cast", 25, {"x": _rand((3, 4)) * 10}, {}, {"to": TensorProto.INT32}),
    ("TopK", 24, {"x": _rand((3, 5))}, {"k": np.array([2], np.int64)}, {}),
    ("Mod", 28, {"x": np.arange(-6, 6, dtype=np.int32), "y": np.full(12, 4, np.int32)}, {}, {}),
    ("SpaceToDepth", 28, {"x": _rand((1, 2, 4, 6))}, {}, {"blocksize": 2}),
]


@pytest.mark.parametrize("op,opset,inputs,consts,attrs", NEWER, ids=[f"{n[0]}-{n[1]}" for n in NEWER])
def test_newer_versions_run_as_onnxruntime(op, opset, inputs, consts, attrs):
    check_model(node_model(op, inputs, attrs, consts=consts, n_outputs=2 if op == "TopK" else 1, opset=opset),
                inputs)


def test_refused_version_names_op_and_versions():
    x = _rand((2, 3))
    with pytest.raises(UnsupportedError) as e:
        import_onnx(node_model("Cast", {"x": x}, {"to": TensorProto.INT32, "round_mode": "down"}, opset=25))
    assert "Cast (domain 'ai.onnx', opset 25): 'cast_node' (version 25 of Cast is not read (irc implements " \
           "version 23): attribute 'round_mode' of version 25 is not supported)" in str(e.value)


def test_refused_version_with_a_function_is_inlined():
    """SpaceToDepth 28 with mode CRD is not the implemented version, but its function body is read."""
    x = _rand((1, 2, 4, 6))
    check_model(node_model("SpaceToDepth", {"x": x}, {"blocksize": 2, "mode": "CRD"}, opset=28), {"x": x})


# -- schema functions --------------------------------------------------------------------------------------

FUNCTIONS = [  # (op, opset, inputs, attrs): ops irc runs only as their function bodies
    ("MeanVarianceNormalization", 13, {"x": _rand((2, 3, 4, 5))}, {}),              # body of version 13
    ("MeanVarianceNormalization", 18, {"x": _rand((2, 3, 4, 5))}, {"axes": [1, 3]}),  # body of version 18
    ("HannWindow", 17, {"n": np.array(10, np.int64)}, {"periodic": 0}),
    ("RMSNormalization", 23, {"x": _rand((2, 3, 8)), "s": _rand((8,), 1)}, {"epsilon": 1e-3}),
    ("NegativeLogLikelihoodLoss", 22, {"x": _rand((4, 5)), "t": np.array([0, 4, 2, 1], np.int64)},
     {"reduction": "sum"}),
    ("NegativeLogLikelihoodLoss", 22, {"x": _rand((4, 5, 3)), "t": np.array([[0, 4, 2]] * 4, np.int64)}, {}),
]


@pytest.mark.parametrize("op,opset,inputs,attrs", FUNCTIONS, ids=[f"{f[0]}-{f[1]}" for f in FUNCTIONS])
def test_schema_function_is_inlined(op, opset, inputs, attrs):
    model = node_model(op, inputs, attrs, opset=opset)
    before = model.SerializeToString()
    graph = import_onnx(model)
    assert len([n for n in graph.nodes if n.op != "const"]) > 1  # the body, not one op
    assert model.SerializeToString() == before  # the model is not changed
    check_model(model, inputs)


def test_inner_names_are_fresh_and_name_the_node():
    """Body values get names that do not clash with the graph's, made from the node's name."""
    x = _rand((2, 3, 4, 5))
    model = node_model("MeanVarianceNormalization", {"x": x}, opset=18)
    taken = [helper.make_node("Relu", ["x"], ["meanvariancenormalization_node/X_RM"], name="r")]
    model.graph.node.extend(taken)
    model.graph.output.append(helper.make_empty_tensor_value_info("meanvariancenormalization_node/X_RM"))
    check_model(model, {"x": x})


# -- a model's own functions -------------------------------------------------------------------------------

def _local_model(functions, nodes, n_inputs=1, opset=18):
    inputs = [helper.make_tensor_value_info(f"x{i}", F, [2, 3]) for i in range(n_inputs)]
    outputs = [helper.make_tensor_value_info("y", F, [2, 3])]
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    return helper.make_model(graph, functions=functions, ir_version=8,
                             opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("local", 1)])


def _scaled_add():
    """local.ScaledAdd(a, b) = LeakyRelu(a + b, alpha=@alpha) with alpha defaulting to 0.25."""
    alpha = helper.make_attribute_ref("alpha", onnx.AttributeProto.FLOAT)
    leaky = helper.make_node("LeakyRelu", ["s"], ["out"])
    leaky.attribute.append(alpha)
    return helper.make_function("local", "ScaledAdd", ["a", "b"], ["out"],
                                [helper.make_node("Add", ["a", "b"], ["s"]), leaky],
                                [helper.make_opsetid("", 18)], attributes=[],
                                attribute_protos=[helper.make_attribute("alpha", 0.25)])


def _twice():
    """local.Twice(a) = ScaledAdd(ScaledAdd(a, a), a): a function calling another one."""
    return helper.make_function("local", "Twice", ["a"], ["out"],
                                [helper.make_node("ScaledAdd", ["a", "a"], ["s"], domain="local"),
                                 helper.make_node("ScaledAdd", ["s", "a"], ["out"], domain="local", alpha=0.5)],
                                [helper.make_opsetid("", 18), helper.make_opsetid("local", 1)])


@pytest.mark.parametrize("attrs", [{}, {"alpha": 2.0}])
def test_local_function_with_attribute_reference(attrs):
    model = _local_model([_scaled_add()], [helper.make_node("ScaledAdd", ["x0", "x1"], ["y"], domain="local",
                                                            **attrs)], n_inputs=2)
    feeds = {"x0": _rand((2, 3)), "x1": _rand((2, 3), 1)}
    check_model(model, feeds)


def test_nested_local_functions():
    model = _local_model([_scaled_add(), _twice()], [helper.make_node("Twice", ["x0"], ["y"], domain="local")])
    check_model(model, {"x0": _rand((2, 3))})


def test_recursive_function_is_refused():
    loop = helper.make_function("local", "Loop1", ["a"], ["out"],
                                [helper.make_node("Loop1", ["a"], ["out"], domain="local")],
                                [helper.make_opsetid("local", 1)])
    model = _local_model([loop], [helper.make_node("Loop1", ["x0"], ["y"], domain="local")])
    with pytest.raises(UnsupportedError, match="nest more than"):
        import_onnx(model)


def test_function_with_a_subgraph_is_reported_unsupported():
    then = helper.make_graph([helper.make_node("Identity", ["a"], ["t"])], "then", [],
                             [helper.make_tensor_value_info("t", F, [2, 3])])
    body = [helper.make_node("Constant", [], ["c"], value=helper.make_tensor("c", TensorProto.BOOL, [], [True])),
            helper.make_node("If", ["c"], ["out"], then_branch=then, else_branch=then)]
    fn = helper.make_function("local", "Branch", ["a"], ["out"], body, [helper.make_opsetid("", 18)])
    model = _local_model([fn], [helper.make_node("Branch", ["x0"], ["y"], domain="local", name="b")])
    with pytest.raises(UnsupportedError, match=r"Branch \(domain 'local', opset 1\): 'b'"):
        import_onnx(model)


# -- converters: Dropout, Equal, Mod ----------------------------------------------------------------------------

DROPOUT = [  # (consts: ratio and training_mode as initializers, n_outputs)
    ({}, 2),
    ({"r": np.array(0.5, np.float32)}, 2),
    ({"r": np.array(0.5, np.float32), "t": np.array(False)}, 2),
    ({"r": np.array(0.0, np.float32), "t": np.array(True)}, 1),  # training, but nothing is dropped
]


@pytest.mark.parametrize("consts,n_outputs", DROPOUT)
def test_dropout_at_inference_with_mask(consts, n_outputs):
    x = _rand((3, 4, 5))
    check_model(node_model("Dropout", {"x": x}, consts=consts, n_outputs=n_outputs, opset=22), {"x": x})


@pytest.mark.parametrize("consts,inputs", [
    ({"r": np.array(0.5, np.float32), "t": np.array(True)}, {}),
    ({"r": np.array(0.5, np.float32)}, {"t": np.array(False)}),   # not a constant: not known to be false
])
def test_dropout_in_training_mode_is_refused(consts, inputs):
    x = _rand((3, 4))
    model = node_model("Dropout", {"x": x, **inputs}, consts=consts, opset=22, input_order=["x", "r", "t"])
    with pytest.raises(UnsupportedError, match="training_mode .input 2. must be a constant false"):
        import_onnx(model)


def test_equal_of_strings_is_refused_at_import():
    g = helper.make_graph([helper.make_node("Equal", ["x", "y"], ["z"], name="eq")], "g",
                          [helper.make_tensor_value_info(n, TensorProto.STRING, [2]) for n in "xy"],
                          [helper.make_tensor_value_info("z", TensorProto.BOOL, [2])])
    with pytest.raises(UnsupportedError, match="'eq' .Equal of strings is not supported"):
        import_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)]))


MOD_X = np.array([-4.5, -3, 0, -0.0, 2.5, 7, np.inf, 1, -1, np.nan, 5.25, -6], np.float32)
MOD_Y = np.array([2, -2, 3, -3, -1.5, 2.5, 2, np.inf, np.inf, 1, 0, -0.75], np.float32)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("y_shape", [(12,), (3, 1, 1)])
def test_floating_mod_with_floored_remainder(dtype, y_shape):
    """Mod 28 with fmod=0 on floats: signs mixed, zeros, infinities, NaN, broadcasting; the reference is
    numpy's floored remainder."""
    x = MOD_X.astype(dtype)
    y = np.resize(MOD_Y, y_shape).astype(dtype)
    with np.errstate(all="ignore"):
        expected = np.mod(x, y)
    got = check_model(node_model("Mod", {"x": x, "y": y}, {"fmod": 0}, opset=28), {"x": x, "y": y})["out0"]
    np.testing.assert_array_equal(got, expected)


def _shift_spec(x: int, y: int, direction: str, bits: int) -> int:
    """BitShift as version 28 defines it, on Python integers."""
    if y < 0 or y >= bits:
        return -1 if direction == "RIGHT" and x < 0 else 0
    return x << y if direction == "LEFT" else x >> y


@pytest.mark.parametrize("direction", ["LEFT", "RIGHT"])
@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.uint8, np.uint64])
def test_bit_shift_out_of_range_amounts(direction, dtype):
    """Shifts by negative amounts, by the bit width and beyond, of negative and positive operands."""
    bits = 8 * np.dtype(dtype).itemsize
    signed = np.dtype(dtype).kind == "i"
    x = np.array([-5, 7, -128, 3, 1, -1, 100, 2] if signed else [5, 7, 128, 3, 1, 255, 100, 2], dtype)
    y = np.array([1, -1, 2, bits, bits + 3, 0, bits - 1, -bits] if signed else
                 [1, 0, 2, bits, bits + 3, 0, bits - 1, 3], dtype)
    low = -(1 << (bits - 1)) if signed else 0  # results wrap to the dtype's range
    expected = np.array([(_shift_spec(int(a), int(b), direction, bits) - low) % (1 << bits) + low
                         for a, b in zip(x, y)], dtype)
    model = node_model("BitShift", {"x": x, "y": y}, {"direction": direction}, opset=28)
    got = irc.compile(model).run({"x": x, "y": y})["out0"]
    np.testing.assert_array_equal(got, expected)
