"""Builder: adds nodes whose result types come from the op table's inference."""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

from .graph import Graph, Node, Value


class Builder:
    """Appends nodes to ``graph`` (or inserts them before ``before``), inferring result types."""

    def __init__(self, graph: Graph, before: Optional[Node] = None, name: str = ""):
        self.graph = graph
        self.before = before
        self.name = name

    def node(self, op: str, inputs: Sequence[Optional[Value]], attrs: Optional[dict] = None,
             name: Optional[str] = None) -> Node:
        from ..ops import registry
        opdef = registry.get(op)
        attrs = opdef.full_attrs(dict(attrs or {}), f"node {name or self.name!r}: ")
        node = self.graph.add_node(op, inputs, [], attrs, self.name if name is None else name, self.before)
        try:
            types = opdef.infer(registry.InferContext(
                opdef, [None if v is None else v.type for v in inputs], attrs,
                [None if v is None else v.const_value for v in inputs]))
        except Exception:
            node.drop_inputs()
            self.graph.nodes.remove(node)
            raise
        node.outputs = [Value(t, producer=node, index=i) for i, t in enumerate(types)]
        return node

    def op(self, op: str, *inputs: Optional[Value], **attrs) -> Value:
        """One-result op; returns its value."""
        return self.node(op, list(inputs), attrs).outputs[0]

    def const(self, array) -> Value:
        return self.graph.add_const(np.asarray(array), before=self.before)

    def ops(self, op: str, *inputs: Optional[Value], **attrs) -> List[Value]:
        return self.node(op, list(inputs), attrs).outputs
