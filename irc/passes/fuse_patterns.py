"""Pattern fusion (part of the ``fuse`` pass, run before the other fusions): subgraphs that exporters
write out op by op become the single op they spell.

- GELU, erf form: ``x * 0.5 * (1 + erf(x / sqrt(2)))`` -> ``gelu(x)``; the product in any order and
  association, ``x / sqrt(2)`` also as ``x * (1 / sqrt(2))``, ``1 + e`` in either order.
- GELU, tanh form: ``0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))`` -> ``gelu(x,
  approximate="tanh")``; ``x^3`` as ``pow(x, 3)`` or a product of three ``x``.
- LayerNorm written out: ``d = x - reduce_mean(x); d / sqrt(reduce_mean(d^2) + eps) * gamma + beta``
  -> ``layernorm(x, gamma, beta) {axis, epsilon=eps}``, both means over the same last axes (kept),
  ``d^2`` as ``pow(d, 2)`` or ``d * d``, gamma and beta optional (gamma absent: a scalar 1); gamma and
  beta must broadcast over the normalized axes only.
- Scaled dot-product attention: ``matmul(softmax(matmul(q, kt) / c + mask), v)`` ->
  ``attention(q, kt, v, mask) {scale=1/c}``; the scale also as ``* c`` (scale c) or absent (1), the
  mask optional; the softmax over the last axis. The exporter's reshapes and transposes that make q, kt
  and v stay as they are (views).

The GELUs and the LayerNorm are the definitions of the gelu and layernorm ops (their references compute
exactly these), so the rewrites are exact up to rounding; attention is the attention op's definition,
dividing by c being multiplying by 1/c up to rounding. Each match checks its preconditions: the
constants are scalars (one element) equal to what the formula needs (within float32 rounding), the
values are floating point, the result has the type the op infers (so no constant or mask broadcasts it
further), q, kt and v have one rank with equal batch axes (the op does not broadcast them), and every
intermediate is read only inside the pattern (none is a graph output), so removing them changes no
other reader.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple, Union

import numpy as np

from ..ir import Graph, Node, TensorType, Value
from .util import only_reader

_FLOATS = ("f16", "f32", "f64")


@dataclass
class Match:
    """A rewrite found: ``root``'s result becomes the first result of a new ``op`` node over
    ``operands`` (a numpy array operand becomes a constant), and the nodes ``gone`` are removed."""
    root: Node
    gone: List[Node]
    op: str
    operands: List[Union[Value, np.ndarray]]
    types: List[TensorType]
    attrs: dict
_SQRT2 = math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _scalar(v: Value) -> Optional[float]:
    """The value of a one-element float constant, else None."""
    c = v.const_value
    return float(c.reshape(-1)[0]) if c is not None and c.size == 1 and c.dtype.kind == "f" else None


def _is(v: Value, want: float) -> bool:
    c = _scalar(v)
    return c is not None and math.isclose(c, want, rel_tol=1e-6, abs_tol=0.0)


def _factors(graph: Graph, v: Value, top: bool = True) -> Tuple[List[Value], List[Node]]:
    """The factors of the product ``v`` (muls, and pow(y, 3) as three ``y``, whose results are read
    only by the product) and the nodes computing it."""
    p = v.producer
    inner = top or only_reader(graph, v) is not None
    if p is not None and inner and p.op == "mul" and len(p.inputs) == 2:
        (a, na), (b, nb) = (_factors(graph, x, False) for x in p.inputs)
        return a + b, na + nb + [p]
    if p is not None and inner and p.op == "pow" and _is(p.inputs[1], 3.0):
        return [p.inputs[0]] * 3, [p]
    return [v], []


def _same_values(got: List[Value], want: List[object]) -> bool:
    """Whether ``got`` is ``want`` in some order; a float in ``want`` matches a constant of that value."""
    rest = list(got)
    for w in want:
        hit = next((i for i, g in enumerate(rest) if (g is w if isinstance(w, Value) else _is(g, w))), None)
        if hit is None:
            return False
        rest.pop(hit)
    return not rest


def _product_of(graph: Graph, start: Value, want: List[object]) -> Optional[Tuple[Node, List[Node]]]:
    """(root, nodes) of the product of ``want`` (values and constants) built from ``start`` up through
    muls read once each, when there is one."""
    node = only_reader(graph, start)
    while node is not None and node.op == "mul":
        leaves, nodes = _factors(graph, node.outputs[0])
        if _same_values(leaves, want):
            return node, nodes
        if len(leaves) >= len(want):
            return None
        node = only_reader(graph, node.outputs[0])
    return None


def _one_plus(graph: Graph, v: Value) -> Optional[Node]:
    """The ``add(v, 1)`` (either order) that is ``v``'s only reader."""
    a = only_reader(graph, v)
    if a is None or a.op != "add" or len(a.inputs) != 2:
        return None
    other = a.inputs[1] if a.inputs[0] is v else a.inputs[0]
    return a if _is(other, 1.0) else None


