"""The reference interpreter: runs a graph node by node with the ops' numpy references.

It is the oracle of pass tests (a graph before and after a pass must agree) and of ``irc verify``, so it
also checks the IR against what actually runs: feeds must match the input types, and every result must
have the dtype and shape its type records, each symbolic dim bound to one size throughout the graph.
A mismatch is an IrcError naming the input or node (a wrong type inference or reference shows up here).
"""
from __future__ import annotations

from typing import Dict, List, Mapping

import numpy as np

from ..errors import InputError, IrcError
from ..ir import TensorType
from .registry import get, run_reference


class _Dims:
    """Binds each symbolic dim to the first size met and checks arrays against their types."""

    def __init__(self):
        self.sizes: Dict[str, int] = {}

    def mismatch(self, t: TensorType, a: np.ndarray):
        """Why ``a`` does not fit ``t`` (None when it does)."""
        if t.dtype != "str" and a.dtype != t.numpy_dtype:
            return f"dtype {a.dtype} where the IR says {t}"
        if t.shape is None:
            return None
        if a.ndim != len(t.shape):
            return f"shape {list(a.shape)} where the IR says {t}"
        for d, n in zip(t.shape, a.shape):
            if isinstance(d, int) and d != n:
                return f"shape {list(a.shape)} where the IR says {t}"
            if isinstance(d, str) and self.sizes.setdefault(d, n) != n:
                return f"shape {list(a.shape)} where the IR says {t} and {d} is {self.sizes[d]}"
        return None


def _run_node(n, args) -> List[np.ndarray]:
    where = f"node {n.op} {n.name!r}"
    try:
        outs = run_reference(get(n.op), args, n.attrs)
    except IrcError as e:
        raise type(e)(f"{where}: {e}") from None
    except Exception as e:
        raise IrcError(f"{where}: reference failed: {type(e).__name__}: {e}") from e
    if len(outs) != len(n.outputs):
        raise IrcError(f"{where}: reference gave {len(outs)} results, the node has {len(n.outputs)}")
    return outs


def interpret(graph, feeds: Mapping[str, np.ndarray], keep_all: bool = False):
    """Outputs in graph order; with ``keep_all`` also a dict of every value's array (by Value)."""
    env: Dict[object, np.ndarray] = {}
    dims = _Dims()
    for v in graph.inputs:
        if v.name not in feeds:
            raise InputError(f"missing input {v.name!r}")
        env[v] = np.asarray(feeds[v.name])
        why = dims.mismatch(v.type, env[v])
        if why:
            raise InputError(f"input {v.name!r}: {why}")
    for n in graph.nodes:
        outs = _run_node(n, [None if v is None else env[v] for v in n.inputs])
        for v, o in zip(n.outputs, outs):
            why = dims.mismatch(v.type, o)
            if why:
                raise IrcError(f"node {n.op} {n.name!r}: result {v.index} has {why}")
            env[v] = o
    outs: List[np.ndarray] = [env[v] for v in graph.outputs]
    return (outs, env) if keep_all else outs
