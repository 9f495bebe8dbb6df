"""Elementwise fusion (part of the ``fuse`` pass): a chain or tree of elementwise ops becomes one
``fused_elementwise`` node computing the whole expression in one pass over memory.

Nodes are grouped walking the graph backwards: an elementwise node (op kind ``elementwise``, numeric
and bool dtypes only) joins the group of its readers when every reader of its result is in that one
group and the result is no graph output; otherwise it roots a group of its own. A group's values other
than the root's are then read by nothing outside it, so replacing the group by one node computing the
root's expression over the group's operands (the values it reads from outside) gives every remaining
reader the same values: each op of the tree is the same op on the same operands, and broadcasting
composes (the root's shape is the broadcast of all the operands' shapes). A value read twice inside one
group appears twice in the tree; the kernel computes equal subtrees once. Groups of one node stay as
they are. It runs after epilogue fusion, so activations right after conv2d/gemm/matmul are theirs.
"""
from __future__ import annotations

from typing import Dict, List

from ..ir import Graph, Node, Value
from ..ops.fused import encode
from ..ops.registry import OPS

MAX_TREE = 256      # tree nodes; values read twice inside a group repeat in the tree, so bound it
_NUMERIC = ("f16", "f32", "f64", "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "bool")


def _fusable(node: Node) -> bool:
    d = OPS.get(node.op)
    return d is not None and d.kind == "elementwise" and len(node.outputs) == 1 and \
        all(v.type.dtype in _NUMERIC for v in node.inputs + node.outputs if v is not None)


def _groups(graph: Graph) -> Dict[int, List[Node]]:
    """Root node id -> the nodes of its group (in graph order), for groups of two nodes or more."""
    outputs = {id(v) for v in graph.outputs}
    group_of: Dict[int, int] = {}      # node id -> root node id
    members: Dict[int, List[Node]] = {}
    for node in reversed(graph.nodes):
        if not _fusable(node):
            continue
        v = node.outputs[0]
        roots = {group_of.get(id(n)) for n, _ in v.uses}
        root = id(node)
        if v.uses and id(v) not in outputs and len(roots) == 1 and None not in roots:
            root = roots.pop()
        group_of[id(node)] = root
        members.setdefault(root, []).insert(0, node)
    return {r: ns for r, ns in members.items() if len(ns) > 1}


def _tree(node: Node, inside: Dict[int, Node], operands: List[Value], params: List[float]):
    """The encoded expression of ``node``'s result; values from outside the group become operands."""
    args = []
    for v in node.inputs:
        if v is None:
            args.append(None)
        elif id(v) in inside:
            args.append(_tree(inside[id(v)], inside, operands, params))
        else:
            if all(o is not v for o in operands):
                operands.append(v)
            args.append(next(i for i, o in enumerate(operands) if o is v))
    return encode(node.op, args, node.attrs, params)


def _tree_size(node: Node, inside: Dict[int, Node], memo: Dict[int, int]) -> int:
    """How many nodes ``node``'s tree has (values read twice count twice), without building it."""
    if id(node) not in memo:
        memo[id(node)] = 1 + sum(_tree_size(inside[id(v)], inside, memo) for v in node.inputs
                                 if v is not None and id(v) in inside)
    return memo[id(node)]


def _fuse_group(graph: Graph, nodes: List[Node]) -> None:
    root = nodes[-1]
    inside = {id(n.outputs[0]): n for n in nodes[:-1]}
    if _tree_size(root, inside, {}) > MAX_TREE:
        return
    operands: List[Value] = []
    params: List[float] = []
    expr = _tree(root, inside, operands, params)
    fused = graph.add_node("fused_elementwise", operands, [root.outputs[0].type],
                           {"expr": expr, "params": params}, name=root.name, before=root)
    graph.replace_all_uses(root.outputs[0], fused.outputs[0])
    graph.remove_nodes(nodes)


def fuse_elementwise(graph: Graph) -> Graph:
    """Replace every group of two or more elementwise nodes by one fused_elementwise node."""
    for nodes in list(_groups(graph).values()):
        _fuse_group(graph, nodes)
    return graph