def _erf_argument(graph: Graph, erf: Node) -> Optional[Tuple[Value, List[Node]]]:
    """(x, node) when erf reads x / sqrt(2) or x * (1 / sqrt(2)) (either order), computed for it alone."""
    t = erf.inputs[0]
    p = t.producer
    if p is None or only_reader(graph, t) is not erf or len(p.inputs) != 2:
        return None
    a, b = p.inputs
    if p.op == "div" and _is(b, _SQRT2):
        return a, [p]
    if p.op == "mul" and (_is(b, 1 / _SQRT2) or _is(a, 1 / _SQRT2)):
        return (a if _is(b, 1 / _SQRT2) else b), [p]
    return None


def _tanh_argument(graph: Graph, tanh: Node) -> Optional[Tuple[Value, List[Node]]]:
    """(x, nodes) when tanh reads sqrt(2/pi) * (x + 0.044715 * x^3), computed for it alone."""
    u = tanh.inputs[0]
    if u.producer is None or only_reader(graph, u) is not tanh:
        return None
    leaves, outer = _factors(graph, u)
    sums = [s for s in leaves if s.producer is not None and s.producer.op == "add"]
    if len(leaves) != 2 or len(sums) != 1 or not _same_values(leaves, [sums[0], _SQRT_2_OVER_PI]):
        return None
    s = sums[0]
    add = s.producer
    if only_reader(graph, s) is None or len(add.inputs) != 2:
        return None
    for x, cube in (add.inputs, add.inputs[::-1]):
        if cube.producer is None or only_reader(graph, cube) is None:
            continue
        leaves, inner = _factors(graph, cube)
        if _same_values(leaves, [x, x, x, 0.044715]):
            return x, outer + [add] + inner
    return None


def _gelu_match(graph: Graph, node: Node) -> Optional[Match]:
    """The GELU whose heart is ``node`` (an erf or a tanh)."""
    arg = _erf_argument(graph, node) if node.op == "erf" else _tanh_argument(graph, node)
    if arg is None or arg[0].type.dtype not in _FLOATS:
        return None
    x, inner = arg
    plus = _one_plus(graph, node.outputs[0])
    prod = None if plus is None else _product_of(graph, plus.outputs[0], [x, plus.outputs[0], 0.5])
    if prod is None or prod[0].outputs[0].type != x.type:
        return None
    root, muls = prod
    return Match(root, inner + [node, plus] + muls, "gelu", [x], [x.type],
                 {"approximate": "none" if node.op == "erf" else "tanh"})


def _scaled(graph: Graph, scores: Value) -> Tuple[Value, float, List[Node]]:
    """(value, scale, nodes) past an optional ``/ c`` or ``* c`` of the scores (read only there)."""
    n = only_reader(graph, scores)
    if n is None or n.op not in ("div", "mul") or len(n.inputs) != 2:
        return scores, 1.0, []
    a, b = n.inputs
    c = _scalar(b) if a is scores else (_scalar(a) if n.op == "mul" else None)
    if c is None or c == 0:
        return scores, 1.0, []
    return n.outputs[0], (1.0 / c if n.op == "div" else c), [n]


def _masked(graph: Graph, v: Value) -> Tuple[Value, Optional[Value], List[Node]]:
    """(value, mask, nodes) past an optional ``+ mask`` of the same dtype that keeps v's shape."""
    n = only_reader(graph, v)
    if n is None or n.op != "add" or len(n.inputs) != 2 or n.outputs[0].type != v.type:
        return v, None, []
    mask = n.inputs[1] if n.inputs[0] is v else n.inputs[0]
    if mask is v or mask.type.dtype != v.type.dtype:
        return v, None, []
    return n.outputs[0], mask, [n]


def _qkv_ok(q: Value, kt: Value, v: Value) -> bool:
    """One float dtype and rank >= 2, equal batch axes, matching contraction dims."""
    shapes = [t.type.shape for t in (q, kt, v)]
    if any(s is None for s in shapes) or q.type.dtype not in ("f32", "f64") or \
            len({t.type.dtype for t in (q, kt, v)}) != 1 or len({len(s) for s in shapes}) != 1:
        return False
    (qs, ks, vs) = shapes
    return len(qs) >= 2 and None not in qs[:-2] and qs[:-2] == ks[:-2] == vs[:-2] and \
        qs[-1] == ks[-2] and ks[-1] == vs[-2] and None not in (qs[-1], ks[-1])


def _attention_match(graph: Graph, mm: Node) -> Optional[Match]:
    """The attention whose scores ``mm`` computes."""
    if len(mm.inputs) != 2 or mm.attrs.get("epilogue"):
        return None
    x, scale, scaled = _scaled(graph, mm.outputs[0])
    x, mask, masked = _masked(graph, x)
    sm = only_reader(graph, x)
    if sm is None or sm.op != "softmax" or sm.attrs["axis"] not in (-1, len(x.type.shape or ()) - 1):
        return None
    out = only_reader(graph, sm.outputs[0])
    if out is None or out.op != "matmul" or len(out.inputs) != 2 or out.inputs[0] is not sm.outputs[0] \
            or out.attrs.get("epilogue"):
        return None
    q, kt, v = mm.inputs[0], mm.inputs[1], out.inputs[1]
    if not _qkv_ok(q, kt, v):
        return None
    return Match(out, [mm] + scaled + masked + [sm, out], "attention",
                 [q, kt, v] + ([mask] if mask is not None else []), [out.outputs[0].type], {"scale": scale})


