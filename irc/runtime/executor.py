"""The executor: validates feeds, binds symbolic dims, builds (and caches) a plan per input signature."""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional

import numpy as np

from ..errors import InputError, IrcError
from ..ir import Graph, TensorType
from ..limits import check_tensor_size
from ..passes import PassManager
from . import threads
from ..kernels.cpu.blas import single_threaded_blas
from .cache import harden_numba_cache

# passes that specialize a graph to concrete input shapes before lowering
BIND_PASSES = ["infer-shapes", "fold-constants", "simplify", "dce"]
_PLAN_CACHE_SIZE = 16


def check_feeds(graph: Graph, feeds: Mapping[str, np.ndarray]) -> List[np.ndarray]:
    """The feeds as arrays in graph-input order; every mismatch is an InputError naming the input."""
    if not isinstance(feeds, Mapping):
        raise InputError(f"feeds must be a dict of input name -> array, got {type(feeds).__name__}")
    names = [v.name for v in graph.inputs]
    unknown = [k for k in feeds if k not in names]
    if unknown:
        raise InputError(f"unknown input(s) {unknown}; the model's inputs are {names}")
    missing = [n for n in names if n not in feeds]
    if missing:
        raise InputError(f"missing input(s) {missing}")
    arrays: List[np.ndarray] = []
    bound: Dict[str, tuple] = {}
    for v in graph.inputs:
        a = feeds[v.name]
        if not isinstance(a, np.ndarray):
            try:
                a = np.asarray(a)
            except Exception:
                raise InputError(f"input {v.name!r}: cannot convert {type(a).__name__} to an array") from None
        want = v.type
        if a.dtype != want.numpy_dtype:
            raise InputError(f"input {v.name!r}: expected dtype {want.dtype} ({want.numpy_dtype}), "
                             f"got {a.dtype}")
        if want.shape is not None:
            if a.ndim != len(want.shape):
                raise InputError(f"input {v.name!r}: expected shape {list(want.shape)} (rank {len(want.shape)}),"
                                 f" got {list(a.shape)} (rank {a.ndim})")
            for axis, (d, n) in enumerate(zip(want.shape, a.shape)):
                if isinstance(d, int) and d != n:
                    raise InputError(f"input {v.name!r}: expected shape {list(want.shape)}, got {list(a.shape)} "
                                     f"(axis {axis} must be {d})")
                if isinstance(d, str):
                    if d in bound and bound[d][0] != n:
                        raise InputError(f"input {v.name!r}: dim {d!r} is {n} on axis {axis}, but {bound[d][0]} "
                                         f"on input {bound[d][1]!r}")
                    bound.setdefault(d, (n, v.name))
        arrays.append(np.asarray(a, order="C"))  # (ascontiguousarray would make a 0-d input 1-d)
    return arrays


def check_sizes(graph: Graph) -> None:
    """Refuse a plan whose results, at the bound shapes, include a tensor above the size limit."""
    for n in graph.nodes:
        for v in n.outputs:
            if v.type.shape is not None:
                check_tensor_size(v.type.shape, v.type.numpy_dtype.itemsize, f"node {n.op} {n.name!r}")


def _backend(target: str):
    """The backend module (``lower``, ``execute``) of ``target`` (CUDA checks for a device when it lowers)."""
    if target == "cuda":
        from ..backend import cuda
        return cuda
    from ..backend import cpu
    return cpu


class Executor:
    """Runs a graph on the CPU (or, with target "cuda", the GPU); thread-safe (plans are immutable once
    built; each run takes a frame of its plan that no other run uses meanwhile, see backend/cpu.py).
    With ``plan_memory`` CPU plans put the results of the kernels that can write into buffers in one
    arena per frame (the plan-memory pass)."""

    def __init__(self, graph: Graph, target: str = "cpu", plan_memory: bool = True):
        self.graph = graph
        self.backend = _backend(target)
        self.plan_memory = plan_memory and target == "cpu"
        self._plans: "OrderedDict[tuple, object]" = OrderedDict()
        self._lock = threading.Lock()
        self._dtypes = [(v.name, v.type.numpy_dtype) for v in graph.inputs]
        self._last = None       # (input shapes, plan) of the last feeds that went through check_feeds

    def bind(self, arrays: List[np.ndarray]) -> Graph:
        """The graph specialized to the shapes of ``arrays`` (itself when they are its static shapes)."""
        g = self.graph
        if all(v.type.is_static and v.type.shape == a.shape for v, a in zip(g.inputs, arrays)):
            return g
        g = g.clone()
        for v, a in zip(g.inputs, arrays):
            v.type = TensorType(v.type.dtype, a.shape)
        try:
            return PassManager(BIND_PASSES).run(g)
        except IrcError as e:
            raise InputError(f"cannot run with input shapes {[list(a.shape) for a in arrays]}: {e}") from None

    def plan_for(self, arrays: List[np.ndarray]):
        sig = tuple((a.shape, a.dtype.str) for a in arrays)
        with self._lock:
            plan = self._plans.get(sig)
            if plan is not None:
                self._plans.move_to_end(sig)
                return plan
        harden_numba_cache()  # before any kernel of the plan is loaded from the on-disk cache
        g = self.bind(arrays)
        check_sizes(g)
        plan = self.backend.lower(g, memory=True) if self.plan_memory else self.backend.lower(g)
        with self._lock:
            self._plans[sig] = plan
            while len(self._plans) > _PLAN_CACHE_SIZE:
                self._plans.popitem(last=False)
        return plan

    def _as_last(self, feeds, shapes) -> Optional[List[np.ndarray]]:
        """The feeds in input order if they are C-contiguous arrays of the dtypes and ``shapes`` that
        passed check_feeds last time (then they pass again: a few comparisons per input), else None."""
        if type(feeds) is not dict or len(feeds) != len(shapes):
            return None
        arrays = [feeds.get(name) for name, _ in self._dtypes]
        for a, (_, dt), shape in zip(arrays, self._dtypes, shapes):
            if type(a) is not np.ndarray or a.dtype != dt or a.shape != shape or not a.flags.c_contiguous:
                return None
        return arrays

    def run(self, feeds: Mapping[str, np.ndarray]) -> List[np.ndarray]:
        last = self._last
        arrays = None if last is None else self._as_last(feeds, last[0])
        if arrays is not None:
            plan = last[1]
        else:
            arrays = check_feeds(self.graph, feeds)
            plan = self.plan_for(arrays)
            self._last = (tuple(a.shape for a in arrays), plan)
        threads.apply()
        with single_threaded_blas():
            return self.backend.execute(plan, arrays)
