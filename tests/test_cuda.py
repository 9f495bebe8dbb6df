"""The CUDA target.

numba reads NUMBA_ENABLE_CUDASIM once, when it is first imported, and this session imports numba for
the CPU kernels; so the CUDA tests proper (tests/cuda_sim/cuda_cases.py) run in a pytest process of
their own: on numba's CUDA simulator always, and on the real GPU where there is one. This file also
compiles every model of the zoo and the light_* models for CUDA here, without a GPU (the simulator
process then loads those artifacts and checks that each plans every step on the device); checks what a
machine without a GPU says; where the CUDA compiler libraries are installed (``pip install
numba-cuda[cu13]``), that every device kernel compiles to PTX for a real GPU (the simulator runs kernels
as Python and would not notice device code numba.cuda cannot compile) and is cached on disk; and the
argument handling and table of tools/bench_cuda.py, which needs a GPU to run.
"""
import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

import irc
from irc.errors import UnsupportedError
from tests.util import node_model

ROOT = Path(__file__).resolve().parent.parent
CASES = "tests/cuda_sim/cuda_cases.py"
HAS_NUMBA_CUDA = importlib.util.find_spec("numba_cuda") is not None


def _gpu_status():
    from irc.backend.cuda import device_status
    return device_status()


LIGHT_DIR = Path(importlib.util.find_spec("onnx").origin).parent / "backend" / "test" / "data" / "light"
ZOO_MODELS = ["mlp", "senet", "convnext", "unet", "gpt", "bert", "vgg11", "mobilenetv2", "resnet18"]


def _zoo_paths(request):
    """name -> ONNX path of every zoo model, or nothing where torch (which exports them) is missing."""
    try:
        zoo = request.getfixturevalue("zoo")
    except pytest.skip.Exception:
        return {}
    return {name: zoo.path(name) for name in ZOO_MODELS}


# a model with more weights than this is compiled but not planned on the simulator, which copies every weight
PLANNED_WEIGHT_BYTES = 150 * 2**20


@dataclass
class CudaCompiled:
    """What the tests keep of a model compiled for CUDA: its target and ops, and its artifact where it has
    at most PLANNED_WEIGHT_BYTES of weights (else None); the model itself is let go."""
    target: str
    ops: set
    artifact: Optional[str]


def _compile_for_cuda(path: str, folder: Path) -> CudaCompiled:
    model = irc.compile(path, target="cuda")
    weights = sum(n.attrs["value"].nbytes for n in model.graph.nodes if n.op == "const")
    artifact = None
    if weights <= PLANNED_WEIGHT_BYTES:
        artifact = str(folder / f"{Path(path).stem}.bin")
        model.save(artifact)
    return CudaCompiled(model.target, {n.op for n in model.graph.nodes if n.op != "const"}, artifact)


@pytest.fixture(scope="session")
def compiled_for_cuda(request, tmp_path_factory):
    """name -> every zoo and light_* model compiled for CUDA in this process (no GPU needed)."""
    if not HAS_NUMBA_CUDA:
        pytest.skip("numba-cuda is not installed (pip install irc[cuda])")
    models = {**{p.stem: str(p) for p in sorted(LIGHT_DIR.glob("light_*.onnx"))}, **_zoo_paths(request)}
    folder = tmp_path_factory.mktemp("cuda_artifacts")
    return {name: _compile_for_cuda(path, folder) for name, path in models.items()}


@pytest.fixture(scope="session")
def cuda_artifacts(compiled_for_cuda):
    """name -> artifact of each compiled model small enough for the simulator process to load and plan."""
    return {name: c.artifact for name, c in compiled_for_cuda.items() if c.artifact is not None}


def test_every_model_compiles_for_cuda(compiled_for_cuda, cuda_artifacts):
    """All nine light_* models (and the zoo, where torch can export it) compile; those too big for the
    simulator use no op that a planned one does not (alexnet, zfnet512, vgg19: convolutions, LRN,
    pooling, Gemm, softmax, as in inception_v1)."""
    assert {f"light_{n}" for n in ("bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50",
                                   "shufflenet", "squeezenet", "vgg19", "zfnet512")} <= set(compiled_for_cuda)
    assert all(c.target == "cuda" for c in compiled_for_cuda.values())
    planned = set().union(*(compiled_for_cuda[n].ops for n in cuda_artifacts))
    unplanned = {n: c.ops - planned for n, c in compiled_for_cuda.items() if n not in cuda_artifacts}
    assert unplanned == {n: set() for n in unplanned}


