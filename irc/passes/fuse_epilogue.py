"""Epilogue fusion (part of the ``fuse`` pass): elementwise work after a conv2d, gemm or matmul runs inside it.

The result of a float conv2d/gemm/matmul whose one reader is
- ``add(result, r)`` (either order) where r's shape surely broadcasts to the result's (no unknown dims):
  a residual or a bias; ``r`` becomes an extra operand of the producer, "add" is appended to its ``epilogue``;
- an activation: relu, sigmoid, tanh, hard_swish, leaky_relu (alpha), gelu (approximate), clip with constant
  scalar bounds (ReLU6): the op is appended, its parameters become attributes ``<op>_<param>``;
- ``sigmoid(result)`` read only by ``mul(result, sigmoid)``: SiLU (x * sigmoid(x)), appended as "silu";
is rewritten so the producer computes that reader's result, repeatedly (conv -> add -> relu becomes one
node). Sound because each step is the same op on the same operands (the producer's reference applies the
epilogue with those ops' own references), and only a result read by nothing else is fused, so no reader ever
sees the value before the epilogue. The producer moves to where the fused reader was, after every operand
it gained.
"""
from typing import List, Optional, Tuple

from ..ir import Graph, Node, Value
from .util import only_reader

PRODUCERS = {"conv2d": 3, "gemm": 3, "matmul": 2}       # op -> index of its first epilogue operand
_PLAIN = ("relu", "sigmoid", "tanh", "hard_swish")
_PARAMETRIZED = ("clip", "leaky_relu", "gelu")
_FLOATS = ("f16", "f32", "f64")


def _keeps_shape(shape, result) -> bool:
    """Whether adding an operand of ``shape`` surely leaves ``result``'s shape as it is (no unknown dims)."""
    if shape is None or result is None or None in result or None in shape or len(shape) > len(result):
        return False
    return all(s == 1 or s == t for s, t in zip(shape[::-1], result[::-1]))


def _scalar_const(v: Optional[Value]):
    """A clip bound: None when absent, a float when a constant of one element, else False."""
    if v is None:
        return None
    c = v.const_value
    return float(c.reshape(-1)[0]) if c is not None and c.size == 1 else False


def _activation_attrs(node: Node) -> Optional[dict]:
    """The producer attributes that carry ``node``'s parameters, when it is a fusable activation."""
    if node.op in _PLAIN:
        return {}
    if node.op == "leaky_relu":
        return {"leaky_relu_alpha": float(node.attrs["alpha"])}
    if node.op == "gelu":
        return {"gelu_approximate": node.attrs["approximate"]}
    if node.op == "clip":
        lo, hi = _scalar_const(node.input(1)), _scalar_const(node.input(2))
        if lo is False or hi is False:
            return None
        return {k: v for k, v in (("clip_min", lo), ("clip_max", hi)) if v is not None}
    return None


def _silu(graph: Graph, v: Value) -> Optional[Tuple[Node, Node]]:
    """(sigmoid, mul) when ``v`` is read only by sigmoid(v) and mul(v, sigmoid(v)) in either order."""
    readers = [n for n, _ in v.uses]
    if len(readers) != 2 or any(o is v for o in graph.outputs):
        return None
    sig = next((n for n in readers if n.op == "sigmoid"), None)
    mul = next((n for n in readers if n.op == "mul"), None)
    if sig is None or mul is None or only_reader(graph, sig.outputs[0]) is not mul:
        return None
    if {id(x) for x in mul.inputs} != {id(v), id(sig.outputs[0])} or mul.outputs[0].type != v.type:
        return None
    return sig, mul


def _step(graph: Graph, p: Node) -> Optional[Tuple[str, dict, List[Value], List[Node]]]:
    """(epilogue op, attributes, extra operands, nodes it replaces, the last the one whose result it
    takes) of the next fusable reader of p's result, or None."""
    v = p.outputs[0]
    pair = _silu(graph, v)
    if pair is not None:
        return "silu", {}, [], list(pair)
    u = only_reader(graph, v)
    if u is None or u.outputs[0].type != v.type:
        return None
    if u.op == "add" and len(u.inputs) == 2:
        other = u.inputs[1] if u.inputs[0] is v else u.inputs[0]
        if other is v or other.type.dtype != v.type.dtype or not _keeps_shape(other.type.shape, v.type.shape):
            return None
        return "add", {}, [other], [u]
    attrs = _activation_attrs(u)
    if attrs is None or (u.op in _PARAMETRIZED and u.op in (p.attrs.get("epilogue") or ())):
        return None     # a node has one set of each op's parameters
    return u.op, attrs, [], [u]


def _fuse_step(graph: Graph, p: Node, op: str, attrs: dict, extras: List[Value], gone: List[Node]) -> None:
    last = gone[-1]
    p.attrs["epilogue"] = list(p.attrs.get("epilogue") or []) + [op]
    p.attrs.update(attrs)
    if extras:
        first = PRODUCERS[p.op]
        own = p.inputs[:first] + [None] * (first - len(p.inputs[:first]))
        p.set_inputs(own + p.inputs[first:] + extras)
    graph.replace_all_uses(last.outputs[0], p.outputs[0])
    graph.nodes.remove(p)
    graph.nodes.insert(graph.nodes.index(last), p)    # after every operand it gained, before every reader
    graph.remove_nodes(gone)


def fuse_epilogues(graph: Graph) -> Graph:
    """Fuse the bias/residual adds and activations after every float conv2d, gemm and matmul."""
    for p in [n for n in graph.nodes if n.op in PRODUCERS]:
        if p.outputs[0].type.dtype not in _FLOATS:
            continue
        step = _step(graph, p)
        while step is not None:
            _fuse_step(graph, p, *step)
            step = _step(graph, p)
    return graph
