"""Calibration: watch each activation over the calibration data, then choose the range it is quantized to.

Three methods, chosen by name:

- ``minmax``: the smallest and largest value seen. Nothing is clipped, so one outlier widens the step
  for every other value.
- ``percentile``: the magnitude below which ``percentile`` % of the values lie (a histogram of ``|x|``),
  so the rarest outliers are clipped.
- ``entropy``: TensorRT's KL-divergence calibration. Of the thresholds ``T`` at histogram bin edges from
  bin 128 up, pick the one whose quantized distribution (the histogram below ``T`` merged into as many
  bins as the int8 type has levels over ``[0, T]``, values above ``T`` folded into the last bin) loses the
  least information against the clipped reference, measured as KL(reference || quantized); empty bins
  are smoothed as onnxruntime smooths them. As in NVIDIA's pytorch-quantization, the zero bin counts as
  much as its neighbour (a relu's spike of exact zeros would decide the divergence alone), and a
  threshold that folds everything into one bin is not a candidate (its KL is a meaningless 0).

Both histogram methods see the data twice: once for the exact ``max|x|`` (the histogram's range), then
to fill ``BINS`` bins over ``[0, max|x|]``, so the result does not depend on the order of the samples.
The chosen threshold ``T`` bounds the observed range: ``[max(min, -T), min(max, T)]``.

Scales and zero points follow onnxruntime's quantizer: the range is widened to include 0; activations
are asymmetric over the whole type (u8 0..255, i8 -128..127); weights are symmetric int8 (-127..127)
per output channel; a scale below float32's smallest normal becomes 1 with zero point 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, Optional, Tuple

import numpy as np

from ..errors import IrcError

METHODS = ("minmax", "percentile", "entropy")
BINS = 2048
ENTROPY_START_BIN = 128
QRANGES = {"u8": (0, 255), "i8": (-128, 127)}
WEIGHT_QRANGE = (-127, 127)


@dataclass
class TensorStats:
    """What calibration saw of one tensor: its extremes and, for the histogram methods, |x| counts."""
    lo: float = np.inf
    hi: float = -np.inf
    hist: Optional[np.ndarray] = field(default=None, repr=False)

    @property
    def amax(self) -> float:
        return max(abs(self.lo), abs(self.hi))

    def add_extremes(self, a: np.ndarray) -> None:
        if a.size:
            self.lo = min(self.lo, float(np.nanmin(a)))
            self.hi = max(self.hi, float(np.nanmax(a)))

    def add_histogram(self, a: np.ndarray) -> None:
        if self.hist is None:
            self.hist = np.zeros(BINS, np.int64)
        if a.size and self.amax > 0:
            counts, _ = np.histogram(np.abs(a), BINS, range=(0.0, self.amax))
            self.hist += counts


def check_method(method: str) -> str:
    """``method`` when it names a calibration method, else an IrcError listing them."""
    if method not in METHODS:
        raise IrcError(f"unknown calibration method {method!r}; methods are {', '.join(METHODS)}")
    return method


def collect(batches: Iterable[Dict[str, np.ndarray]], method: str,
            rerun: Optional[Iterable[Dict[str, np.ndarray]]] = None) -> Dict[str, TensorStats]:
    """Stats per tensor over ``batches`` (dicts tensor key -> array). The histogram methods need a second
    look at the same data, ``rerun`` (another iteration over the same batches)."""
    stats: Dict[str, TensorStats] = {}
    for batch in batches:
        for name, a in batch.items():
            stats.setdefault(name, TensorStats()).add_extremes(a)
    if check_method(method) != "minmax":
        for batch in rerun:
            for name, a in batch.items():
                stats[name].add_histogram(a)
    return stats


def percentile_threshold(hist: np.ndarray, amax: float, percentile: float) -> float:
    """The upper edge of the first bin at which the cumulative share of |x| reaches ``percentile`` %."""
    cdf = np.cumsum(hist) / max(int(hist.sum()), 1)
    i = int(np.searchsorted(cdf, percentile / 100.0))
    return amax * min(i + 1, len(hist)) / len(hist)


def entropy_threshold(hist: np.ndarray, amax: float, levels: int) -> float:
    """TensorRT's KL-divergence threshold: the bin edge minimizing KL(clipped || quantized)."""
    hist = hist.astype(np.float64)
    hist[0] = hist[1]      # the spike of exact zeros a relu makes would dominate the divergence
    n = len(hist)
    best_i, best_kl = n, np.inf
    tail = np.cumsum(hist[::-1])[::-1]           # tail[i] = sum(hist[i:])
    for i in range(ENTROPY_START_BIN, n + 1):
        p = hist[:i].copy()
        if i < n:
            p[-1] += tail[i]
        if np.count_nonzero(p) < 2:   # everything folded into one bin: nothing left to compare
            continue
        kl = _kl(p, _quantized(hist[:i], p > 0, levels))
        if kl < best_kl:
            best_i, best_kl = i, kl
    return amax * best_i / n


