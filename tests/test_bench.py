"""``irc bench``, tools/bench.py and the threading policy: the fields are there and the settings reach
both pools (no timing assertions: this machine's load makes timings noise)."""
import json
import os
import subprocess
import sys

import numba
import numpy as np
import pytest
from onnx import helper

import irc
from irc.cli import main
from irc.debug.bench import max_error
from irc.runtime import threads
from tests.util import graph_model, model_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_model():
    """y = relu(x @ w) with a symbolic batch: one BLAS call and one numba kernel."""
    w = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             helper.make_node("Relu", ["h"], ["y"], name="relu")]
    return graph_model("tiny", nodes, {"x": ["batch", 4]}, {"y": ["batch", 3]}, {"w": w})


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory):
    return model_file(tmp_path_factory, "bench", tiny_model())


@pytest.fixture
def restore_threads():
    yield
    threads.set_num_threads(None)


def test_cli_bench_prints_every_field(onnx_path, capsys, restore_threads):
    assert main(["bench", onnx_path, "--vs", "onnxruntime", "--runs", "2", "--blocks", "2", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    for field in ("model:", "threads:         irc 1", "onnxruntime intra-op 1", "BLAS:", "OPENBLAS_CORETYPE=",
                  "latency:", "ratio irc/onnxruntime", "max error:", "compile:", "load + first result",
                  "peak RSS"):
        assert field in out, field
    assert out.count("new process:") == 2  # irc and onnxruntime


def test_cli_bench_json(onnx_path, capsys, restore_threads):
    assert main(["bench", onnx_path, "--runs", "1", "--blocks", "1", "--batch", "3", "--threads", "1", "--json",
                 "--disable-pass", "fuse"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["batch"] == 3 and r["threads"]["threads"] == 1 and r["threads"]["onnxruntime"] == 1
    assert r["disabled_passes"] == ["fuse"]
    assert r["max_error"] < 1e-5
    for key in ("irc_ms", "ort_ms", "ratio", "compile_s", "first_run_s"):
        assert r[key] > 0, key
    for proc in ("irc_process", "ort_process"):
        p = r[proc]
        assert p["load_first_s"] >= p["first_s"] > 0
        assert p["peak_rss_mib"] >= p["base_rss_mib"] > 0


def test_cli_bench_usage_errors(onnx_path, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", onnx_path, "--runs", "0"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["bench", onnx_path, "--vs", "tensorflow"])
    assert e.value.code == 2
    assert main(["bench", onnx_path, "--disable-pass", "no-such-pass"]) == 1
    assert "unknown pass name(s) 'no-such-pass'" in capsys.readouterr().err
    art = str(tmp_path / "tiny.bin")
    irc.compile(onnx_path).save(art)
    assert main(["bench", art]) == 1
    assert "artifact" in capsys.readouterr().err


def test_tools_bench_table(onnx_path):
    p = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "bench.py"), onnx_path, "--runs", "1",
                        "--blocks", "1", "--threads", "1", "--markdown"], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("| model | irc ms | onnxruntime ms")
    row = [c.strip() for c in lines[2].split("|")]
    assert row[1] == "tiny" and len(row) == 10
    assert "threads:         irc 1" in p.stdout


def test_max_error():
    ref = [np.array([10.0, -20.0], np.float32), np.array([1, 2])]
    assert max_error([np.array([10.0, -19.0], np.float32), np.array([1, 2])], ref) == pytest.approx(1 / 20)
    assert max_error([ref[0], np.array([1, 3])], ref) == 1.0
    assert max_error([np.array([0.5], np.float32)], [np.array([0.25], np.float32)]) == 0.25  # max(1, |ref|)


# ---------------------------------------------------------------------------------------------- the policy

def test_set_num_threads_reaches_numba_and_runs_leave_blas_alone(onnx_path, restore_threads):
    """The count goes to numba's pool; BLAS's own pool is left as the user had it once a run is over."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    m = irc.compile(onnx_path)
    blas_threads = lambda: [i["num_threads"] for i in threadpoolctl.threadpool_info()  # noqa: E731
                            if i["user_api"] == "blas"]
    before = blas_threads()
    irc.set_num_threads(1)
    assert irc.get_num_threads() == 1
    m.run({"x": np.ones((2, 4), np.float32)})
    assert numba.get_num_threads() == 1 and blas_threads() == before
    irc.set_num_threads(None)
    m.run({"x": np.ones((2, 4), np.float32)})
    assert numba.get_num_threads() == threads.get_num_threads() == numba.config.NUMBA_NUM_THREADS


def test_env_var_and_bad_counts(monkeypatch, restore_threads):
    monkeypatch.setenv(threads.ENV_VAR, "1")
    assert irc.get_num_threads() == 1
    irc.set_num_threads(numba.config.NUMBA_NUM_THREADS + 5)  # the API wins, capped at numba's pool
    assert irc.get_num_threads() == numba.config.NUMBA_NUM_THREADS
    monkeypatch.setenv(threads.ENV_VAR, "zero")
    irc.set_num_threads(None)
    with pytest.raises(irc.IrcError, match=threads.ENV_VAR):
        irc.get_num_threads()
    for bad in (0, -1, "x"):
        with pytest.raises(irc.IrcError, match="positive number of threads"):
            irc.set_num_threads(bad)


def test_without_tbb_openmp_workers_sleep(monkeypatch):
    """Without TBB, irc asks numba's OpenMP workers to sleep when idle, unless the user chose otherwise."""
    monkeypatch.setattr(threads, "tbb_installed", lambda: False)
    monkeypatch.delenv("NUMBA_THREADING_LAYER", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    threads.configure_env()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    threads.configure_env()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.setattr(threads, "tbb_installed", lambda: True)
    threads.configure_env()
    assert "OMP_WAIT_POLICY" not in os.environ


def test_numba_runs_on_tbb_where_installed():
    """irc's kernels run on numba's TBB layer when the tbb runtime is installed (a dependency on x86-64)."""
    if not threads.tbb_installed():
        pytest.skip("the tbb package is not installed on this platform")
    code = ("import numpy as np, irc; from irc.kernels.cpu.gemm import gemm_parallel; import numba; "
            "a = np.ones((256, 256), np.float32); gemm_parallel(a, a, a.copy(), 0.0, 2); "
            "print(numba.threading_layer())")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert p.stdout.split()[-1:] == ["tbb"], p.stderr
