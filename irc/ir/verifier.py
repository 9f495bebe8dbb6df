"""The verifier: the invariants every graph holds between passes.

1. Every operand is a graph input or the result of a node earlier in the list (SSA, topological order).
2. Every value is defined once; a node's results point back to it (producer and index).
3. Use lists match the operands exactly (no dangling or missing uses).
4. Every op is in the op table, with exactly its attributes; ``const`` nodes hold an array of their type.
5. Re-inferred result types agree with the recorded ones (dtype, rank, every known dim).
6. Graph outputs are defined values, named, names unique; graph inputs are distinct, uniquely named and
   produced by no node.
"""
from __future__ import annotations

from typing import List

import numpy as np

from ..errors import IrcError
from .graph import Graph
from .printer import ValueNames
from .types import TensorType


def _compatible(recorded: TensorType, inferred: TensorType) -> bool:
    if recorded.dtype != inferred.dtype:
        return False
    if recorded.shape is None or inferred.shape is None:
        return True
    if len(recorded.shape) != len(inferred.shape):
        return False
    return all(a == b or a is None or b is None or isinstance(a, str) or isinstance(b, str)
               for a, b in zip(recorded.shape, inferred.shape))


def _check_uses(where: str, v, problems: List[str]) -> None:
    """Invariant 3, from the value's side: every recorded use is an operand that reads it."""
    for user, j in v.uses:
        if j >= len(user.inputs) or user.inputs[j] is not v:
            problems.append(f"{where} has a stale use by {user.op} {user.name!r} (operand {j})")


def verify(graph: Graph, check_types: bool = True, require_values: bool = False) -> None:
    """Raise IrcError listing every broken invariant, each naming its node."""
    from ..ops import registry
    problems: List[str] = []
    defined = set()
    names = ValueNames(graph)
    for v in graph.inputs:
        if v in defined or sum(u.name == v.name for u in graph.inputs) > 1:
            problems.append(f"input {v.name!r} listed twice")
        if v.producer is not None:
            problems.append(f"input {v.name!r} is also the result of node {v.producer.op} {v.producer.name!r}")
        defined.add(v)
        _check_uses(f"input {v.name!r}", v, problems)
    for n in graph.nodes:
        where = f"node {n.op} {n.name!r} ({', '.join(names(v) for v in n.outputs) or 'no results'})"
        for i, v in enumerate(n.inputs):
            if v is None:
                continue
            if v not in defined:
                problems.append(f"{where}: operand {i} is not defined before use")
            if (n, i) not in v.uses:
                problems.append(f"{where}: operand {i} is missing from its value's uses")
        for i, v in enumerate(n.outputs):
            if v.producer is not n or v.index != i:
                problems.append(f"{where}: result {i} does not point back to its node")
            if v in defined:
                problems.append(f"{where}: result {i} defined twice")
            defined.add(v)
            _check_uses(f"{where}: result {i}", v, problems)
        if n.op not in registry.OPS:
            problems.append(f"{where}: unknown op")
            continue
        opdef = registry.OPS[n.op]
        missing = [k for k, d in opdef.attrs.items() if k not in n.attrs]
        extra = [k for k in n.attrs if k not in opdef.attrs]
        if missing or extra:
            problems.append(f"{where}: attributes missing {missing} or unknown {extra}")
            continue
        if n.op == "const":
            val = n.attrs["value"]
            if val is None:
                if require_values:
                    problems.append(f"{where}: constant has no value")
            elif not isinstance(val, np.ndarray) or TensorType.of(val) != n.outputs[0].type:
                problems.append(f"{where}: constant value does not match its type {n.outputs[0].type}")
            continue
        if check_types:
            try:
                inferred = registry.infer_types(n)
            except Exception as e:  # a crash of an op's inference is reported like a refusal
                problems.append(f"{where}: type inference failed: {type(e).__name__}: {e}")
                continue
            if len(inferred) != len(n.outputs):
                problems.append(f"{where}: {len(n.outputs)} results, op gives {len(inferred)}")
                continue
            for i, (v, t) in enumerate(zip(n.outputs, inferred)):
                if not _compatible(v.type, t):
                    problems.append(f"{where}: result {i} recorded as {v.type}, inferred {t}")
    if len(graph.outputs) != len(graph.output_names):
        problems.append("graph outputs and output names differ in number")
    if len(set(graph.output_names)) != len(graph.output_names):
        problems.append("graph output names are not unique")
    for v, name in zip(graph.outputs, graph.output_names):
        if v not in defined:
            problems.append(f"output {name!r} is not defined")
    if problems:
        raise IrcError("IR verification failed:\n  " + "\n  ".join(problems[:50]))
