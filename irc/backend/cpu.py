"""CPU backend: choose a kernel for every node and build the execution plan.

A plan is made for concrete input shapes (``bind``): the graph is specialized to those shapes (shapes
become constants and the shape arithmetic folds away), then each node gets its kernel. Plans are cached
per input signature by the executor, so a model with a symbolic batch runs at any batch size.

With ``memory`` (the plan-memory pass, -O2) the results of kernels that can write into a given buffer
(``Kernel.into``) get offsets in one arena (irc/passes/plan_memory.py). A run takes a ``Frame`` from the
plan's pool (making one the first time, or when every frame is busy in another thread): the arena, the
slot list the steps read and write, and the steps bound to them. Binding does once what does not change
from run to run: a step whose operands all stay put (arena slices, constants) becomes a ready
``(call, args)`` pair (``Kernel.bind``), a view of a value that stays put is taken once, and only the
steps that read a graph input or a fresh array of a kernel without the protocol look their operands up
per run. The run loop is then one call per step.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import IrcError, UnsupportedError
from ..ir import Graph, Node
from ..passes.plan_memory import ALIGN, Effects, MemoryPlan, nbytes, plan_memory
from .registry import Kernel, lowering


@dataclass
class Step:
    node: Node
    fn: object
    inputs: List[int]       # operand slots; ``plan.none_slot`` for an omitted operand
    outputs: List[int]
    algo: str = ""
    out_dtypes: tuple = ()   # the numpy dtype each result must have, read once at lowering
    kernel: Optional[Kernel] = None


@dataclass
class Plan:
    graph: Graph
    steps: List[Step]
    n_slots: int
    consts: dict = field(default_factory=dict)      # slot -> array
    input_slots: List[int] = field(default_factory=list)
    output_slots: List[int] = field(default_factory=list)
    memory: Optional[MemoryPlan] = None     # the kernels' memory plan (an empty arena without plan-memory)
    offsets: Dict[int, int] = field(default_factory=dict)   # slot -> byte offset in the arena
    fixed: int = 0          # slots below this one hold the same array in every run of a frame
    frames: list = field(default_factory=list, repr=False)  # idle Frames, one per concurrent run at most

    @property
    def none_slot(self) -> int:
        """The slot omitted operands read: always None."""
        return self.n_slots


def check_supported(graph: Graph, find=lowering, target: str = "CPU") -> None:
    """Raise one UnsupportedError naming every node without a kernel (``find(op)`` is None)."""
    missing = [n for n in graph.nodes if n.op != "const" and find(n.op) is None]
    if missing:
        raise UnsupportedError(f"{len(missing)} node(s) have no {target} kernel: " +
                               "; ".join(f"{n.name!r} ({n.op})" for n in missing))


def _kernel(n: Node, find, target: str) -> Kernel:
    low = find(n.op)
    if low is None:
        raise UnsupportedError(f"node {n.name!r}: op {n.op} has no {target} kernel")
    try:
        return low.fn(n)
    except IrcError as e:
        raise IrcError(f"node {n.op} {n.name!r}: {e}") from None
    except Exception as e:  # attributes from a file the kernel did not expect: name the node
        raise IrcError(f"node {n.op} {n.name!r}: lowering failed: {type(e).__name__}: {e}") from e


def effects(node: Node, k: Kernel, memory: bool) -> Effects:
    """What the memory planner needs of ``node``'s kernel; without ``memory`` nothing goes in the arena."""
    into = memory and k.into is not None and len(node.outputs) == 1
    return Effects(into=into, inplace=into and k.inplace, views=() if k.into is not None else k.views)


def _slots(graph: Graph, kernels: Dict[Node, Kernel], mem: MemoryPlan,
           reuse: bool) -> Tuple[Dict[object, int], int, int]:
    """(value -> slot, the count of fixed slots, the count of slots). First the values that hold the same
    array in every run (constants, arena results, views of those bound once), then the graph inputs, then
    the results that change from run to run; with ``reuse`` those share slots, a slot taken again after
    the last step that reads its value, so that a fresh array is let go then instead of when the run
    ends (an array another one views stays alive through the view's reference to it)."""
    fixed = {n.outputs[0] for n in graph.nodes if n.op == "const"} | set(mem.offsets)
    for n in graph.nodes:
        k = kernels.get(n)
        if k is not None and k.view and n.inputs and n.inputs[0] in fixed:
            fixed.add(n.outputs[0])
    values = graph.inputs + [v for n in graph.nodes for v in n.outputs]
    slot = {v: i for i, v in enumerate(v for v in values if v in fixed)}
    n_fixed = count = len(slot)
    for v in graph.inputs:
        if v not in slot:
            slot[v], count = count, count + 1
    busy: List[Tuple[int, int]] = []       # heap of (last step, slot) of the results in slots now
    free: List[int] = []
    for v in values:
        if v in slot:
            continue
        start, end = mem.live[v][0], mem.last_read[v]
        while reuse and busy and busy[0][0] < start:
            free.append(heapq.heappop(busy)[1])
        if free:
            slot[v] = free.pop()
        else:
            slot[v], count = count, count + 1
        heapq.heappush(busy, (end, slot[v]))
    return slot, n_fixed, count


