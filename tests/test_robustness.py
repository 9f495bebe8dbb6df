"""Robustness and safety: hostile or broken models and feeds, size limits, threads, determinism, the kernel
cache under concurrency and damage, and an audit of code-loading calls in irc's sources."""
import io
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import threading
import tokenize

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import irc
from irc.errors import InputError, IrcError
from irc.frontend import import_onnx
from irc.limits import ENV_VAR, max_tensor_bytes

F, I64 = TensorProto.FLOAT, TensorProto.INT64
ROOT = pathlib.Path(__file__).resolve().parent.parent


def model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def vi(name, shape, dtype=F):
    return helper.make_tensor_value_info(name, dtype, shape)


def out(name):
    return helper.make_tensor_value_info(name, TensorProto.UNDEFINED, None)


def init(value, name):
    return numpy_helper.from_array(np.asarray(value), name)


def small_model():
    """Conv -> Relu -> Flatten -> Gemm over a symbolic batch: BLAS, a numba kernel and a view."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "w2"], ["y"], name="fc", transB=1)]
    inits = [init(rng.standard_normal((4, 2, 3, 3)).astype(np.float32), "w"),
             init(rng.standard_normal(4).astype(np.float32), "b"),
             init(rng.standard_normal((3, 4 * 5 * 5)).astype(np.float32), "w2")]
    return model(nodes, [vi("x", ["N", 2, 5, 5])], [out("y")], inits)


# -- the importer: broken models ------------------------------------------------------------------------

def test_truncated_model_bytes_are_an_error_at_every_cut():
    data = small_model().SerializeToString()
    for cut in range(0, len(data), max(1, len(data) // 40)):
        with pytest.raises(IrcError):
            irc.compile(data[:cut])


CONTRADICTIONS = {
    "conv weight of rank 3": (model([helper.make_node("Conv", ["x", "w"], ["y"], name="c")], [vi("x", [1, 3, 8, 8])],
                                    [out("y")], [init(np.zeros((4, 3, 3), np.float32), "w")]),
                              "node 'c' (Conv): conv2d needs 4-D input and weight"),
    "conv weight channels": (model([helper.make_node("Conv", ["x", "w"], ["y"], name="c")], [vi("x", [1, 3, 8, 8])],
                                   [out("y")], [init(np.zeros((4, 5, 3, 3), np.float32), "w")]),
                             "node 'c' (Conv): conv2d input has 3 channels"),
    "matmul inner dims": (model([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [vi("x", [2, 3])],
                                [out("y")], [init(np.zeros((4, 5), np.float32), "w")]),
                          "node 'mm' (MatMul): matmul of f32[2, 3] and f32[4, 5]"),
    "add of incompatible shapes": (model([helper.make_node("Add", ["x", "w"], ["y"], name="a")], [vi("x", [2, 3])],
                                         [out("y")], [init(np.zeros(4, np.float32), "w")]),
                                   "node 'a' (Add)"),
}


@pytest.mark.parametrize("m,msg", CONTRADICTIONS.values(), ids=CONTRADICTIONS.keys())
def test_initializer_contradicting_its_use_names_the_node(m, msg):
    with pytest.raises(IrcError) as e:
        import_onnx(m)
    assert msg in str(e.value)


def test_unsupported_opset_of_a_used_domain_is_named():
    m = model([helper.make_node("Relu", ["x"], ["y"], name="r")], [vi("x", [2])], [out("y")], opset=3)
    with pytest.raises(IrcError, match="opset 3 is not supported"):
        irc.compile(m)


# -- size limits ----------------------------------------------------------------------------------------

def _huge_initializer():
    t = TensorProto(name="w", data_type=F, dims=[2 ** 20, 2 ** 20], raw_data=b"\0" * 16)
    return model([helper.make_node("Relu", ["w"], ["y"], name="r")], [], [out("y")], [t])


def _range_model(limit, delta):
    return model([helper.make_node("Range", ["a", "b", "c"], ["y"], name="rg")], [], [out("y")],
                 [init(np.float32(0), "a"), init(np.float32(limit), "b"), init(np.float32(delta), "c")])


def _fill_model_of(shape):
    return model([helper.make_node("ConstantOfShape", ["s"], ["y"], name="fill")], [], [out("y")],
                 [init(np.array(shape, np.int64), "s")])


HUGE = {
    "initializer": (_huge_initializer(), "initializer 'w': shape [1048576, 1048576]"),
    "ConstantOfShape": (_fill_model_of([2 ** 20, 2 ** 20]), "node 'fill' (ConstantOfShape): output 'y'"),
    "Expand": (model([helper.make_node("Expand", ["x", "s"], ["y"], name="ex")], [vi("x", [1])], [out("y")],
                     [init(np.array([2 ** 40], np.int64), "s")]), "node 'ex' (Expand): output 'y'"),
    "Tile": (model([helper.make_node("Tile", ["x", "r"], ["y"], name="ti")], [vi("x", [4])], [out("y")],
                   [init(np.array([2 ** 40], np.int64), "r")]), "node 'ti' (Tile): output 'y'"),
    "Range": (_range_model(1e12, 1), "node 'rg' (Range): output 'y'"),
    "Constant": (model([helper.make_node("Constant", [], ["y"], name="k",
                                         value=_huge_initializer().graph.initializer[0])], [], [out("y")]),
                 "node 'k' (Constant)"),
}


@pytest.mark.parametrize("m,msg", HUGE.values(), ids=HUGE.keys())
def test_sizes_above_the_limit_are_refused_before_allocating(m, msg):
    with pytest.raises(IrcError) as e:
        irc.compile(m)
    assert msg in str(e.value) and "more than the limit of 4294967296 bytes" in str(e.value)
    assert ENV_VAR in str(e.value)


BAD_SIZES = {
    "negative ConstantOfShape dim": (_fill_model_of([-1, 3]), "node 'fill' (ConstantOfShape): invalid dim -1"),
    "negative Tile repeat": (model([helper.make_node("Tile", ["x", "r"], ["y"], name="ti")], [vi("x", [4])], [out("y")],
                                   [init(np.array([-1], np.int64), "r")]), "node 'ti' (Tile): invalid dim"),
    "Range to NaN": (_range_model(np.nan, 1), "node 'rg' (Range)"),
    "Range of step 0": (_range_model(5, 0), "node 'rg' (Range): range delta is 0"),
}


@pytest.mark.parametrize("m,msg", BAD_SIZES.values(), ids=BAD_SIZES.keys())
def test_impossible_sizes_name_the_node(m, msg):
    with pytest.raises(IrcError, match=re.escape(msg)):
        irc.compile(m)


def test_the_limit_is_set_by_an_environment_variable(monkeypatch):
    assert max_tensor_bytes() == 4 << 30
    monkeypatch.setenv(ENV_VAR, "4000")
    with pytest.raises(IrcError, match="needs 4004 bytes, more than the limit of 4000"):
        irc.compile(_fill_model_of([1001]))
    assert irc.compile(_fill_model_of([1000])).run({})["y"].shape == (1000,)
    w = init(np.zeros(1001, np.float32), "w")
    with pytest.raises(IrcError, match="initializer 'w'"):
        irc.compile(model([helper.make_node("Relu", ["w"], ["y"], name="r")], [], [out("y")], [w]))
    monkeypatch.setenv(ENV_VAR, "lots")
    with pytest.raises(IrcError, match="not a number of bytes"):
        irc.compile(_fill_model_of([1]))


def test_external_data_size_is_checked_before_it_is_read(tmp_path, monkeypatch):
    w = np.arange(2048, dtype=np.float32)
    m = model([helper.make_node("Relu", ["w"], ["y"], name="r")], [], [out("y")], [init(w, "w")])
    path = tmp_path / "ext.onnx"
    onnx.save_model(m, str(path), save_as_external_data=True, location="w.bin", size_threshold=0)
    np.testing.assert_array_equal(irc.compile(str(path)).run({})["y"], w)
    (tmp_path / "w.bin").unlink()  # the limit is met before the missing file could be noticed
    monkeypatch.setenv(ENV_VAR, "4096")
    with pytest.raises(IrcError, match=r"initializer 'w' \(external data 'w.bin'\): shape \[2048\]"):
        irc.compile(str(path))


@pytest.mark.parametrize("location,msg", [("../w.bin", "points outside the directory"),
                                          ("/etc/passwd", "should be a relative path")])
def test_external_data_outside_the_model_folder_is_refused(tmp_path, location, msg):
    m = model([helper.make_node("Relu", ["w"], ["y"], name="r")], [], [out("y")], [init(np.ones(16, np.float32), "w")])
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "m.onnx"
    onnx.save_model(m, str(path), save_as_external_data=True, location="w.bin", size_threshold=0)
    (tmp_path / "sub" / "w.bin").rename(tmp_path / "w.bin")
    proto = onnx.load(str(path), load_external_data=False)
    for entry in proto.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = location
    onnx.save(proto, str(path))
    with pytest.raises(IrcError, match=msg):
        irc.compile(str(path))


def test_sizes_bound_at_run_time_are_checked_before_running():
    """ConstantOfShape(concat(shape(x), [2**20])): known only once the batch is bound."""
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Concat", ["s", "k"], ["s2"], name="cat", axis=0),
             helper.make_node("ConstantOfShape", ["s2"], ["y"], name="fill")]
    m = irc.compile(model(nodes, [vi("x", ["N"])], [out("y")], [init(np.array([2 ** 20], np.int64), "k")]))
    assert m.run({"x": np.zeros(3, np.float32)})["y"].shape == (3, 2 ** 20)
    with pytest.raises(IrcError, match="more than the limit"):
        m.run({"x": np.zeros(2 ** 11, np.float32)})


# -- run-time feeds ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_inputs():
    """y = a + b over [batch, 3] each, z = relu(c) over [2, 3]: symbolic dims shared by two inputs."""
    nodes = [helper.make_node("Add", ["a", "b"], ["y"], name="add"), helper.make_node("Relu", ["c"], ["z"], name="r")]
    return irc.compile(model(nodes, [vi("a", ["batch", 3]), vi("b", ["batch", 3]), vi("c", [2, 3])],
                             [out("y"), out("z")]))


def _feeds(batch_a=2, batch_b=2, **over):
    f = {"a": np.ones((batch_a, 3), np.float32), "b": np.ones((batch_b, 3), np.float32),
         "c": np.ones((2, 3), np.float32)}
    f.update(over)
    return {k: v for k, v in f.items() if v is not None}


BAD_FEEDS = {
    "missing": (_feeds(c=None), r"missing input\(s\) \['c'\]"),
    "unknown": (_feeds(d=np.ones(1, np.float32)), r"unknown input\(s\) \['d'\]"),
    "wrong dtype": (_feeds(c=np.ones((2, 3))), "input 'c': expected dtype f32 .* got float64"),
    "wrong rank": (_feeds(c=np.ones((2, 3, 1), np.float32)), r"input 'c': expected shape \[2, 3\] \(rank 2\)"),
    "wrong size": (_feeds(c=np.ones((2, 4), np.float32)), r"input 'c': .* \(axis 1 must be 3\)"),
    "symbolic dim bound twice": (_feeds(batch_a=3, batch_b=4), "input 'b': dim 'batch' is 4 on axis 0, but 3 on "
                                                               "input 'a'"),
    "not an array": (_feeds(c=object()), "input 'c'"),
}


@pytest.mark.parametrize("feeds,msg", BAD_FEEDS.values(), ids=BAD_FEEDS.keys())
def test_bad_feeds_are_input_errors_naming_the_input(two_inputs, feeds, msg):
    with pytest.raises(InputError, match=msg):
        two_inputs.run(feeds)


def test_feeds_that_are_not_a_dict_and_consistent_symbols(two_inputs):
    with pytest.raises(InputError, match="feeds must be a dict"):
        two_inputs.run([np.ones((2, 3), np.float32)])
    res = two_inputs.run(_feeds(batch_a=5, batch_b=5))
    np.testing.assert_array_equal(res["y"], np.full((5, 3), 2, np.float32))
    square = irc.compile(model([helper.make_node("Relu", ["x"], ["y"], name="r")], [vi("x", ["n", "n"])], [out("y")]))
    with pytest.raises(InputError, match="dim 'n' is 3 on axis 1, but 2 on input 'x'"):
        square.run({"x": np.ones((2, 3), np.float32)})


# -- threads ----------------------------------------------------------------------------------------------

def run_in_threads(m, feed_sets, repeats=2):
    """Each feed set in its own thread, all started together, each run ``repeats`` times: results by index."""
    results, errors = [None] * len(feed_sets), []
    barrier = threading.Barrier(len(feed_sets))

    def work(i):
        try:
            barrier.wait()
            outs = [m.run(feed_sets[i]) for _ in range(repeats)]
            results[i] = outs
        except BaseException as e:  # reported by the caller
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(feed_sets))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def check_threads_match_serial(m, feed_sets, rtol, repeats=2):
    serial = [m.run(f) for f in feed_sets]
    for i, outs in enumerate(run_in_threads(m, feed_sets, repeats)):
        for res in outs:
            assert list(res) == list(serial[i])
            for k in res:
                np.testing.assert_allclose(res[k], serial[i][k], rtol=rtol, atol=rtol, err_msg=f"thread {i}, {k}")


def test_one_small_model_from_eight_threads():
    """Different inputs and batch sizes per thread: each plan is built while others run."""
    m = irc.compile(small_model())
    rng = np.random.default_rng(1)
    feeds = [{"x": rng.standard_normal((1 + i % 4, 2, 5, 5)).astype(np.float32)} for i in range(8)]
    check_threads_match_serial(m, feeds, 1e-5)
    fresh = irc.compile(small_model())  # no plan built yet: eight threads race to build them
    check_threads_match_serial(fresh, feeds, 1e-5)


@pytest.mark.slow
def test_resnet18_from_eight_threads(zoo):
    m = irc.compile(zoo.path("resnet18"))
    feeds = [zoo.inputs("resnet18", 1, seed=i) for i in range(8)]
    check_threads_match_serial(m, feeds, 1e-4, repeats=1)


# -- determinism --------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_compiling_resnet18_twice_gives_identical_artifacts(zoo, tmp_path):
    for name in ("a.bin", "b.bin"):
        irc.compile(zoo.path("resnet18")).save(tmp_path / name)
    assert (tmp_path / "a.bin").read_bytes() == (tmp_path / "b.bin").read_bytes()
    manifest = irc.load(tmp_path / "a.bin").artifact.manifest
    assert manifest["irc_version"] == irc.__version__
    assert manifest["options"] == {"opt_level": 2, "disable_passes": []}


def test_the_manifest_records_the_options(tmp_path):
    irc.compile(small_model(), opt_level=1, disable_passes=["cse"]).save(tmp_path / "m.bin")
    assert irc.load(tmp_path / "m.bin").artifact.manifest["options"] == {"opt_level": 1, "disable_passes": ["cse"]}


# -- the kernel cache ----------------------------------------------------------------------------------------

CACHE_SCRIPT = r"""
import json, sys
import numpy as np
import irc
from irc.runtime.cache import JitCompiles
from onnx import TensorProto, helper, numpy_helper
w = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
nodes = [helper.make_node("Add", ["x", "w"], ["a"], name="add"), helper.make_node("Relu", ["a"], ["r"], name="relu"),
         helper.make_node("Sigmoid", ["r"], ["y"], name="sig")]
