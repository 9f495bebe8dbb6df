"""The -O2 rewrites (fold-batchnorm, dedup-filters, fuse, depthwise, winograd): differential tests against
the reference interpreter, the Winograd rewrite in IR text, and what they make of whole models."""
import os

import numpy as np
import onnx
import pytest

import irc
from irc.frontend import import_onnx
from irc.ir import parse_graph, print_graph
from irc.ops.interpret import interpret
from irc.passes import PassManager, pipeline
from tests.passes.fixtures import load_cases, random_feeds
from tests.util import assert_close, node_model, run_ort

PASSES = ["fold-batchnorm", "dedup-filters", "fuse", "depthwise", "winograd"]
CASES = [c for c in load_cases() if set(c.passes) & set(PASSES)]
LIGHT_DIR = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


def assert_agree(before, after, feeds, rtol):
    """Both graphs run on ``feeds`` and agree to ``rtol`` of each output's largest magnitude."""
    for a, b in zip(interpret(before, feeds), interpret(after, feeds)):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(b, a, rtol=0, atol=rtol * max(1.0, float(np.abs(a).max())))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_golden_cases_keep_their_outputs(case):
    """Folding rounds the weights once (float32), fusion and algorithm choices change nothing."""
    after = PassManager(case.passes, verify_each=True).run(parse_graph(case.before))
    for seed in (0, 1):
        assert_agree(parse_graph(case.before), after, random_feeds(after, seed), 1e-6)


def conv_graph(channels, size, seed=0):
    """x -> 3x3 conv2d (pad 1, bias) -> relu with random weights."""
    rng = np.random.default_rng(seed)
    g = parse_graph(f"""graph main(%x: f32[batch, {channels}, {size}, {size}]) {{
  %0 = const() {{value=dense<...>}} : f32[{channels}, {channels}, 3, 3]
  %1 = const() {{value=dense<...>}} : f32[{channels}]
  %2 = conv2d(%x, %0, %1) {{pads=[1, 1, 1, 1]}} : f32[batch, {channels}, {size}, {size}]
  %3 = relu(%2) : f32[batch, {channels}, {size}, {size}]
  return %3 as "y"
}}
""")
    g.nodes[0].attrs["value"] = (rng.standard_normal((channels, channels, 3, 3)) / (3 * channels ** 0.5)).astype(
        np.float32)
    g.nodes[1].attrs["value"] = rng.standard_normal(channels).astype(np.float32)
    return g


def test_winograd_rewrite_in_ir_text():
    """The weight becomes its [a*a, O, C] transform (a new constant), the pads explicit; 12x12 takes F(2,3)."""
    g = PassManager(["fuse", "winograd"], verify_each=True).run(conv_graph(16, 12))
    assert print_graph(g, elide_above=0) == """graph main(%x: f32[batch, 16, 12, 12]) {
  %0 = const() {value=dense<...>} : f32[16]
  %1 = const() {value=dense<...>} : f32[16, 16, 16]
  %2 = conv2d(%x, %1, %0) {pads=[1, 1, 1, 1], strides=[1, 1], dilations=[1, 1], group=1, auto_pad="NOTSET", \
winograd_m=2, algo="winograd", epilogue=["relu"]} : f32[batch, 16, 12, 12]
  return %2 as "y"
}
"""


@pytest.mark.parametrize("size, m", [(12, 2), (24, 4)])
def test_winograd_keeps_the_outputs(size, m):
    """The reference maps the float32 transform back to the weight: agreement to float32 rounding."""
    before = conv_graph(16, size)
    after = PassManager(["winograd"], verify_each=True).run(conv_graph(16, size))
    assert [n.attrs.get("winograd_m") for n in after.nodes if n.op == "conv2d"] == [m]
    assert_agree(before, after, random_feeds(before, 0, {"batch": 2}), 1e-5)


def conv_algos(graph):
    algos = {}
    for n in graph.nodes:
        if n.op == "conv2d":
            algos[n.attrs.get("algo")] = algos.get(n.attrs.get("algo"), 0) + 1
    return algos


