"""Normalization ops: batch, instance, group and layer normalization, local response normalization,
softmax and log-softmax.

All references compute in float64 and return the operand's dtype. The normalizations subtract a mean and
divide by sqrt(variance + epsilon) over a group of elements, then apply a per-channel (or, for layernorm,
per-element) scale and bias:

- ``batchnorm``: inference form, statistics given as operands (``mean``, ``var``), per channel (axis 1);
- ``instance_norm``: statistics of each (sample, channel) over the spatial dims;
- ``group_norm``: statistics of each (sample, group of channels), scale and bias per channel (the
  opset-21 form; the frontend expands the per-group parameters of opset 18);
- ``layernorm``: statistics over the dims from ``axis`` on, scale and bias broadcast over those dims;
  it also returns the mean and 1/stddev (dtype from ``stash_type``), with the reduced dims kept as 1s.
"""
from __future__ import annotations

import numpy as np

from ..errors import IrcError
from ..ir.types import TensorType, to_numpy_dtype
from .registry import REQUIRED, define
from .tensor import norm_axis

STASH_DTYPES = {1: "f32", 10: "f16", 11: "f64"}   # ONNX element type ids of layernorm's stash_type


def standardize(x: np.ndarray, axes) -> tuple:
    """(x - mean) / sqrt(var) pieces over ``axes`` in float64: (centered, mean, var), stats with kept dims."""
    xf = x.astype(np.float64)
    mean = xf.mean(axis=axes, keepdims=True)
    centered = xf - mean
    return centered, mean, (centered * centered).mean(axis=axes, keepdims=True)


def _channels_first(p: np.ndarray, rank: int) -> np.ndarray:
    """A per-channel parameter [C] (or a [C, ...] one) shaped to broadcast against [N, C, ...]."""
    return p.astype(np.float64).reshape(p.shape + (1,) * (rank - 1 - p.ndim))


def _check_params(ctx, first: int, what: str, shapes) -> None:
    """Operands from ``first`` on must have one of ``shapes`` (static dims compared only)."""
    for i in range(first, len(ctx.types)):
        p = ctx.shape(i)
        if p is None or ctx.type(i) is None:
            continue
        ok = any(len(p) == len(s) and all(not isinstance(a, int) or not isinstance(b, int) or a == b
                                          for a, b in zip(p, s)) for s in shapes)
        if not ok:
            raise IrcError(f"{what} operand {i} has shape {list(p)}, expected one of "
                           f"{' or '.join(str(list(s)) for s in shapes)}")


def _infer_channel_op(param_shapes):
    """Infer for ops of [N, C, ...] operands whose other operands are per-channel parameters."""
    def infer(ctx):
        x = ctx.shape(0)
        if x is not None:
            if len(x) < 2:
                raise IrcError(f"{ctx.op.name} needs an [N, C, ...] operand, got {ctx.type(0)}")
            _check_params(ctx, 1, ctx.op.name, param_shapes(x))
        return [ctx.types[0]]
    return infer


@define("batchnorm", onnx="BatchNormalization", kind="opaque", attrs={"epsilon": 1e-5},
        infer=_infer_channel_op(lambda x: [(x[1],), tuple(x[1:])]))
def batchnorm(x, scale, bias, mean, var, *, epsilon):
    """(x - mean) / sqrt(var + epsilon) * scale + bias, per channel (parameters [C]) or per activation
    (parameters shaped like x without its batch dim, the opset-7/8 ``spatial=0`` form)."""
    p = [_channels_first(a, x.ndim) for a in (scale, bias, mean, var)]
    y = (x.astype(np.float64) - p[2]) / np.sqrt(p[3] + epsilon) * p[0] + p[1]
    return y.astype(x.dtype)


@define("instance_norm", onnx="InstanceNormalization", kind="opaque", attrs={"epsilon": 1e-5},
        infer=_infer_channel_op(lambda x: [(x[1],)]))
def instance_norm(x, scale, bias, *, epsilon):
    """Each (sample, channel) normalized over its spatial dims, then scale[c] * . + bias[c]."""
    centered, _, var = standardize(x, tuple(range(2, x.ndim)))
    y = centered / np.sqrt(var + epsilon) * _channels_first(scale, x.ndim) + _channels_first(bias, x.ndim)
    return y.astype(x.dtype)


def _infer_group_norm(ctx):
    x = ctx.shape(0)
    g = ctx["num_groups"]
    if x is not None and isinstance(x[1], int) and (g < 1 or x[1] % g):
        raise IrcError(f"group_norm: {x[1]} channels do not split into {g} groups")
    return _infer_channel_op(lambda s: [(s[1],)])(ctx)


@define("group_norm", onnx="GroupNormalization", kind="opaque", attrs={"num_groups": REQUIRED, "epsilon": 1e-5},
        infer=_infer_group_norm)
