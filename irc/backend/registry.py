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


class KernelTable:
    """One target's kernel table: ``op -> Lowering``, filled on first look-up by ``load()`` (which imports
    the target's kernel modules, registering their lowerings)."""

    def __init__(self, target: str, load: Callable[[], None]):
        self.target = target
        self.load = load
        self.lowerings: Dict[str, Lowering] = {}

    def lowers(self, *ops: str, family: str, numba: bool = True):
        """Register the decorated ``fn(node) -> Kernel`` as this target's lowering of ``ops``."""
        def deco(fn):
            for op in ops:
                if op in self.lowerings:
                    raise ValueError(f"op {op} lowered twice for {self.target}")
                self.lowerings[op] = Lowering(op, fn, family, numba)
            return fn
        return deco

    def lowering(self, op: str) -> Optional[Lowering]:
        """The kernel of ``op`` on this target, or None (registering the kernels on first use)."""
        if not self.lowerings:
            self.load()
        return self.lowerings.get(op)


def _load_cpu_kernels() -> None:
    from ..kernels import cpu  # noqa: F401  (registers the kernels)


CPU = KernelTable("CPU", _load_cpu_kernels)
CPU_LOWERINGS = CPU.lowerings
lowers = CPU.lowers
lowering = CPU.lowering
