"""Kernels of the ops the fuse pass makes.

- ``fused_elementwise`` runs its expression tree through the generated elementwise loops (one pass over
  memory for the whole chain);
- ``attention``: the two matrix products go to BLAS through numpy's matmul (one GEMM per batch*head
  block); between them one numba pass over each row of scores scales it, adds the mask and takes the
  softmax in place, where the unfused graph makes three passes and two temporaries.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ...backend.registry import Kernel, lowers
from ...errors import IrcError, UnsupportedError
from ...ops.fused import decode
from .elementwise import Expr, elementwise_kernel


def to_expr(tree) -> object:
    """The generator's ``Expr`` of a decoded tree (operand indices and None stay as they are)."""
    if tree is None or isinstance(tree, int):
        return tree
    op, args, attrs = tree
    return Expr.make(op, *(to_expr(a) for a in args), **attrs)


def fused_kernel(node, make):
    """The kernel ``make(tree, operand dtypes)`` builds for a fused_elementwise node, checked to compute
    the node's result dtype (``make`` is the CPU or the device generator)."""
    tree = decode(node.attrs["expr"], node.attrs["params"], len(node.inputs))
    k = make(to_expr(tree), [v.type.dtype for v in node.inputs])
    if k.out_dtype != node.outputs[0].type.dtype:
        raise IrcError(f"fused_elementwise kernel computes {k.out_dtype}, the node's result is "
                       f"{node.outputs[0].type}")
    return k


@lowers("fused_elementwise", family="elementwise")
def lower_fused_elementwise(node):
    """The node's tree as one generated kernel over its operands."""
    return Kernel(fused_kernel(node, elementwise_kernel))


@njit(cache=True)
def masked_softmax(s, mask, scale, heads):
    """In place over s [N, S, T]: each row x -> softmax(x * scale + mask row), the mask [B, heads, S, T]
    (broadcast: zero strides) read at block n as mask[n // heads, n % heads]."""
    n, rows, cols = s.shape
    for b in range(n):
        mb = mask[b // heads, b % heads]
        for i in range(rows):
            row, mrow = s[b, i], mb[i]
            top = -np.inf
            for j in range(cols):
                x = row[j] * scale + mrow[j]
                row[j] = x
                top = max(top, x)
            total = 0.0
            for j in range(cols):
                e = np.exp(row[j] - top)
                row[j] = e
                total += e
            inv = 1.0 / total
            for j in range(cols):
                row[j] *= inv


def _mask4(mask, batch, rows, cols, dtype) -> np.ndarray:
    """The mask (zeros when absent) broadcast to [B, H, S, T] for batch axes ``batch`` (H the last)."""
    m = np.zeros((), dtype) if mask is None else mask.astype(dtype, copy=False)
    full = np.broadcast_to(m, tuple(batch) + (rows, cols))
    return full.reshape((-1, batch[-1] if batch else 1, rows, cols))


@lowers("attention", family="fused")
def lower_attention(node):
    """BLAS for q @ kt and probabilities @ v, the scale, mask and softmax in one numba pass between."""
    dt = node.outputs[0].type.numpy_dtype
    if dt not in (np.float32, np.float64):
        raise UnsupportedError(f"node {node.name!r}: attention of {node.outputs[0].type.dtype} has no CPU kernel")
    scale = float(node.attrs["scale"])

    def run(q, kt, v, mask=None):
        scores = np.matmul(q, kt)
        batch, rows, cols = scores.shape[:-2], scores.shape[-2], scores.shape[-1]
        blocks = scores.reshape((-1, rows, cols))
        masked_softmax(blocks, _mask4(mask, batch, rows, cols, dt), scale, batch[-1] if batch else 1)
        return np.matmul(blocks.reshape(scores.shape), v)
    return Kernel(run)
