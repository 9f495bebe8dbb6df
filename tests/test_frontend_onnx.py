"""The ONNX importer: initializers, external data, Constant nodes, symbolic dims, value_info, and the errors
that name what is wrong with a model."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from irc import IrcError
from irc.errors import UnsupportedError
from irc.frontend import import_onnx
from irc.frontend import onnx as frontend
from irc.ir import TensorType, print_graph, verify
from irc.ops.interpret import interpret
from tests.util import run_ort

F = TensorProto.FLOAT


def model(nodes, inputs, outputs, inits=(), value_info=(), opset=17, extra_opsets=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits), value_info=list(value_info))
    ops = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in extra_opsets]
    return helper.make_model(g, opset_imports=ops, ir_version=8)


def vi(name, shape, dtype=F):
    return helper.make_tensor_value_info(name, dtype, shape)


def out(name):
    return helper.make_tensor_value_info(name, TensorProto.UNDEFINED, None)


def matches_onnxruntime(m, feeds):
    for a, b in zip(interpret(import_onnx(m), feeds), run_ort(m, feeds)):
        np.testing.assert_allclose(a, b, rtol=1e-6)


# -- what a model holds -----------------------------------------------------------------------------------

W = np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5


def _add_model(inputs=(), inits=()):
    return model([helper.make_node("Add", ["x", "w"], ["y"], name="add")],
                 [vi("x", [2, 3]), *inputs], [vi("y", None)], [numpy_helper.from_array(W, "w"), *inits])


def test_initializer_becomes_a_named_constant():
    g = import_onnx(_add_model())
    const = g.nodes[0]
    assert const.op == "const" and const.name == "w" and const.outputs[0].name == "w"
    np.testing.assert_array_equal(const.attrs["value"], W)
    assert [v.name for v in g.inputs] == ["x"]
    verify(g)
    matches_onnxruntime(_add_model(), {"x": np.ones((2, 3), np.float32)})


def test_graph_input_that_is_also_an_initializer_is_a_constant():
    m = _add_model(inputs=[vi("w", [2, 3])])
    g = import_onnx(m)
    assert [v.name for v in g.inputs] == ["x"]
    assert g.nodes[1].inputs[1].const_value is not None


def test_external_data_is_read_from_beside_the_model(tmp_path):
    big = np.linspace(-1, 1, 4096, dtype=np.float32).reshape(64, 64)
    m = model([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [vi("x", [1, 64])], [out("y")],
              [numpy_helper.from_array(big, "w")])
    path = tmp_path / "ext.onnx"
    onnx.save_model(m, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    assert (tmp_path / "weights.bin").stat().st_size >= big.nbytes
    g = import_onnx(str(path))
    np.testing.assert_array_equal(g.nodes[0].attrs["value"], big)


def test_missing_external_data_is_an_error_naming_the_file(tmp_path):
    m = _add_model()
    path = tmp_path / "ext.onnx"
    onnx.save_model(m, str(path), save_as_external_data=True, location="gone.bin", size_threshold=0)
    (tmp_path / "gone.bin").unlink()
    with pytest.raises(IrcError, match="gone.bin"):
        import_onnx(str(path))


CONSTANT_NODES = {
    "value tensor": ({"value": numpy_helper.from_array(W, "c")}, W),
    "value_float": ({"value_float": 1.5}, np.array(1.5, np.float32)),
    "value_ints": ({"value_ints": [3, -1]}, np.array([3, -1], np.int64)),
}


@pytest.mark.parametrize("attrs,expected", CONSTANT_NODES.values(), ids=CONSTANT_NODES.keys())
def test_constant_node_becomes_a_constant(attrs, expected):
    m = model([helper.make_node("Constant", [], ["c"], name="k", **attrs),
               helper.make_node("Identity", ["c"], ["y"], name="id")], [], [out("y")])
    g = import_onnx(m)
    assert g.nodes[0].op == "const" and g.nodes[0].outputs[0].name == "c"
    np.testing.assert_array_equal(g.nodes[0].attrs["value"], expected)
    assert g.nodes[0].attrs["value"].dtype == expected.dtype


def test_symbolic_and_unknown_dims_are_kept():
    x = helper.make_tensor_value_info("x", F, ["batch", 3, None])
    x.type.tensor_type.shape.dim[2].Clear()  # neither dim_value nor dim_param: unknown
    m = model([helper.make_node("Relu", ["x"], ["y"], name="r")], [x, vi("z", None)], [out("y")])
    g = import_onnx(m)
    assert g.inputs[0].type == TensorType("f32", ("batch", 3, None))
    assert g.inputs[1].type == TensorType("f32", None)
    assert "relu(%x) : f32[batch, 3, ?]" in print_graph(g)


def _reshape_model(value_info):
    nodes = [helper.make_node("Reshape", ["x", "s"], ["y"], name="rs"),
             helper.make_node("Relu", ["y"], ["z"], name="r")]
    return model(nodes, [vi("x", ["batch", 12]), vi("s", [2], TensorProto.INT64)], [out("z")],
                 value_info=value_info)


def test_value_info_fills_dims_inference_does_not_know():
    g = import_onnx(_reshape_model([vi("y", ["batch", 12])]))
    assert g.nodes[0].outputs[0].type == TensorType("f32", ("batch", 12))
    assert g.nodes[1].outputs[0].type == TensorType("f32", ("batch", 12))
    verify(g)


def test_value_info_of_another_dtype_is_an_error():
    with pytest.raises(IrcError, match=r"node 'rs' \(Reshape\): output 'y' is declared i64\[batch, 12\]"):
        import_onnx(_reshape_model([vi("y", ["batch", 12], TensorProto.INT64)]))


def test_nodes_out_of_order_are_sorted():
    nodes = [helper.make_node("Neg", ["a"], ["y"], name="second"),
             helper.make_node("Relu", ["x"], ["a"], name="first")]
    g = import_onnx(model(nodes, [vi("x", [2])], [out("y")]))
    assert [n.name for n in g.nodes] == ["first", "second"]


def test_dropout_without_a_read_mask_is_an_identity():
    m = model([helper.make_node("Dropout", ["x"], ["y", "mask"], name="drop")], [vi("x", [2])], [out("y")])
    assert import_onnx(m).nodes[0].op == "identity"


# -- one error for every unsupported node -----------------------------------------------------------------

def test_every_unsupported_node_is_listed_once_grouped_by_op():
    nodes = [
        helper.make_node("FusedGemm", ["x", "x"], ["fg_out"], domain="com.microsoft"),    # unnamed
        helper.make_node("Relu", ["fg_out"], ["after"], name="downstream"),             # reads it: skipped
        helper.make_node("Frobnicate", ["after"], ["f1"], name="frob_a"),               # listed all the same
        helper.make_node("Frobnicate", ["x"], ["f2"], name="frob_b"),
        helper.make_node("Relu", ["x"], ["ok"], name="fine"),
        helper.make_node("MaxPool", ["x"], ["d", "mask"], name="drop", kernel_shape=[1]),
        helper.make_node("Identity", ["mask"], ["m2"], name="reads_mask"),
    ]
    m = model(nodes, [vi("x", [2, 2])], [out(n) for n in ("after", "f1", "f2", "ok", "m2")],
              extra_opsets=[("com.microsoft", 1)])
    with pytest.raises(UnsupportedError) as e:
        import_onnx(m)
    lines = str(e.value).splitlines()
    assert lines[0] == "4 unsupported node(s):"
    assert "  FusedGemm (domain 'com.microsoft', opset 1): (output 'fg_out')" in lines
    assert "  Frobnicate (domain 'ai.onnx', opset 17): 'frob_a', 'frob_b'" in lines
    assert "  MaxPool (domain 'ai.onnx', opset 17): 'drop' (the Indices output of MaxPool is not supported)" in lines
    assert "downstream" not in str(e.value) and "fine" not in str(e.value)


def test_converter_refusal_is_listed_with_its_reason():
    m = model([helper.make_node("Constant", [], ["c"], name="k", value_string=b"text")], [], [out("c")])
    with pytest.raises(UnsupportedError, match=r"Constant \(domain 'ai.onnx', opset 17\): 'k' \(Constant with"):
        import_onnx(m)


def test_a_crashing_converter_is_an_error_naming_the_node(monkeypatch):
    def broken(cv, node):
        raise KeyError("oops")
    monkeypatch.setitem(frontend.CONVERTERS, "Relu", broken)
    m = model([helper.make_node("Relu", ["x"], ["y"], name="r")], [vi("x", [2])], [out("y")])
    with pytest.raises(IrcError, match=r"node 'r' \(Relu\): conversion failed: KeyError"):
        import_onnx(m)


# -- malformed models ------------------------------------------------------------------------------------

def _relu(name, src, dst):
    return helper.make_node("Relu", [src], [dst], name=name)


MALFORMED = {
    "undefined input": (model([_relu("r", "nowhere", "y")], [vi("x", [2])], [out("y")]),
                        "node 'r' (Relu): input 'nowhere' is not defined by any node"),
    "output defined by two nodes": (model([_relu("a", "x", "y"), _relu("b", "x", "y")], [vi("x", [2])],
                                          [out("y")]), "node 'b' (Relu): output 'y' is already defined by node 'a'"),
    "output redefines a graph input": (model([_relu("a", "x", "x")], [vi("x", [2])], [out("x")]),
                                       "node 'a' (Relu): output 'x' is already defined by a graph input"),
    "cycle": (model([_relu("a", "c", "b"), _relu("b", "b", "c"), _relu("after", "c", "y")], [vi("x", [2])],
                    [out("y")]), "graph has a cycle through nodes 'a' (Relu), 'b' (Relu)\n"),
    "output produced by nothing": (model([_relu("a", "x", "y")], [vi("x", [2])], [out("q")]),
                                   "graph output 'q' is not produced by any node"),
    "two outputs of one name": (model([_relu("a", "x", "y")], [vi("x", [2])], [out("y"), out("y")]),
                                "graph output 'y' is defined twice"),
    "two inputs of one name": (model([_relu("a", "x", "y")], [vi("x", [2]), vi("x", [2])], [out("y")]),
                               "graph input 'x' is defined twice"),
    "opset too old": (model([_relu("a", "x", "y")], [vi("x", [2])], [out("y")], opset=6),
                      "opset 6 is not supported"),
    "non-tensor input": (model([_relu("a", "x", "y")], [helper.make_tensor_sequence_value_info("x", F, [2])],
                               [out("y")]), "input 'x': only tensor inputs are supported"),
    "negative dim": (model([_relu("a", "x", "y")], [vi("x", [2, -3])], [out("y")]),
                     "value 'x': dim 1 is negative (-3)"),
    "unsupported element type": (model([_relu("a", "x", "y")], [vi("x", [2], TensorProto.COMPLEX64)],
                                       [out("y")]), "input 'x': element type COMPLEX64 is not supported"),
}


@pytest.mark.parametrize("m,msg", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_model_is_an_error_naming_the_fault(m, msg):
    with pytest.raises(IrcError) as e:
        import_onnx(m)
    assert msg in str(e.value) + "\n"


def test_newer_opset_imports_when_its_ops_did_not_change():
    m = model([_relu("a", "x", "y")], [vi("x", [2])], [vi("y", [2])], opset=25)
    assert import_onnx(m).nodes[0].op == "relu"
    matches_onnxruntime(m, {"x": np.array([-1.0, 2.0], np.float32)})


def test_newer_version_of_an_op_is_named():
    m = model([_relu("a", "x", "r"), helper.make_node("Cast", ["r"], ["y"], name="c", to=10, round_mode="down")],
              [vi("x", [2])], [out("y")], opset=25)
    with pytest.raises(UnsupportedError) as e:
        import_onnx(m)
    assert str(e.value).splitlines()[1:] == [
        "  Cast (domain 'ai.onnx', opset 25): 'c' (version 25 of Cast is not read (irc implements version 23): "
        "attribute 'round_mode' of version 25 is not supported)"]


def test_model_without_the_default_domain_is_refused():
    m = model([_relu("a", "x", "y")], [vi("x", [2])], [out("y")])
    del m.opset_import[:]
    m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    with pytest.raises(UnsupportedError, match="imports no version of the default ONNX domain"):
        import_onnx(m)


@pytest.mark.parametrize("data", [b"\x08\x07garbage\xff\xfe\x00 not a protobuf", b"", b"\x12\x00"])
def test_garbage_bytes_are_an_error(data):
    with pytest.raises(IrcError, match="ONNX model"):
        import_onnx(data)


def test_garbage_file_and_missing_file_are_errors(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\xff" * 100)
    with pytest.raises(IrcError, match="cannot read ONNX model"):
        import_onnx(str(bad))
    with pytest.raises(IrcError, match="does not exist"):
        import_onnx(str(tmp_path / "none.onnx"))
    with pytest.raises(IrcError, match="cannot read an ONNX model from a int"):
        import_onnx(42)
