"""The debugging tools: verify (pass by pass, --bisect), profile, DOT and ONNX export, progress."""
import io
import json
import re
import shutil
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import irc
from irc.backend.registry import CPU_LOWERINGS, Kernel, Lowering
from irc.cli import main
from irc.debug import verify
from irc.debug.dot import to_dot
from irc.debug.profile import flops
from irc.debug.progress import Progress
from irc.debug.to_onnx import IRC_DOMAIN, to_onnx
from irc.frontend import import_onnx
from irc.frontend.onnx import MAX_OPSET
from irc.ir import Builder, Graph, TensorType, parse_graph
from irc.ops.interpret import interpret
from irc.passes import ORDER, PASSES, register_pass
from tests.util import assert_close, graph_model, irc_cli, model_file, run_ort

W = np.array([0.5, -1.0, 2.0], np.float32)
B = np.array([0.25, 0.0, -0.5], np.float32)


def chain_model():
    """y = relu(x * w + b), with every intermediate named (x: [batch, 3])."""
    nodes = [helper.make_node("Mul", ["x", "w"], ["scaled"], name="mul"),
             helper.make_node("Add", ["scaled", "b"], ["shifted"], name="add"),
             helper.make_node("Relu", ["shifted"], ["y"], name="relu")]
    return graph_model("chain", nodes, {"x": ["batch", 3]}, {"y": ["batch", 3]}, {"w": W, "b": B})


@pytest.fixture(scope="module")
def chain_path(tmp_path_factory):
    return model_file(tmp_path_factory, "debug", chain_model())


# -- broken passes, registered for one test -------------------------------------------------------------

def perturb_constant(graph: Graph) -> Graph:
    """Adds 0.5 to the constant named 'w' (a wrong rewrite verify must catch)."""
    for n in graph.nodes:
        if n.op == "const" and n.output.name == "w":
            n.attrs["value"] = n.attrs["value"] + np.float32(0.5)
    return graph


def swap_add_for_sub(graph: Graph) -> Graph:
    """Turns every add into a sub (a wrong rewrite that keeps every type)."""
    for n in graph.nodes:
        if n.op == "add":
            n.op = "sub"
    return graph


@pytest.fixture(params=[(perturb_constant, "%w of const"), (swap_add_for_sub, "%shifted of sub 'add'")],
                ids=["perturb-constant", "swap-op"])
def broken_pass(request):
    """A broken pass registered at -O1, second in the pipeline: (its name, the tensor it makes differ)."""
    fn, tensor = request.param
    name = "test-" + fn.__name__.replace("_", "-")
    register_pass(name, 1)(fn)
    ORDER.insert(1, name)
    yield name, tensor
    ORDER.remove(name)
    del PASSES[name]


def test_verify_passes_a_correct_pipeline(capsys, chain_path):
    report = verify.verify_pipeline(chain_path)
    assert report.ok and report.first_pass is None
    assert [s.name for s in report.stages] == irc.passes.pipeline(2) + ["cpu kernels"]
    rc, out, _ = irc_cli(capsys, "verify", chain_path)
    assert rc == 0 and "all stages match the reference" in out and "cpu kernels" in out


def test_verify_names_the_broken_pass_and_tensor(capsys, chain_path, broken_pass):
    name, tensor = broken_pass
    report = verify.verify_pipeline(chain_path, opt_level=1)
    assert report.first_pass == name and not report.ok
    assert report.tensor is not None and report.tensor.what.startswith(tensor)
    assert all(s.ok for s in report.stages[:1])  # the pass before it keeps the outputs
    rc, out, _ = irc_cli(capsys, "verify", chain_path, "-O1")
    assert rc == 1 and f"first divergent pass: {name}\n" in out
    assert re.search(rf"^{re.escape(name)} +\S+ +\S+ +DIVERGES$", out, re.M)
    assert f"first divergent tensor: {tensor}" in out and "max error" in out and "mean error" in out
    rc, out, _ = irc_cli(capsys, "verify", chain_path, "-O1", "--disable-pass", name)
    assert rc == 0 and name not in out


def test_verify_uses_the_given_inputs_and_tolerance(capsys, chain_path, tmp_path, broken_pass):
    name, _ = broken_pass
    # x = 0 everywhere: y = relu(b) whatever w is, so only swapping add for sub shows
    np.savez(tmp_path / "zeros.npz", x=np.zeros((4, 3), np.float32))
    rc, out, _ = irc_cli(capsys, "verify", chain_path, "-O1", "--inputs", tmp_path / "zeros.npz")
    assert rc == (1 if "sub" in name else 0)
    rc, out, _ = irc_cli(capsys, "verify", chain_path, "-O1", "--tol", "100")
    assert rc == 0


