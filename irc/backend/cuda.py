"""CUDA backend: the optimized IR lowered to numba.cuda kernels (``kernels/cuda``).

The plan has the CPU backend's form (``cpu.lower`` with the CUDA kernel table); what differs is where
the buffers live. Constants are uploaded once, when the plan is built; a run copies each input to the
device once, runs every step on device arrays, and copies each output back once. Ops without a device
kernel whose CPU kernel only moves data run on the host (see ``cuda_registry``); compute ops without a
device kernel make compiling for CUDA fail, naming them.

numba.cuda comes from the ``numba-cuda`` package (``pip install irc[cuda]``). Without a GPU it runs on
numba's CUDA simulator when ``NUMBA_ENABLE_CUDASIM=1`` was set before numba was imported (slow: every
CUDA thread is a Python thread; meant for tests at tiny sizes). Otherwise, with no GPU, compiling or
loading a CUDA model raises an IrcError saying so.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

from ..errors import IrcError
from ..ir import Graph
from . import cpu
from .cuda_registry import device_lowering
from .registry import Lowering, lowering as cpu_lowering


def device_status() -> Optional[str]:
    """Why CUDA kernels cannot run here, or None when a GPU (or the simulator) is there."""
    try:
        from numba import cuda
    except ImportError:
        return "numba.cuda is not installed (pip install numba-cuda, or irc[cuda])"
    if not cuda.is_available():
        return ("no CUDA GPU is available (and numba's CUDA simulator was not enabled: set "
                "NUMBA_ENABLE_CUDASIM=1 before numba is imported)")
    return None


def require_device() -> None:
    """Raise an IrcError when CUDA kernels cannot run on this machine."""
    why = device_status()
    if why is not None:
        raise IrcError(f"target 'cuda': {why}")


def find_lowering(op: str) -> Optional[Lowering]:
    """The device kernel of ``op``; else, for ops whose CPU kernel only moves data, the host fallback."""
    low = device_lowering(op)
    if low is not None:
        return low
    cpu_low = cpu_lowering(op)
    if cpu_low is not None and not cpu_low.numba:
        from ..kernels.cuda.device import host_kernel
        return Lowering(op, host_kernel, cpu_low.family, False)
    return None


def check_supported(graph: Graph) -> None:
    """Raise one UnsupportedError naming every node without a CUDA kernel (or host fallback)."""
    require_device()
    cpu.check_supported(graph, find_lowering, "CUDA")


def lower(graph: Graph) -> cpu.Plan:
    """The plan of ``graph`` with CUDA kernels; numeric constants are uploaded to the device."""
    from ..kernels.cuda.device import upload
    plan = cpu.lower(graph, find_lowering, "CUDA")
    for slot, value in plan.consts.items():
        if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            plan.consts[slot] = upload(value)
    return plan


def execute(plan: cpu.Plan, feeds: Sequence[np.ndarray], hook=None) -> List[np.ndarray]:
    """Copy the inputs in, run the plan's steps on the device, copy the outputs out."""
    from ..kernels.cuda.device import download, upload
    outs = cpu.execute(plan, [upload(a) for a in feeds], hook)
    return [np.asarray(download(o)) for o in outs]