g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [numpy_helper.from_array(w, "w")])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
with JitCompiles() as jc:
    y = irc.compile(m).run({"x": np.arange(12, dtype=np.float32).reshape(3, 4) / 4 - 1})["y"]
print(json.dumps({"y": y.tolist(), "compiled": len(jc.names)}))
"""


def _cache_run(cache, n=1):
    """Run the tiny model in ``n`` processes at once with kernel cache ``cache``: their JSON reports."""
    env = dict(os.environ, IRC_CACHE_DIR=str(cache))
    env.pop("NUMBA_CACHE_DIR", None)
    procs = [subprocess.Popen([sys.executable, "-c", CACHE_SCRIPT], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(n)]
    reports = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr
        reports.append(json.loads(stdout.strip().splitlines()[-1]))
    return reports


def _expected():
    x = np.arange(12, dtype=np.float32).reshape(3, 4) / 4 - 1
    r = np.maximum(x + np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4), 0)
    return 1 / (1 + np.exp(-r))


def _garble(path: pathlib.Path):
    """Data files get one byte flipped in the middle (pickle framing intact), the others are truncated."""
    data = bytearray(path.read_bytes())
    if path.suffix == ".nbc":
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    else:
        path.write_bytes(bytes(data[:len(data) // 2]) + b"\x80\x04garbage")


def test_kernel_cache_survives_concurrent_compiles_and_damage(tmp_path):
    cache = tmp_path / "cache"
    for r in _cache_run(cache, n=2):  # two processes fill one empty cache at once
        np.testing.assert_allclose(r["y"], _expected(), rtol=1e-6)
    files = [p for p in cache.rglob("*") if p.is_file()]
    kinds = {p.suffix for p in files}
    assert {".py", ".nbi", ".nbc"} <= kinds, kinds
    assert not [p for p in files if ".tmp" in p.name]  # no temporary left behind
    assert {p.name[:-len(".sha256")] for p in files if p.suffix == ".sha256"} == \
        {p.name for p in files if p.suffix in (".nbi", ".nbc")}  # every numba file has its digest
    (again,) = _cache_run(cache)
    assert again["compiled"] == 0 and np.allclose(again["y"], _expected(), rtol=1e-6)  # entries are sound
    for p in files:  # every index, data and generated source file damaged: all rebuilt, none trusted
        _garble(p)
    (rebuilt,) = _cache_run(cache)
    assert rebuilt["compiled"] > 0
    np.testing.assert_allclose(rebuilt["y"], _expected(), rtol=1e-6)
    assert all(b"garbage" not in p.read_bytes() for p in cache.rglob("*.py"))


# -- code loading: nothing driven by a file's contents ----------------------------------------------------

BANNED_NAMES = {"pickle", "cPickle", "marshal", "shelve", "dill", "eval", "exec", "__import__", "importlib",
                "exec_module", "import_module", "allow_pickle", "load_module", "run_path", "compile_command"}

# (file, name) -> why it is safe; every use of a banned name in irc/ and kernels/ must be listed here
REVIEWED = {
    ("kernels/cpu/codegen.py", "importlib"): "imports generated kernel source that irc wrote into its own cache "
                                              "from whitelisted templates and numbers (literal() refuses the rest)",
    ("kernels/cpu/codegen.py", "exec_module"): "the same import of generated kernel source",
    ("kernels/cpu/codegen.py", "load_module"): "the function that performs that import (a name, not a call of "
                                               "importlib's deprecated load_module)",
    ("kernels/cpu/elementwise.py", "load_module"): "calls codegen.load_module with kernel source it built from "
                                                   "its op templates",
    ("kernels/cuda/elementwise.py", "load_module"): "the same, for the CUDA elementwise kernels",
    ("irc/cli.py", "allow_pickle"): "np.load/np.save with allow_pickle=False: refuses pickled .npy/.npz input",
}


def banned_uses():
    """(file, name) for each banned name used as code (strings and comments do not count)."""
    found = set()
    for folder in ("irc", "kernels"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for tok in tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline):
                if tok.type == tokenize.NAME and tok.string in BANNED_NAMES:
                    found.add((rel, tok.string))
    return found


def test_code_loading_calls_are_all_reviewed():
    found = banned_uses()
    unreviewed = sorted(found - set(REVIEWED))
    assert not unreviewed, f"uses of {BANNED_NAMES & {n for _, n in unreviewed}} need a review: {unreviewed}"
    stale = sorted(set(REVIEWED) - found)
    assert not stale, f"reviewed uses that no longer exist: {stale}"


def test_numbers_are_the_only_model_values_in_generated_code():
    from irc.kernels.cpu.codegen import literal
    assert literal(1.5, "f32") == "np.float32(1.5)" and literal(float("-inf"), "f64") == "np.float64(-np.inf)"
    for hostile in ("__import__('os')", b"1", [1], None, {"a": 1}, np.array([1.0])):
        with pytest.raises(IrcError):
            literal(hostile, "f32")


PAYLOAD = "__import__('pathlib').Path('{}').touch()"


def test_strings_in_an_artifact_never_reach_code(tmp_path):
    """Every string in the saved graph text (attributes, names) replaced by code, one at a time, with a valid
    checksum: each file is refused or runs unchanged, the code never runs and never lands in the cache."""
    from tests.test_fuzz_artifact import fuzz_model, pack, split
    irc.compile(fuzz_model()).save(tmp_path / "m.bin")
    raw = (tmp_path / "m.bin").read_bytes()
    manifest, data = split(raw)
    text = manifest["graph"]
    feeds = {"x": np.ones((1, 3, 8, 8), np.float32)}
    expected = irc.load(tmp_path / "m.bin").run(feeds)
    witness = tmp_path / "pwned"
    strings = list(re.finditer(r'"[^"]*"', text))
    assert len(strings) >= 4
    for mt in strings:
        payload = json.dumps(PAYLOAD.format(witness))
        edited = dict(manifest, graph=text[:mt.start()] + payload + text[mt.end():])
        (tmp_path / "e.bin").write_bytes(pack(raw, json.dumps(edited).encode(), data))
        try:
            res = irc.load(tmp_path / "e.bin").run(feeds)
        except IrcError:
            continue
        assert all(np.array_equal(res[k], expected[k]) for k in expected), mt.group()
    assert not witness.exists()
    gen = pathlib.Path(os.environ["IRC_CACHE_DIR"]) / "gen"
    assert not [p for p in gen.glob("*.py") if "pathlib" in p.read_text()]


def test_kernel_cache_folder_follows_the_kernel_sources(tmp_path):
    """numba validates a cached kernel against its own file only, though callees from other files are
    compiled into it: irc's numba cache folder is named by a digest of all kernel sources, so editing any
    of them (here the BLAS wrapper the GEMM kernels inline) gives a fresh folder."""
    from irc.runtime.cache import kernel_fingerprint
    kernels = tmp_path / "kernels"
    shutil.copytree(ROOT / "kernels", kernels, ignore=shutil.ignore_patterns("__pycache__"))
    before = kernel_fingerprint(kernels)
    assert before == kernel_fingerprint(ROOT / "kernels")
    with open(kernels / "cpu" / "blas.py", "a") as f:
        f.write("\n# changed\n")
    assert kernel_fingerprint(kernels) != before
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["IRC_CACHE_DIR"] = str(tmp_path / "cache")
    p = subprocess.run([sys.executable, "-c", "import os, irc; print(os.environ['NUMBA_CACHE_DIR'])"],
                       capture_output=True, text=True, env=env, cwd=ROOT)
    assert p.stdout.strip() == str(tmp_path / "cache" / "numba" / before), p.stderr
