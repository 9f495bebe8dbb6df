"""CUDA backend: the optimized IR lowered to numba.cuda kernels (``kernels/cuda``).

The plan has the CPU backend's form (``cpu.lower`` with the CUDA kernel table); what differs is where
the buffers live. Constants are uploaded once, when the plan is built; a run copies each input to the
device once, runs every step on device arrays, and copies each output back once. A step whose operands
can be invalid in ways only the device sees (``kernels.cuda.device.Checked``: a gather's indices from
the run) has a status word on the device, read back with the outputs (4 bytes more per such step).
Ops without a device kernel whose CPU kernel only moves data run on the host (see ``cuda_registry``);
compute ops without a device kernel make compiling for CUDA fail, naming them.

Compiling needs numba.cuda (the ``numba-cuda`` package, ``pip install irc[cuda]``) but no GPU: it only
checks that every op has a device kernel. Building a plan and running need a GPU, or numba's CUDA
simulator when ``NUMBA_ENABLE_CUDASIM=1`` was set before numba was imported (slow: every CUDA thread is
a Python thread; meant for tests at tiny sizes); loading a CUDA artifact checks for one. Without either,
they raise an IrcError saying so. Compiled kernels are cached on disk by numba (``cache=True``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np

from ..errors import IrcError
from ..ir import Graph
from . import cpu
from .cuda_registry import device_lowering
from .registry import Lowering, lowering as cpu_lowering


def compiler_status() -> Optional[str]:
    """Why CUDA kernels cannot even be chosen here (numba.cuda missing), or None."""
    try:
        from numba import cuda  # noqa: F401
    except ImportError:
        return "numba.cuda is not installed (pip install numba-cuda, or irc[cuda])"
    return None


def device_status() -> Optional[str]:
    """Why CUDA kernels cannot run here, or None when a GPU (or the simulator) is there."""
    why = compiler_status()
    if why is not None:
        return why
    from numba import cuda
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
    """Raise one UnsupportedError naming every node without a CUDA kernel (or host fallback); needs
    numba.cuda, not a GPU."""
    why = compiler_status()
    if why is not None:
        raise IrcError(f"target 'cuda': {why}")
    cpu.check_supported(graph, find_lowering, "CUDA")


@dataclass
class DevicePlan(cpu.Plan):
    """A plan with the steps whose kernels report bad operands through a status word (``Checked``)."""
    checks: List[cpu.Step] = field(default_factory=list)


def lower(graph: Graph) -> DevicePlan:
    """The plan of ``graph`` with CUDA kernels; numeric constants are uploaded to the device."""
    require_device()
    from ..kernels.cuda.device import Checked, upload
    plan = DevicePlan(**vars(cpu.lower(graph, find_lowering, "CUDA")))
    for slot, value in plan.consts.items():
        if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            plan.consts[slot] = upload(value)
    plan.checks = [s for s in plan.steps if isinstance(s.fn, Checked)]
    return plan


def execute(plan: DevicePlan, feeds: Sequence[np.ndarray], hook=None) -> List[np.ndarray]:
    """Copy the inputs in, run the plan's steps on the device, copy the outputs (and the status of the
    checked steps) out; an IrcError names the first checked step that found a bad operand."""
    from ..kernels.cuda.device import download, upload
    outs = cpu.execute(plan, [upload(a) for a in feeds], hook)
    for step in plan.checks:
        if step.fn.failed():
            step.fn.reset()
            raise IrcError(f"node {step.node.op} {step.node.name!r}: {step.fn.what}")
    return [np.asarray(download(o)) for o in outs]
