"""The CUDA kernel table: which kernel runs each op on the device.

A module in ``kernels/cuda/`` registers, per op, a lowering ``fn(node) -> Kernel`` exactly as the CPU
table does (``irc.backend.registry``), except that the kernel takes and returns *device* arrays (numba's
DeviceNDArray, or the simulator's stand-in). Ops with no CUDA lowering whose CPU kernel only moves data
(``numba=False`` there) run on the host: their operands are copied down, the CPU kernel runs, and the
results are copied back up (``Kernel.algo == "host"``).
"""
from __future__ import annotations

from typing import Dict, Optional

from .registry import Lowering

CUDA_LOWERINGS: Dict[str, Lowering] = {}


def lowers(*ops: str, family: str):
    """Register the decorated ``fn(node) -> Kernel`` as the CUDA lowering of ``ops``."""
    def deco(fn):
        for op in ops:
            if op in CUDA_LOWERINGS:
                raise ValueError(f"op {op} lowered twice for CUDA")
            CUDA_LOWERINGS[op] = Lowering(op, fn, family, True)
        return fn
    return deco


def device_lowering(op: str) -> Optional[Lowering]:
    """The CUDA kernel of ``op``, or None (registering the kernels on first use)."""
    if not CUDA_LOWERINGS:
        from ..kernels import cuda  # noqa: F401  (registers the kernels)
    return CUDA_LOWERINGS.get(op)
