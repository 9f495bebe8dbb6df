"""Calibration data: validate the samples against the graph's inputs and cut them into feeds.

Calibration comes either as an iterable of feed dicts (each one a run of the model) or as one dict of
stacked arrays, one per input, whose first axis runs over samples (what ``calib.npz`` holds). A stacked
array of the input's rank plus one gives one feed per sample; one of the input's rank is cut along its
first (batch) axis into feeds of the input's static batch size, or of ``BATCH`` samples where that
axis is symbolic. Float arrays are cast to the input's float type; anything else must match exactly.
"""
from __future__ import annotations

from typing import Dict, List, Mapping

import numpy as np

from ..errors import IrcError
from ..ir import Graph
from ..runtime.executor import check_feeds

BATCH = 16


def calibration_feeds(graph: Graph, calibration) -> List[Dict[str, np.ndarray]]:
    """The calibration data as a list of checked feeds; IrcError naming what does not fit."""
    if calibration is None:
        raise IrcError("quantization needs calibration data: pass calibration= (feed dicts, or arrays with "
                       "samples on axis 0) or --calibration CALIB.npz")
    if isinstance(calibration, Mapping):
        feeds = _split_stacked(graph, calibration)
    else:
        try:
            feeds = list(calibration)
        except TypeError:
            raise IrcError(f"calibration must be an iterable of feed dicts or a dict of arrays, "
                           f"got {type(calibration).__name__}") from None
    if not feeds:
        raise IrcError("calibration data is empty: quantization needs at least one sample")
    return [_checked(graph, f, i) for i, f in enumerate(feeds)]


def _checked(graph: Graph, feed, i: int) -> Dict[str, np.ndarray]:
    if not isinstance(feed, Mapping):
        raise IrcError(f"calibration sample {i}: expected a dict of input name -> array, got {type(feed).__name__}")
    feed = {k: _cast(graph, k, v) for k, v in feed.items()}
    try:
        arrays = check_feeds(graph, feed)
    except IrcError as e:
        raise type(e)(f"calibration sample {i}: {e}") from None
    for v, a in zip(graph.inputs, arrays):
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise IrcError(f"calibration sample {i}: input {v.name!r} holds NaN or infinite values")
    return {v.name: a for v, a in zip(graph.inputs, arrays)}


def _cast(graph: Graph, name: str, a):
    """Float data for a float input in that input's type (numpy makes float64 by default)."""
    a = np.asarray(a)
    want = next((v.type.numpy_dtype for v in graph.inputs if v.name == name), None)
    if want is not None and want.kind == "f" and a.dtype.kind == "f":
        return a.astype(want, copy=False)
    return a


def _split_stacked(graph: Graph, stacked: Mapping[str, np.ndarray]) -> List[Dict[str, np.ndarray]]:
    names = [v.name for v in graph.inputs]
    unknown = [k for k in stacked if k not in names]
    missing = [n for n in names if n not in stacked]
    if unknown or missing:
        raise IrcError(f"calibration data: unknown input(s) {unknown}, missing input(s) {missing}; "
                       f"the model's inputs are {names}")
    per_input = {v.name: _samples(v, np.asarray(stacked[v.name])) for v in graph.inputs}
    counts = {k: len(s) for k, s in per_input.items()}
    if len(set(counts.values())) != 1:
        raise IrcError(f"calibration data: inputs give different numbers of feeds: {counts}")
    return [{k: s[i] for k, s in per_input.items()} for i in range(next(iter(counts.values())))]


def _samples(v, a: np.ndarray) -> List[np.ndarray]:
    """One input's stacked samples as a list of feeds (see the module docstring)."""
    shape = v.type.shape
    if shape is None:
        raise IrcError(f"calibration data: input {v.name!r} has an unknown rank; give feed dicts instead")
    if a.ndim == len(shape) + 1:
        return list(a)
    if a.ndim == len(shape) and a.ndim > 0:
        step = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else BATCH
        return [a[i:i + step] for i in range(0, a.shape[0], step)]
    raise IrcError(f"calibration data: input {v.name!r} is {v.type}; its samples must have shape "
                   f"[S, {', '.join(map(str, shape))}] or [S, {', '.join(map(str, shape[1:]))}] (S samples), "
                   f"got {list(a.shape)}")