def group_norm(x, scale, bias, *, num_groups, epsilon):
    """Channels split into ``num_groups`` groups; each (sample, group) normalized over its channels and
    spatial dims, then scale[c] * . + bias[c]."""
    n, c = x.shape[:2]
    if num_groups < 1 or c % num_groups:
        raise IrcError(f"group_norm: {c} channels do not split into {num_groups} groups")
    grouped = x.reshape((n, num_groups, -1))
    centered, _, var = standardize(grouped, 2)
    y = (centered / np.sqrt(var + epsilon)).reshape(x.shape)
    return (y * _channels_first(scale, x.ndim) + _channels_first(bias, x.ndim)).astype(x.dtype)


def stash_dtype(stash_type: int) -> str:
    try:
        return STASH_DTYPES[int(stash_type)]
    except KeyError:
        raise IrcError(f"layernorm stash_type {stash_type} is not supported") from None


def _infer_layernorm(ctx):
    x, u = ctx.shape(0), stash_dtype(ctx["stash_type"])
    if x is None:
        return [ctx.types[0], TensorType(u, None), TensorType(u, None)]
    a = norm_axis(ctx["axis"], len(x), "layernorm axis")
    for i in (1, 2):
        p = ctx.shape(i)
        if p is not None and len(p) > len(x) - a:
            raise IrcError(f"layernorm operand {i} of shape {list(p)} does not broadcast over {list(x[a:])}")
    stats = TensorType(u, tuple(x[:a]) + (1,) * (len(x) - a))
    return [ctx.types[0], stats, stats]


@define("layernorm", onnx="LayerNormalization", kind="opaque", infer=_infer_layernorm,
        attrs={"axis": -1, "epsilon": 1e-5, "stash_type": 1})
def layernorm(x, scale, bias=None, *, axis, epsilon, stash_type):
    """Normalize over the dims from ``axis`` on, then * scale + bias (broadcast over those dims).
    Results: y, the mean and 1/sqrt(var + epsilon) (reduced dims kept as 1s)."""
    a = norm_axis(axis, x.ndim, "layernorm axis")
    centered, mean, var = standardize(x, tuple(range(a, x.ndim)))
    inv = 1.0 / np.sqrt(var + epsilon)
    y = centered * inv * scale.astype(np.float64)
    if bias is not None:
        y = y + bias
    u = to_numpy_dtype(stash_dtype(stash_type))
    return y.astype(x.dtype), mean.astype(u), inv.astype(u)


def _infer_lrn(ctx):
    x = ctx.shape(0)
    if x is not None and len(x) < 3:
        raise IrcError(f"lrn needs an [N, C, *spatial] operand, got {ctx.type(0)}")
    if ctx["size"] < 1:
        raise IrcError(f"lrn size {ctx['size']} must be positive")
    return [ctx.types[0]]


@define("lrn", onnx="LRN", kind="opaque", attrs={"size": REQUIRED, "alpha": 1e-4, "beta": 0.75, "bias": 1.0},
        infer=_infer_lrn)
def lrn(x, *, size, alpha, beta, bias):
    """x / (bias + alpha / size * sum of x^2 over the ``size`` channels around c) ** beta; the window
    runs from c - floor((size - 1) / 2) to c + ceil((size - 1) / 2), clipped to the channels."""
    sq = np.square(x.astype(np.float64))
    c = x.shape[1]
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    padded = np.pad(sq, [(0, 0), (lo, hi)] + [(0, 0)] * (x.ndim - 2))
    total = sum(padded[:, i:i + c] for i in range(size))
    return (x / (bias + alpha / size * total) ** beta).astype(x.dtype)


def _infer_softmax(ctx):
    x = ctx.shape(0)
    if x is not None:
        norm_axis(ctx["axis"], len(x), f"{ctx.op.name} axis")
    return [ctx.types[0]]


def _log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    """x - max - log(sum of exp(x - max)) in float64; a row with a NaN or only -inf gives NaNs."""
    xf = x.astype(np.float64)
    with np.errstate(invalid="ignore"):
        shifted = xf - xf.max(axis=axis, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


@define("softmax", onnx="Softmax", kind="opaque", attrs={"axis": -1}, infer=_infer_softmax)
def softmax(x, *, axis):
    """exp(x) / sum of exp(x) along one axis."""
    return np.exp(_log_softmax(x, norm_axis(axis, x.ndim))).astype(x.dtype)


@define("log_softmax", onnx="LogSoftmax", kind="opaque", attrs={"axis": -1}, infer=_infer_softmax)
def log_softmax(x, *, axis):
    """x - log(sum of exp(x)) along one axis."""
    return _log_softmax(x, norm_axis(axis, x.ndim)).astype(x.dtype)