def _run_cases(simulator: bool, artifacts):
    """Run the CUDA test cases in a fresh process (``artifacts`` for it to plan); fail with its report
    when any fails."""
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    if simulator:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    env["IRC_CUDA_ARTIFACTS"] = json.dumps(artifacts)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", CASES], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900)
    report = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, f"CUDA cases failed ({'simulator' if simulator else 'GPU'}):\n{report}"
    assert " passed" in report and "skipped" not in report.splitlines()[-1], report


@pytest.mark.skipif(not HAS_NUMBA_CUDA, reason="numba-cuda is not installed (pip install irc[cuda])")
def test_cuda_cases_on_the_simulator(cuda_artifacts):
    _run_cases(True, cuda_artifacts)


@pytest.mark.skipif(not HAS_NUMBA_CUDA or _gpu_status() is not None, reason="no CUDA GPU here")
def test_cuda_cases_on_the_gpu(cuda_artifacts):
    _run_cases(False, cuda_artifacts)


@pytest.fixture
def no_gpu():
    if HAS_NUMBA_CUDA and _gpu_status() is None:
        pytest.skip("a CUDA GPU is present")


def _relu_model():
    return node_model("Relu", {"x": np.zeros((2, 3), np.float32)})


@pytest.mark.skipif(not HAS_NUMBA_CUDA, reason="numba-cuda is not installed (pip install irc[cuda])")
def test_compiling_for_cuda_needs_no_gpu_but_running_does(no_gpu, tmp_path):
    model = irc.compile(_relu_model(), target="cuda")
    model.save(tmp_path / "m.bin")
    with pytest.raises(irc.IrcError, match="target 'cuda': no CUDA GPU is available"):
        model.run({"x": np.zeros((2, 3), np.float32)})


@pytest.mark.skipif(not HAS_NUMBA_CUDA, reason="numba-cuda is not installed (pip install irc[cuda])")
def test_op_without_a_cuda_kernel_fails_at_compile_naming_the_node():
    model = node_model("MatMulInteger", {"a": np.zeros((2, 3), np.uint8), "b": np.zeros((3, 2), np.uint8)})
    with pytest.raises(UnsupportedError, match="no CUDA kernel: 'matmulinteger_node' \\(matmul_integer\\)"):
        irc.compile(model, target="cuda")


def test_loading_a_cuda_artifact_without_a_gpu_says_so(no_gpu, tmp_path):
    model = irc.compile(_relu_model())
    model.target = "cuda"  # as saved by a machine with a GPU
    model.save(tmp_path / "m.bin")
    with pytest.raises(irc.IrcError, match="target 'cuda': (no CUDA GPU|numba.cuda is not installed)"):
        irc.load(tmp_path / "m.bin")


def test_unknown_target_is_an_error():
    with pytest.raises(irc.IrcError, match="unknown target 'tpu'"):
        irc.compile(_relu_model(), target="tpu")


def _ptx_compiler_problem():
    """Why PTX cannot be compiled here (the CUDA compiler libraries, NVVM and NVRTC, are missing), or None.
    Found by compiling a trivial kernel: numba-cuda may find one library and not the other."""
    if not HAS_NUMBA_CUDA:
        return "numba-cuda is not installed"
    from numba import cuda
    from numba import types as t

    def probe(a):
        a[0] = 1.0
    try:
        cuda.compile_ptx(probe, (t.float32[::1],), cc=(9, 0))
    except Exception as e:  # whatever the toolkit lookup raises: the libraries are not usable here
        return f"the CUDA compiler libraries are not usable: {type(e).__name__}: {str(e)[:120]}"
    return None


