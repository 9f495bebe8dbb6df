"""The CPU kernel table: which kernel runs each op.

A kernel module in ``kernels/cpu/`` registers, per op, a *lowering*: ``fn(node) -> Kernel``, called once
per node when a plan is built. It reads the node's attributes, result types and constant operands (to
pre-pack weights, say) and returns the callable the executor runs with the operand arrays::

    @lowers("relu", family="elementwise")
    def lower_relu(node):
        return Kernel(lambda x: relu_kernel(x))

``family`` names the kernel module (what ``irc dump --stage lowered`` and docs/ops.md show);
``numba=False`` marks ops that only move or view data and run as numpy views in the executor.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional


@dataclass
class Kernel:
    """What the executor calls: ``fn(*operand arrays) -> array or tuple of arrays``."""
    fn: Callable
    algo: str = ""      # the algorithm chosen, when the op has several (im2col, winograd, direct ...)


@dataclass
class Lowering:
    op: str
    fn: Callable        # node -> Kernel
    family: str
    numba: bool


CPU_LOWERINGS: Dict[str, Lowering] = {}


def lowers(*ops: str, family: str, numba: bool = True):
    """Register the decorated ``fn(node) -> Kernel`` as the CPU lowering of ``ops``."""
    def deco(fn):
        for op in ops:
            if op in CPU_LOWERINGS:
                raise ValueError(f"op {op} lowered twice")
            CPU_LOWERINGS[op] = Lowering(op, fn, family, numba)
        return fn
    return deco


def lowering(op: str) -> Optional[Lowering]:
    if not CPU_LOWERINGS:
        from ..kernels import cpu  # noqa: F401  (registers the kernels)
    return CPU_LOWERINGS.get(op)
