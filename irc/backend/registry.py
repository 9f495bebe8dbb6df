"""The CPU kernel table: which kernel runs each op.

A kernel module in ``kernels/cpu/`` registers, per op, a *lowering*: ``fn(node) -> Kernel``, called once
per node when a plan is built. It reads the node's attributes, result types and constant operands (to
pre-pack weights, say) and returns the callable the executor runs with the operand arrays::

    @lowers("relu", family="elementwise")
    def lower_relu(node):
        return Kernel(lambda x: relu_kernel(x))

``family`` names the kernel module (what ``irc dump --stage lowered`` and docs/ops.md show);
``numba=False`` marks ops that only move or view data and run as numpy views in the executor.

The output-buffer protocol (optional; see ``Kernel``): a kernel that can write its single result into a
buffer it is given sets ``into``; the executor then hands it a slice of the plan's arena (plan-memory)
instead of letting it allocate, and with ``bind`` it can prepare, once per arena, everything a call needs.
A kernel that does not adopt it keeps working: its results are fresh arrays the executor keeps per run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple


@dataclass
class Kernel:
    """What the executor calls: ``fn(*operand arrays) -> array or tuple of arrays``.

    The rest tells the memory planner and the executor what else the kernel can do (the defaults assume
    nothing). ``into(out, *operands)`` writes the single result into ``out``, a C-contiguous array of the
    result's static shape and dtype, and returns nothing; a kernel that has it makes fresh arrays in
    ``fn``. ``bind(out, *operands) -> (call, args)`` is given arrays that stay where they are for every
    run (arena slices and constants) and returns what ``call(*args)`` does the same as ``into`` with them:
    conversions and checks move out of the run. ``inplace``: ``out`` may be an operand of the result's
    shape and dtype (an elementwise loop reads each element before writing it). ``views``: the operands a
    result of ``fn`` may share memory with (None: any; ``()``: results are always fresh). ``view``: the
    result is operand 0 viewed in a shape fixed at lowering, so for an operand that stays where it is the
    executor calls ``fn`` once, when it binds the arena.

    An ``fn`` that is itself an object with ``into`` (and optionally ``bind``, ``inplace``) lends them to
    the Kernel, so a kernel object shared by several lowerings adopts the protocol once.
    """
    fn: Callable
    algo: str = ""      # the algorithm chosen, when the op has several (im2col, winograd, direct ...)
    into: Optional[Callable] = None
    bind: Optional[Callable] = None
    inplace: bool = False
    views: Optional[Tuple[int, ...]] = None
    view: bool = False

    def __post_init__(self):
        if self.into is None and callable(getattr(self.fn, "into", None)):
            self.into = self.fn.into
            self.bind = getattr(self.fn, "bind", None)
            self.inplace = bool(getattr(self.fn, "inplace", False))

    def bound(self, out, *operands):
        """``(call, args)`` writing the result into ``out`` for operands that stay put (``bind``, else
        ``into`` with the arrays themselves)."""
        if self.bind is not None:
            return self.bind(out, *operands)
        return self.into, (out, *operands)


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
