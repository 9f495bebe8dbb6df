"""simplify: remove nodes that do nothing, forwarding their operand to their readers.

- ``identity`` (the importer makes Dropout one) forwards its operand;
- ``cast`` to the dtype the operand already has;
- ``reshape``, ``flatten``, ``squeeze``, ``unsqueeze``, ``expand`` whose result type equals the operand's,
  every dim known (static or a symbol: a symbol names one run-time size, so equal types mean equal shapes);
- ``transpose`` by the identity permutation;
- ``concat`` of a single operand;
- ``x * 1``, ``1 * x``, ``x + 0``, ``0 + x``, ``x - 0``, ``x / 1`` where the constant is all ones (zeros)
  and the result has x's type (so the constant neither broadcasts x nor changes its dtype).
Each is sound because the result equals the operand element for element. A graph output is never
forwarded to an input, a constant or another output (see ``util.forward``).

Chains are merged first, so that what they leave is removed as above when it does nothing:
- ``transpose(transpose(x, p), q)`` -> ``transpose(x, [p[i] for i in q])`` (axis i of the result is
  axis q[i] of the inner result, which is axis p[q[i]] of x); inverse permutations compose to identity;
- ``reshape(reshape(x, s), t)`` -> ``reshape(x, t)`` when t is a constant without 0 entries (or
  ``allowzero=1``): t then names the result's shape by itself, and reshape keeps the row-major order of
  the elements whatever the shape in between;
- ``cast(cast(x, a), b)`` -> ``cast(x, b)`` when ``a`` holds every value of x's dtype exactly (a
  widening), so the inner cast loses nothing;
- a reshape to a shape computed at run time (exporters build it from ``shape(x)``) whose result type
  names every dim takes a constant shape instead: the static dims; 0 (copy the operand's dim, not
  with ``allowzero``) for a symbol the operand has at the same position; -1 for at most one other
  symbol (the one dim a reshape may leave to the element count; static dims must then be nonzero).
  Sound because the result type is what the computed shape gives; the computation is left to ``dce``;
- an elementwise op reading ``expand(x, s)`` reads ``x`` when its result's shape stays the same: it
  broadcasts its operands itself, so the expanded copy changes nothing.
The inner node goes when nothing else reads it.
"""
import numpy as np

from ..errors import IrcError
from ..ir import Graph, Node, Value
from ..ir.types import broadcast_shapes
from ..ops.registry import OPS
from ..ops.tensor import transpose_perm
from .manager import register_pass
from .util import forward