def optimized(path, **kw):
    return PassManager(pipeline(2, **kw), verify_each=True).run(import_onnx(path))


def test_resnet18_fuses_every_relu_and_residual_and_takes_winograd(zoo):
    g = optimized(zoo.path("resnet18"))
    counts = g.op_counts()
    assert "relu" not in counts and "add" not in counts and "batchnorm" not in counts, counts
    assert conv_algos(g).get("winograd", 0) >= 10, conv_algos(g)
    assert "winograd" not in conv_algos(optimized(zoo.path("resnet18"), disable=["winograd"]))


def test_mobilenetv2_depthwise_and_relu6(zoo):
    g = optimized(zoo.path("mobilenetv2"))
    counts = g.op_counts()
    assert "clip" not in counts and "batchnorm" not in counts, counts
    assert conv_algos(g)["depthwise"] == 17


def test_light_resnet50_folds_every_batchnorm():
    g = optimized(os.path.join(LIGHT_DIR, "light_resnet50.onnx"))
    assert "batchnorm" not in g.op_counts()


@pytest.mark.parametrize("name", ["senet", "convnext"])
def test_pipeline_keeps_the_outputs_of_zoo_cnns(name, zoo):
    """senet has SiLU (sigmoid * x) and squeeze-excite; convnext depthwise 7x7 convs and matmuls."""
    before = import_onnx(zoo.path(name))
    after = optimized(zoo.path(name))
    assert after.op_counts().get("batchnorm", 0) == 0
    feeds = zoo.inputs(name, 2, seed=0)
    assert_agree(before, after, feeds, 1e-4)


@pytest.mark.parametrize("attrs, extra, match", [
    ('epilogue=["add"]', "", r"epilogue \['add'\] needs 1 extra operand\(s\), got 0"),
    ('epilogue=["softmax"]', "", "epilogue op 'softmax' is not one of"),
    ('epilogue=["add"]', ", %z", r"epilogue operand f32\[5\] does not broadcast to the result f32\[2, 3\]"),
    ('algo="winograd", winograd_m=3', "", "winograd conv2d needs winograd_m in"),
])
def test_bad_fused_attributes_are_errors_naming_the_node(attrs, extra, match):
    from irc import IrcError
    from irc.ir import verify
    text = f"""graph main(%x: f32[2, 3], %w: f32[3, 3], %z: f32[5]) {{
  %0 = matmul(%x, %w{extra}) {{{attrs}}} : f32[2, 3] loc("mm")
  return %0 as "y"
}}
"""
    if "winograd" in attrs:
        text = text.replace("matmul(%x, %w)", "conv2d(%x, %w, none)").replace("f32[2, 3] loc", "f32[2, 3, 1, 1] loc")
        text = text.replace("%x: f32[2, 3]", "%x: f32[2, 3, 1, 1]")
    with pytest.raises(IrcError, match=match):
        verify(parse_graph(text))


def test_repeated_filters_give_bitwise_equal_channels():
    """A conv of 1000 equal filters (a constant fill, as in the onnx package's light_* models) compiled whole:
    every channel equals the first bit for bit, which no BLAS promises across the rows of its tiles, and
    the result matches onnxruntime; the compiled graph computes one filter."""
    rng = np.random.default_rng(0)
    x = rng.random((1, 512, 13, 13), dtype=np.float32) * 100
    consts = {"w": np.full((1000, 512, 1, 1), 0.37, np.float32), "b": np.full(1000, 0.5, np.float32)}
    model = node_model("Conv", {"x": x}, consts=consts)
    compiled = irc.compile(model)
    y = compiled.run({"x": x})["out0"]
    assert (y == y[:, :1]).all()
    assert_close(y, run_ort(model, {"x": x})[0])
    assert [n.outputs[0].type.shape[1] for n in compiled.graph.nodes if n.op == "conv2d"] == [1]