def test_verify_reports_bad_inputs(capsys, chain_path, tmp_path):
    np.savez(tmp_path / "bad.npz", x=np.zeros((4, 5), np.float32))
    rc, _, err = irc_cli(capsys, "verify", chain_path, "--inputs", tmp_path / "bad.npz")
    assert rc == 1 and "input 'x'" in err and "[4, 5]" in err and "Traceback" not in err


def wrong_relu(node):
    """A relu kernel that is off by one where x > 0."""
    return Kernel(lambda x: np.where(x > 0, x + np.float32(1), np.float32(0)).astype(np.float32), algo="wrong")


def test_bisect_names_the_wrong_kernel(capsys, chain_path, monkeypatch, tmp_path):
    rc, out, _ = irc_cli(capsys, "verify", chain_path, "--bisect", "-O0")
    assert rc == 0 and "all 3 kernels match their references" in out
    monkeypatch.setitem(CPU_LOWERINGS, "relu", Lowering("relu", wrong_relu, "elementwise", False))
    report = verify.bisect_kernels(chain_path, opt_level=0)
    assert [c.node.op for c in report.checks] == ["mul", "add", "relu"]
    assert report.first_bad is report.checks[2] and not report.checks[2].ok and report.checks[1].ok
    rc, out, _ = irc_cli(capsys, "verify", chain_path, "--bisect", "-O0")
    assert rc == 1 and "first divergent kernel: node relu 'relu' (algo wrong): max error 1" in out
    assert re.search(r"^relu +relu +wrong +1 +\S+ +DIFFERS$", out, re.M)
    assert irc_cli(capsys, "compile", chain_path, "-o", tmp_path / "m.bin", "-O0", "--no-warm")[0] == 0
    rc, out, _ = irc_cli(capsys, "verify", tmp_path / "m.bin", "--bisect")   # an artifact's kernels
    assert rc == 1 and "first divergent kernel: node relu 'relu'" in out
    rc, _, err = irc_cli(capsys, "verify", tmp_path / "m.bin")
    assert rc == 1 and "checking the passes needs the .onnx model" in err
    # the pass-by-pass run sees the outputs differ only in the kernels and points to --bisect
    rc, out, _ = irc_cli(capsys, "verify", chain_path, "-O0")
    assert rc == 1 and "run irc verify --bisect" in out


def test_compare():
    ref = np.array([1.0, np.nan, 100.0], np.float32)
    assert verify.compare(ref, ref.copy()).max == 0
    e = verify.compare(ref, np.array([1.0, np.nan, 100.05], np.float32))
    assert e.ok and e.limit == pytest.approx(0.1) and e.max == pytest.approx(0.05, rel=1e-3)
    assert not verify.compare(ref, np.array([1.0, 0.0, 100.0], np.float32)).ok     # NaN on one side
    assert not verify.compare(ref, ref[:2]).ok                                     # shape


# -- profile --------------------------------------------------------------------------------------------

