"""Spatial ops on [N, C, *spatial] tensors: window pooling, global pooling and resize.

Pools follow ONNX: a window of ``kernel_shape`` taps ``dilations`` apart slides with ``strides`` over the
input padded by ``pads`` ([begin..., end...], or ``auto_pad``); ``ceil_mode`` rounds the output size up
(a last window that would start in the end padding is dropped, as onnxruntime and PyTorch do). Padding
never wins a max; an average divides by the taps inside the input, or with ``count_include_pad`` by the
taps inside the padded input. Unset strides, pads and dilations (None) mean 1, 0 and 1 on every axis.

Resize maps output index ``x`` of each axis to a coordinate of the input (``coordinate_transformation_mode``)
and takes the nearest input element, or interpolates linearly or cubically between neighbours. Every mode
is separable, so the op is a sequence of 1-D resamplings, each described by a table of input taps and
weights per output index (``resize_taps``): the reference and the CPU kernel both apply those tables.
Coordinates are computed in float32, as onnxruntime does, so nearest rounding ties break the same way.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..errors import IrcError
from ..ir.types import TensorType
from .nn import resolve_auto_pad
from .registry import REQUIRED, define
from .tensor import norm_axes

POOL_ATTRS = {"kernel_shape": REQUIRED, "strides": None, "pads": None, "dilations": None, "auto_pad": "NOTSET",
              "ceil_mode": 0}


# -- window pools ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PoolGeometry:
    """A pool's window geometry resolved for given spatial sizes: pads are [begin..., end...]."""
    kernel: Tuple[int, ...]
    strides: Tuple[int, ...]
    dilations: Tuple[int, ...]
    pads: Optional[Tuple[int, ...]]      # None while auto_pad waits for symbolic sizes
    out: Tuple[object, ...]              # output spatial dims (int, or None when unknown)


def pool_out_dim(size, k: int, s: int, d: int, pb: int, pe: int, ceil_mode: int):
    """Output length of one pooled axis (None for a symbolic size)."""
    if not isinstance(size, int):
        return None
    span = size + pb + pe - d * (k - 1) - 1
    if span < 0:
        raise IrcError(f"pool window of {k} taps (dilation {d}) is larger than the padded input {size + pb + pe}")
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + pb:
        out -= 1
    return out


def height_one_attrs(attrs: dict) -> dict:
    """A 1-D pool's attributes as those of the same pool of a height-1 image."""
    out = dict(attrs, kernel_shape=[1] + list(attrs["kernel_shape"]))
    for key in ("strides", "dilations"):
        if attrs[key]:
            out[key] = [1] + list(attrs[key])
    if attrs["pads"]:
        out["pads"] = [0, attrs["pads"][0], 0, attrs["pads"][1]]
    return out


def pool_geometry(spatial: Sequence, attrs: dict) -> PoolGeometry:
    """Resolve defaults and auto_pad of a pool's attributes for input spatial dims ``spatial``."""
    n = len(spatial)
    kernel = tuple(int(k) for k in attrs["kernel_shape"])
    strides = tuple(attrs["strides"] or (1,) * n)
    dilations = tuple(attrs["dilations"] or (1,) * n)
    pads = list(attrs["pads"] or (0,) * (2 * n))
    if len(kernel) != n or len(strides) != n or len(dilations) != n or len(pads) != 2 * n:
        raise IrcError(f"pool attributes kernel_shape={list(kernel)}, strides={list(strides)}, "
                       f"dilations={list(dilations)}, pads={pads} do not fit {n} spatial dims")
    if min(kernel + strides + dilations) < 1 or min(pads) < 0:
        raise IrcError("pool kernel_shape, strides and dilations must be positive and pads non-negative")
    pads = resolve_auto_pad(attrs["auto_pad"], spatial, kernel, strides, dilations, pads)
    if pads is None:
        return PoolGeometry(kernel, strides, dilations, None, (None,) * n)
    for i in range(n):
        if max(pads[i], pads[i + n]) >= dilations[i] * (kernel[i] - 1) + 1:
            raise IrcError(f"pool pads {pads} must be smaller than the window on axis {i}")
    out = tuple(pool_out_dim(spatial[i], kernel[i], strides[i], dilations[i], pads[i], pads[i + n],
                             attrs["ceil_mode"]) for i in range(n))
    return PoolGeometry(kernel, strides, dilations, tuple(pads), out)


