"""The IR: text form round trips, parser errors with line and column, verifier invariants."""
import numpy as np
import pytest

from irc import IrcError
from irc.ir import Builder, Graph, TensorType, parse_graph, print_graph, verify
from irc.ir.graph import Node, Value
from irc.ops.registry import OPS

# -- print -> parse -> print ------------------------------------------------------------------------------

ROUND_TRIPS = {
    "symbolic and unknown dims, unknown rank": """\
graph main(%x: f32[batch, 3, ?], %y: f32[*]) {
  %0 = relu(%x) : f32[batch, 3, ?]
  %1 = relu(%y) : f32[*]
  return %0 as "a", %1 as "b"
}
""",
    "quoted names: inputs, dims, graph, outputs": """\
graph "torch-jit export"(%"input:0": f32["batch size", 2], %1: f32[2], %0: f32[2]) {
  %2 = add(%1, %0) : f32[2]
  %3 = relu(%"input:0") : f32["batch size", 2]
  return %2 as "out \\"quoted\\"", %3 as "y"
}
""",
    "multi-result node and omitted operands": """\
graph main(%x: f32[2, 6]) {
  %0 = const() {value=dense<2, 4>} : i64[2]
  %1, %2 = split(%x, %0) {axis=1, num_outputs=2} : f32[2, 2], f32[2, 4]
  %3 = clip(%1, none, none) : f32[2, 2]
  return %3 as "a", %2 as "b"
}
""",
    "float special values and exact floats in constants and attributes": """\
graph main(%x: f32[6]) {
  %0 = const() {value=dense<1.0, nan, inf, -inf, -0.0, 1e-08>} : f32[6]
  %1 = const() {value=dense<0.1, 3.4028235e+38>} : f32[2]
  %2 = const() {value=dense<0.1, 1e-300>} : f64[2]
  %3 = leaky_relu(%x) {alpha=0.1} : f32[6]
  %4 = clip(%x, %0, %0) : f32[6]
  return %3 as "a", %4 as "b", %1 as "c", %2 as "d"
}
""",
    "integer, bool and string constants, scalars": """\
graph main() {
  %0 = const() {value=dense<-9223372036854775808, 9223372036854775807>} : i64[2]
  %1 = const() {value=dense<18446744073709551615>} : u64[1]
  %2 = const() {value=dense<1, 0, 1>} : bool[3]
  %3 = const() {value=dense<"a b", "\\"q\\"">} : str[2]
  %4 = const() {value=dense<7>} : i32[]
  %5 = const() {value=dense<>} : f32[0, 3]
  return %0 as "a", %1 as "b", %2 as "c", %3 as "d", %4 as "e", %5 as "f"
}
""",
    "elided constants, array attributes with their own type, locations": """\
graph main(%s: i64[2]) {
  %0 = const() {value=dense<...>} : f32[64, 3, 7, 7]
  %1 = constant_of_shape(%s) {value=dense<1.5> : f32[1], dtype="f32"} : f32[?, ?] loc("fill \\"one\\"")
  return %1 as "y", %0 as "w"
}
""",
}


