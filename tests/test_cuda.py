"""The CUDA target.

numba reads NUMBA_ENABLE_CUDASIM once, when it is first imported, and this session imports numba for
the CPU kernels; so the CUDA tests proper (tests/cuda_sim/cuda_cases.py) run in a pytest process of
their own: on numba's CUDA simulator always, and on the real GPU where there is one. This file also
checks what a machine without a GPU says, and, where the CUDA compiler libraries are installed
(``pip install numba-cuda[cu13]``), that every device kernel compiles to PTX for a real GPU: the
simulator runs kernels as Python and would not notice device code numba.cuda cannot compile.
"""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import irc
from tests.util import node_model

ROOT = Path(__file__).resolve().parent.parent
CASES = "tests/cuda_sim/cuda_cases.py"
HAS_NUMBA_CUDA = importlib.util.find_spec("numba_cuda") is not None


def _gpu_status():
    from irc.backend.cuda import device_status
    return device_status()


def _run_cases(simulator: bool):
    """Run the CUDA test cases in a fresh process; fail with its report when any fails."""
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    if simulator:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", CASES], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900)
    report = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, f"CUDA cases failed ({'simulator' if simulator else 'GPU'}):\n{report}"
    assert " passed" in report and "skipped" not in report.splitlines()[-1], report


@pytest.mark.skipif(not HAS_NUMBA_CUDA, reason="numba-cuda is not installed (pip install irc[cuda])")
def test_cuda_cases_on_the_simulator():
    _run_cases(simulator=True)


@pytest.mark.skipif(not HAS_NUMBA_CUDA or _gpu_status() is not None, reason="no CUDA GPU here")
def test_cuda_cases_on_the_gpu():
    _run_cases(simulator=False)


@pytest.fixture
def no_gpu():
    if HAS_NUMBA_CUDA and _gpu_status() is None:
        pytest.skip("a CUDA GPU is present")


def _relu_model():
    return node_model("Relu", {"x": np.zeros((2, 3), np.float32)})


def test_compile_for_cuda_without_a_gpu_says_so(no_gpu):
    with pytest.raises(irc.IrcError, match="target 'cuda': (no CUDA GPU is available|numba.cuda is not installed)"):
        irc.compile(_relu_model(), target="cuda")


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

    def gemm_args(geo, sb):
        return (f32, tup(4), f32, tup(sb), tup(geo), f32, tup(4), f32, tup(4), tup(4), t.float32, t.float32)

    return [
        ("gather", lambda k: k.device._gather, (f32, i64, f32)),
        ("scatter", lambda k: k.device._scatter, (f32, i64, f32)),
        ("gemm-strided", lambda k: k.gemm.tiled_gemm(k.gemm.load_strided), gemm_args(1, 4)),
        ("gemm-im2col", lambda k: k.gemm.tiled_gemm(k.conv.load_im2col), gemm_args(13, 1)),
        ("depthwise", lambda k: k.conv._depthwise, (f32, f32, f32, f32, tup(14), flag)),
        ("pool2d", lambda k: k.pool._pool2d, (f32, f32, tup(14), flag, flag)),
        ("global-pool", lambda k: k.pool._global_pool, (f32, f32, n, flag)),
        ("reduce", lambda k: k.reduce._reduce, (f32, f32, n, n, n, n)),
        ("softmax", lambda k: k.norm._softmax, (f32, f32, n, n, flag)),
        ("normalize", lambda k: k.norm._normalize, (f32, f32, f32, f32, f32, f32, n, n, flag, t.float64, flag)),
        ("affine", lambda k: k.norm._affine_channels, (f32, f32, f32, f32, n, n)),
    ]


# generated elementwise kernels covering each kind of template: the float32 exp polynomial with its bit
# casts, the libdevice ufuncs of npshim, selects, integer division, casts
ELEMENTWISE = [("gelu", ("f32",), {}), ("erf", ("f32",), {}), ("round", ("f32",), {}), ("ceil", ("f64",), {}),
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
