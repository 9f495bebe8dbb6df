"""The CUDA kernel table: which kernel runs each op on the device.

A module in ``kernels/cuda/`` registers, per op, a lowering ``fn(node) -> Kernel`` exactly as the CPU
table does (``irc.backend.registry``), except that the kernel takes and returns *device* arrays (numba's
DeviceNDArray, or the simulator's stand-in). Ops with no CUDA lowering whose CPU kernel only moves data
(``numba=False`` there) run on the host: their operands are copied down, the CPU kernel runs, and the
results are copied back up (``Kernel.algo == "host"``).
"""
from __future__ import annotations

from .registry import KernelTable


def _load_cuda_kernels() -> None:
    from ..kernels import cuda  # noqa: F401  (registers the kernels)


CUDA = KernelTable("CUDA", _load_cuda_kernels)
CUDA_LOWERINGS = CUDA.lowerings


def lowers(*ops: str, family: str):
    """Register the decorated ``fn(node) -> Kernel`` as the CUDA lowering of ``ops``."""
    return CUDA.lowers(*ops, family=family, numba=True)


device_lowering = CUDA.lowering
