"""CUDA kernels of the ops the fuse pass makes (mirrors kernels/cpu/fused.py).

- ``fused_elementwise``: its expression tree as one generated device kernel;
- ``attention``: for now the CPU kernel on the host (operands copied down, the result copied back up),
  so that graphs the fuse pass rewrote still run on the device target.
"""
from ...backend.cuda_registry import lowers
from ...backend.registry import Kernel
from ..cpu.fused import fused_kernel
from .device import host_kernel
from .elementwise import device_elementwise


@lowers("fused_elementwise", family="elementwise")
def lower_fused_elementwise(node):
    """The node's tree as one generated device kernel over its operands."""
    return Kernel(fused_kernel(node, device_elementwise))


@lowers("attention", family="fused")
def lower_attention(node):
    """The CPU attention kernel on the host."""
    return host_kernel(node)
