"""The reference interpreter: runs a graph node by node with the ops' numpy references.

It is the oracle of pass tests (a graph before and after a pass must agree) and of ``irc verify``.
"""
from __future__ import annotations

from typing import Dict, List, Mapping

import numpy as np

from ..errors import IrcError
from .registry import OPS, run_reference


def interpret(graph, feeds: Mapping[str, np.ndarray], keep_all: bool = False):
    """Outputs in graph order; with ``keep_all`` also a dict of every value's array (by Value)."""
    env: Dict[object, np.ndarray] = {}
    for v in graph.inputs:
        if v.name not in feeds:
            raise IrcError(f"missing input {v.name!r}")
        env[v] = np.asarray(feeds[v.name])
    for n in graph.nodes:
        args = [None if v is None else env[v] for v in n.inputs]
        try:
            outs = run_reference(OPS[n.op], args, n.attrs)
        except IrcError:
            raise
        except Exception as e:
            raise IrcError(f"node {n.op} {n.name!r}: reference failed: {type(e).__name__}: {e}") from e
        for v, o in zip(n.outputs, outs):
            env[v] = np.asarray(o, dtype=v.type.numpy_dtype) if v.type.dtype != "str" else o
    outs: List[np.ndarray] = [env[v] for v in graph.outputs]
    return (outs, env) if keep_all else outs
