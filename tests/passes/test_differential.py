"""Differential tests: a graph before and after each pass gives the same outputs on random inputs (the
reference interpreter is the oracle), on every golden case and on an exporter-style model."""
import os

import numpy as np
import onnx
import pytest

from irc import IrcError
from irc.frontend import import_onnx
from irc.ir import parse_graph, verify
from irc.ops.interpret import interpret
from irc.passes import PassManager, pipeline
from tests.passes.fixtures import exporter_model, load_cases, random_feeds

PASSES = ["fold-constants", "cse", "dce", "simplify"]
CASES = [c for c in load_cases() if "dense<...>" not in c.before]   # elided arrays cannot run


def outputs_or_error(graph, feeds):
    try:
        return interpret(graph, feeds)
    except IrcError as e:
        return e


def assert_same(before, after):
    if isinstance(before, IrcError):
        assert isinstance(after, IrcError), "the graph failed before the pass and runs after it"
        return
    assert not isinstance(after, IrcError), f"the graph runs before the pass and fails after it: {after}"
    assert len(before) == len(after)
    for a, b in zip(before, after):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", PASSES)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_pass_keeps_the_outputs_of_every_golden_case(name, case):
    before = parse_graph(case.before)
    expected = [outputs_or_error(before, random_feeds(before, seed)) for seed in (0, 1)]
    after = PassManager([name], verify_each=True).run(parse_graph(case.before))
    for seed, want in zip((0, 1), expected):
        assert_same(want, outputs_or_error(after, random_feeds(after, seed)))


@pytest.mark.parametrize("level", [1, 2])
def test_pipeline_keeps_the_outputs_of_an_exported_model(level):
    before = import_onnx(exporter_model())
    after = PassManager(pipeline(level), verify_each=True).run(import_onnx(exporter_model()))
    verify(after)
    counts = after.op_counts()
    relu = {"relu": 1} if level == 1 else {}         # -O2 fuses it into the matmul
    assert counts == {"reshape": 1, "matmul": 1, **relu, "add": 1}, counts   # the reshape's target is constant
    assert str(after.outputs[0].type) == "f32[batch, 4]"
    for batch in (1, 3):
        feeds = random_feeds(before, batch, {"batch": batch})
        assert_same(interpret(before, feeds), interpret(after, feeds))


@pytest.mark.parametrize("name", ["gpt", "bert", "mlp"])
def test_pipeline_keeps_the_outputs_of_zoo_models_and_every_dim(name, zoo):
    """Exported transformers compute their shapes at run time; after the pipeline no dim is unknown.
    The outputs agree up to rounding: fusion computes GELU and attention as single ops."""
    before = import_onnx(zoo.path(name))
    after = PassManager(pipeline(2), verify_each=True).run(import_onnx(zoo.path(name)))
    unknown = [f"{n.op} {n.name!r}: {v.type}" for n in after.nodes for v in n.outputs
               if v.type.shape is None or None in v.type.shape]
    assert not unknown, unknown
    for batch in (1, 2):
        feeds = zoo.inputs(name, batch, seed=batch)
        for a, b in zip(interpret(before, feeds), interpret(after, feeds)):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


def test_pipeline_folds_the_constant_of_shape_weights_of_a_light_model():
    """The onnx package's light_* models make every weight with ConstantOfShape; they all fold."""
    path = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light", "light_squeezenet.onnx")
    before = import_onnx(path)
    assert before.op_counts().get("constant_of_shape", 0) > 10
    after = PassManager(pipeline(2), verify_each=True).run(import_onnx(path))
    assert "constant_of_shape" not in after.op_counts()
    feeds = random_feeds(before)
    assert_same(interpret(before, feeds), interpret(after, feeds))


# -- the oracle itself: it checks what runs against the IR's types -----------------------------------------

ORACLE_TEXT = """graph main(%x: f32[batch, 3], %z: f32[batch, 3]) {
  %0 = add(%x, %z) : f32[batch, 3]
  return %0 as "y"
}
"""


@pytest.mark.parametrize("feeds,msg", [
    ({"x": np.zeros((2, 3), np.float32)}, "missing input 'z'"),
    ({"x": np.zeros((2, 3), np.float64), "z": np.zeros((2, 3), np.float32)},
     "input 'x': dtype float64 where the IR says f32[batch, 3]"),
    ({"x": np.zeros((2, 4), np.float32), "z": np.zeros((2, 3), np.float32)}, "input 'x': shape [2, 4]"),
    ({"x": np.zeros((2, 3), np.float32), "z": np.zeros((5, 3), np.float32)},
     "input 'z': shape [5, 3] where the IR says f32[batch, 3] and batch is 2"),
])
def test_interpreter_checks_feeds_against_input_types(feeds, msg):
    with pytest.raises(IrcError, match=msg.replace("[", r"\[").replace("]", r"\]")):
        interpret(parse_graph(ORACLE_TEXT), feeds)


def test_interpreter_names_a_node_whose_result_disagrees_with_its_type():
    g = parse_graph(ORACLE_TEXT)
    g.nodes[0].outputs[0].type = g.nodes[0].outputs[0].type.with_shape(("batch", 4))
    feeds = {"x": np.zeros((2, 3), np.float32), "z": np.zeros((2, 3), np.float32)}
    with pytest.raises(IrcError, match=r"node add '': result 0 has shape \[2, 3\] where the IR says f32\[batch, 4\]"):
        interpret(g, feeds)


def test_interpreter_names_a_node_whose_reference_fails():
    g = parse_graph("graph main(%x: f32[3]) {\n  %0 = const() {value=dense<7>} : i64[]\n"
                    "  %1 = gather(%x, %0) : f32[]\n  return %1 as \"y\"\n}\n")
    with pytest.raises(IrcError, match="node gather ''"):
        interpret(g, {"x": np.zeros(3, np.float32)})
