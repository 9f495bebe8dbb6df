"""Reduce kernels.

Every reduction runs one numba kernel over an (outer, reduced, inner) view of a C-contiguous array: the
reduced axes are made adjacent first (a view when they already are, else a transposing copy that moves
them last). The kernel folds the reduced axis into an accumulator of float64 (int64 for integer
operands), so float32 sums are more accurate than a float32 running sum; the per-op finishing step (mean,
sqrt, log) runs in numpy on the small result. Reducing a contiguous row (inner = 1, the common case) lets
the compiler reassociate sums into vector partials; max and min keep NaN and use hand-split partials.

argmax/argmin, topk and cumsum are numpy's own compiled loops (the op references) and lower as such.
"""
import math
from typing import Optional

import numpy as np
from numba import njit

from ...backend.registry import Kernel, lowers
from ...ops.reduce import extreme_identity, reduced_axes, reduced_dims
from .movement import naming_node, numpy_kernel
from .pool import RowPool

SUM, ABS_SUM, SQUARE_SUM, PROD, MAX, MIN = range(6)
LANES = 8


@njit(cache=True, inline="always")
def _combine(acc, v, mode):
    """acc folded with one operand v by ``mode`` (a NaN operand wins max and min)."""
    if mode == SUM:
        return acc + v
    if mode == ABS_SUM:
        return acc + abs(v)
    if mode == SQUARE_SUM:
        return acc + v * v
    if mode == PROD:
        return acc * v
    if mode == MAX:
        return v if v > acc or v != v else acc
    return v if v < acc or v != v else acc


@njit(cache=True, fastmath={"reassoc"})
def _fold_rows(x, acc, mode):
    """acc[o] folded with the contiguous row x[o, :, 0] by a sum or product, which may be reassociated:
    the compiler keeps vectors of partial results (faster, and no less accurate than one running value)."""
    n_o, n_r, _ = x.shape
    for o in range(n_o):
        s = acc[o, 0]
        for r in range(n_r):
            s = _combine(s, x[o, r, 0], mode)
        acc[o, 0] = s


@njit(cache=True)
def _extreme_rows(x, acc, mode):
    """acc[o] and the maximum (minimum) of the row x[o, :, 0], in LANES independent partials: max and min
    propagate NaN, so they cannot be reassociated by the compiler, and are split by hand instead."""
    n_o, n_r, _ = x.shape
    lanes = np.empty(LANES, x.dtype)  # (an extreme of the operands is one of them: no wider type needed)
    for o in range(n_o):
        lanes[:] = x[o, 0, 0] if n_r else acc[o, 0]
        body = n_r - n_r % LANES
        for r in range(0, body, LANES):
            for j in range(LANES):
                lanes[j] = _combine(lanes[j], x[o, r + j, 0], mode)
        s = acc[o, 0]
        for j in range(LANES):
            s = _combine(s, lanes[j], mode)
        for r in range(body, n_r):
            s = _combine(s, x[o, r, 0], mode)
        acc[o, 0] = s


@njit(cache=True)
def reduce_3d(x, acc, mode):
    """acc[o, i] (filled with the identity of ``mode``) combined with every x[o, r, i]."""
    n_o, n_r, n_i = x.shape
    if n_i == 1:
        if mode == MAX or mode == MIN:
            _extreme_rows(x, acc, mode)
        else:
            _fold_rows(x, acc, mode)
        return
    for o in range(n_o):
        row = acc[o]
        for r in range(n_r):
            xr = x[o, r]
            for i in range(n_i):
                row[i] = _combine(row[i], xr[i], mode)


def as_3d(x: np.ndarray, axes: tuple) -> np.ndarray:
    """x as a contiguous (outer, reduced, inner) array: a view when ``axes`` are adjacent, else a copy
    with the reduced axes moved last."""
    x = np.asarray(x, order="C")
    if not axes:
        return x.reshape(-1, 1, 1)
    if axes[-1] - axes[0] + 1 != len(axes):
        keep = [a for a in range(x.ndim) if a not in axes]
        x = np.ascontiguousarray(x.transpose(keep + list(axes)))
        axes = tuple(range(len(keep), x.ndim))
    s = x.shape
    return x.reshape(math.prod(s[:axes[0]]), math.prod(s[axes[0]:axes[-1] + 1]), math.prod(s[axes[-1] + 1:]))


