"""Kernels of the ops the fuse pass makes.

- ``fused_elementwise`` runs its expression tree through the generated elementwise loops (one pass over
  memory for the whole chain);
- ``attention``: one numba kernel over units of query rows of each (batch, head) pair, split across
  numba's pool: per unit, the single-threaded BLAS GEMM (blas.py) computes the scores into a per-worker
  scratch block (k^T read in place, transposed view or not), each row is scaled, masked and softmaxed
  there (``norm.exp_shifted_sum``, vectorized exp), and a second GEMM multiplies the probabilities by v
  into the result. The unfused graph makes three passes and two temporaries over all the scores.
"""
from __future__ import annotations

import functools

import numba
import numpy as np
from numba import njit, prange, types

from ...backend.registry import Kernel, lowers
from ...errors import IrcError, UnsupportedError
from ...ops.fused import decode
from .blas import gemm
from .elementwise import Expr, elementwise_kernel
from .norm import exp_shifted_sum
from .pool import FAST
from .vmath import vmax


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


@njit(cache=True, fastmath=FAST)
def _attend(q, kt, v, mask, scale, out, block, lo, hi):
    """Units lo..hi of the attention (a unit: ``block`` query rows of one (batch, head) pair): S = q kt by
    BLAS into a scratch block, each row scaled, masked and softmaxed into a second one, O = P v by BLAS.
    Two [block, T] scratch blocks per call (one call per worker), nothing per unit."""
    n_b, n_h, n_s, _ = q.shape
    n_t = kt.shape[3]
    m_b, m_h, m_s, _ = mask.shape
    blocks = (n_s + block - 1) // block
    scores = np.empty((block, n_t), out.dtype)
    probs = np.empty((block, n_t), out.dtype)
    one = out.dtype.type(1)
    for u in range(lo, hi):
        bh, s0 = u // blocks, (u % blocks) * block
        b, h = bh // n_h, bh % n_h
        rows = min(block, n_s - s0)
        s, p = scores[:rows], probs[:rows]
        gemm(q[b, h, s0:s0 + rows], kt[b, h], s, 0.0)
        for i in range(rows):
            srow, prow, mrow = s[i], p[i], mask[b % m_b, h % m_h, (s0 + i) % m_s]
            for j in range(n_t):
                srow[j] = srow[j] * scale + mrow[j]
            inv = one / exp_shifted_sum(srow, vmax(srow), prow)
            for j in range(n_t):
                prow[j] *= inv
        gemm(p, v[b, h], out[b, h, s0:s0 + rows], 0.0)


def _attention(q, kt, v, mask, scale, out, block, tasks):
    """softmax(q @ kt * scale + mask) @ v into out, all [B, H, rows, cols] (the mask's B, H and rows 1 or
    the scores', its cols the scores' or a zero stride): units of ``block`` query rows split into ``tasks``
    parallel slices (run serially, without waking numba's pool, for one)."""
    units = q.shape[0] * q.shape[1] * ((q.shape[2] + block - 1) // block)
    if tasks == 1:
        _attend(q, kt, v, mask, scale, out, block, 0, units)
    else:
        for t in prange(tasks):
            _attend(q, kt, v, mask, scale, out, block, t * units // tasks, (t + 1) * units // tasks)


@functools.lru_cache(maxsize=None)
def _attention_kernel(dtype: np.dtype):
    """``_attention`` compiled for one float dtype, its operands typed as read-only arrays of any layout
    (views of transposes are read in place), so it compiles once per dtype whatever the layouts."""
    t = numba.from_dtype(dtype)
    view = types.Array(t, 4, "A", readonly=True)
    sig = types.void(view, view, view, view, t, types.Array(t, 4, "C"), types.int64, types.int64)
    return njit([sig], cache=True, parallel=True)(_attention)


def _as4(a: np.ndarray) -> np.ndarray:
    """a as [B, H, rows, cols]: rank 2 and 3 padded with leading 1s, leading axes beyond two merged."""
    if a.ndim < 4:
        return a.reshape((1,) * (4 - a.ndim) + a.shape)
    return a.reshape((-1,) + a.shape[-3:])


def _mask4(m: np.ndarray, batch: tuple, scores: tuple, node) -> np.ndarray:
    """The mask as [B or 1, H or 1, S or 1, T] (a view where it can be: the kernel broadcasts the leading
    dims itself); IrcError naming the node when it does not broadcast to the scores [*batch, S, T]."""
    full = batch + scores[2:]
    if m.ndim > len(full) or any(d != 1 and d != f for d, f in zip(m.shape[::-1], full[::-1])):
        raise IrcError(f"node {node.name!r}: attention mask {list(m.shape)} does not broadcast to the scores "
                       f"{list(full)}")
    if m.ndim > 4:      # leading axes to merge: broadcast them first
        m = np.broadcast_to(m, batch + m.shape[-2:])
    m4 = _as4(m)
    return m4 if m4.shape[3] == scores[3] else np.broadcast_to(m4, m4.shape[:3] + scores[3:])


def _block_rows(units: int, rows: int, cols: int, threads: int) -> int:
    """Query rows per unit: whole heads when there are two per thread, else heads split so there are;
    at most ``ATTENTION_SCRATCH`` scores per scratch block."""
    split = -(-2 * threads // units) if units < 2 * threads else 1
    return max(1, min(-(-rows // split), ATTENTION_SCRATCH // max(cols, 1)))


ATTENTION_SCRATCH = 1 << 16       # scores in one of a worker's two scratch blocks (256 KiB of float32)
ATTENTION_PARALLEL_MIN = 1 << 19  # multiply-adds from which the attention kernel wakes numba's pool


@lowers("attention", family="fused")
def lower_attention(node):
    """One numba kernel: per unit of query rows, BLAS for q @ kt and probabilities @ v, the scale, mask
    and softmax between them on the block while it is in cache."""
    dt = node.outputs[0].type.numpy_dtype
    if dt not in (np.float32, np.float64):
        raise UnsupportedError(f"node {node.name!r}: attention of {node.outputs[0].type.dtype} has no CPU kernel")
    scale = dt.type(node.attrs["scale"])

    def into(out, q, kt, v, mask=None):
        q4, kt4, v4 = _as4(q), _as4(kt), _as4(v)
        n_b, n_h, n_s, n_d = q4.shape
        n_t = kt4.shape[3]
        if kt4.shape[:3] != (n_b, n_h, n_d) or v4.shape[:3] != (n_b, n_h, n_t):
            raise IrcError(f"node {node.name!r}: attention operands q {list(q.shape)}, k^T {list(kt.shape)}, "
                           f"v {list(v.shape)} do not chain")
        m4 = _mask4(np.zeros((1, 1), dt) if mask is None else mask.astype(dt, copy=False), q.shape[:-2],
                    (n_b, n_h, n_s, n_t), node)
        out4 = out.reshape((n_b, n_h, n_s, v4.shape[3]))
        if out4.size:
            threads = numba.get_num_threads() if n_b * n_h * n_s * n_t * n_d >= ATTENTION_PARALLEL_MIN else 1
            block = _block_rows(n_b * n_h, n_s, n_t, threads)
            units = n_b * n_h * -(-n_s // block)
            _attention_kernel(dt)(q4, kt4, v4, m4, scale, out4, block, min(threads, units))

    def run(q, kt, v, mask=None):
        out = np.empty(q.shape[:-1] + (v.shape[-1],), dt)
        into(out, q, kt, v, mask)
        return out
    return Kernel(run, into=into)