def _spatial_shape(ctx, what: str):
    """Operand 0's shape, which must be [N, C, *spatial]."""
    x = ctx.shape(0)
    if x is None or len(x) < 3:
        raise IrcError(f"{what} needs an [N, C, *spatial] operand, got {ctx.type(0)}")
    return x


def _infer_pool(ctx):
    x = _spatial_shape(ctx, ctx.op.name)
    g = pool_geometry(x[2:], ctx.attrs)
    return [TensorType(ctx.dtype(0), (x[0], x[1]) + g.out)]


def _window(o: int, k: int, s: int, d: int, size: int, pb: int, pe: int):
    """The input indices of one output position's window on one axis, and the count of taps inside the
    padded input (what count_include_pad divides by)."""
    taps = o * s - pb + d * np.arange(k)
    return taps[(taps >= 0) & (taps < size)], int(np.count_nonzero(taps < size + pe))


def pool_reference(x: np.ndarray, reduce_max: bool, attrs: dict, count_include_pad: int = 0) -> np.ndarray:
    """Max or average pooling, one output position at a time (the oracle; any number of spatial dims)."""
    g = pool_geometry(x.shape[2:], attrs)
    n = len(g.kernel)
    xf = x.astype(np.float64)
    y = np.empty(x.shape[:2] + g.out, np.float64)
    axes = tuple(range(2, 2 + n))
    for pos in np.ndindex(*g.out):
        wins = [_window(pos[i], g.kernel[i], g.strides[i], g.dilations[i], x.shape[2 + i], g.pads[i],
                        g.pads[i + n]) for i in range(n)]
        win = xf[(slice(None), slice(None)) + np.ix_(*(w[0] for w in wins))]
        if reduce_max:
            y[(Ellipsis,) + pos] = win.max(axis=axes)
        else:
            count = math.prod(w[1] if count_include_pad else len(w[0]) for w in wins)
            y[(Ellipsis,) + pos] = win.sum(axis=axes) / count
    return y.astype(x.dtype)


@define("maxpool", onnx="MaxPool", kind="opaque", attrs=POOL_ATTRS, infer=_infer_pool)
def maxpool(x, **attrs):
    """Max over each (dilated) window; padding is ignored."""
    return pool_reference(x, True, attrs)


@define("avgpool", onnx="AveragePool", kind="opaque", attrs={**POOL_ATTRS, "count_include_pad": 0},
        infer=_infer_pool)
def avgpool(x, *, count_include_pad, **attrs):
    """Mean over each (dilated) window: of the taps inside the input, or of all inside the padded input."""
    return pool_reference(x, False, attrs, count_include_pad)


def _infer_global_pool(ctx):
    x = _spatial_shape(ctx, ctx.op.name)
    return [TensorType(ctx.dtype(0), (x[0], x[1]) + (1,) * (len(x) - 2))]


@define("global_avgpool", onnx="GlobalAveragePool", kind="reduce", infer=_infer_global_pool)
def global_avgpool(x):
    """Mean over all spatial dims, kept as 1s."""
    axes = tuple(range(2, x.ndim))
    return x.astype(np.float64).mean(axis=axes, keepdims=True).astype(x.dtype)


@define("global_maxpool", onnx="GlobalMaxPool", kind="reduce", infer=_infer_global_pool)
def global_maxpool(x):
    """Max over all spatial dims, kept as 1s."""
    return x.max(axis=tuple(range(2, x.ndim)), keepdims=True)


# -- resize ------------------------------------------------------------------------------------------------
RESIZE_MODES = ("nearest", "linear", "cubic")
COORDINATE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                    "tf_half_pixel_for_nn")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
ASPECT_POLICIES = ("stretch", "not_larger", "not_smaller")
F32 = np.float32


def _present(a) -> bool:
    """An operand value that is given and not empty (opset 11 passes an empty scales with sizes)."""
    return a is not None and np.size(a) > 0


