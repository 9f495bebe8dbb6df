"""The command line: each subcommand, its output and its exit status (0 ok, 1 reported error, 2 usage)."""
import os
import subprocess
import sys

import numpy as np
import pytest
from onnx import TensorProto, helper

import irc
from irc.cli import main
from tests.util import assert_close, graph_model, irc_cli, model_file

W = np.array([[0.5, -1.0, 2.0]], np.float32)


def tiny_model():
    """y = x + w (symbolic batch); s = Shape(x)."""
    nodes = [helper.make_node("Add", ["x", "w"], ["y"], name="add"),
             helper.make_node("Shape", ["x"], ["s"], name="shape")]
    return graph_model("tiny", nodes, {"x": ["batch", 3]}, {"y": None, "s": None}, {"w": W})


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory):
    return model_file(tmp_path_factory, "cli", tiny_model())


@pytest.fixture(scope="module")
def bin_path(onnx_path):
    path = onnx_path.replace(".onnx", ".bin")
    assert main(["compile", onnx_path, "-o", path]) == 0
    return path


X = np.arange(6, dtype=np.float32).reshape(2, 3)


# -- compile ----------------------------------------------------------------------------------------------

def test_compile_writes_an_artifact_that_runs(capsys, onnx_path, tmp_path):
    out = tmp_path / "m.bin"
    rc, stdout, _ = irc_cli(capsys, "compile", onnx_path, "-o", out, "-O1")
    assert rc == 0 and f"wrote {out}" in stdout and "kernel cache warmed" in stdout
    m = irc.load(out)
    assert m.options["opt_level"] == 1
    np.testing.assert_array_equal(m.run({"x": X})["y"], X + W)


def test_compile_pass_options(capsys, onnx_path, tmp_path):
    out = tmp_path / "m.bin"
    rc, _, err = irc_cli(capsys, "compile", onnx_path, "-o", out, "--print-after-all", "--time-passes",
                         "--verify-each", "--disable-pass", "cse", "--no-warm")
    assert rc == 0
    assert "// IR after simplify" in err and "// IR after cse" not in err and "total" in err
    assert irc.load(out).options["disable_passes"] == ["cse"]
    rc, _, err = irc_cli(capsys, "compile", onnx_path, "-o", out, "--print-after", "dce", "--no-warm")
    runs = irc.passes.pipeline(2).count("dce")
    assert rc == 0 and err.count("// IR after") == err.count("// IR after dce\ngraph main(") == runs >= 1


def test_compile_time_passes_table(capsys, onnx_path, tmp_path):
    rc, _, err = irc_cli(capsys, "compile", onnx_path, "-o", tmp_path / "m.bin", "--time-passes", "--no-warm")
    header, *rows, total = err.splitlines()
    assert rc == 0 and header.split() == ["pass", "time", "(ms)", "%"]
    assert [r.split()[0] for r in rows] == irc.passes.pipeline(2)
    assert total.split()[0] == "total" and total.split()[-1] == "100.0"
    assert sum(float(r.split()[1]) for r in rows) == pytest.approx(float(total.split()[1]), abs=0.01 * len(rows))


