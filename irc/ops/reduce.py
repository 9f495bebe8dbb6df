"""Reductions over axes, and the ops that scan or rank along an axis (argmax, topk, cumsum).

The reductions take their axes as an optional operand (the newest ONNX form): omitted or empty means
every axis, unless ``noop_with_empty_axes`` is set, when nothing is reduced (the per-element part of the
op, a square or an abs, still applies). The references accumulate in float64 (int64 for integers) and
return the operand's dtype.
"""
import numpy as np

from ..errors import IrcError
from ..ir.types import TensorType
from .registry import define
from .tensor import ints, norm_axes, norm_axis, scalar_value

REDUCE_ATTRS = {"keepdims": 1, "noop_with_empty_axes": 0}


def reduced_axes(rank: int, axes, noop_with_empty_axes: int) -> tuple:
    """The sorted axes a reduction runs over: all when ``axes`` is omitted or empty, unless noop is asked."""
    ax = ints(axes)
    if not ax:
        return () if noop_with_empty_axes else tuple(range(rank))
    return tuple(sorted(norm_axes(ax, rank, "reduce axes")))


def reduced_dims(in_shape, axes, keepdims: int) -> tuple:
    """Result dims: reduced axes become 1 (keepdims) or are dropped."""
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(in_shape))
    return tuple(d for i, d in enumerate(in_shape) if i not in axes)


def _infer_reduce(ctx):
    s = ctx.shape(0)
    if s is None:
        return [TensorType(ctx.dtype(0), None)]
    if ctx.type(1) is not None and ctx.value(1) is None:
        n = ctx.shape(1)[0] if ctx.shape(1) else None
        if ctx["keepdims"]:
            return [TensorType(ctx.dtype(0), (None,) * len(s))]
        rank = len(s) - n if isinstance(n, int) and n > 0 else None
        return [TensorType(ctx.dtype(0), None if rank is None else (None,) * rank)]
    axes = reduced_axes(len(s), ctx.value(1), ctx["noop_with_empty_axes"])
    return [TensorType(ctx.dtype(0), reduced_dims(s, axes, ctx["keepdims"]))]


