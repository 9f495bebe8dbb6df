"""CPU backend: choose a kernel for every node and build the execution plan.

A plan is made for concrete input shapes (``bind``): the graph is specialized to those shapes (shapes
become constants and the shape arithmetic folds away), then each node gets its kernel. Plans are cached
per input signature by the executor, so a model with a symbolic batch runs at any batch size.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Sequence

import numpy as np

from ..errors import IrcError, UnsupportedError
from ..ir import Graph, Node
from .registry import lowering


@dataclass
class Step:
    node: Node
    fn: object
    inputs: List[int]
    outputs: List[int]
    algo: str = ""
    out_dtypes: tuple = ()   # the numpy dtype each result must have, read once at lowering, checked per run


@dataclass
class Plan:
    graph: Graph
    steps: List[Step]
    n_slots: int
    consts: dict = field(default_factory=dict)      # slot -> array
    input_slots: List[int] = field(default_factory=list)
    output_slots: List[int] = field(default_factory=list)


def check_supported(graph: Graph, find=lowering, target: str = "CPU") -> None:
    """Raise one UnsupportedError naming every node without a kernel (``find(op)`` is None)."""
    missing = [n for n in graph.nodes if n.op != "const" and find(n.op) is None]
    if missing:
        raise UnsupportedError(f"{len(missing)} node(s) have no {target} kernel: " +
                               "; ".join(f"{n.name!r} ({n.op})" for n in missing))


def lower(graph: Graph, find=lowering, target: str = "CPU") -> Plan:
    """One Step per non-constant node, operands and results numbered as slots; ``find(op)`` gives the
    lowering (the CPU table unless another backend passes its own)."""
    slots = {}

    def slot(v):
        if id(v) not in slots:
            slots[id(v)] = len(slots)
        return slots[id(v)]

    plan = Plan(graph, [], 0)
    plan.input_slots = [slot(v) for v in graph.inputs]
    for n in graph.nodes:
        if n.op == "const":
            val = n.attrs["value"]
            if val is None:
                raise IrcError(f"constant {n.name!r} has no value")
            plan.consts[slot(n.outputs[0])] = val
            continue
        low = find(n.op)
        if low is None:
            raise UnsupportedError(f"node {n.name!r}: op {n.op} has no {target} kernel")
        try:
            k = low.fn(n)
        except IrcError as e:
            raise IrcError(f"node {n.op} {n.name!r}: {e}") from None
        except Exception as e:  # attributes from a file the kernel did not expect: name the node
            raise IrcError(f"node {n.op} {n.name!r}: lowering failed: {type(e).__name__}: {e}") from e
        ins = [-1 if v is None else slot(v) for v in n.inputs]
        plan.steps.append(Step(n, k.fn, ins, [slot(v) for v in n.outputs], k.algo,
                               tuple(v.type.numpy_dtype for v in n.outputs)))
    plan.output_slots = [slot(v) for v in graph.outputs]
    plan.n_slots = len(slots)
    return plan


def execute(plan: Plan, feeds: Sequence[np.ndarray], hook=None) -> List[np.ndarray]:
    """Run the plan's steps in order on the given input arrays.

    ``hook(step, args)``, when given, is called instead of ``step.fn(*args)`` and returns its result: the
    profiler times each step through it, ``irc verify --bisect`` checks each kernel against its reference.
    Without a hook the loop costs one comparison per step more.
    """
    env: list = [None] * plan.n_slots
    for s, v in plan.consts.items():
        env[s] = v
    for s, v in zip(plan.input_slots, feeds):
        env[s] = v
    for step in plan.steps:
        args = [None if i < 0 else env[i] for i in step.inputs]
        try:
            res = step.fn(*args) if hook is None else hook(step, args)
        except IrcError:
            raise
        except Exception as e:
            n = step.node
            raise IrcError(f"node {n.op} {n.name!r} failed at run time: {type(e).__name__}: {e}") from e
        if len(step.outputs) == 1:
            env[step.outputs[0]] = res[0] if isinstance(res, tuple) else res
        else:
            for s, r in zip(step.outputs, res):
                env[s] = r
        for s, dt, v in zip(step.outputs, step.out_dtypes, step.node.outputs):
            if env[s].dtype != dt:
                raise IrcError(f"node {step.node.op} {step.node.name!r}: kernel returned {env[s].dtype}, "
                               f"expected {v.type}")
    return [env[s] for s in plan.output_slots]
