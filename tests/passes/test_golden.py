"""Golden pass tests: each case's input graph, after its passes, prints as the expected graph."""
import pytest

from irc import IrcError
from irc.ir import parse_graph, print_graph
from irc.passes import PassManager
from tests.passes.fixtures import load_cases

CASES = load_cases()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_golden(case):
    graph = PassManager(case.passes, verify_each=True).run(parse_graph(case.before))
    assert print_graph(graph) == print_graph(parse_graph(case.after))


def test_fold_constants_names_the_node_a_known_shape_makes_invalid():
    text = """graph main(%x: f32[batch, 3]) {
  %0 = shape(%x) {end=1} : i64[1]
  %1 = const() {value=dense<-2>} : i64[1]
  %2 = concat(%0, %1) {axis=0} : i64[2]
  %3 = constant_of_shape(%2) {value=1.0, dtype="f32"} : f32[?, ?] loc("fill")
  return %3 as "y"
}
"""
    with pytest.raises(IrcError, match="pass fold-constants failed .*: node constant_of_shape 'fill': invalid dim -2"):
        PassManager(["fold-constants"]).run(parse_graph(text))
