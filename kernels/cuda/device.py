"""What every CUDA kernel family shares: launch sizes, transfers, and the two data-movement kernels.

Device arrays are always C-contiguous here: every kernel writes a fresh contiguous result, and views
(reshape) of contiguous arrays stay so. A kernel therefore indexes its operands as flat 1-D buffers and
computes positions from shapes it is given as integer tuples.

On numba's CUDA simulator each CUDA thread is a Python thread, so launches there use few threads that
each stride over many elements (grid-stride loops); the kernels are the same either way.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import cuda

from ...errors import UnsupportedError

SIMULATOR = bool(numba.config.ENABLE_CUDASIM)
THREADS = 32 if SIMULATOR else 256
MAX_BLOCKS = 2 if SIMULATOR else 4096


def launch(n: int):
    """(blocks, threads) of a 1-D grid-stride launch over ``n`` work items (n > 0)."""
    return min(MAX_BLOCKS, math.ceil(n / THREADS)), THREADS


def upload(a) -> object:
    """A numpy array on the device (contiguous)."""
    return cuda.to_device(np.ascontiguousarray(a))


def download(a):
    """A device array's values on the host; host values and None pass through."""
    return a.copy_to_host() if hasattr(a, "copy_to_host") else a


def empty(shape, dtype):
    return cuda.device_array(tuple(int(d) for d in shape), np.dtype(dtype))


def flat(a):
    """A contiguous device array as 1-D (0-d arrays as one element)."""
    return a.reshape(max(1, int(a.size)) if a.ndim == 0 else int(a.size))


def require_float32(node, *values) -> None:
    """The device kernels compute float32: ``values`` (the node's operands and results) of other dtypes
    are an UnsupportedError naming the node."""
    for v in values:
        if v is not None and v.type.dtype != "f32":
            raise UnsupportedError(f"node {node.op} {node.name!r}: {v.type.dtype} has no CUDA kernel "
                                   "(float32 only)")


def contiguous_strides(shape):
    """Element strides of a C-contiguous array of ``shape``, 0 on unit dims (so broadcasting is free)."""
    strides, step = [], 1
    for d in reversed(shape):
        strides.append(0 if d == 1 else step)
        step *= d
    return list(reversed(strides))


def static_shape(value, node):
    """The static shape of ``value`` (known once a plan is bound to its input shapes)."""
    t = value.type
    if not t.is_static:
        raise UnsupportedError(f"node {node.op} {node.name!r}: shape {t} is not static")
    return tuple(t.shape)


@cuda.jit(cache=True)
def _gather(src, index, out):
    """out[i] = src[index[i]]."""
    i = cuda.grid(1)
    step = cuda.gridsize(1)
    while i < out.shape[0]:
        out[i] = src[index[i]]
        i += step


@cuda.jit(cache=True)
def _scatter(src, index, out):
    """out[index[i]] = src[i] (index has no repeats)."""
    i = cuda.grid(1)
    step = cuda.gridsize(1)
    while i < src.shape[0]:
        out[index[i]] = src[i]
        i += step


def gather(src, index, shape):
    """A new device array of ``shape``: element i is flat element ``index[i]`` of ``src``."""
    out = empty(shape, src.dtype)
    if out.size:
        _gather[launch(out.size)](flat(src), index, flat(out))
    return out


def scatter(src, index, out) -> None:
    """Flat element i of ``src`` goes to flat element ``index[i]`` of ``out``."""
    if src.size:
        _scatter[launch(src.size)](flat(src), index, flat(out))


def index_map(shape) -> np.ndarray:
    """Every element's own flat position: what a data-movement op applied to it turns into a gather map."""
    return np.arange(math.prod(shape), dtype=np.int64).reshape(shape)


def broadcast_param(a, shape):
    """Device operand ``a`` broadcast (numpy rules) to ``shape`` and made contiguous: ``a`` itself when
    it already holds one value per element."""
    if tuple(a.shape) == tuple(shape):
        return a
    if int(a.size) == math.prod(shape) and a.size:
        return a.reshape(tuple(shape))
    idx = np.broadcast_to(index_map(a.shape), shape).ravel()
    return gather(a, upload(idx), shape)


@cuda.jit(cache=True)
def _zero(a):
    """a[:] = 0."""
    i = cuda.grid(1)
    step = cuda.gridsize(1)
    while i < a.shape[0]:
        a[i] = 0
        i += step


def zeros(n: int, dtype):
    """A new 1-D device array of ``n`` zeros, filled on the device (no copy from the host)."""
    a = empty((n,), dtype)
    if n:
        _zero[launch(n)](a)
    return a


class Checked:
    """A kernel whose operands can be invalid in ways only the device sees (an index out of range). Its
    ``fn`` takes one more argument, a one-element int32 ``status`` the device sets to 1 on such an
    operand (the result is then undefined); the backend reads the status back with the outputs and
    raises an IrcError naming the node and ``what`` went wrong (``reset`` clears it). The status is the
    kernel's, so runs of one plan at the same time share it: a bad index fails one of them."""

    def __init__(self, fn, what: str):
        self.fn, self.what = fn, what
        self.status = zeros(1, np.int32)

    def __call__(self, *args):
        return self.fn(*args, self.status)

    def failed(self) -> bool:
        """Whether a run since the last ``reset`` found a bad operand (one 4-byte copy to the host)."""
        return bool(download(self.status)[0])

    def reset(self) -> None:
        _zero[1, 1](self.status)


def host_kernel(node):
    """The node's CPU kernel run on the host: operands copied down, results copied back up.

    For the data-movement ops no device kernel covers yet (their index operands computed at run time,
    or ops such as pad, range and nonzero): correct, at the price of two transfers."""
    from ...backend.registry import Kernel, lowering
    cpu = lowering(node.op).fn(node)

    def run(*args):
        res = cpu.fn(*(download(a) for a in args))
        return tuple(upload(r) for r in res) if isinstance(res, tuple) else upload(res)
    return Kernel(run, algo="host")