def _tail_axes(node: Node, rank: int) -> Optional[int]:
    """The first axis of a keepdims reduction over the last axes of a rank-``rank`` value, else None."""
    axes = node.inputs[1].const_value if len(node.inputs) > 1 and node.inputs[1] is not None else None
    if axes is None or axes.size == 0 or not node.attrs.get("keepdims"):
        return None
    norm = sorted({int(a) % rank for a in axes.reshape(-1)})
    return norm[0] if norm == list(range(norm[0], rank)) else None


def _square_of(d: Value) -> Optional[Node]:
    """The pow(d, 2) or mul(d, d) among d's readers."""
    for n in d.users():
        if n.op == "pow" and n.inputs[0] is d and _is(n.inputs[1], 2.0):
            return n
        if n.op == "mul" and n.inputs[0] is d and n.inputs[1] is d:
            return n
    return None


def _affine(graph: Graph, v: Value, op: str, param_rank: int):
    """(result, operand, node) of an optional ``op(v, p)`` (either order) read alone by v's reader that
    keeps v's type and whose p spans at most the normalized axes; (v, None, []) when absent."""
    n = only_reader(graph, v)
    if n is None or n.op != op or len(n.inputs) != 2 or n.outputs[0].type != v.type:
        return v, None, []
    p = n.inputs[1] if n.inputs[0] is v else n.inputs[0]
    if p is v or p.type.shape is None or len(p.type.shape) > param_rank or p.type.dtype != v.type.dtype:
        return v, None, []
    return n.outputs[0], p, [n]


def _layernorm_match(graph: Graph, mean: Node) -> Optional[Match]:
    """The written-out LayerNorm that ``mean`` (the mean of x) starts."""
    x = mean.inputs[0]
    rank = x.type.rank
    axis = None if rank is None or x.type.dtype not in _FLOATS else _tail_axes(mean, rank)
    sub = None if axis is None else only_reader(graph, mean.outputs[0])
    if sub is None or sub.op != "sub" or sub.inputs[0] is not x or sub.inputs[1] is not mean.outputs[0]:
        return None
    d = sub.outputs[0]
    sq = _square_of(d)
    div = next((n for n in d.users() if n.op == "div" and n.inputs[0] is d), None)
    if sq is None or div is None or len(d.users()) != 2 or any(o is d for o in graph.outputs):
        return None
    var = only_reader(graph, sq.outputs[0])
    if var is None or var.op != "reduce_mean" or var.inputs[0] is not sq.outputs[0] or _tail_axes(var, rank) != axis:
        return None
    add = only_reader(graph, var.outputs[0])
    eps = None if add is None or add.op != "add" else [i for i in add.inputs if i is not var.outputs[0]]
    if not eps or len(eps) != 1 or _scalar(eps[0]) is None:
        return None
    sqrt = only_reader(graph, add.outputs[0])
    if sqrt is None or sqrt.op != "sqrt" or only_reader(graph, sqrt.outputs[0]) is not div \
            or div.inputs[1] is not sqrt.outputs[0] or div.outputs[0].type != x.type:
        return None
    y, gamma, scaled = _affine(graph, div.outputs[0], "mul", rank - axis)
    y, beta, shifted = _affine(graph, y, "add", rank - axis) if gamma is not None else (y, None, [])
    operands = [x, np.ones((), x.type.numpy_dtype) if gamma is None else gamma] + ([beta] if beta is not None else [])
    stats = TensorType("f32", tuple(x.type.shape[:axis]) + (1,) * (rank - axis))
    return Match(y.producer, [mean, sub, sq, var, add, sqrt, div] + scaled + shifted, "layernorm", operands,
                 [x.type, stats, stats], {"axis": axis, "epsilon": _scalar(eps[0]), "stash_type": 1})


# (ops a match starts from, matcher), in the order they run: GELU first, so that attention and the
# epilogue fusion after this pass see gelu nodes
RULES: List[Tuple[Tuple[str, ...], Callable[[Graph, Node], Optional[Match]]]] = [
    (("erf", "tanh"), _gelu_match),
    (("reduce_mean",), _layernorm_match),
    (("matmul",), _attention_match),
]


def _apply(graph: Graph, m: Match) -> None:
    operands = [graph.add_const(v, before=m.root) if isinstance(v, np.ndarray) else v for v in m.operands]
    node = graph.add_node(m.op, operands, m.types, m.attrs, name=m.root.name, before=m.root)
    graph.replace_all_uses(m.root.outputs[0], node.outputs[0])
    graph.remove_nodes(m.gone)


def fuse_patterns(graph: Graph) -> Graph:
    """Rewrite every GELU, LayerNorm and attention written out op by op as its one op."""
    for ops, match in RULES:
        gone = set()
        for node in [n for n in graph.nodes if n.op in ops]:
            m = None if id(node) in gone else match(graph, node)
            if m is not None:
                _apply(graph, m)
                gone.update(id(n) for n in m.gone)
    return graph