def _quantized(counts: np.ndarray, support: np.ndarray, levels: int) -> np.ndarray:
    """``counts`` merged into ``levels`` equal groups and spread back evenly over each group's bins in
    ``support`` (the reference's non-empty bins)."""
    group = (np.arange(len(counts)) * levels) // len(counts)
    total = np.bincount(group, weights=counts, minlength=levels)
    used = np.bincount(group, weights=support, minlength=levels)
    return np.where(support, total[group] / np.maximum(used[group], 1), 0.0)


def _smooth(p: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """A normalized histogram with ``eps`` given to each empty bin, taken evenly from the others."""
    empty = p == 0
    return p + eps * empty - eps * empty.sum() / max(int((~empty).sum()), 1) * ~empty


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) of two unnormalized histograms, both smoothed (a lone outlier folded into the last
    bin, where q may be empty, then costs a finite divergence)."""
    ps, qs = p.sum(), q.sum()
    if ps == 0 or qs == 0:
        return np.inf
    p, q = _smooth(p / ps), _smooth(q / qs)
    m = p > 0
    return float(np.sum(p[m] * np.log(p[m] / q[m]))) if np.all(q[m] > 0) else np.inf


def choose_range(stats: TensorStats, method: str, percentile: float = 99.999,
                 dtype: str = "u8") -> Tuple[float, float]:
    """The range ``[lo, hi]`` an activation is quantized over."""
    if not np.isfinite(stats.lo) or not np.isfinite(stats.hi):
        return 0.0, 0.0
    if check_method(method) == "minmax" or stats.amax == 0:
        return stats.lo, stats.hi
    if method == "percentile":
        t = percentile_threshold(stats.hist, stats.amax, percentile)
    else:
        lo, hi = QRANGES[dtype]
        levels = hi - lo + 1 if stats.lo >= 0 else (hi - lo + 1) // 2
        t = entropy_threshold(stats.hist, stats.amax, levels)
    return max(stats.lo, -t), min(stats.hi, t)


def activation_qparams(lo: float, hi: float, dtype: str = "u8") -> Tuple[np.float32, np.integer]:
    """(scale, zero point) of an asymmetric per-tensor quantization of ``[lo, hi]`` to ``dtype``."""
    if dtype not in QRANGES:
        raise IrcError(f"activation type must be one of {', '.join(QRANGES)}, got {dtype!r}")
    qmin, qmax = QRANGES[dtype]
    lo, hi = min(np.float32(lo), np.float32(0)), max(np.float32(hi), np.float32(0))
    scale = (np.float64(hi) - np.float64(lo)) / (qmax - qmin)
    npdt = np.uint8 if dtype == "u8" else np.int8
    if scale < np.finfo(np.float32).tiny:
        return np.float32(1.0), npdt(0)
    return np.float32(scale), npdt(np.round(qmin - np.float64(lo) / scale))


def weight_qparams(w: np.ndarray, axis: int) -> Tuple[np.ndarray, np.ndarray]:
    """(scales, zero points) of a symmetric int8 quantization of ``w`` per slice along ``axis``."""
    rest = tuple(i for i in range(w.ndim) if i != axis)
    absmax = np.maximum(np.abs(w.min(axis=rest).astype(np.float64)), np.abs(w.max(axis=rest).astype(np.float64)))
    scale = 2 * absmax / (WEIGHT_QRANGE[1] - WEIGHT_QRANGE[0])
    scale = np.where(scale < np.finfo(np.float32).tiny, 1.0, scale).astype(np.float32)
    return scale, np.zeros(scale.shape, np.int8)


def quantize_bias(b: np.ndarray, x_scale: np.float32, w_scale: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(int32 bias, its scale x_scale * w_scale): the bias added to the int32 accumulator as is."""
    scale = (np.float32(x_scale) * w_scale).astype(np.float32)
    q = np.round(b.astype(np.float64) / scale.astype(np.float64))
    info = np.iinfo(np.int32)
    return np.clip(q, info.min, info.max).astype(np.int32), scale
