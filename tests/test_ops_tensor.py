"""Data-movement and shape ops: every case against onnxruntime and the reference interpreter, across the
opsets where an op's form changed (attributes that became operands), plus shape inference with symbolic
dims and errors that name their node."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import irc
from irc.frontend import import_onnx
from irc.ir import Builder, Graph, TensorType
from tests.util import check_model, node_model

rng = np.random.default_rng(0)
BIG = np.iinfo(np.int64).max


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def i64(*values):
    return np.array(values, dtype=np.int64)


def tensor(a):
    return numpy_helper.from_array(a, "value")


def case(id, op, inputs, attrs=None, consts=None, opset=17, n_outputs=1, input_order=None):
    return pytest.param(op, inputs, attrs, consts, opset, n_outputs, input_order, id=id)


CASES = [
    # shape, size
    case("shape-13", "Shape", {"x": f32(2, 3, 4)}, opset=13),
    case("shape-start", "Shape", {"x": f32(2, 3, 4)}, {"start": 1}, opset=15),
    case("shape-neg-start-end", "Shape", {"x": f32(2, 3, 4, 5)}, {"start": -3, "end": -1}, opset=15),
    case("shape-clamped", "Shape", {"x": f32(2, 3)}, {"start": -10, "end": 10}, opset=15),
    case("shape-empty-range", "Shape", {"x": f32(2, 3)}, {"start": 2, "end": 1}, opset=15),
    case("size", "Size", {"x": f32(2, 3, 4)}),
    # reshape family
    case("reshape-9-copy", "Reshape", {"x": f32(2, 3, 4)}, consts={"s": i64(0, -1)}, opset=9),
    case("reshape-minus-one-first", "Reshape", {"x": f32(2, 3, 4)}, consts={"s": i64(-1, 6)}, opset=13),
    case("reshape-allowzero", "Reshape", {"x": f32(0, 3)}, {"allowzero": 1}, consts={"s": i64(3, 0)}, opset=14),
    case("reshape-runtime-shape", "Reshape", {"x": f32(2, 3, 4), "s": i64(4, -1, 2)}),
    case("flatten-0", "Flatten", {"x": f32(2, 3, 4)}, {"axis": 0}, opset=9),
    case("flatten-default", "Flatten", {"x": f32(2, 3, 4)}, opset=13),
    case("flatten-neg", "Flatten", {"x": f32(2, 3, 4, 5)}, {"axis": -1}),
    case("flatten-rank", "Flatten", {"x": f32(2, 3)}, {"axis": 2}),
    case("squeeze-11-attr", "Squeeze", {"x": f32(1, 3, 1, 4)}, {"axes": [0, -2]}, opset=11),
    case("squeeze-13-operand", "Squeeze", {"x": f32(1, 3, 1, 4)}, consts={"a": i64(2)}, opset=13),
    case("squeeze-all", "Squeeze", {"x": f32(1, 3, 1, 4)}, opset=13),
    case("unsqueeze-9-attr", "Unsqueeze", {"x": f32(3, 4)}, {"axes": [0, 3]}, opset=9),
    case("unsqueeze-13-neg", "Unsqueeze", {"x": f32(3, 4)}, consts={"a": i64(-1, 1)}, opset=13),
    case("unsqueeze-scalar", "Unsqueeze", {"x": np.array(2.5, np.float32)}, consts={"a": i64(0)}, opset=13),
    # transpose, concat, split
    case("transpose-default", "Transpose", {"x": f32(2, 3, 4)}, opset=9),
    case("transpose-perm", "Transpose", {"x": f32(2, 3, 4, 5)}, {"perm": [0, 2, 3, 1]}),
    case("concat-9", "Concat", {"a": f32(2, 3), "b": f32(2, 5)}, {"axis": 1}, opset=9),
    case("concat-neg-3", "Concat", {"a": f32(2, 1, 3), "b": f32(2, 4, 3), "c": f32(2, 2, 3)}, {"axis": -2}),
    case("concat-int", "Concat", {"a": i64(1, 2)}, {"axis": 0}, consts={"b": i64(3)}),
    case("split-11-attr", "Split", {"x": f32(2, 6)}, {"axis": 1, "split": [1, 2, 3]}, opset=11, n_outputs=3),
    case("split-11-equal", "Split", {"x": f32(6, 2)}, opset=11, n_outputs=3),
    case("split-13-operand", "Split", {"x": f32(2, 6)}, {"axis": -1}, consts={"s": i64(4, 2)}, opset=13,
         n_outputs=2),
    case("split-18-uneven", "Split", {"x": f32(2, 3, 5)}, {"axis": 2, "num_outputs": 3}, opset=18,
         n_outputs=3),
    # slice
    case("slice-9-attrs", "Slice", {"x": f32(4, 5)}, {"starts": [1, 0], "ends": [3, -1]}, opset=9),
    case("slice-9-axes", "Slice", {"x": f32(4, 5, 6)}, {"starts": [-2], "ends": [BIG], "axes": [2]}, opset=9),
    case("slice-13-steps", "Slice", {"x": f32(6, 7)},
         consts={"s": i64(0, 1), "e": i64(BIG, 6), "a": i64(0, 1), "t": i64(2, 3)}, opset=13),
    case("slice-reverse", "Slice", {"x": f32(4, 5)},
         consts={"s": i64(-1), "e": i64(-BIG), "a": i64(1), "t": i64(-1)}, opset=13),
    case("slice-neg-step-partial", "Slice", {"x": f32(8, 3)},
         consts={"s": i64(6), "e": i64(1), "a": i64(-2), "t": i64(-2)}, opset=13),
    case("slice-out-of-range", "Slice", {"x": f32(4, 5)},
         consts={"s": i64(-100, 10), "e": i64(100, 20)}, opset=13),
    case("slice-runtime", "Slice", {"x": f32(5, 6), "s": i64(1, -4), "e": i64(4, -1)}, opset=13),
    # gathers
    case("gather-neg", "Gather", {"x": f32(5, 4)}, consts={"i": i64(0, -1, 3, -5)}),
    case("gather-axis1-2d", "Gather", {"x": f32(3, 5, 2)}, {"axis": 1},
         consts={"i": np.array([[0, 4], [-2, 1]], np.int64)}),
    case("gather-scalar-i32", "Gather", {"x": f32(3, 5)}, {"axis": -1}, consts={"i": np.array(-1, np.int32)}),
    case("gather-runtime-idx", "Gather", {"x": f32(6, 3), "i": i64(5, 0, -6)}, opset=9),
    case("gather-elements", "GatherElements", {"x": f32(3, 4)}, {"axis": 1},
         consts={"i": np.array([[0, -1], [3, 2], [1, 1]], np.int64)}),
    case("gather-elements-0", "GatherElements", {"x": f32(3, 4)},
         consts={"i": np.array([[2, 0, -1, 1]], np.int64)}),
    case("gather-nd", "GatherND", {"x": f32(3, 4, 5)}, consts={"i": np.array([[0, 1], [2, -1]], np.int64)}),
    case("gather-nd-batch", "GatherND", {"x": f32(2, 3, 4)}, {"batch_dims": 1},
         consts={"i": np.array([[[1], [0]], [[2], [2]]], np.int64)}, opset=13),
    # scatters
    case("scatter-9", "Scatter", {"x": f32(3, 3)}, {"axis": 1},
         consts={"i": np.array([[1, 0], [2, 1], [0, 2]], np.int64), "u": f32(3, 2)}, opset=9),
    case("scatter-elements-neg", "ScatterElements", {"x": f32(3, 4), "u": f32(2, 4)},
         consts={"i": np.array([[0, -1, 2, 1], [2, 0, -3, 0]], np.int64)}, input_order=["x", "i", "u"], opset=11),
    case("scatter-elements-add", "ScatterElements", {"x": f32(4, 3)}, {"axis": -1, "reduction": "add"},
         consts={"i": np.array([[0, 0], [1, 1], [2, 0], [2, 2]], np.int64), "u": f32(4, 2)}, opset=16),
    case("scatter-elements-max", "ScatterElements", {"x": f32(2, 5)}, {"axis": 1, "reduction": "max"},
         consts={"i": np.array([[4, 4, 0]], np.int64), "u": f32(1, 3)}, opset=18),
    case("scatter-nd", "ScatterND", {"x": f32(4, 3, 2)},
         consts={"i": np.array([[1], [-1]], np.int64), "u": f32(2, 3, 2)}, opset=11),
    case("scatter-nd-elements", "ScatterND", {"x": f32(3, 4), "u": f32(2)},
         consts={"i": np.array([[0, 1], [2, -1]], np.int64)}, input_order=["x", "i", "u"], opset=13),
    case("scatter-nd-mul", "ScatterND", {"x": f32(3, 4)}, {"reduction": "mul"},
         consts={"i": np.array([[1], [1]], np.int64), "u": f32(2, 4)}, opset=16),
    # expand, tile
    case("expand-both-ways", "Expand", {"x": f32(3, 1)}, consts={"s": i64(2, 1, 6)}),
    case("expand-same-rank", "Expand", {"x": f32(1, 4)}, consts={"s": i64(3, 4)}, opset=9),
    case("tile", "Tile", {"x": f32(2, 3)}, consts={"r": i64(2, 3)}),
    case("tile-int", "Tile", {"x": i64(1, 2, 3)}, consts={"r": i64(2)}),
    # pad
    case("pad-9-attrs", "Pad", {"x": f32(2, 3)}, {"pads": [0, 1, 1, 2], "value": 1.5}, opset=9),
    case("pad-9-reflect", "Pad", {"x": f32(1, 3, 4, 4)}, {"pads": [0, 0, 1, 2, 0, 0, 2, 1], "mode": "reflect"},
         opset=9),
    case("pad-11-edge", "Pad", {"x": f32(3, 4)}, {"mode": "edge"}, consts={"p": i64(1, 2, 2, 0)}, opset=11),
    case("pad-13-value", "Pad", {"x": f32(3, 4)}, consts={"p": i64(1, 0, 0, 2), "v": np.array(-3, np.float32)},
         opset=13),
    case("pad-negative", "Pad", {"x": f32(4, 5)}, consts={"p": i64(-1, 2, 1, -2)}, opset=13),
    case("pad-18-axes", "Pad", {"x": f32(2, 3, 4)}, consts={"p": i64(1, 2, 3, 0), "v": np.array(0, np.float32),
                                                             "a": i64(-1, 0)}, opset=18),
    case("pad-19-wrap", "Pad", {"x": f32(3, 4)}, {"mode": "wrap"}, consts={"p": i64(1, 2, 2, 1)}, opset=19),
    # generators
    case("constant-of-shape-9", "ConstantOfShape", {"s": i64(2, 3)}, opset=9),
    case("constant-of-shape-i64", "ConstantOfShape", {"s": i64(4)},
         {"value": tensor(np.array([7], np.int64))}, opset=9),
    case("constant-of-shape-f32", "ConstantOfShape", {"s": i64(2, 1, 3)},
         {"value": tensor(np.array([0.1], np.float32))}),
    case("range-float", "Range", {"a": np.array(0.5, np.float32), "b": np.array(3.1, np.float32),
                                  "d": np.array(0.4, np.float32)}),
    case("range-int-down", "Range", {"a": np.array(10, np.int64), "b": np.array(-3, np.int64),
                                     "d": np.array(-3, np.int64)}),
    case("range-empty", "Range", {"a": np.array(5, np.int32), "b": np.array(1, np.int32),
                                  "d": np.array(2, np.int32)}),
    case("one-hot", "OneHot", {"i": i64(0, 2, -1, 5)}, consts={"d": i64(4), "v": np.array([0, 3], np.float32)}),
    case("one-hot-axis0", "OneHot", {"i": np.array([[1, 0], [2, -3]], np.int64)}, {"axis": 0},
         consts={"d": np.array(3, np.int64), "v": i64(-1, 1)}, opset=11),
    # triangles, blocks
    case("trilu-upper", "Trilu", {"x": f32(2, 4, 5)}, opset=14),
    case("trilu-lower-k", "Trilu", {"x": f32(4, 5)}, {"upper": 0}, consts={"k": np.array(-1, np.int64)},
         opset=14),
    case("trilu-upper-k", "Trilu", {"x": f32(3, 4, 4)}, consts={"k": np.array(2, np.int64)}, opset=14),
    case("depth-to-space-dcr", "DepthToSpace", {"x": f32(1, 8, 2, 3)}, {"blocksize": 2}, opset=9),
    case("depth-to-space-crd", "DepthToSpace", {"x": f32(2, 12, 2, 2)}, {"blocksize": 2, "mode": "CRD"},
         opset=13),
    case("space-to-depth", "SpaceToDepth", {"x": f32(2, 3, 4, 6)}, {"blocksize": 2}),
    case("eye-like", "EyeLike", {"x": f32(3, 5)}, opset=9),
    case("eye-like-k-dtype", "EyeLike", {"x": f32(4, 3)}, {"k": -1, "dtype": TensorProto.INT64}),
    case("compress-axis", "Compress", {"x": f32(3, 4), "c": np.array([True, False, True])}, {"axis": 0}, opset=9),
    case("compress-short-neg-axis", "Compress", {"x": f32(2, 5)}, {"axis": -1},
         consts={"c": np.array([False, True, True])}, opset=11),
    case("compress-flat", "Compress", {"x": f32(2, 3), "c": np.array([1, 0, 0, 1, 1, 0], np.bool_)}, opset=11),
    case("reverse-sequence", "ReverseSequence", {"x": f32(4, 3, 2)}, consts={"l": i64(4, 1, 2)}, opset=10),
    case("reverse-sequence-batch0", "ReverseSequence", {"x": f32(3, 5)}, {"batch_axis": 0, "time_axis": 1},
         consts={"l": i64(5, 0, 3)}, opset=10),
    # empty results and other dtypes
    case("slice-empty", "Slice", {"x": f32(4, 5)}, consts={"s": i64(3), "e": i64(1)}, opset=13),
    case("concat-empty-part", "Concat", {"a": f32(0, 3), "b": f32(2, 3)}, {"axis": 0}),
    case("gather-no-indices", "Gather", {"x": f32(4, 3)}, consts={"i": np.zeros(0, np.int64)}),
    case("reshape-empty", "Reshape", {"x": f32(2, 0, 4)}, consts={"s": i64(2, -1)}),
    case("transpose-bool", "Transpose", {"x": rng.random((2, 3, 4)) > 0.5}, {"perm": [1, 2, 0]}),
    case("expand-int", "Expand", {"x": np.array([[1], [2]], np.int32)}, consts={"s": i64(2, 3)}),
    case("pad-int-edge", "Pad", {"x": np.arange(6, dtype=np.int64).reshape(2, 3)}, {"mode": "edge"},
         consts={"p": i64(1, 1, 1, 1)}, opset=13),
    # data-dependent
    case("nonzero", "NonZero", {"x": np.array([[0, 1.5, 0], [2, 0, -1]], np.float32)}, opset=9),
    case("nonzero-bool", "NonZero", {"x": rng.random((3, 4, 2)) > 0.5}),
]


@pytest.mark.parametrize("op,inputs,attrs,consts,opset,n_outputs,input_order", CASES)
def test_op(op, inputs, attrs, consts, opset, n_outputs, input_order):
    model = node_model(op, inputs, attrs, consts, n_outputs=n_outputs, opset=opset, input_order=input_order)
    check_model(model, inputs)


@pytest.mark.parametrize("op,attrs,consts", [
    ("Transpose", {"perm": [2, 0, 1]}, None),
    ("Slice", None, {"s": i64(1), "e": i64(3), "a": i64(2)}),
    ("Expand", None, {"s": i64(2, 3, 4, 5)}),
])
def test_movement_results_are_c_contiguous(op, attrs, consts):
    """Kernels downstream see one layout: movement results are C-contiguous whatever numpy would return."""
    x = f32(3, 4, 5)
    out = irc.compile(node_model(op, {"x": x}, attrs, consts, opset=13)).run({"x": x})["out0"]
    assert out.flags.c_contiguous


def test_old_forms_become_operands():
    """The importer turns attributes of old opsets into constant operands (the op table's one form)."""
    g = import_onnx(node_model("Squeeze", {"x": f32(1, 3)}, {"axes": [0]}, opset=11))
    sq = [n for n in g.nodes if n.op == "squeeze"][0]
    assert sq.inputs[1].const_value.tolist() == [0]
    g = import_onnx(node_model("ConstantOfShape", {"s": i64(2)}, {"value": tensor(np.array([3], np.int32))},
                                opset=9))
    node = [n for n in g.nodes if n.op == "constant_of_shape"][0]
    assert node.attrs == {"value": 3, "dtype": "i32"}
    assert g.outputs[0].type == TensorType("i32", (None,))


SYM = [
    ("reshape", [("f32", ("b", "s", 768)), i64(0, 0, 12, 64)], {}, ("b", "s", 12, 64)),
    ("reshape", [("f32", ("b", "s", 12, 64)), i64(0, 0, -1)], {}, ("b", "s", 768)),
    ("reshape", [("f32", ("b", 3, 4)), i64(-1, 12)], {}, ("b", 12)),
    ("reshape", [("f32", ("b", "s")), i64(-1)], {}, (None,)),
    ("flatten", [("f32", ("b", 3, 1, 1))], {"axis": 1}, ("b", 3)),
    ("transpose", [("f32", ("b", "s", 4))], {"perm": [0, 2, 1]}, ("b", 4, "s")),
    ("transpose", [("f32", ("b", "s", 4))], {}, (4, "s", "b")),
    ("unsqueeze", [("f32", ("b", "s")), i64(1, -1)], {}, ("b", 1, "s", 1)),
    ("squeeze", [("f32", ("b", 1, "s")), i64(1)], {}, ("b", "s")),
    ("concat", [("f32", ("b", 3)), ("f32", ("b", 5))], {"axis": 1}, ("b", 8)),
    ("concat", [("f32", ("b", 3)), ("f32", ("c", 3))], {"axis": 0}, (None, 3)),
    ("slice", [("f32", ("b", 10)), i64(0, 2), i64(BIG, -2)], {}, ("b", 6)),
    ("slice", [("f32", ("b", 10)), i64(1), i64(BIG)], {}, (None, 10)),
    ("gather", [("f32", ("b", "s", 8)), ("i64", (4, 2))], {"axis": 1}, ("b", 4, 2, 8)),
    ("expand", [("f32", ("b", 1, 4)), i64(1, 3, 1)], {}, ("b", 3, 4)),
    ("pad", [("f32", ("b", 4)), i64(0, 1, 0, 2)], {"mode": "constant"}, ("b", 7)),
    ("shape", [("f32", ("b", "s", 4))], {"start": -2}, (2,)),
    ("reduce_mean", [("f32", ("b", "s", 4)), i64(-1)], {}, ("b", "s", 1)),
    ("reduce_sum", [("f32", ("b", "s", 4)), i64(1)], {"keepdims": 0}, ("b", 4)),
    ("argmax", [("f32", ("b", "s", 4))], {"axis": 2, "keepdims": 0}, ("b", "s")),
    ("split", [("f32", ("b", 6)), i64(2, 4)], {"axis": 1, "num_outputs": 2}, ("b", 2)),
]


@pytest.mark.parametrize("op,operands,attrs,dims", SYM, ids=[f"{s[0]}-{i}" for i, s in enumerate(SYM)])
def test_symbolic_inference(op, operands, attrs, dims):
    """Inference keeps symbolic dims that an op copies through; dims it cannot know are unknown."""
    g = Graph()
    vals = [g.add_const(o) if isinstance(o, np.ndarray) else g.add_input(f"x{i}", TensorType(o[0], o[1]))
            for i, o in enumerate(operands)]
    out = Builder(g).node(op, vals, attrs).outputs[0]
    assert out.type.shape == dims


def test_reshape_symbolic_batch_runs_at_any_batch():
    x = f32(2, 3, 4)
    m = node_model("Reshape", {"x": x}, consts={"s": i64(0, -1)}, symbolic={"x": ["batch", 3, 4]})
    cm = irc.compile(m)
    assert cm.graph.outputs[0].type.shape == ("batch", 12)
    for b in (1, 5):
        xb = f32(b, 3, 4)
        np.testing.assert_array_equal(cm.run({"x": xb})["out0"], xb.reshape(b, 12))


def test_opset9_chain_runs():
    """The Shape -> Gather -> Unsqueeze -> Concat -> Reshape chain of opset-9 exporters, then Transpose and a
    ConstantOfShape of the result's shape, imports and runs at several batch sizes."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n"], ["n1"], axes=[0]),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["flat"]),
        helper.make_node("Transpose", ["flat"], ["t"], perm=[1, 0]),
        helper.make_node("Shape", ["t"], ["t_shape"]),
        helper.make_node("ConstantOfShape", ["t_shape"], ["ones"], value=tensor(np.array([1.0], np.float32))),
    ]
    g = helper.make_graph(
        nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 4])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("t", "ones")],
        [numpy_helper.from_array(np.array(0, np.int64), "zero"), numpy_helper.from_array(i64(-1), "minus1")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 9)], ir_version=8)
    for b in (2, 3):
        check_model(model, {"x": f32(b, 3, 4)})


@pytest.mark.parametrize("op,inputs,consts,attrs,match", [
    ("Gather", {"x": f32(3, 2), "i": i64(0, 3)}, None, None, "gather indices out of range"),
    ("Reshape", {"x": f32(2, 3), "s": i64(4, -1)}, None, None, "reshape"),
])
def test_bad_run_time_operands_name_the_node(op, inputs, consts, attrs, match):
    cm = irc.compile(node_model(op, inputs, attrs, consts))
    with pytest.raises(irc.IrcError, match=match) as e:
        cm.run(inputs)
    assert f"{op.lower()}_node" in str(e.value)


@pytest.mark.parametrize("op,inputs,consts,attrs", [
    ("Transpose", {"x": f32(2, 3)}, None, {"perm": [0, 0]}),
    ("Squeeze", {"x": f32(2, 3)}, {"a": i64(0)}, None),
    ("Concat", {"a": f32(2, 3), "b": f32(3, 3)}, None, {"axis": 1}),
    ("Gather", {"x": f32(2, 3)}, {"i": i64(0)}, {"axis": 2}),
])
def test_bad_static_operands_are_irc_errors(op, inputs, consts, attrs):
    with pytest.raises(irc.IrcError, match=f"{op.lower()}_node"):
        irc.compile(node_model(op, inputs, attrs, consts, opset=13))


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_space_to_depth_modes(mode):
    """SpaceToDepth's mode attribute is newer than the opsets onnxruntime checks here: its result is checked
    element by element against the definition, and DepthToSpace of the same mode must invert it."""
    b, x = 2, f32(1, 3, 4, 6)
    nodes = [helper.make_node("SpaceToDepth", ["x"], ["s"], blocksize=b, mode=mode),
             helper.make_node("DepthToSpace", ["s"], ["y"], blocksize=b, mode=mode)]
    g = helper.make_graph(nodes, "s2d", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("s", "y")])
    out = irc.compile(helper.make_model(g, opset_imports=[helper.make_opsetid("", 23)], ir_version=8)).run({"x": x})
    s = out["s"]
    for c in range(3):
        for i in range(b):
            for j in range(b):
                ch = (i * b + j) * 3 + c if mode == "DCR" else c * b * b + i * b + j
                np.testing.assert_array_equal(s[0, ch], x[0, c, i::b, j::b])
    np.testing.assert_array_equal(out["y"], x)