def unsupported_model():
    """Two unknown ops (one of them twice) in two domains, around a supported one."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    nodes = [helper.make_node("Frobnicate", ["x"], ["a"], name="frob1"),
             helper.make_node("Relu", ["a"], ["b"], name="relu"),
             helper.make_node("Wibble", ["b"], ["c"], name="wib", domain="com.example"),
             helper.make_node("Frobnicate", ["c"], ["y"], name="frob2")]
    g = helper.make_graph(nodes, "g", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 2)],
                             ir_version=8)


@pytest.mark.parametrize("command", ["compile", "verify", "dump"])
def test_unsupported_ops_are_listed_together(capsys, tmp_path, command):
    path = tmp_path / "u.onnx"
    path.write_bytes(unsupported_model().SerializeToString())
    extra = ["-o", tmp_path / "u.bin"] if command == "compile" else []
    rc, out, err = irc_cli(capsys, command, path, *extra)
    assert rc == 1 and err.startswith("irc: error: 3 unsupported node(s):") and err.count("irc: error") == 1
    assert "Frobnicate (domain 'ai.onnx', opset 17): 'frob1', 'frob2'" in err
    assert "Wibble (domain 'com.example', opset 2): 'wib'" in err
    assert "Traceback" not in err and out == ""


@pytest.mark.parametrize("args, message", [
    (["--print-after", "nope"], "--print-after: unknown pass name(s) 'nope'"),
    (["--disable-pass", "nope"], "unknown pass name(s) 'nope'"),
    (["--quantize", "int8"], "quantization needs calibration data"),
    (["--calibration", "c.npz"], "--calibration: cannot read"),
])
def test_compile_reported_errors(capsys, onnx_path, tmp_path, args, message):
    rc, out, err = irc_cli(capsys, "compile", onnx_path, "-o", tmp_path / "m.bin", *args)
    assert rc == 1 and err.startswith("irc: error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "m.bin").exists()


def test_compile_warns_when_the_warm_up_cannot_run(capsys, tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)  # unknown rank: no example input
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "g", [x],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    (tmp_path / "m.onnx").write_bytes(
        helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString())
    rc, out, err = irc_cli(capsys, "compile", tmp_path / "m.onnx", "-o", tmp_path / "m.bin")
    assert rc == 0 and "wrote" in out
    assert err.startswith("irc: warning: kernel warm-up failed") and "unknown rank" in err
    x = np.array([-1.0, 2.0], np.float32)
    np.testing.assert_array_equal(irc.load(tmp_path / "m.bin").run({"x": x})["y"], [0.0, 2.0])


def test_compile_missing_model_and_debug_traceback(capsys, tmp_path):
    rc, _, err = irc_cli(capsys, "compile", tmp_path / "none.onnx", "-o", tmp_path / "m.bin")
    assert rc == 1 and err == f"irc: error: model file '{tmp_path / 'none.onnx'}' does not exist\n"
    with pytest.raises(irc.IrcError, match="does not exist"):
        main(["--debug", "compile", str(tmp_path / "none.onnx"), "-o", str(tmp_path / "m.bin")])
    with pytest.raises(irc.IrcError, match="No such file"):
        main(["info", str(tmp_path / "none.bin"), "--debug"])


@pytest.mark.parametrize("argv", [
    [], ["frobnicate"], ["compile", "m.onnx"], ["compile", "m.onnx", "-o", "m.bin", "-O7"],
    ["compile", "m.onnx", "-o", "m.bin", "--print-after-all", "--print-after", "dce"],
    ["dump", "m.onnx", "--stage", "parsed"], ["run"], ["dump", "m.onnx", "--format", "svg"],
    ["verify"], ["verify", "m.onnx", "--tol", "x"], ["profile", "m.bin", "--runs", "0"],
])
def test_usage_errors_exit_2(capsys, argv):
    rc, _, err = irc_cli(capsys, *argv)
    assert rc == 2 and "usage: irc" in err


# -- run --------------------------------------------------------------------------------------------------

def test_run_prints_a_summary_of_each_output(capsys, bin_path, tmp_path):
    np.save(tmp_path / "x.npy", X)
    rc, out, _ = irc_cli(capsys, "run", bin_path, "--input", f"x={tmp_path / 'x.npy'}")
    assert rc == 0
    y, s = out.splitlines()
    assert y.startswith("y: f32[2, 3]  min 0  max 7  mean 3  [0.5, 0.0, 4.0, 3.5, 3.0, 7.0]")
    assert s.startswith("s: i64[2]  min 2  max 3")


def test_run_writes_npz(capsys, bin_path, tmp_path):
    np.savez(tmp_path / "in.npz", x=X[:1])
    rc, out, _ = irc_cli(capsys, "run", bin_path, "--inputs", tmp_path / "in.npz", "-o", tmp_path / "out.npz")
    assert rc == 0 and "wrote" in out
    with np.load(tmp_path / "out.npz") as got:
        assert got.files == ["y", "s"]
        np.testing.assert_array_equal(got["y"], X[:1] + W)
        np.testing.assert_array_equal(got["s"], [1, 3])


def test_run_random_and_onnx_input(capsys, onnx_path):
    rc, out, _ = irc_cli(capsys, "run", onnx_path, "--random")
    assert rc == 0 and out.splitlines()[0].startswith("y: f32[1, 3]")


@pytest.mark.parametrize("make_args, message", [
    (lambda d: [], "missing input(s) ['x']"),
    (lambda d: ["--input", "x"], "expected NAME=FILE.npy"),
    (lambda d: ["--input", f"x={d / 'none.npy'}"], "--input x: cannot read"),
    (lambda d: ["--inputs", d / "none.npz"], "--inputs: cannot read"),
    (lambda d: ["--inputs", d / "x64.npy"], "is not an .npz file"),
    (lambda d: ["--input", f"x={d / 'x64.npy'}"], "input 'x': expected dtype f32"),
    (lambda d: ["--input", f"z={d / 'x64.npy'}", "--random"], "unknown input(s) ['z']"),
    (lambda d: ["--input", f"x={d / 'x4.npy'}"], "input 'x': expected shape ['batch', 3], got [2, 4]"),
    (lambda d: ["--input", f"x={d / 'x1.npy'}"], "input 'x': expected shape ['batch', 3] (rank 2), got [3] (rank 1)"),
])
def test_run_reported_errors(capsys, bin_path, tmp_path, make_args, message):
    np.save(tmp_path / "x64.npy", X.astype(np.float64))
    np.save(tmp_path / "x4.npy", np.zeros((2, 4), np.float32))
    np.save(tmp_path / "x1.npy", np.zeros(3, np.float32))
    rc, _, err = irc_cli(capsys, "run", bin_path, *make_args(tmp_path))
    assert rc == 1 and err.startswith("irc: error: ") and message in err and "Traceback" not in err


# -- dump -------------------------------------------------------------------------------------------------

def test_dump_stages(capsys, onnx_path, bin_path):
    rc, imported, _ = irc_cli(capsys, "dump", onnx_path, "--stage", "import")
    assert rc == 0 and imported.startswith("graph main(%x: f32[batch, 3]) {") and "= add(%x, %0)" in imported
    rc, optimized, _ = irc_cli(capsys, "dump", onnx_path)
    assert rc == 0 and optimized == irc_cli(capsys, "dump", bin_path)[1]
    assert optimized == irc.ir.print_graph(irc.load(bin_path).graph)
    rc, lowered, _ = irc_cli(capsys, "dump", bin_path, "--stage", "lowered")
    assert rc == 0 and "graph main(%x: f32[1, 3])" in lowered
    assert 'kernel="elementwise"' in lowered and "= const()" in lowered


def test_dump_options_apply_to_onnx(capsys, onnx_path):
    rc, out, _ = irc_cli(capsys, "dump", onnx_path, "-O0", "--disable-pass", "dce")
    assert rc == 0 and "add(" in out


@pytest.mark.parametrize("args, message", [
    (["--stage", "import"], "holds the optimized graph"),
    (["-O1"], "apply to .onnx models only"),
    (["--format", "onnx"], "give it with -o FILE.onnx"),
])
def test_dump_reported_errors(capsys, bin_path, args, message):
    rc, _, err = irc_cli(capsys, "dump", bin_path, *args)
    assert rc == 1 and message in err


# -- info -------------------------------------------------------------------------------------------------

def test_info(capsys, bin_path):
    rc, out, _ = irc_cli(capsys, "info", bin_path)
    assert rc == 0
    size = os.path.getsize(bin_path)
    ops = irc.load(bin_path).graph.op_counts()
    assert ops["add"] == 1
    for line in [f"file:            {bin_path} ({size} bytes)", "format version:  1",
                 f"irc version:     {irc.__version__}", "target:          cpu",
                 "options:         disable_passes=[], opt_level=2", "inputs:\n  x: f32[batch, 3]\n",
                 "outputs:\n  y: f32[batch, 3]\n  s: i64[2]\n", f"nodes:           {sum(ops.values())} (+ ",
                 *(f"\n  {op:<20} {n}\n" for op, n in ops.items()), "constant bytes:  "]:
        assert line in out
    assert int(out.split("constant bytes:  ")[1]) >= W.nbytes


def test_info_reported_errors(capsys, onnx_path, bin_path, tmp_path):
    rc, _, err = irc_cli(capsys, "info", onnx_path)
    assert rc == 1 and "not an irc model" in err
    raw = bytearray(open(bin_path, "rb").read())
    raw[-1] ^= 0xFF
    (tmp_path / "bad.bin").write_bytes(bytes(raw))
    rc, _, err = irc_cli(capsys, "info", tmp_path / "bad.bin")
    assert rc == 1 and "checksum mismatch" in err and "byte offset" in err


# -- InferenceSession -----------------------------------------------------------------------------------

@pytest.mark.slow
def test_inference_session_matches_onnxruntime(zoo):
    ort = pytest.importorskip("onnxruntime")
    path = zoo.path("resnet18")
    feeds = zoo.inputs("resnet18", batch=1)
    ref = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    sess = irc.InferenceSession(path)
    for mine, theirs in [(sess.get_inputs(), ref.get_inputs()), (sess.get_outputs(), ref.get_outputs())]:
        assert [(a.name, a.shape, a.type) for a in mine] == [(a.name, a.shape, a.type) for a in theirs]
    assert sess.get_inputs()[0].name == ref.get_inputs()[0].name == list(feeds)[0]
    got, want = sess.run(None, feeds), ref.run(None, feeds)
    assert len(got) == len(want) == 1
    assert_close(got[0], want[0])
    name = ref.get_outputs()[0].name
    np.testing.assert_array_equal(sess.run([name], feeds)[0], got[0])
    with pytest.raises(irc.IrcError, match="unknown output"):
        sess.run(["nope"], feeds)


# -- docs -----------------------------------------------------------------------------------------------

def test_cli_docs_name_every_command_and_flag():
    import argparse
    from irc.cli import build_parser
    doc = open(os.path.join(os.path.dirname(__file__), "..", "docs", "cli.md")).read()
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = []
    for name, parser in sub.choices.items():
        section = doc.split(f"## irc {name}\n")[1].split("\n## ")[0] if f"## irc {name}\n" in doc else ""
        missing += [f"{name} (no section)"] if not section else []
        missing += [f"{name} {opt}" for a in parser._actions for opt in a.option_strings
                    if opt not in ("-h", "--help", "--debug") and opt not in section]
    assert not missing, missing


# -- processes --------------------------------------------------------------------------------------------

def _irc_process(*argv, env=None):
    return subprocess.run([sys.executable, "-m", "irc.cli", *map(str, argv)], capture_output=True, text=True,
                          env=env, timeout=300)


def test_module_entry_point_exit_status(bin_path, tmp_path):
    p = _irc_process("info", bin_path)
    assert p.returncode == 0 and "format version:  1" in p.stdout
    p = _irc_process("info", tmp_path / "none.bin")
    assert p.returncode == 1 and p.stderr.startswith("irc: error: ") and len(p.stderr.splitlines()) == 1
    p = _irc_process("info")
    assert p.returncode == 2 and "usage: irc" in p.stderr


_COUNT_JIT = """
import sys, numpy as np, irc
from irc.runtime.cache import JitCompiles
m = irc.load(sys.argv[1])
with JitCompiles() as jit:
    for batch in (1, 3):
        m.run({"x": np.ones((batch, 3), np.float32)})
print(len(jit.names))
"""


def test_compile_warms_the_kernel_cache_for_later_processes(onnx_path, tmp_path):
    """After ``irc compile`` a new process runs the model (batch 1 and 3) without compiling a kernel;
    without the warm-up (a fresh cache) the same runs compile some: the model does need numba kernels."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}

    def jit_count(cache, *compile_flags):
        env["IRC_CACHE_DIR"] = str(tmp_path / cache)
        out = tmp_path / f"{cache}.bin"
        assert _irc_process("compile", onnx_path, "-o", out, *compile_flags, env=env).returncode == 0
        p = subprocess.run([sys.executable, "-c", _COUNT_JIT, str(out)], capture_output=True, text=True,
                           env=env, timeout=300)
        assert p.returncode == 0, p.stderr
        return int(p.stdout)

    assert jit_count("cold", "--no-warm") > 0
    assert jit_count("warm") == 0
    assert (tmp_path / "cold.bin").read_bytes() == (tmp_path / "warm.bin").read_bytes()  # deterministic