def lower(graph: Graph, find=lowering, target: str = "CPU", memory: bool = False) -> Plan:
    """One Step per non-constant node, operands and results numbered as slots; ``find(op)`` gives the
    lowering (the CPU table unless another backend passes its own); with ``memory`` the results of the
    kernels that write into buffers are planned in the arena (shapes must be static)."""
    for n in graph.nodes:
        if n.op == "const" and n.attrs.get("value") is None:
            raise IrcError(f"constant {n.name!r} has no value")
    kernels = {n: _kernel(n, find, target) for n in graph.nodes if n.op != "const"}
    staged = [v for v in graph.inputs if memory and any(kernels[n].into for n in v.users())]
    mem = plan_memory(graph, lambda n: effects(n, kernels[n], memory), staged)
    if not memory:
        mem.unplanned_bytes = mem.intermediate_bytes     # no slot reuse: every result lives to the end
    slot, n_fixed, n_slots = _slots(graph, kernels, mem, memory)
    plan = Plan(graph, [], n_slots, memory=mem, fixed=n_fixed)
    plan.input_slots = [slot[v] for v in graph.inputs]
    plan.consts = {slot[n.outputs[0]]: n.attrs["value"] for n in graph.nodes if n.op == "const"}
    plan.offsets = {slot[v]: off for v, off in mem.offsets.items()}
    for n, k in kernels.items():
        ins = [plan.none_slot if v is None else slot[v] for v in n.inputs]
        plan.steps.append(Step(n, k.fn, ins, [slot[v] for v in n.outputs], k.algo,
                               tuple(v.type.numpy_dtype for v in n.outputs), k))
    plan.output_slots = [slot[v] for v in graph.outputs]
    return plan


# -- running ------------------------------------------------------------------------------------------

def _kernel_error(node: Node, e: Exception) -> IrcError:
    return IrcError(f"node {node.op} {node.name!r} failed at run time: {type(e).__name__}: {e}")


def _store(step: Step, env: list, res) -> None:
    """Put a kernel's result(s) in their slots, checking the dtypes the IR says."""
    if len(step.outputs) == 1:
        env[step.outputs[0]] = res[0] if isinstance(res, tuple) else res
    else:
        for s, r in zip(step.outputs, res):
            env[s] = r
    for s, dt, v in zip(step.outputs, step.out_dtypes, step.node.outputs):
        if env[s].dtype != dt:
            raise IrcError(f"node {step.node.op} {step.node.name!r}: kernel returned {env[s].dtype}, "
                           f"expected {v.type}")


def _fresh_call(step: Step, env: list):
    """The run-time call of a step whose kernel makes its own result arrays."""
    fn, ins = step.fn, step.inputs

    def call():
        _store(step, env, fn(*[env[i] for i in ins]))
    return call


def _into_call(step: Step, env: list):
    """The run-time call of a step writing into its arena slice, some operand changing from run to run."""
    into, ins, out = step.kernel.into, step.inputs, env[step.outputs[0]]

    def call():
        into(out, *[env[i] for i in ins])
    return call


