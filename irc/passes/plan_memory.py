"""plan-memory: liveness-based buffer reuse and in-place elementwise ops.

An analysis: it does not change the nodes. On a graph whose shapes are all static it gives every
intermediate result an offset in one arena, so that results whose live ranges do not overlap share
memory, and the executor allocates the arena once per plan instead of one array per result per run.

- **Live ranges.** Steps are the non-constant nodes in graph order; a result lives from the step that
  makes it to its last reader. A result that may be a view of an operand (a reshape; any result whose
  kernel does not say otherwise, see ``Effects.views``) keeps that operand alive as long as itself.
- **What goes in the arena**: single results of kernels that can write into a given buffer
  (``Effects.into``), except graph outputs and whatever a graph output may be a view of: outputs are
  handed to the caller and must survive the next run. Constants are never in it; graph inputs only when
  ``staged`` (the executor copies them in when a run starts, so that the steps reading them are bound
  once).
- **In place**: an elementwise result may take the buffer of an operand of the same type that dies at
  that step (its loop reads each element before writing it), unless another operand of the step may be
  a view of that buffer.
- **Offsets**: buffers (a result and the operands it overwrites in place) are placed largest first, each
  at the best-fitting gap among the buffers already placed whose live ranges overlap its own, 64-byte
  aligned (greedy by size, best fit).

The executor runs this on each graph it binds to input shapes, with what each chosen kernel says of
itself; as a pipeline pass (-O2, last) it records the plan the IR alone implies on a graph that is
static already (``graph.memory``), and disabling it (``--disable-pass plan-memory``) makes the executor
give every result a fresh array per run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..ir import Graph, Node, Value
from ..ops import get as get_op
from .manager import register_pass

ALIGN = 64
# ops whose result relabels the dims of operand 0: a view of it
VIEW_OPS = ("reshape", "flatten", "squeeze", "unsqueeze", "identity")


@dataclass(frozen=True)
class Effects:
    """How a node's kernel uses memory, as far as the planner needs to know."""
    into: bool = False                        # its single result can be written into a given buffer
    inplace: bool = False                     # ... which may be an operand of the result's type
    views: Optional[Tuple[int, ...]] = None   # operands a result made otherwise may share memory with
                                              # (None: any of them)


def ir_effects(node: Node) -> Effects:
    """What the IR alone says: view ops view operand 0; other single-result ops can write into a buffer,
    elementwise ones in place; multi-result ops make fresh arrays."""
    if node.op in VIEW_OPS:
        return Effects(views=(0,))
    if len(node.outputs) != 1:
        return Effects(views=())
    return Effects(into=True, inplace=get_op(node.op).kind == "elementwise")


def nbytes(v: Value) -> int:
    """The bytes of a value of static shape; 0 where a dim is unknown (not planned, not counted)."""
    if not v.type.is_static:
        return 0
    n = v.type.numpy_dtype.itemsize
    for d in v.type.shape:
        n *= d
    return n


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


@dataclass
class Buffer:
    """One block of the arena, used by a result and the results that overwrite it in place."""
    size: int
    start: int
    end: int
    offset: int = -1

    def overlaps(self, other: "Buffer") -> bool:
        return self.start <= other.end and other.start <= self.end


@dataclass
class MemoryPlan:
    """Where each intermediate lives: ``offsets`` (bytes into the arena) of the placed results, and the
    sizes reported by ``irc info``."""
    offsets: Dict[Value, int]
    inplace: Dict[Value, Value]           # result -> the operand whose buffer it overwrites
    live: Dict[Value, Tuple[int, int]]    # node results, staged inputs -> (first, last step they live in)
    last_read: Dict[Value, int]           # ... -> the last step reading them (views aside; outputs: past all)
    arena_bytes: int                      # the arena: peak memory of the placed results
    intermediate_bytes: int               # every result that is not a graph output, summed
    unplanned_bytes: int                  # the most bytes of intermediates left to their kernels (fresh
                                          # arrays each run) live at one step, until their last reader

    @property
    def peak_bytes(self) -> int:
        """Activation memory at most live at once: the arena plus the intermediates outside it."""
        return self.arena_bytes + self.unplanned_bytes

    def summary(self) -> dict:
        return {"peak_bytes": self.peak_bytes, "arena_bytes": self.arena_bytes,
                "intermediate_bytes": self.intermediate_bytes, "unplanned_bytes": self.unplanned_bytes,
                "placed_values": len(self.offsets), "inplace_values": len(self.inplace)}


