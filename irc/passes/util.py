"""Helpers shared by passes."""
from ..ir import Graph, Value


def forward(graph: Graph, old: Value, new: Value) -> bool:
    """Replace ``old`` by ``new`` everywhere, unless that would make a graph output an input, a constant or
    a second copy of another output (each output keeps a value of its own). Returns whether it replaced."""
    if any(o is old for o in graph.outputs):
        if new.producer is None or new.is_const or any(o is new for o in graph.outputs):
            return False
    graph.replace_all_uses(old, new)
    return True


def drop_unused_consts(graph: Graph, values) -> None:
    """Remove the const nodes of ``values`` that nothing reads any more (weights a rewrite replaced)."""
    unique = {id(v): v for v in values if v is not None}
    for v in unique.values():
        if v.is_const and not v.uses and not any(o is v for o in graph.outputs):
            graph.remove_node(v.producer)


def only_reader(graph: Graph, v: Value):
    """The node reading ``v`` when one node reads it, once, and it is no graph output; else None."""
    if len(v.uses) != 1 or any(o is v for o in graph.outputs):
        return None
    return v.uses[0][0]