def extreme_identity(dtype, largest: bool):
    """The identity of max (``largest``) or min over ``dtype``: what a reduction over no elements gives."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return -np.inf if largest else np.inf
    if dtype.kind == "b":
        return not largest
    info = np.iinfo(dtype)
    return info.min if largest else info.max


def _wide(x):
    """x in the accumulation dtype of the references: float64 for floats, int64 for integers."""
    return x.astype(np.float64 if x.dtype.kind == "f" else np.int64)


def _log_sum_exp(v, axis, keepdims):
    m = np.max(v, axis=axis, keepdims=True, initial=-np.inf)
    m = np.where(np.isfinite(m), m, 0.0)
    out = np.log(np.sum(np.exp(v - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def _f64(v):
    return v.astype(np.float64)


# name: (ONNX op, fn(wide x, axis tuple, keepdims, operand dtype), what it computes)
REDUCTIONS = {
    "reduce_sum": ("ReduceSum", lambda v, a, k, dt: np.sum(v, a, keepdims=k), "sum"),
    "reduce_mean": ("ReduceMean", lambda v, a, k, dt: np.mean(_f64(v), a, keepdims=k), "mean"),
    "reduce_max": ("ReduceMax", lambda v, a, k, dt: np.max(v, a, keepdims=k, initial=extreme_identity(dt, True)),
                   "maximum"),
    "reduce_min": ("ReduceMin", lambda v, a, k, dt: np.min(v, a, keepdims=k, initial=extreme_identity(dt, False)),
                   "minimum"),
    "reduce_prod": ("ReduceProd", lambda v, a, k, dt: np.prod(v, a, keepdims=k), "product"),
    "reduce_l1": ("ReduceL1", lambda v, a, k, dt: np.sum(np.abs(v), a, keepdims=k), "sum of |x|"),
    "reduce_l2": ("ReduceL2", lambda v, a, k, dt: np.sqrt(np.sum(_f64(v) ** 2, a, keepdims=k)),
                  "square root of the sum of x**2"),
    "reduce_sum_square": ("ReduceSumSquare", lambda v, a, k, dt: np.sum(v * v, a, keepdims=k), "sum of x**2"),
    "reduce_log_sum": ("ReduceLogSum", lambda v, a, k, dt: np.log(np.sum(_f64(v), a, keepdims=k)), "log of the sum"),
    "reduce_log_sum_exp": ("ReduceLogSumExp", lambda v, a, k, dt: _log_sum_exp(_f64(v), a, k),
                           "log of the sum of e**x (computed shifted by the maximum)"),
}


def _define_reduction(name, onnx, fn, what):
    def ref(x, axes=None, *, keepdims, noop_with_empty_axes):
        ax = reduced_axes(x.ndim, axes, noop_with_empty_axes)
        return np.asarray(fn(_wide(x), ax, bool(keepdims), x.dtype)).astype(x.dtype)
    ref.__doc__ = f"The {what} of x over ``axes``."
    define(name, onnx=onnx, kind="reduce", attrs=dict(REDUCE_ATTRS), infer=_infer_reduce)(ref)


for _name, (_onnx, _fn, _what) in REDUCTIONS.items():
    _define_reduction(_name, _onnx, _fn, _what)


# -- argmax / argmin ---------------------------------------------------------------------------------------
def _infer_arg(ctx):
    s = ctx.shape(0)
    if s is None:
        return [TensorType("i64", None)]
    a = norm_axis(ctx["axis"], len(s), f"{ctx.op.name} axis")
    return [TensorType("i64", reduced_dims(s, (a,), ctx["keepdims"]))]


def arg_extreme(x, axis, keepdims, select_last_index, pick):
    """Index of the first (or last) extreme entry along ``axis``; ``pick`` is np.argmax or np.argmin."""
    a = norm_axis(axis, x.ndim, "arg axis")
    if x.shape[a] == 0:
        raise IrcError(f"cannot take an extreme along the empty axis {a}")
    if select_last_index:
        idx = x.shape[a] - 1 - pick(np.flip(x, a), axis=a)
    else:
        idx = pick(x, axis=a)
    idx = idx.astype(np.int64)
    return np.expand_dims(idx, a) if keepdims else idx


ARG_ATTRS = {"axis": 0, "keepdims": 1, "select_last_index": 0}


@define("argmax", onnx="ArgMax", kind="reduce", attrs=dict(ARG_ATTRS), infer=_infer_arg)
def argmax(x, *, axis, keepdims, select_last_index):
    """Index of the maximum along ``axis`` (the first one, or the last with select_last_index), i64."""
    return arg_extreme(x, axis, keepdims, select_last_index, np.argmax)


@define("argmin", onnx="ArgMin", kind="reduce", attrs=dict(ARG_ATTRS), infer=_infer_arg)
def argmin(x, *, axis, keepdims, select_last_index):
    """Index of the minimum along ``axis`` (the first one, or the last with select_last_index), i64."""
    return arg_extreme(x, axis, keepdims, select_last_index, np.argmin)


# -- topk, cumsum ------------------------------------------------------------------------------------------
def _infer_topk(ctx):
    s, k = ctx.shape(0), ctx.value(1)
    if s is None:
        return [TensorType(ctx.dtype(0), None), TensorType("i64", None)]
    a = norm_axis(ctx["axis"], len(s), "topk axis")
    kk = None if k is None else int(scalar_value(k, "topk k"))
    if kk is not None and isinstance(s[a], int) and not 0 <= kk <= s[a]:
        raise IrcError(f"topk k={kk} is out of range for an axis of size {s[a]}")
    dims = s[:a] + (kk,) + s[a + 1:]
    return [TensorType(ctx.dtype(0), dims), TensorType("i64", dims)]


@define("topk", onnx="TopK", kind="opaque", attrs={"axis": -1, "largest": 1, "sorted": 1}, infer=_infer_topk)
def topk(x, k, *, axis, largest, sorted):
    """The k largest (or smallest) entries along ``axis`` in order, and their indices; ties keep the lower index."""
    a = norm_axis(axis, x.ndim, "topk axis")
    kk, n = int(scalar_value(k, "topk k")), x.shape[a]
    if not 0 <= kk <= n:
        raise IrcError(f"topk k={kk} is out of range for an axis of size {n}")
    if largest:
        # a stable ascending sort of the reversed axis, read backwards: descending, ties by ascending index
        order = n - 1 - np.flip(np.argsort(np.flip(x, a), axis=a, kind="stable"), a)
    else:
        order = np.argsort(x, axis=a, kind="stable")
    idx = np.take(order, np.arange(kk), axis=a)
    return np.take_along_axis(x, idx, axis=a), idx.astype(np.int64)


def _infer_cumsum(ctx):
    return [ctx.types[0]]


@define("cumsum", onnx="CumSum", kind="opaque", attrs={"exclusive": 0, "reverse": 0}, infer=_infer_cumsum)
def cumsum(x, axis, *, exclusive, reverse):
    """Running sums along ``axis``, from the end with reverse, each without its own entry with exclusive."""
    a = norm_axis(int(scalar_value(axis, "cumsum axis")), x.ndim, "cumsum axis")
    v = np.flip(x, a) if reverse else x
    out = np.cumsum(_wide(v), axis=a)
    if exclusive:
        out = out - _wide(v)
    return (np.flip(out, a) if reverse else out).astype(x.dtype)