def _fixed_kernels():
    """(name, kernel getter, argument types) of every fixed device kernel."""
    from numba import types as t
    f32, i64, flag, n = t.float32[::1], t.int64[::1], t.boolean, t.int64

    def tup(k):
        return t.UniTuple(t.int64, k)

    gemm_args = (f32, tup(4), n, f32, tup(4), tup(13), f32, tup(4), f32, tup(4), tup(4), t.float32, t.float32)
    return [
        ("gather", lambda k: k.device._gather, (f32, i64, f32)),
        ("scatter", lambda k: k.device._scatter, (f32, i64, f32)),
        ("zero", lambda k: k.device._zero, (t.int32[::1],)),
        ("take", lambda k: k.movement._take, (f32, i64, f32, n, n, t.int32[::1])),
        ("tiled-gemm", lambda k: k.gemm.tiled_gemm, gemm_args),
        ("depthwise", lambda k: k.conv._depthwise, (f32, f32, f32, f32, tup(14), flag)),
        ("pool2d", lambda k: k.pool._pool2d, (f32, f32, tup(14), flag, flag)),
        ("global-pool", lambda k: k.pool._global_pool, (f32, f32, n, flag)),
        ("reduce", lambda k: k.reduce._reduce, (f32, f32, n, n, n, n)),
        ("softmax", lambda k: k.norm._softmax, (f32, f32, n, n, flag)),
        ("normalize", lambda k: k.norm._normalize, (f32, f32, f32, f32, f32, f32, n, n, n, n, t.float64, flag)),
        ("affine", lambda k: k.norm._affine_channels, (f32, f32, f32, f32, n, n)),
        ("lrn", lambda k: k.norm._lrn, (f32, f32, n, n, n, t.float64, t.float64, t.float64)),
        ("resample-axis", lambda k: k.resize._resample_axis, (f32, i64, t.float64[::1], f32, n, n, n, n)),
        ("masked-softmax", lambda k: k.fused._masked_softmax, (f32, f32, tup(4), tup(3), flag)),
    ]


# generated elementwise kernels covering each kind of template: float32 exp (npshim's vexp), the float32
# polynomials, the libdevice ufuncs of npshim, selects, integer division, casts
ELEMENTWISE = [("gelu", ("f32",), {}), ("sigmoid", ("f32",), {}), ("erf", ("f32",), {}), ("round", ("f32",), {}),
               ("ceil", ("f64",), {}),
               ("mod", ("f32", "f32"), {"fmod": 1}), ("where", ("bool", "f32", "f32"), {}),
               ("div", ("i64", "i64"), {}), ("cast", ("i64",), {"to": "f32"})]


@pytest.fixture
def ptx_compiler(monkeypatch):
    """``compile(kernel, argtypes)`` to PTX for an H100 (compute capability 9.0) without a GPU: numba
    asks the driver for the device when a kernel calls a device function, so that question is answered."""
    problem = _ptx_compiler_problem()
    if problem is not None:
        pytest.skip(problem)
    from types import SimpleNamespace

    from numba import cuda
    from numba.cuda import compiler, dispatcher
    device = SimpleNamespace(compute_capability=(9, 0))
    monkeypatch.setattr(compiler, "get_current_device", lambda: device)
    monkeypatch.setattr(dispatcher, "get_current_device", lambda: device)
    return lambda kernel, argtypes: cuda.compile_ptx(kernel.py_func, argtypes, cc=(9, 0))


@pytest.mark.parametrize("name", [c[0] for c in _fixed_kernels()] if HAS_NUMBA_CUDA else [])
def test_fixed_kernel_compiles_to_ptx(name, ptx_compiler):
    from irc.kernels import cuda as kernels
    _, get, argtypes = next(c for c in _fixed_kernels() if c[0] == name)
    ptx, _ = ptx_compiler(get(kernels), argtypes)
    assert ".entry" in ptx