class _Liveness:
    """Live ranges, with views keeping what they view alive, and the results that may go in the arena."""

    def __init__(self, graph: Graph, steps: List[Node], effects: Dict[Node, Effects], staged):
        self.never = len(steps)          # the end of a graph output: past every step
        self.start: Dict[Value, int] = {v: 0 for v in staged}
        self.end: Dict[Value, int] = {v: 0 for v in staged}
        for k, n in enumerate(steps):
            for v in n.outputs:
                self.start[v] = self.end[v] = k
        for k, n in enumerate(steps):
            for u in n.inputs:
                if u in self.end:
                    self.end[u] = max(self.end[u], k)
        for v in graph.outputs:
            if v in self.end:
                self.end[v] = self.never
        self.last_read = dict(self.end)  # before views extend it
        self.placed = {n.outputs[0] for n in steps if effects[n].into} | set(staged)
        self.placed -= set(graph.outputs)
        self.placed = {v for v in self.placed if nbytes(v) > 0}
        self._extend_by_views(steps, effects)
        self.placed = {v for v in self.placed if self.end[v] < self.never}

    def aliased(self, n: Node, effects: Effects) -> List[Value]:
        """The operands of ``n`` its (not placed) results may share memory with."""
        if effects.into:
            return []      # a kernel that writes into buffers makes fresh arrays otherwise
        idx = range(len(n.inputs)) if effects.views is None else effects.views
        return [n.inputs[i] for i in idx if i < len(n.inputs) and n.inputs[i] in self.end]

    def _extend_by_views(self, steps: List[Node], effects: Dict[Node, Effects]) -> None:
        """Walk back from the last step: an operand a result may view lives as long as the result."""
        for n in reversed(steps):
            last = max(self.end[v] for v in n.outputs)
            for u in self.aliased(n, effects[n]):
                self.end[u] = max(self.end[u], last)

    def roots(self, steps: List[Node], effects: Dict[Node, Effects]) -> Dict[Value, frozenset]:
        """The placed results whose memory each result may be (itself, or what it may view)."""
        roots = {v: frozenset((v,) if v in self.placed else ()) for v in self.start if v.producer is None}
        for n in steps:
            via = frozenset().union(*(roots[u] for u in self.aliased(n, effects[n])))
            for v in n.outputs:
                roots[v] = frozenset((v,)) if v in self.placed else via
        return roots


def _inplace_operand(n: Node, k: int, lv: _Liveness, roots) -> Optional[Value]:
    """The operand of step ``k`` (node ``n``) whose buffer its result may overwrite, if any."""
    out = n.outputs[0]
    for u in n.inputs:
        if u not in lv.placed or u.type != out.type or lv.end[u] != k:
            continue
        if all(w is u or w is None or u not in roots.get(w, ()) for w in n.inputs):
            return u
    return None


def _place(buffers: List[Buffer]) -> int:
    """Give each buffer an offset (largest first, best-fitting gap among the overlapping ones); returns
    the arena size."""
    done: List[Buffer] = []
    top = 0
    for b in sorted(buffers, key=lambda b: (-b.size, b.start)):
        best, best_gap, prev = None, None, 0
        for p in sorted((p for p in done if p.overlaps(b)), key=lambda p: p.offset):
            gap = p.offset - prev
            if gap >= b.size and (best_gap is None or gap < best_gap):
                best, best_gap = prev, gap
            prev = max(prev, p.offset + p.size)
        b.offset = prev if best is None else best
        top = max(top, b.offset + b.size)
        done.append(b)
    return top


def _most_live(values: List[Value], lv: _Liveness) -> int:
    """The most bytes of ``values`` live at one step, each from the step making it to its last reader."""
    change = [0] * (lv.never + 2)
    for v in values:
        change[lv.start[v]] += nbytes(v)
        change[min(lv.last_read[v], lv.never) + 1] -= nbytes(v)
    most = now = 0
    for c in change:
        now += c
        most = max(most, now)
    return most


def plan_memory(graph: Graph, effects_of: Callable[[Node], Effects] = ir_effects,
                staged: Sequence[Value] = ()) -> MemoryPlan:
    """The memory plan of ``graph`` (static shapes) given what each node's kernel does
    (``effects_of(node)``; by default what the IR alone says). ``staged`` graph inputs are copied into
    the arena when a run starts (so that the steps reading them read a buffer that stays put): they
    are placed as if made before the first step, unless a graph output may be a view of them."""
    steps = [n for n in graph.nodes if n.op != "const"]
    effects = {n: effects_of(n) for n in steps}
    lv = _Liveness(graph, steps, effects, staged)
    roots = lv.roots(steps, effects)
    owner: Dict[Value, Buffer] = {v: Buffer(_aligned(nbytes(v)), 0, lv.end[v]) for v in staged
                                  if v in lv.placed}
    inplace: Dict[Value, Value] = {}
    for k, n in enumerate(steps):
        out = n.outputs[0]
        if out not in lv.placed:
            continue
        u = _inplace_operand(n, k, lv, roots) if effects[n].inplace else None
        if u is not None:
            inplace[out] = u
            buf = owner[u]
            buf.end = lv.end[out]
        else:
            buf = Buffer(_aligned(nbytes(out)), k, lv.end[out])
        owner[out] = buf
    arena = _place(list({id(b): b for b in owner.values()}.values()))
    outputs = set(graph.outputs)
    inter = [v for n in steps for v in n.outputs if v not in outputs]
    total = sum(nbytes(v) for v in inter)
    unplanned = _most_live([v for v in inter if v not in lv.placed], lv)
    live = {v: (lv.start[v], lv.end[v]) for v in lv.start}
    return MemoryPlan({v: owner[v].offset for v in owner}, inplace, live, lv.last_read, arena, total, unplanned)


def is_static(graph: Graph) -> bool:
    return all(v.type.is_static for v in graph.values())


@register_pass("plan-memory", 2)
def plan_memory_pass(graph: Graph) -> Graph:
    """Record the memory plan the IR implies on a graph of static shapes (``graph.memory``; None while a
    dim is symbolic: the executor plans each binding)."""
    graph.memory = plan_memory(graph) if is_static(graph) else None
    return graph