def _operand(x: np.ndarray) -> np.ndarray:
    """The kernel's operand dtypes (few, to keep compiled signatures few): f32 and f64 as they are, other
    floats as f32, integers as i64 (so products and squares do not overflow a narrow type)."""
    if x.dtype in (np.float32, np.float64, np.int64):
        return x
    return x.astype(np.float32 if x.dtype.kind == "f" else np.int64)


def _identity(mode: int, dtype: np.dtype):
    """The accumulator's start for operands of ``dtype``: what a reduction over no elements gives."""
    if mode in (MAX, MIN):
        return extreme_identity(dtype, mode == MAX)
    return 1 if mode == PROD else 0


def reduce(x: np.ndarray, axes: tuple, mode: int) -> np.ndarray:
    """The (outer, inner) accumulator of ``mode`` over ``axes`` of x (float64, or int64 for integers)."""
    x3 = as_3d(_operand(x), axes)
    acc_dtype = np.dtype(np.float64 if x3.dtype.kind == "f" else np.int64)
    acc = np.full((x3.shape[0], x3.shape[2]), _identity(mode, x.dtype), dtype=acc_dtype)
    reduce_3d(x3, acc, mode)
    return acc


def _log_sum_exp(x, axes):
    """log(sum(e**(x - m))) + m with m the maximum (0 where it is infinite), so large x do not overflow."""
    m = reduce(x, axes, MAX)
    m = np.where(np.isfinite(m), m, 0.0)
    x3 = as_3d(x, axes)
    shifted = np.exp(x3 - m[:, None, :])
    return np.log(reduce(shifted, (1,), SUM)) + m


def _n(x, axes):
    return math.prod(x.shape[a] for a in axes)


# op: accumulator of (x, axes) -> finished (outer, inner) array
FINISH = {
    "reduce_sum": lambda x, a: reduce(x, a, SUM),
    "reduce_mean": lambda x, a: reduce(x, a, SUM) / _n(x, a),
    "reduce_max": lambda x, a: reduce(x, a, MAX),
    "reduce_min": lambda x, a: reduce(x, a, MIN),
    "reduce_prod": lambda x, a: reduce(x, a, PROD),
    "reduce_l1": lambda x, a: reduce(x, a, ABS_SUM),
    "reduce_l2": lambda x, a: np.sqrt(reduce(x, a, SQUARE_SUM)),
    "reduce_sum_square": lambda x, a: reduce(x, a, SQUARE_SUM),
    "reduce_log_sum": lambda x, a: np.log(reduce(x, a, SUM)),
    "reduce_log_sum_exp": _log_sum_exp,
}


def _trailing_mean(node) -> Optional[RowPool]:
    """A float reduce_mean over constant trailing axes of a static operand (MobileNet's mean over H and W)
    as the global pool's row kernel, which writes into the output buffer; None for other reductions."""
    t, computed = node.inputs[0].type, len(node.inputs) > 1 and node.inputs[1].const_value is None
    if node.op != "reduce_mean" or not t.is_static or t.numpy_dtype.kind != "f" or computed:
        return None
    ax = reduced_axes(t.rank, node.inputs[1].const_value if len(node.inputs) > 1 else None,
                      node.attrs["noop_with_empty_axes"])
    if not ax or ax != tuple(range(t.rank - len(ax), t.rank)) or 0 in t.shape:
        return None
    return RowPool(math.prod(t.shape[:t.rank - len(ax)]), node.outputs[0].type.shape,
                   node.outputs[0].type.numpy_dtype, is_max=False)


def lower_reduction(node) -> Kernel:
    """A reduction whose axes are read from the operand's array at run time (constant or computed); a mean
    over constant trailing axes runs the global pool's row kernel instead (``_trailing_mean``)."""
    rows = _trailing_mean(node)
    if rows is not None:
        into = getattr(rows, "into", None)
        return Kernel(naming_node(node, lambda x, axes=None: rows(x)), algo="row-mean",
                      into=into and (lambda out, x, axes=None: into(out, x)))
    finish = FINISH[node.op]
    keepdims, noop = node.attrs["keepdims"], node.attrs["noop_with_empty_axes"]
    dtype = node.outputs[0].type.numpy_dtype

    def run(x, axes=None):
        ax = reduced_axes(x.ndim, axes, noop)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            out = finish(x, ax)
        return np.asarray(out.reshape(reduced_dims(x.shape, ax, keepdims)), dtype=dtype, order="C")
    return Kernel(naming_node(node, run), algo="numba-3d")


lowers(*FINISH, family="reduce")(lower_reduction)
lowers("argmax", "argmin", "topk", "cumsum", family="reduce", numba=False)(numpy_kernel)
