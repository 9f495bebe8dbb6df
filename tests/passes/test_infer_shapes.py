"""infer-shapes: after binding symbolic input dims to sizes, every result type is recomputed."""
import pytest

from irc import IrcError
from irc.ir import TensorType, parse_graph, print_graph
from irc.passes import PassManager

TEXT = """graph main(%x: f32[batch, 3]) {
  %0 = const() {value=dense<1.0, 2.0, 3.0>} : f32[3]
  %1 = add(%x, %0) : f32[batch, 3]
  %2 = shape(%1) : i64[2]
  %3 = reshape(%1, %2) : f32[?, ?]
  return %3 as "y"
}
"""


def test_bound_input_shapes_reach_every_result():
    g = parse_graph(TEXT)
    g.inputs[0].type = TensorType("f32", (5, 3))
    PassManager(["infer-shapes", "fold-constants", "infer-shapes"], verify_each=True).run(g)
    assert print_graph(g) == print_graph(parse_graph("""graph main(%x: f32[5, 3]) {
  %0 = const() {value=dense<1.0, 2.0, 3.0>} : f32[3]
  %1 = add(%x, %0) : f32[5, 3]
  %2 = const() {value=dense<5, 3>} : i64[2]
  %3 = reshape(%1, %2) : f32[5, 3]
  return %3 as "y"
}
"""))


def test_a_binding_the_graph_cannot_take_names_the_node():
    g = parse_graph(TEXT)
    g.inputs[0].type = TensorType("f32", (5, 4))
    with pytest.raises(IrcError, match="pass infer-shapes failed .*node add ''"):
        PassManager(["infer-shapes"]).run(g)