def resize_plan(in_shape: Sequence, scales, sizes, axes, policy: str):
    """Per axis of the input: (scale, output length); a length is None where it is not known yet.

    ``scales`` or ``sizes`` (constant arrays, an empty one counts as absent) cover ``axes`` (all axes
    when None); other axes keep scale 1. With sizes, the scale is out/in, or under the keep-aspect-ratio
    policies one scale for all ``axes`` (the smallest or largest out/in) and lengths round(scale * in).
    With scales, the length is trunc(scale * in) computed in float32.
    """
    rank = len(in_shape)
    axes = list(range(rank)) if axes is None else norm_axes(axes, rank, "resize axes")
    plan = [(1.0, d) for d in in_shape]
    given = sizes if _present(sizes) else scales
    if not _present(given):
        raise IrcError("resize needs scales or sizes")
    given = np.asarray(given).reshape(-1)
    if len(given) != len(axes):
        raise IrcError(f"resize {'sizes' if _present(sizes) else 'scales'} {given.tolist()} must have one "
                       f"entry per axis of {list(axes)}")
    if policy not in ASPECT_POLICIES:
        raise IrcError(f"unknown keep_aspect_ratio_policy {policy!r}")
    if not _present(sizes):
        if np.any(given <= 0):
            raise IrcError(f"resize scales {given.tolist()} must be positive")
        for a, s in zip(axes, given.astype(F32)):
            d = in_shape[a]
            plan[a] = (float(s), int(s * F32(d)) if isinstance(d, int) else (d if s == 1 else None))
        return plan
    if policy == "stretch":
        for a, n in zip(axes, given):
            d = in_shape[a]
            plan[a] = (float(F32(n) / F32(d)) if isinstance(d, int) and d > 0 else 1.0, int(n))
        return plan
    if not all(isinstance(in_shape[a], int) and in_shape[a] > 0 for a in axes):
        return [(1.0, None) if a in axes else p for a, p in enumerate(plan)]
    ratios = [float(F32(n) / F32(in_shape[a])) for a, n in zip(axes, given)]
    s = min(ratios) if policy == "not_larger" else max(ratios)
    for a in axes:
        plan[a] = (s, int(math.floor(s * in_shape[a] + 0.5)))
    return plan


def _coordinates(out_len: int, in_len: int, scale: float, mode: str) -> np.ndarray:
    """The input coordinate of each output index along one axis (float32, as onnxruntime)."""
    x, s = np.arange(out_len, dtype=F32), F32(scale)
    half = F32(0.5)
    if mode == "asymmetric":
        return x / s
    if mode == "half_pixel":
        return (x + half) / s - half
    if mode == "pytorch_half_pixel":
        return (x + half) / s - half if out_len > 1 else np.zeros(out_len, F32)
    if mode == "tf_half_pixel_for_nn":
        return (x + half) / s
    if mode == "align_corners":
        return x * F32(in_len - 1) / F32(out_len - 1) if out_len > 1 else np.zeros(out_len, F32)
    if mode == "half_pixel_symmetric":
        adjustment = F32(out_len) / (s * F32(in_len))
        offset = F32(in_len) / F32(2) * (F32(1) - adjustment)
        return offset + (x + half) / s - half
    raise IrcError(f"unknown coordinate_transformation_mode {mode!r}")


def _nearest(c: np.ndarray, mode: str) -> np.ndarray:
    """The nearest input index of each coordinate under ``nearest_mode`` (ties as the mode says)."""
    if mode == "floor":
        return np.floor(c)
    if mode == "ceil":
        return np.ceil(c)
    if mode == "round_prefer_ceil":
        return np.floor(c + F32(0.5))
    if mode == "round_prefer_floor":
        return np.ceil(c - F32(0.5))
    raise IrcError(f"unknown nearest_mode {mode!r}")


def _cubic_weights(r: np.ndarray, a: float) -> np.ndarray:
    """Keys cubic convolution weights of the taps at distances 1+r, r, 1-r, 2-r."""
    def near(t):   # |t| <= 1
        return ((a + 2) * t - (a + 3)) * t * t + 1

    def far(t):    # 1 < |t| < 2
        return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.stack([far(1 + r), near(r), near(1 - r), far(2 - r)], axis=1)


def resize_taps(in_len: int, out_len: int, scale: float, attrs: dict) -> Tuple[np.ndarray, np.ndarray]:
    """For each output index of one axis, the input indices (int64 [out, K]) and weights (float64 [out, K])
    it is made of: K is 1 for nearest, 2 for linear, 4 for cubic."""
    mode = attrs["mode"]
    c = _coordinates(out_len, in_len, scale, attrs["coordinate_transformation_mode"])
    if mode == "nearest":
        idx = np.clip(_nearest(c, attrs["nearest_mode"]), 0, in_len - 1).astype(np.int64)
        return idx[:, None], np.ones((out_len, 1))
    if mode == "linear":
        c = np.clip(c, F32(0), F32(in_len - 1))
        lo = np.floor(c).astype(np.int64)
        r = (c - lo).astype(np.float64)
        return np.stack([lo, np.minimum(lo + 1, in_len - 1)], axis=1), np.stack([1 - r, r], axis=1)
    if mode == "cubic":
        lo = np.floor(c).astype(np.int64)
        w = _cubic_weights((c - lo).astype(np.float64), attrs["cubic_coeff_a"])
        idx = lo[:, None] + np.arange(-1, 3)
        if attrs["exclude_outside"]:
            w = np.where((idx >= 0) & (idx < in_len), w, 0.0)
            w = w / w.sum(axis=1, keepdims=True)
        return np.clip(idx, 0, in_len - 1), w
    raise IrcError(f"unknown resize mode {mode!r}")