def matmul_model():
    """y = relu(x @ w): x [batch, 64], w [64, 32]."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 32])
    w = np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
                           helper.make_node("Relu", ["h"], ["y"], name="act")], "mm", [x], [y],
                          [numpy_helper.from_array(w, "w")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_profile_json_and_table(capsys, tmp_path):
    path = tmp_path / "mm.onnx"
    path.write_bytes(matmul_model().SerializeToString())
    np.savez(tmp_path / "in.npz", x=np.ones((8, 64), np.float32))
    rc, out, _ = irc_cli(capsys, "profile", path, "--inputs", tmp_path / "in.npz", "--runs", "3", "--json",
                         "-O1")  # (-O2 fuses the relu into the matmul)
    assert rc == 0
    prof = json.loads(out)
    assert prof["runs"] == 3 and prof["total_ms"] > 0 and prof["wall_ms"] >= prof["total_ms"] * 0.5
    nodes = prof["nodes"]
    assert sorted(n["node"] for n in nodes) == ["act", "mm"]
    assert [n["ms"] for n in nodes] == sorted((n["ms"] for n in nodes), reverse=True)
    assert sum(n["percent"] for n in nodes) == pytest.approx(100, abs=0.1)
    mm = next(n for n in nodes if n["node"] == "mm")
    assert mm["op"] == "matmul" and mm["shape"] == [8, 32] and mm["gflops"] > 0
    assert mm["gflops"] == pytest.approx(2 * 8 * 64 * 32 / (mm["ms"] * 1e-3) / 1e9)
    assert mm["peak_percent"] == pytest.approx(100 * mm["gflops"] / prof["sgemm_peak_gflops"])
    assert next(n for n in nodes if n["node"] == "act")["gflops"] is None
    rc, out, _ = irc_cli(capsys, "profile", path, "--runs", "2")
    header, *rows = out.splitlines()
    assert rc == 0 and header.split() == ["node", "op", "algo", "shape", "ms", "%", "GFLOP/s", "%", "peak"]
    assert rows[-3].startswith("total: ") and "(mean of 2)" in rows[-3]
    assert rows[-2].startswith("SGEMM peak in this process: ") and rows[-1].startswith("by op: ")
    assert irc_cli(capsys, "profile", path, "--runs", "0")[0] == 2


def test_flops_of_conv_and_gemm():
    g = Graph()
    b = Builder(g)
    x = g.add_input("x", TensorType("f32", (2, 4, 10, 10)))
    w = g.add_const(np.zeros((6, 2, 3, 3), np.float32))
    y = b.op("conv2d", x, w, None, group=2, pads=[1, 1, 1, 1])
    conv = y.producer
    assert y.type.shape == (2, 6, 10, 10)
    assert flops(conv) == 2 * (2 * 6 * 10 * 10) * (2 * 3 * 3)
    wino = b.op("conv2d", x, w, None, group=2, pads=[1, 1, 1, 1]).producer
    wino.attrs["algo"] = "winograd"  # its weight is the transform [36, Cout, Cin]: the count is the direct one
    wino.set_input(1, g.add_const(np.zeros((36, 6, 2), np.float32)))
    assert flops(wino) == flops(conv)
    a = g.add_input("a", TensorType("f32", (5, 7)))
    c = g.add_const(np.zeros((3, 7), np.float32))
    assert flops(b.op("gemm", a, c, None, transB=1).producer) == 2 * 5 * 3 * 7
    assert flops(b.op("relu", a).producer) is None


# -- dot ------------------------------------------------------------------------------------------------

def test_dot_draws_nodes_edges_constants_and_groups(chain_path):
    g = irc.compile(chain_path, opt_level=0).graph
    text = to_dot(g)
    assert text.startswith('digraph "main" {') and text.rstrip().endswith("}")
    labels = dict(re.findall(r"^  (n\d+) \[label=(\".*\")\];$", text, re.M))
    ops = {k: json.loads(v).split("\n")[0] for k, v in labels.items()}
    assert sorted(ops.values()) == ["add  add", "mul  mul", "relu  relu"]
    mul = next(k for k, v in ops.items() if v == "mul  mul")
    assert "in1: dense<0.5, -1.0, 2.0> : f32[3]" in json.loads(labels[mul])  # the constant, in its user
    edges = re.findall(r"^  (\w+) -> (\w+) \[label=\"([^\"]*)\"\];$", text, re.M)
    # x -> mul -> add -> relu -> y: constants are not drawn as nodes
    assert len(edges) == 4 and all(t == "f32[batch, 3]" for *_, t in edges)
    assert ("in0", mul, "f32[batch, 3]") in edges and edges[-1][1] == "out0"
    assert "cluster" not in text
    for n in g.nodes:
        if n.op in ("mul", "add"):
            n.attrs["fusion_group"] = "chain0"
    grouped = to_dot(g)
    cluster = re.search(r"subgraph cluster_0 \{\n    label=\"chain0\";.*?\n  \}", grouped, re.S).group(0)
    assert cluster.count("[label=") == 2 and "relu" not in cluster


def test_dump_dot_cli(capsys, chain_path, tmp_path, monkeypatch):
    rc, out, _ = irc_cli(capsys, "dump", chain_path, "--format", "dot", "--stage", "lowered")
    assert rc == 0 and out.startswith("digraph") and 'kernel=\\"elementwise\\"' in out
    rc, _, _ = irc_cli(capsys, "dump", chain_path, "--format", "dot", "-o", tmp_path / "g.dot")
    assert rc == 0 and (tmp_path / "g.dot").read_text().startswith("digraph")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    rc, _, err = irc_cli(capsys, "dump", chain_path, "--format", "dot", "-o", tmp_path / "g.svg")
    assert rc == 1 and "needs Graphviz's dot program" in err and not (tmp_path / "g.svg").exists()


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")
def test_dump_dot_renders_svg(capsys, chain_path, tmp_path):
    rc, _, _ = irc_cli(capsys, "dump", chain_path, "--format", "dot", "-o", tmp_path / "g.svg")
    assert rc == 0 and "<svg" in (tmp_path / "g.svg").read_text()


# -- ONNX export ----------------------------------------------------------------------------------------

def mixed_model():
    """Cast, Shape -> ConstantOfShape, Mul and a Gemm: attributes of several kinds, dtype attributes included."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("twos", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("w_out", TensorProto.FLOAT, [3, 4])]
    w = np.arange(12, dtype=np.float32).reshape(3, 4) / 10
    nodes = [helper.make_node("Cast", ["x"], ["xd"], to=TensorProto.DOUBLE, name="to_f64"),
             helper.make_node("Cast", ["xd"], ["xf"], to=TensorProto.FLOAT, name="to_f32"),
             helper.make_node("Gemm", ["xf", "w"], ["y"], transB=1, alpha=0.5, name="gemm"),
             helper.make_node("Shape", ["y"], ["s"], name="shape"),
             helper.make_node("ConstantOfShape", ["s"], ["twos"], name="fill",
                              value=numpy_helper.from_array(np.array([2.0], np.float32))),
             helper.make_node("Identity", ["w"], ["w_out"], name="w_copy")]
    g = helper.make_graph(nodes, "mixed", [x], outs, [numpy_helper.from_array(w, "w")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("stage", ["import", "optimized"])
def test_onnx_export_runs_in_onnxruntime(capsys, tmp_path, stage):
    src = tmp_path / "mixed.onnx"
    src.write_bytes(mixed_model().SerializeToString())
    rc, out, _ = irc_cli(capsys, "dump", src, "--format", "onnx", "--stage", stage, "-o", tmp_path / "out.onnx")
    assert rc == 0 and out == f"wrote {tmp_path / 'out.onnx'}\n"
    exported = onnx.load(tmp_path / "out.onnx")
    onnx.checker.check_model(exported, full_check=True)
    assert all(n.domain == "" for n in exported.graph.node)
    assert [o.name for o in exported.graph.output] == ["y", "twos", "w_out"]
    feeds = {"x": np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)}
    for got, want in zip(run_ort(exported, feeds), run_ort(mixed_model(), feeds)):
        assert_close(got, want)


def test_onnx_export_puts_ops_onnx_lacks_in_the_irc_domain():
    g = import_onnx(chain_model())
    relu = next(n for n in g.nodes if n.op == "relu")
    relu.op = "silu"  # an op without an ONNX name
    add = next(n for n in g.nodes if n.op == "add")
    model = to_onnx(g)
    onnx.checker.check_model(model)
    kinds = {n.name: (n.domain, n.op_type) for n in model.graph.node}
    assert kinds == {"mul": ("", "Mul"), "add": ("", "Add"), "relu": (IRC_DOMAIN, "silu")}
    assert {(o.domain, o.version) for o in model.opset_import} == {("", MAX_OPSET), (IRC_DOMAIN, 1)}
    add.attrs["epilogue"] = ["relu"]  # an attribute the ONNX op does not have
    assert next(n for n in to_onnx(g).graph.node if n.name == "add").domain == IRC_DOMAIN


def test_onnx_export_without_output_file(capsys, chain_path):
    rc, _, err = irc_cli(capsys, "dump", chain_path, "--format", "onnx")
    assert rc == 1 and "-o FILE.onnx" in err


# -- progress -------------------------------------------------------------------------------------------

class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_only_on_a_terminal(capsys, chain_path, tmp_path, monkeypatch):
    rc, out, err = irc_cli(capsys, "compile", chain_path, "-o", tmp_path / "m.bin")
    assert rc == 0 and err == "" and "\r" not in out  # not a terminal: nothing
    term = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert main(["compile", str(chain_path), "-o", str(tmp_path / "m.bin")]) == 0
    shown = term.getvalue()
    n = len(irc.passes.pipeline(2))
    assert f"pass [1/{n}] {irc.passes.pipeline(2)[0]}" in shown and f"pass [{n}/{n}]" in shown
    assert "kernel [1/" in shown and shown.endswith("\r\x1b[K")
    term.truncate(0)
    assert main(["compile", str(chain_path), "-o", str(tmp_path / "m.bin"), "--quiet"]) == 0
    assert term.getvalue() == ""


def test_progress_disabled_writes_nothing():
    s = io.StringIO()
    p = Progress(s, enabled=False)
    p.on_pass("dce", 0, 1)
    p.done()
    assert s.getvalue() == "" and Progress(FakeTerminal()).enabled and not Progress(io.StringIO()).enabled


def test_first_divergence_skips_results_a_rewrite_moved():
    """A node that keeps its name but now gives what another node gave is not blamed; new numbers are."""
    before = parse_graph('''graph main(%x: f32[4]) {
  %0 = relu(%x) : f32[4] loc("r")
  %1 = neg(%0) : f32[4] loc("n")
  return %1 as "y"
}
''')
    moved = before.clone()
    moved.nodes[0].name, moved.nodes[1].name = "t", "r"   # "r" now gives what "n" gave
    broken = before.clone()
    broken.nodes[0].op = "sigmoid"
    feeds = {"x": np.array([-1.0, 0.5, 2.0, -3.0], np.float32)}
    _, env = interpret(before, feeds, keep_all=True)
    for after, blamed in [(moved, None), (broken, "result 0 of sigmoid 'r': f32[4]")]:
        _, after_env = interpret(after, feeds, keep_all=True)
        d = verify.first_divergence(before, env, after, after_env, 1e-3)
        assert (d and d.what) == blamed