@pytest.mark.parametrize("op, dtypes, attrs", ELEMENTWISE, ids=[e[0] for e in ELEMENTWISE])
def test_generated_elementwise_compiles_to_ptx(op, dtypes, attrs, ptx_compiler):
    from numba import types as t

    from irc.kernels.cpu.codegen import load_module
    from irc.kernels.cpu.elementwise import Expr
    from irc.kernels.cuda.elementwise import device_elementwise
    k = device_elementwise(Expr.make(op, *range(len(dtypes)), **attrs), dtypes)
    array = {"f32": t.float32, "f64": t.float64, "i64": t.int64, "bool": t.boolean}
    rank = 2
    argtypes = (array[k.out_dtype][::1], t.int64, t.UniTuple(t.int64, rank),
                t.UniTuple(t.int64, rank * len(dtypes)), *(array[d][::1] for d in dtypes))
    ptx, _ = ptx_compiler(load_module(k.source(rank), "cuda_ew").kernel, argtypes)
    assert ".entry" in ptx


@pytest.mark.skipif(not HAS_NUMBA_CUDA, reason="numba-cuda is not installed (pip install irc[cuda])")
def test_every_device_kernel_is_cached_on_disk():
    """numba writes each compiled kernel to its on-disk cache (irc's kernel cache) and loads it from there
    in the next process: no kernel has caching off (its cache would be numba's NullCache)."""
    from irc.kernels import cuda as kernels
    from irc.kernels.cpu.codegen import load_module
    from irc.kernels.cpu.elementwise import Expr
    from irc.kernels.cuda.elementwise import device_elementwise
    generated = load_module(device_elementwise(Expr.make("relu", 0), ("f32",)).source(1), "cuda_ew").kernel
    dispatchers = {name: get(kernels) for name, get, _ in _fixed_kernels()}
    dispatchers["generated-elementwise"] = generated
    assert [name for name, d in dispatchers.items() if type(d._cache).__name__ == "NullCache"] == []


# ------------------------------------------------------------------------------------ tools/bench_cuda.py

def _bench_cuda():
    spec = importlib.util.spec_from_file_location("bench_cuda", ROOT / "tools" / "bench_cuda.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # import-safe: neither torch nor a GPU is touched here
    return module


def test_bench_cuda_arguments():
    bench = _bench_cuda()
    args = bench.parse_args([])
    assert args.models == bench.ZOO_MODELS and (args.batch, args.runs, args.warmup, args.no_cpu) == (1, 20, 3, False)
    args = bench.parse_args(["--models", "gpt,unet", "--batch", "2", "--runs", "5", "--warmup", "0", "--no-cpu"])
    assert args.models == ["gpt", "unet"] and (args.batch, args.runs, args.warmup, args.no_cpu) == (2, 5, 0, True)


@pytest.mark.parametrize("argv", [["--models", "gpt,alexnet"], ["--models", ","], ["--runs", "0"],
                                  ["--batch", "-1"], ["--warmup", "-2"]])
def test_bench_cuda_rejects_bad_arguments(argv, capsys):
    with pytest.raises(SystemExit) as e:
        _bench_cuda().parse_args(argv)
    assert e.value.code == 2 and "error" in capsys.readouterr().err


def test_bench_cuda_table():
    table = _bench_cuda().format_table([
        {"model": "resnet18", "batch": 1, "irc_cuda_ms": 2.5, "torch_ms": 2.0, "irc_cpu_ms": 40.25, "max_diff": 3e-6},
        {"model": "gpt", "batch": 2, "irc_cuda_ms": 1.0, "torch_ms": None},
        {"model": "unet", "batch": 1},
    ]).splitlines()
    assert table[0] == ("| model | batch | irc cuda ms | torch eager cuda ms | irc cpu ms | irc cuda / torch "
                        "| max abs diff vs torch |")
    assert table[1] == "|---|---:|---:|---:|---:|---:|---:|"
    assert table[2] == "| resnet18 | 1 | 2.500 | 2.000 | 40.250 | 1.25 | 3.0e-06 |"
    assert table[3] == "| gpt | 2 | 1.000 | - | - | - | - |"
    assert table[4] == "| unet | 1 | - | - | - | - | - |"


def test_bench_cuda_median_counts_warmup_and_runs():
    calls = []
    ms = _bench_cuda().median_ms(lambda: calls.append(1), runs=5, warmup=2)
    assert len(calls) == 7 and ms >= 0


def test_bench_cuda_without_a_gpu_says_so(no_gpu, capsys):
    assert _bench_cuda().main(["--models", "mlp"]) == 1
    assert "bench_cuda: " in capsys.readouterr().err