def is_identity_taps(idx: np.ndarray, w: np.ndarray) -> bool:
    """True when the taps copy the axis unchanged (output i takes input i with weight 1)."""
    n = idx.shape[0]
    hit = (idx == np.arange(n)[:, None])
    return bool(np.all(np.where(hit, w, 0.0).sum(axis=1) == 1.0) and np.all(np.where(hit, 0.0, w) == 0.0))


def _check_resize_attrs(attrs: dict):
    """IrcError for a mode, coordinate mode or nearest mode resize does not know."""
    for key, allowed in (("mode", RESIZE_MODES), ("coordinate_transformation_mode", COORDINATE_MODES),
                         ("nearest_mode", NEAREST_MODES)):
        if attrs[key] not in allowed:
            raise IrcError(f"resize {key} {attrs[key]!r} is not one of {', '.join(allowed)}")


def _infer_resize(ctx):
    _check_resize_attrs(ctx.attrs)
    if ctx.type(1) is None and ctx.type(2) is None:
        raise IrcError("resize needs scales or sizes")
    x = ctx.shape(0)
    given = ctx.value(2) if ctx.type(2) is not None else ctx.value(1)
    if x is None or given is None:
        return [TensorType(ctx.dtype(0), None if x is None else (None,) * len(x))]
    plan = resize_plan(x, ctx.value(1), ctx.value(2), ctx["axes"], ctx["keep_aspect_ratio_policy"])
    return [TensorType(ctx.dtype(0), tuple(n for _, n in plan))]


RESIZE_ATTRS = {"mode": "nearest", "coordinate_transformation_mode": "half_pixel",
                "nearest_mode": "round_prefer_floor", "cubic_coeff_a": -0.75, "exclude_outside": 0,
                "axes": None, "keep_aspect_ratio_policy": "stretch"}


def resize_tables(in_shape: Sequence[int], scales, sizes, attrs: dict) -> Tuple[List[int], list]:
    """The output shape and, per axis that changes, (axis, indices, weights) (see ``resize_taps``)."""
    _check_resize_attrs(attrs)
    plan = resize_plan(in_shape, scales, sizes, attrs["axes"], attrs["keep_aspect_ratio_policy"])
    steps = []
    for a, ((scale, n), d) in enumerate(zip(plan, in_shape)):
        if n == 0 or d == 0:
            continue
        idx, w = resize_taps(d, n, scale, attrs)
        if n != d or not is_identity_taps(idx, w):
            steps.append((a, idx, w))
    return [n for _, n in plan], steps


def resize_result(y: np.ndarray, dtype) -> np.ndarray:
    """The float result of resampling as ``dtype``: integers are truncated toward zero, as onnxruntime
    casts them, after a nudge of 1e-3 away from zero so that a result the float arithmetic leaves just
    short of an integer still gives that integer; then clipped to the dtype's range (cubic overshoots)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        y = np.clip(np.trunc(y + np.copysign(1e-3, y)), info.min, info.max)
    return y.astype(dtype, copy=False)


@define("resize", onnx="Resize", kind="opaque", attrs=RESIZE_ATTRS, infer=_infer_resize)
def resize(x, scales=None, sizes=None, **attrs):
    """Resample x to new lengths along its axes (from ``scales`` or ``sizes``): nearest, linear or cubic."""
    out_shape, steps = resize_tables(x.shape, scales, sizes, attrs)
    if any(n == 0 for n in out_shape) or x.size == 0:
        return np.zeros(out_shape, x.dtype)
    y = x.astype(np.float64)
    for a, idx, w in steps:
        taps = np.take(y, idx, axis=a)                       # the axis becomes [out, K]
        shape = [1] * y.ndim
        shape[a:a + 1] = list(w.shape)
        y = (taps * w.reshape(shape)).sum(axis=a + 1)
    return resize_result(y, x.dtype)