# dtype -> dtypes that hold each of its values exactly
_WIDER = {"bool": ("i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "f16", "f32", "f64"),
          "i8": ("i16", "i32", "i64", "f16", "f32", "f64"), "i16": ("i32", "i64", "f32", "f64"),
          "i32": ("i64", "f64"), "u8": ("i16", "i32", "i64", "u16", "u32", "u64", "f16", "f32", "f64"),
          "u16": ("i32", "i64", "u32", "u64", "f32", "f64"), "u32": ("i64", "u64", "f64"),
          "f16": ("f32", "f64"), "f32": ("f64",)}
_IDENTITY_OPERAND = {"mul": (1, (0, 1)), "add": (0, (0, 1)), "sub": (0, (1,)), "div": (1, (1,))}

_SAME_TYPE_NOOPS = ("reshape", "flatten", "squeeze", "unsqueeze", "expand")


def _known_shape(t) -> bool:
    return t.shape is not None and all(d is not None for d in t.shape)


def _is_noop(node: Node) -> bool:
    x = node.inputs[0] if node.inputs else None
    if x is None or len(node.outputs) != 1:
        return False
    y = node.outputs[0]
    if node.op == "identity":
        return True
    if node.op == "cast":
        return x.type.dtype == y.type.dtype
    if node.op in _SAME_TYPE_NOOPS:
        return x.type == y.type and _known_shape(y.type)
    if node.op == "transpose":
        rank = x.type.rank
        return rank is not None and transpose_perm(node.attrs["perm"], rank) == list(range(rank))
    if node.op == "concat":
        return len(node.inputs) == 1
    return _neutral_operand(node) is not None


def _neutral_operand(node: Node):
    """The operand ``x`` of ``x * 1``, ``x + 0`` ... (see the module docstring), else None."""
    if node.op not in _IDENTITY_OPERAND or len(node.inputs) != 2:
        return None
    neutral, sides = _IDENTITY_OPERAND[node.op]
    for i in sides:
        c, x = node.inputs[i].const_value, node.inputs[1 - i]
        if c is not None and c.size and np.all(c == neutral) and x.type == node.outputs[0].type:
            return x
    return None


def _merge_chain(node: Node):
    """The inner node of a chain ``node`` was rewritten to bypass (see the module docstring), else None."""
    x = node.inputs[0] if node.inputs else None
    inner = x.producer if x is not None else None
    if inner is None or inner.op != node.op or len(inner.outputs) != 1:
        return None
    if node.op == "transpose":
        rank = x.type.rank
        if rank is None:
            return None
        p, q = transpose_perm(inner.attrs["perm"], rank), transpose_perm(node.attrs["perm"], rank)
        node.attrs["perm"] = [p[i] for i in q]
    elif node.op == "reshape":
        t = node.inputs[1].const_value
        if t is None or not (node.attrs.get("allowzero") or np.all(t != 0)):
            return None
    elif node.op == "cast":
        if inner.inputs[0].type.dtype not in _WIDER or x.type.dtype not in _WIDER[inner.inputs[0].type.dtype]:
            return None
    else:
        return None
    node.set_input(0, inner.inputs[0])
    return inner


def _skip_expands(node: Node):
    """The expand nodes an elementwise ``node`` no longer reads, having been rewritten to read their
    operands (see the module docstring)."""
    d = OPS.get(node.op)
    if d is None or d.kind != "elementwise":
        return []
    skipped = []
    for i, v in enumerate(node.inputs):
        e = v.producer if v is not None else None
        if e is None or e.op != "expand":
            continue
        shapes = [e.inputs[0].type.shape if j == i else u.type.shape
                  for j, u in enumerate(node.inputs) if u is not None]
        try:
            same = None not in shapes and broadcast_shapes(*shapes) == node.outputs[0].type.shape
        except IrcError:
            same = False
        if same and _known_shape(node.outputs[0].type):
            node.set_input(i, e.inputs[0])
            skipped += [e] if all(n is not e for n in skipped) else []
    return skipped


def _constant_target(graph: Graph, node: Node) -> None:
    """Give a reshape to a run-time shape its constant target (see the module docstring)."""
    if node.op != "reshape" or len(node.inputs) != 2 or node.inputs[1].is_const:
        return
    shape, x = node.outputs[0].type.shape, node.inputs[0].type.shape or ()
    if shape is None or None in shape or 0 in shape:
        return
    copy = not node.attrs.get("allowzero")
    target = [d if isinstance(d, int) else 0 if copy and i < len(x) and x[i] == d else -1
              for i, d in enumerate(shape)]
    if target.count(-1) <= 1:
        node.set_input(1, graph.add_const(np.array(target, np.int64), before=node))


def _drop_if_dead(graph: Graph, node: Node) -> None:
    if not any(v.uses or any(o is v for o in graph.outputs) for v in node.outputs):
        graph.remove_node(node)


@register_pass("simplify", level=1)
def simplify(graph: Graph) -> Graph:
    """Give reshapes constant targets, merge transpose, reshape and cast chains, skip expands, then
    forward the operand of every no-op node to its readers and drop the node."""
    for node in list(graph.nodes):
        _constant_target(graph, node)
        inner = _merge_chain(node)
        for n in ([inner] if inner is not None else []) + _skip_expands(node):
            _drop_if_dead(graph, n)
        if _is_noop(node) and forward(graph, node.outputs[0], _kept_operand(node)):
            graph.remove_node(node)
    return graph


def _kept_operand(node: Node) -> Value:
    """The operand a no-op node's result equals."""
    return _neutral_operand(node) or node.inputs[0]