@pytest.mark.parametrize("text", ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
def test_print_parse_print_is_the_identity(text):
    assert print_graph(parse_graph(text)) == text


def test_full_and_elided_printing_of_a_large_constant():
    g = Graph()
    w = np.arange(20, dtype=np.float32).reshape(4, 5)
    g.add_output(Builder(g).op("relu", g.add_const(w)), "y")
    full = print_graph(g, elide_above=None)
    again = parse_graph(full)
    np.testing.assert_array_equal(again.nodes[0].attrs["value"], w)
    assert print_graph(again, elide_above=None) == full
    elided = print_graph(g)
    assert "dense<...>" in elided and print_graph(parse_graph(elided)) == elided


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_constants_read_back_bit_for_bit(dtype):
    info = np.finfo(dtype)
    special = [info.max, info.tiny, info.smallest_subnormal, info.eps, -0.0, np.pi, 1 / 3]
    rng = np.random.default_rng(0)
    values = np.concatenate([np.array(special, dtype),
                             (rng.standard_normal(25) * 10.0 ** rng.integers(-4, 5, 25)).astype(dtype)])
    g = Graph()
    g.add_output(Builder(g).op("neg", g.add_const(values)), "y")
    again = parse_graph(print_graph(g, elide_above=None)).nodes[0].attrs["value"]
    assert again.dtype == values.dtype and again.tobytes() == values.tobytes()


def test_imported_model_round_trips():
    from tests.passes.fixtures import exporter_model
    from irc.frontend import import_onnx
    g = import_onnx(exporter_model())
    text = print_graph(g, elide_above=None)
    again = parse_graph(text)
    verify(again)
    assert print_graph(again, elide_above=None) == text


def test_parsed_graph_verifies_and_fills_default_attributes():
    g = parse_graph("graph main(%x: f32[2, 3]) {\n  %0 = shape(%x) : i64[2]\n  return %0 as \"s\"\n}\n")
    assert g.nodes[0].attrs == {"start": 0, "end": None}
    verify(g)


def test_dense_resource_reads_the_tensor_table():
    w = np.arange(4, dtype=np.float32)
    g = parse_graph("graph main() {\n  %0 = const() {value=dense_resource<3>} : f32[4]\n  return %0 as \"w\"\n}\n",
                    resolve=lambda i: w if i == 3 else None)
    assert g.nodes[0].attrs["value"] is w


# -- parser errors: line and column ---------------------------------------------------------------------

PARSE_ERRORS = [
    ("graph main(%x: f32[2]) {\n  %0 = relu(%y) : f32[2]\n  return %0 as \"y\"\n}", 2, 13, "undefined value %y"),
    ("graph main(%x: f32[2]) {\n  %0 = relu(%x) : f99[2]\n  return %0 as \"y\"\n}", 2, 19, "expected a dtype"),
    ("graph main(%x: f32[2]) {\n  %0 = frobnicate(%x) : f32[2]\n  return %0 as \"y\"\n}", 2, 8, "unknown op"),
    ("graph main(%x: f32[2]) {\n  %0 = relu(%x) : f32[2]\n  %0 = relu(%x) : f32[2]\n  return %0 as \"y\"\n}",
     3, 3, "defined twice"),
    ("graph main(%x: f32[2]) {\n  %0 = relu(%x) : f32[-2]\n  return %0 as \"y\"\n}", 2, 23, "expected a dim"),
    ("graph main(%x: f32[2]) {\n  %0 = relu(%x) {alpha=} : f32[2]\n  return %0 as \"y\"\n}", 2, 24,
     "expected an attribute value"),
    ("graph main(%x: f32[2]) {\n  %0 = relu(%x) {bogus=1} : f32[2]\n  return %0 as \"y\"\n}", 2, 8,
     "has no attribute 'bogus'"),
    ("graph main() {\n  %0 = const() {value=dense<1, 2>} : f32[3]\n  return %0 as \"y\"\n}", 2, 8,
     "2 elements"),
    ("graph main() {\n  %0 = const() : f32[3]\n  return %0 as \"y\"\n}", 2, 8, "needs attribute 'value'"),
    ("graph main() {\n  %0 = const() {value=dense<1.0>} : f32[?]\n  return %0 as \"y\"\n}", 2, 8,
     "static result type"),
    ("graph main(%x: f32[2]) {\n  %0, %1 = relu(%x) : f32[2]\n  return %0 as \"y\"\n}", 2, 12,
     "2 results but 1 types"),
    ("graph main(%x: f32[2]) {\n  %0 = relu(%x) : f32[2] loc(7)\n  return %0 as \"y\"\n}", 2, 30,
     "expected a location string"),
    ("graph main(%x: f32[2], %x: f32[2]) {\n  return %x as \"y\"\n}", 1, 24, "listed twice"),
    ("graph main(%x: f32[2]) {\n  %0 = relu(%x) : f32[2]\n", 3, 1, "unterminated graph"),
    ("graph main(%x: f32[2]) {\n  return %x as \"y\"\n}\n}", 4, 1, "text after the graph"),
    ("graph main(%x: f32[2]) {\n  %0 = relu(%x) : f32[2] $\n}", 2, 26, "unexpected '$'"),
    ("graph main(%x: f32[2]) {\n  %0 = constant_of_shape(%x) {value=dense<1.0>} : f32[2]\n}", 2, 8,
     "array attribute needs a type"),
]


@pytest.mark.parametrize("text,line,col,msg", PARSE_ERRORS, ids=[e[3] for e in PARSE_ERRORS])
def test_parse_error_names_line_and_column(text, line, col, msg):
    with pytest.raises(IrcError) as e:
        parse_graph(text)
    assert f"line {line} column {col}:" in str(e.value) and msg in str(e.value)


# -- verifier invariants: each violated -> IrcError naming the node --------------------------------------

def _graph():
    """x -> relu (r) -> neg (n) -> output "y"."""
    g = Graph()
    x = g.add_input("x", TensorType("f32", ("batch", 4)))
    r = Builder(g, name="r").op("relu", x)
    n = Builder(g, name="n").op("neg", r)
    g.add_output(n, "y")
    return g


def test_valid_graph_verifies():
    verify(_graph())


def _swap_order(g):
    g.nodes.reverse()


def _foreign_operand(g):
    stray = Value(TensorType("f32", ("batch", 4)), name="stray")
    g.nodes[1].set_input(0, stray)


def _result_defined_twice(g):
    g.nodes[1].outputs.append(g.nodes[0].outputs[0])


def _result_not_pointing_back(g):
    g.nodes[1].outputs[0].producer = g.nodes[0]


def _missing_use(g):
    g.nodes[1].inputs[0].uses.clear()


def _stale_use(g):
    g.nodes[0].outputs[0].uses.append((g.nodes[1], 5))


def _unknown_op(g):
    g.nodes[1].op = "frobnicate"


def _missing_attr(g):
    g.nodes.insert(0, Node("leaky_relu", [g.inputs[0]], [TensorType("f32", ("batch", 4))], {}, "n"))


def _unknown_attr(g):
    g.nodes[1].attrs["alpha"] = 0.5


def _const_of_other_type(g):
    c = g.add_node("const", [], [TensorType("f32", (3,))], {"value": np.zeros(4, np.float32)}, "n")
    g.add_output(c.outputs[0], "c")


def _wrong_result_type(g):
    g.nodes[1].outputs[0].type = TensorType("f32", ("batch", 5))


def _wrong_dtype(g):
    g.nodes[1].outputs[0].type = TensorType("i64", ("batch", 4))


def _wrong_result_count(g):
    g.nodes[1].outputs.append(Value(TensorType("f32", None), producer=g.nodes[1], index=1))


def _failing_inference(g):
    g.nodes[1].op = "conv2d"  # conv2d of one 2-D operand: its inference refuses
    g.nodes[1].attrs.update(OPS["conv2d"].full_attrs({}))


VIOLATIONS = {
    "operand used before its definition": (_swap_order, "operand 0 is not defined before use", "node neg 'n'"),
    "operand from outside the graph": (_foreign_operand, "operand 0 is not defined before use", "node neg 'n'"),
    "result defined twice": (_result_defined_twice, "defined twice", "node neg 'n'"),
    "result not pointing back": (_result_not_pointing_back, "does not point back", "node neg 'n'"),
    "use list missing an operand": (_missing_use, "missing from its value's uses", "node neg 'n'"),
    "stale use": (_stale_use, "stale use by neg 'n' (operand 5)", "node relu 'r'"),
    "unknown op": (_unknown_op, "unknown op", "node frobnicate 'n'"),
    "attribute missing": (_missing_attr, "attributes missing ['alpha']", "node leaky_relu 'n'"),
    "unknown attribute": (_unknown_attr, "unknown ['alpha']", "node neg 'n'"),
    "constant of another type": (_const_of_other_type, "does not match its type f32[3]", "node const 'n'"),
    "recorded dim disagrees with inference": (_wrong_result_type, "recorded as f32[batch, 5], inferred "
                                              "f32[batch, 4]", "node neg 'n'"),
    "recorded dtype disagrees with inference": (_wrong_dtype, "recorded as i64[batch, 4]", "node neg 'n'"),
    "result count disagrees with the op": (_wrong_result_count, "2 results, op gives 1", "node neg 'n'"),
    "type inference fails": (_failing_inference, "type inference failed", "node conv2d 'n'"),
}


@pytest.mark.parametrize("break_it,msg,where", VIOLATIONS.values(), ids=VIOLATIONS.keys())
def test_verifier_names_the_node_of_each_broken_invariant(break_it, msg, where):
    g = _graph()
    break_it(g)
    with pytest.raises(IrcError) as e:
        verify(g)
    line = next(ln for ln in str(e.value).splitlines() if msg in ln)
    assert where in line


GRAPH_VIOLATIONS = {
    "output not defined": (lambda g: g.add_output(Value(TensorType("f32", (1,))), "z"), "output 'z' is not defined"),
    "output names not unique": (lambda g: g.add_output(g.nodes[0].outputs[0], "y"), "names are not unique"),
    "outputs and names differ": (lambda g: g.output_names.append("extra"), "differ in number"),
    "input listed twice": (lambda g: g.inputs.append(g.inputs[0]), "input 'x' listed twice"),
    "two inputs with one name": (lambda g: g.add_input("x", TensorType("f32", (1,))), "input 'x' listed twice"),
    "input produced by a node": (lambda g: setattr(g.inputs[0], "producer", g.nodes[0]),
                                 "input 'x' is also the result of node relu 'r'"),
    "stale use of an input": (lambda g: g.inputs[0].uses.append((g.nodes[1], 0)),
                              "input 'x' has a stale use by neg 'n'"),
}


@pytest.mark.parametrize("break_it,msg", GRAPH_VIOLATIONS.values(), ids=GRAPH_VIOLATIONS.keys())
def test_verifier_names_graph_level_faults(break_it, msg):
    g = _graph()
    break_it(g)
    with pytest.raises(IrcError, match="IR verification failed") as e:
        verify(g)
    assert msg in str(e.value)


def test_verifier_lists_every_problem_at_once():
    g = _graph()
    _unknown_attr(g)
    _stale_use(g)
    msg = str(pytest.raises(IrcError, verify, g).value)
    assert "unknown ['alpha']" in msg and "stale use" in msg


def test_elided_constant_verifies_unless_values_are_required():
    g = parse_graph("graph main() {\n  %0 = const() {value=dense<...>} : f32[40]\n  return %0 as \"w\"\n}\n")
    verify(g)
    with pytest.raises(IrcError, match="constant has no value"):
        verify(g, require_values=True)


# -- types and graph editing ------------------------------------------------------------------------------

@pytest.mark.parametrize("dim", [-1, 2.0, True, [3]])
def test_invalid_dims_are_refused(dim):
    with pytest.raises(IrcError, match="invalid dim"):
        TensorType("f32", (2, dim))


def test_refined_by_fills_only_unknown_dims():
    t = TensorType("f32", ("batch", None, 3))
    assert t.refined_by(TensorType("f32", (1, 7, 4))) == TensorType("f32", ("batch", 7, 3))
    assert t.refined_by(TensorType("f32", (1, 7))) == t
    assert TensorType("f32", None).refined_by(t) == t


def test_clone_is_independent_and_prints_the_same():
    g = _graph()
    c = g.clone()
    assert print_graph(c) == print_graph(g)
    c.nodes[0].set_input(0, c.inputs[0])
    c.remove_nodes([c.nodes[1]])
    verify(g)


def test_remove_node_refuses_a_used_result():
    g = _graph()
    with pytest.raises(IrcError, match="still used"):
        g.remove_node(g.nodes[0])


def test_topological_sort_restores_order_and_detects_cycles():
    g = _graph()
    g.nodes.reverse()
    g.topological_sort()
    verify(g)
    g.nodes[0].set_input(0, g.nodes[1].outputs[0])
    with pytest.raises(IrcError, match="cycle"):
        g.topological_sort()
