"""Shape values: the entries fold-constants knows of small integer values computed from shapes, one
rule per case, for x: f32[batch, 3, 4] (s = shape(x) = (batch, 3, 4))."""
import pytest

from irc.ir import parse_graph
from irc.passes.shape_values import ShapeValues

HEAD = """graph main(%x: f32[batch, 3, 4], %n: i64[]) {
  %0 = shape(%x) : i64[3]
  %1 = const() {value=dense<0>} : i64[1]
  %2 = const() {value=dense<1>} : i64[]
"""

CASES = {
    "shape with start and end": ("%3 = shape(%x) {start=-2, end=3} : i64[2]", (3, 4)),
    "size of a symbolic shape is unknown": ("%3 = size(%x) : i64[]", (None,)),
    "gather of a scalar index": ("%3 = gather(%0, %2) : i64[]", (3,)),
    "gather of negative indices": ("%3 = const() {value=dense<-1, 0>} : i64[2]\n"
                                   "  %4 = gather(%0, %3) : i64[2]", (4, "batch")),
    "slice with a step": ("%3 = const() {value=dense<3>} : i64[1]\n  %4 = const() {value=dense<2>} : i64[1]\n"
                          "  %5 = slice(%0, %1, %3, %1, %4) : i64[2]", ("batch", 4)),
    "concat with a constant": ("%3 = const() {value=dense<-1, 7>} : i64[2]\n"
                               "  %4 = concat(%0, %3) {axis=0} : i64[5]", ("batch", 3, 4, -1, 7)),
    "unsqueeze then squeeze": ("%3 = gather(%0, %2) : i64[]\n  %4 = unsqueeze(%3, %1) : i64[1]\n"
                               "  %5 = squeeze(%4, %1) : i64[]", (3,)),
    "reshape to a scalar": ("%3 = slice(%0, %1, %2) : i64[1]\n  %4 = const() {value=dense<>} : i64[0]\n"
                            "  %5 = reshape(%3, %4) : i64[]", ("batch",)),
    "expand of a scalar": ("%3 = const() {value=dense<2>} : i64[1]\n  %4 = slice(%0, %1, %2) : i64[1]\n"
                           "  %5 = expand(%4, %3) : i64[2]", ("batch", "batch")),
    "identity": ("%3 = identity(%0) : i64[3]", ("batch", 3, 4)),
    "cast to i32 keeps entries": ("%3 = cast(%0) {to=\"i32\"} : i32[3]", ("batch", 3, 4)),
    "cast to i8 is unknown": ("%3 = cast(%0) {to=\"i8\"} : i8[3]", None),
    "static products and neutral elements": ("%3 = const() {value=dense<1, 2, 0>} : i64[3]\n"
                                             "  %4 = mul(%0, %3) : i64[3]", ("batch", 6, 0)),
    "add, sub and div of neutral elements keep the symbol": (
        "%3 = const() {value=dense<0>} : i64[]\n  %4 = add(%0, %3) : i64[3]\n  %5 = sub(%4, %3) : i64[3]\n"
        "  %6 = div(%5, %2) : i64[3]", ("batch", 3, 4)),
    "symbolic arithmetic is unknown, integer division truncates": (
        "%3 = const() {value=dense<2, 2, -3>} : i64[3]\n  %4 = div(%0, %3) : i64[3]", (None, 1, -1)),
    "division by zero is unknown": ("%3 = const() {value=dense<0>} : i64[]\n  %4 = div(%0, %3) : i64[3]",
                                    (None, None, None)),
    "max with a symbol is unknown": ("%3 = max(%0, %2) : i64[3]", (None, 3, 4)),
    "an unknown entry is no neutral element": ("%3 = size(%x) : i64[]\n  %4 = max(%0, %3) : i64[3]\n"
                                               "  %5 = sub(%3, %0) : i64[3]", (None, None, None)),
    "equal: a symbol is itself and no negative int": ("%3 = const() {value=dense<-1, 3, 5>} : i64[3]\n"
                                                     "  %4 = equal(%0, %3) : bool[3]", (0, 1, 0)),
    "equal: a symbol and a size may be equal": ("%3 = equal(%0, %2) : bool[3]", (None, 0, 0)),
    "where with a known condition picks entries": (
        "%3 = const() {value=dense<1, 0, 1>} : bool[3]\n  %4 = const() {value=dense<7>} : i64[]\n"
        "  %5 = where(%3, %4, %0) : i64[3]", (7, 3, 7)),
    "where with an unknown condition is unknown": ("%3 = equal(%0, %2) : bool[3]\n"
                                                   "  %4 = where(%3, %2, %0) : i64[3]", None),
    "a runtime value is unknown": ("%3 = unsqueeze(%n, %1) : i64[1]\n  %4 = concat(%0, %3) {axis=0} : i64[4]",
                                   None),
    "an out-of-range gather is unknown": ("%3 = const() {value=dense<3>} : i64[]\n  %4 = gather(%0, %3) : i64[]",
                                          None),
}


@pytest.mark.parametrize("body,expected", CASES.values(), ids=CASES.keys())
def test_entries(body, expected):
    g = parse_graph(HEAD + "  " + body + "\n  return %0 as \"s\"\n}\n")
    table = ShapeValues()
    for node in g.nodes:
        if node.op != "const":
            table.compute(node)
    assert table.get(g.nodes[-1].outputs[0]) == expected
