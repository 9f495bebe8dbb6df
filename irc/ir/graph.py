"""The SSA graph: values produced once, nodes in topological order, use-def links kept up to date.

- A ``Value`` is produced by exactly one node output or is a graph input; ``value.uses`` lists the
  ``(node, operand index)`` pairs that read it.
- A ``Node`` has an op name (a key of the op table), operands (``Value`` or ``None`` for an omitted
  optional operand), result values and attributes (ints, floats, strings, lists of those, numpy arrays).
- Constants are nodes of op ``const`` whose ``value`` attribute holds the array.
- A ``Graph`` has inputs, nodes and outputs; every output has a name that the model's users see.
"""
from __future__ import annotations

import itertools
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

from ..errors import IrcError
from .types import TensorType

_ids = itertools.count()


class Value:
    __slots__ = ("name", "type", "producer", "index", "uses", "uid")

    def __init__(self, type: TensorType, name: str = "", producer: "Node" = None, index: int = 0):
        self.type = type
        self.name = name
        self.producer = producer
        self.index = index
        self.uses: List[tuple] = []
        self.uid = next(_ids)

    @property
    def const_value(self) -> Optional[np.ndarray]:
        """The array when this value is produced by a ``const`` node, else None."""
        p = self.producer
        if p is not None and p.op == "const":
            return p.attrs.get("value")
        return None

    @property
    def is_const(self) -> bool:
        return self.producer is not None and self.producer.op == "const"

    def users(self) -> List["Node"]:
        seen, out = set(), []
        for n, _ in self.uses:
            if id(n) not in seen:
                seen.add(id(n))
                out.append(n)
        return out

    def __repr__(self):
        return f"Value({self.name or self.uid}: {self.type})"


class Node:
    __slots__ = ("op", "inputs", "outputs", "attrs", "name")

    def __init__(self, op: str, inputs: Sequence[Optional[Value]], out_types: Sequence[TensorType],
                 attrs: Optional[dict] = None, name: str = ""):
        self.op = op
        self.attrs = dict(attrs or {})
        self.name = name
        self.inputs: List[Optional[Value]] = []
        for v in inputs:
            self._add_input(v)
        self.outputs = [Value(t, producer=self, index=i) for i, t in enumerate(out_types)]

    def _add_input(self, v: Optional[Value]):
        if v is not None and not isinstance(v, Value):
            raise TypeError(f"operand of {self.op} must be a Value, got {type(v).__name__}")
        self.inputs.append(v)
        if v is not None:
            v.uses.append((self, len(self.inputs) - 1))

    def set_input(self, i: int, v: Optional[Value]):
        old = self.inputs[i]
        if old is not None:
            old.uses.remove((self, i))
        self.inputs[i] = v
        if v is not None:
            v.uses.append((self, i))

    def set_inputs(self, values: Sequence[Optional[Value]]):
        self.drop_inputs()
        for v in values:
            self._add_input(v)

    def drop_inputs(self):
        for i, v in enumerate(self.inputs):
            if v is not None:
                v.uses.remove((self, i))
        self.inputs = []

    def input(self, i: int) -> Optional[Value]:
        return self.inputs[i] if i < len(self.inputs) else None

    @property
    def output(self) -> Value:
        return self.outputs[0]

    def __repr__(self):
        return f"Node({self.op}{' ' + self.name if self.name else ''})"


class Graph:
    def __init__(self, name: str = "main"):
        self.name = name
        self.inputs: List[Value] = []
        self.nodes: List[Node] = []
        self.outputs: List[Value] = []
        self.output_names: List[str] = []

    # -- construction -------------------------------------------------------------------------------
    def add_input(self, name: str, type: TensorType) -> Value:
        v = Value(type, name=name)
        self.inputs.append(v)
        return v

    def add_node(self, op: str, inputs: Sequence[Optional[Value]], out_types: Sequence[TensorType],
                 attrs: Optional[dict] = None, name: str = "", before: Optional[Node] = None) -> Node:
        node = Node(op, inputs, out_types, attrs, name)
        if before is None:
            self.nodes.append(node)
        else:
            self.nodes.insert(self.nodes.index(before), node)
        return node

    def add_const(self, array: np.ndarray, name: str = "", before: Optional[Node] = None) -> Value:
        array = np.asarray(array)
        return self.add_node("const", [], [TensorType.of(array)], {"value": array}, name=name,
                             before=before).output

    def add_output(self, value: Value, name: str):
        self.outputs.append(value)
        self.output_names.append(name)

    # -- rewriting ----------------------------------------------------------------------------------
    def replace_all_uses(self, old: Value, new: Value):
        """Make every reader of ``old`` (nodes and graph outputs) read ``new`` instead."""
        if old is new:
            return
        for node, i in list(old.uses):
            node.set_input(i, new)
        self.outputs = [new if o is old else o for o in self.outputs]

    def remove_node(self, node: Node):
        for v in node.outputs:
            if v.uses or any(o is v for o in self.outputs):
                raise IrcError(f"cannot remove node {node.op} {node.name!r}: its result is still used")
        node.drop_inputs()
        self.nodes.remove(node)

    def remove_nodes(self, nodes: Iterable[Node]):
        dead = {id(n) for n in nodes}
        for n in self.nodes:
            if id(n) in dead:
                n.drop_inputs()
        self.nodes = [n for n in self.nodes if id(n) not in dead]

    # -- queries ------------------------------------------------------------------------------------
    def values(self) -> List[Value]:
        out = list(self.inputs)
        for n in self.nodes:
            out.extend(n.outputs)
        return out

    def input_by_name(self, name: str) -> Value:
        for v in self.inputs:
            if v.name == name:
                return v
        raise IrcError(f"graph has no input named {name!r}")

    def op_counts(self, include_const: bool = False) -> Dict[str, int]:
        counts: Dict[str, int] = {}
        for n in self.nodes:
            if include_const or n.op != "const":
                counts[n.op] = counts.get(n.op, 0) + 1
        return counts

    def topological_sort(self):
        """Reorder nodes so every operand is produced before it is read (stable for ordered graphs)."""
        order, state = [], {}
        producers = {id(v): n for n in self.nodes for v in n.outputs}

        for root in self.nodes:
            if id(root) in state:
                continue
            stack = [(root, iter([v for v in root.inputs if v is not None]))]
            state[id(root)] = 1
            while stack:
                node, it = stack[-1]
                for v in it:
                    p = producers.get(id(v))
                    if p is None:
                        continue
                    s = state.get(id(p))
                    if s == 1:
                        raise IrcError(f"graph has a cycle through node {p.op} {p.name!r}")
                    if s is None:
                        state[id(p)] = 1
                        stack.append((p, iter([x for x in p.inputs if x is not None])))
                        break
                else:
                    stack.pop()
                    state[id(node)] = 2
                    order.append(node)
        self.nodes = order

    def clone(self) -> "Graph":
        """A deep copy of the structure; constant arrays are shared (they are never mutated)."""
        g = Graph(self.name)
        vmap = {}
        for v in self.inputs:
            vmap[v] = g.add_input(v.name, v.type)
        for n in self.nodes:
            m = g.add_node(n.op, [None if v is None else vmap[v] for v in n.inputs],
                           [v.type for v in n.outputs], dict(n.attrs), n.name)
            for a, b in zip(n.outputs, m.outputs):
                b.name = a.name
                vmap[a] = b
        for v, name in zip(self.outputs, self.output_names):
            g.add_output(vmap[v], name)
        return g
