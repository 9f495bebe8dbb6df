"""Elementwise kernels on the device, generated from the CPU family's scalar templates.

The statements come from the very emitter and whitelisted template table of ``kernels/cpu/elementwise``
(an op name is checked against that table, attribute values enter as number literals only), so an op
means the same thing on both targets. Only the loop around them differs: one CUDA thread per output
element (grid-stride), which splits its flat index into coordinates over the coalesced output shape and
reads each operand at its broadcast strides. A kernel is generated per expression, operand dtypes and
loop rank, written to the kernel cache like the CPU's (``codegen.load_module``); its ``np`` is
``npshim``, which supplies the scalar ufuncs numba.cuda lacks.

float16 has no device kernel yet (the CPU computes it in float32 and rounds back).
"""
from __future__ import annotations

import math
from typing import Dict, Sequence

import numpy as np

from ...backend.cuda_registry import lowers
from ...errors import IrcError, UnsupportedError
from ...ir.types import to_numpy_dtype
from ..cpu.codegen import broadcast_strides, coalesce, load_module
from ..cpu.elementwise import TEMPLATES, Expr, _Emitter, lower_with, memoized
from ..cpu.gemm import epilogue_tree
from .device import contiguous_strides, empty, flat, launch, upload

_HEADER = '''"""irc CUDA elementwise kernel: {expr}"""
import math

from numba import cuda

from irc.kernels.cuda import npshim as np
from irc.kernels.cuda.npshim import vexp
'''


class DeviceElementwise:
    """Runs an expression tree over broadcast device operands: ``k(*arrays) -> device array``."""

    def __init__(self, tree: Expr, in_dtypes: Sequence[str]):
        self.tree = tree
        em = _Emitter(in_dtypes)
        self._root, self.out_dtype = em.visit(tree)
        if "f16" in (*in_dtypes, self.out_dtype):
            raise UnsupportedError(f"elementwise {tree}: float16 has no CUDA kernel")
        self._body, self._used, self._n = em.lines, em.used, len(in_dtypes)
        self._out_np = to_numpy_dtype(self.out_dtype)
        self._plans: Dict[tuple, tuple] = {}
        self._kernels: Dict[int, object] = {}

    def source(self, rank: int) -> str:
        """The module text of the loop over a coalesced output shape of ``rank`` dims."""
        args = "".join(f", a{i}" for i in range(self._n))
        split = []
        for d in range(rank - 1, 0, -1):
            split += [f"c{d} = r % shape[{d}]", f"r = r // shape[{d}]"]
        loads = [f"x{i} = a{i}[" + " + ".join(f"c{d} * strides[{i * rank + d}]" for d in range(rank)) + "]"
                 for i in sorted(self._used)]
        inner = ["r = i", *split, "c0 = r", *loads, *self._body, f"out[i] = {self._root}", "i += step"]
        lines = ["@cuda.jit(cache=True)", f"def kernel(out, n, shape, strides{args}):",
                 "    i = cuda.grid(1)", "    step = cuda.gridsize(1)", "    while i < n:",
                 *(f"        {s}" for s in inner)]
        return _HEADER.format(expr=self.tree) + "\n\n" + "\n".join(lines) + "\n"

    def _kernel(self, rank: int):
        if rank not in self._kernels:
            self._kernels[rank] = load_module(self.source(rank), "cuda_ew").kernel
        return self._kernels[rank]

    def _plan(self, shapes) -> tuple:
        """(output shape, loop shape, flat operand strides) for operands of ``shapes``."""
        plan = self._plans.get(shapes)
        if plan is None:
            try:
                out = tuple(int(d) for d in np.broadcast_shapes(*shapes))
            except ValueError:
                raise IrcError(f"elementwise {self.tree}: operand shapes {[list(s) for s in shapes]} "
                               "do not broadcast") from None
            full = [broadcast_strides(s, out, contiguous_strides(s)) for s in shapes]
            loop, strides = coalesce(out, full)
            if not loop:
                loop, strides = [1], [[0] for _ in shapes]
            plan = self._plans[shapes] = (out, tuple(loop), tuple(s for st in strides for s in st))
        return plan

    def __call__(self, *arrays):
        if len(arrays) != self._n:
            raise IrcError(f"elementwise {self.tree} takes {self._n} operands, got {len(arrays)}")
        out_shape, loop, strides = self._plan(tuple(tuple(a.shape) for a in arrays))
        out = empty(out_shape, self._out_np)
        n = math.prod(out_shape)
        if n:
            self._kernel(len(loop))[launch(n)](flat(out), n, loop, strides, *(flat(a) for a in arrays))
        return out


# The device kernel computing ``tree`` over operands of IR dtypes ``in_dtypes``.
device_elementwise = memoized(DeviceElementwise)


@lowers(*TEMPLATES, family="elementwise")
def lower_elementwise(node):
    """Every elementwise op: its one-node tree through a generated device kernel."""
    return lower_with(node, device_elementwise)


def with_epilogue(node, run, first_extra):
    """The kernel of a conv2d/gemm/matmul ``node``: ``run`` on its own operands (those before
    ``first_extra``), then its fused epilogue (``epilogue_tree``: adds of the extra operands,
    activations) as one generated elementwise launch."""
    found = epilogue_tree(node, first_extra)
    if found is None:
        return lambda *args: run(*args[:first_extra])
    tree, bounds = found
    bounds = [upload(b) for b in bounds]
    n_operands = 1 + max(0, len(node.inputs) - first_extra) + len(bounds)
    k = device_elementwise(tree, [node.outputs[0].type.dtype] * n_operands)
    return lambda *args: k(run(*args[:first_extra]), *args[first_extra:], *bounds)