class Frame:
    """What one run at a time uses: the arena, the slot list and the steps bound to both."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.arena = np.empty(plan.memory.arena_bytes + ALIGN if plan.offsets else 0, np.uint8)
        env = self.env = [None] * (plan.n_slots + 1)       # + the none slot
        for s, v in plan.consts.items():
            env[s] = v
        self._place_results()
        self.held: Dict[int, np.ndarray] = {}    # slot -> the frame's own buffer of an output (``_held``)
        self.holding = set()                      # the steps writing one (slots are shared, steps are not)
        for step in plan.steps:
            buf = self._held(step)
            if buf is not None:
                self.held[step.outputs[0]] = self.env[step.outputs[0]] = buf
                self.holding.add(id(step))
        self.calls = [c for c in map(self._bind, plan.steps) if c is not None]
        self.blank = [None] * (len(env) - plan.fixed)

    def _held(self, step: Step) -> Optional[np.ndarray]:
        """A buffer of the frame's own for ``step``'s result when it is a graph output that the kernel can
        write into (``into``) and no step reads, else None: bound like an arena result, the step has no
        Python left per run, and the run returns a copy (for a small output cheaper than the kernel making
        a fresh array; outputs never live in the arena, which the next run overwrites)."""
        v = step.node.outputs[0]
        if (step.kernel.into is None or len(step.outputs) > 1 or step.outputs[0] in self.plan.offsets
                or v.users() or not v.type.is_static or v not in self.plan.graph.outputs):
            return None
        return np.empty(v.type.shape, v.type.numpy_dtype)

    def _place_results(self) -> None:
        """Every planned result's slot holds its slice of the arena (64-byte aligned)."""
        plan, base = self.plan, -self.arena.ctypes.data % ALIGN
        values = plan.graph.inputs + [step.node.outputs[0] for step in plan.steps]
        slots = plan.input_slots + [step.outputs[0] for step in plan.steps]
        for v, s in zip(values, slots):
            if s in plan.offsets:
                lo = base + plan.offsets[s]
                self.env[s] = self.arena[lo:lo + nbytes(v)].view(v.type.numpy_dtype).reshape(v.type.shape)

    def _bind(self, step: Step):
        """``(call, args, node)`` of a step, or None for a view taken once here."""
        plan, env, k = self.plan, self.env, step.kernel
        fixed = all(i < plan.fixed or i == plan.none_slot for i in step.inputs)
        try:
            if k.view and step.outputs[0] < plan.fixed:
                env[step.outputs[0]] = step.fn(*[env[i] for i in step.inputs])
                return None
            if step.outputs[0] in plan.offsets or id(step) in self.holding:
                if fixed:
                    return (*k.bound(env[step.outputs[0]], *[env[i] for i in step.inputs]), step.node)
                return _into_call(step, env), (), step.node
        except IrcError:
            raise
        except Exception as e:
            raise _kernel_error(step.node, e) from e
        return _fresh_call(step, env), (), step.node

    def run(self, feeds: Sequence[np.ndarray]) -> List[np.ndarray]:
        env, plan = self.env, self.plan
        for s, a in zip(plan.input_slots, feeds):
            if s < plan.fixed:
                np.copyto(env[s], a)     # a staged input: into its arena slice
            else:
                env[s] = a
        try:
            for call, args, node in self.calls:
                call(*args)
            held = self.held
            return [held[s].copy() if s in held else env[s] for s in plan.output_slots]
        except IrcError:
            raise
        except Exception as e:
            raise _kernel_error(node, e) from e
        finally:
            env[plan.fixed:] = self.blank      # let go of the run's inputs and fresh arrays


def _run_hooked(plan: Plan, feeds: Sequence[np.ndarray], hook) -> List[np.ndarray]:
    """Every step through ``hook(step, args)`` on fresh arrays (``step.fn``), in its own slot list."""
    env: list = [None] * (plan.n_slots + 1)
    for s, v in plan.consts.items():
        env[s] = v
    for s, v in zip(plan.input_slots, feeds):
        env[s] = v
    for step in plan.steps:
        args = [env[i] for i in step.inputs]
        try:
            res = hook(step, args)
        except IrcError:
            raise
        except Exception as e:
            raise _kernel_error(step.node, e) from e
        _store(step, env, res)
    return [env[s] for s in plan.output_slots]


def execute(plan: Plan, feeds: Sequence[np.ndarray], hook=None) -> List[np.ndarray]:
    """Run the plan's steps in order on the given input arrays.

    ``hook(step, args)``, when given, is called instead of ``step.fn(*args)`` and returns its result: the
    profiler times each step through it, ``irc verify --bisect`` checks each kernel against its reference.
    Such a run gives every result a fresh array; without a hook the run uses a frame of the plan (the
    module docstring), its own for as long as it runs, so concurrent runs of one plan never share one.
    """
    if hook is not None:
        return _run_hooked(plan, feeds, hook)
    try:
        frame = plan.frames.pop()
    except IndexError:
        frame = Frame(plan)
    try:
        return frame.run(feeds)
    finally:
        plan.frames.append(frame)
