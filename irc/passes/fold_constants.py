"""fold-constants: evaluate what is known before run time.

- a node whose operands are all constants becomes a ``const`` holding its reference result (sound: every
  op is pure and the reference is the op's definition); results above ``FOLD_LIMIT_BYTES`` stay;
- a small integer value whose entries are all known from shapes becomes a constant even when other
  dims are symbolic: ``gather(shape(x: f32[batch, 3]), 1)`` is ``3`` (see ``shape_values.py``);
- a ``reshape``/``expand``/``constant_of_shape`` whose shape operand is known up to symbols gets those
  dims in its result type (``reshape(x: f32[batch, 3, 4], (batch, -1))`` is ``f32[batch, 12]``), and
  ``range(0, n, 1)`` gets ``n`` entries;
- a node whose operands were refined gets its result types re-inferred, keeping every dim the old type
  knew that the new one does not (``TensorType.refined_by``), so the chains of exporters fold from end to
  end in one walk.
"""
from __future__ import annotations

from typing import List, Optional, Set

import numpy as np

from ..errors import IrcError
from ..ir import Builder, Graph, Node, TensorType, Value
from ..ir.types import broadcast_shapes
from ..ops import get, infer_types, run_reference
from ..ops.tensor import reshape_dims
from .manager import register_pass
from .shape_values import ShapeValues

FOLD_LIMIT_BYTES = 1 << 30
# ops left for a later pass even with constant operands: a dequantized weight stays quantized until
# fuse-qdq has turned it into an int8 kernel's operand (it folds the ones it does not use)
KEEP = ("dequantize_linear",)


def _shape_taking(node: Node) -> bool:
    return node.op in ("reshape", "expand", "constant_of_shape", "range")


def _shape_from_entries(node: Node, table: ShapeValues) -> Optional[tuple]:
    """Result dims of shape-taking ops whose shape operand is known up to symbols."""
    if node.op == "constant_of_shape":
        return table.get(node.inputs[0])
    if node.op == "range":  # range(0, n, 1) has n entries
        start, limit, delta = (table.get(v) for v in node.inputs)
        return (limit[0],) if (start, delta) == ((0,), (1,)) and limit is not None else None
    target = table.get(node.input(1))
    if target is None:
        return None
    x = node.inputs[0].type.shape
    if node.op == "reshape":
        return reshape_dims(x, target, node.attrs["allowzero"])
    if node.op == "expand":
        return broadcast_shapes(x, tuple(target))
    return None


def _refine(node: Node, table: ShapeValues) -> bool:
    """Re-infer the result types; True when one changed."""
    try:
        types = infer_types(node)
        dims = _shape_from_entries(node, table) if _shape_taking(node) else None
        if dims is not None:
            types[0] = types[0].with_shape(dims).refined_by(types[0])
    except IrcError as e:
        raise IrcError(f"node {node.op} {node.name!r}: {e}") from None
    changed = False
    for v, t in zip(node.outputs, types):
        t = t.refined_by(v.type)
        if t != v.type:
            v.type, changed = t, True
    return changed


def _evaluate(node: Node) -> Optional[List[np.ndarray]]:
    """The reference results when every operand is a constant with a value and the results are small."""
    if not node.inputs or node.op in KEEP or not all(v is None or v.const_value is not None for v in node.inputs):
        return None
    for t in (v.type for v in node.outputs):
        if t.is_static and t.numel() * t.numpy_dtype.itemsize > FOLD_LIMIT_BYTES:
            return None
    try:
        return run_reference(get(node.op), [None if v is None else v.const_value for v in node.inputs],
                             node.attrs)
    except IrcError as e:
        raise IrcError(f"node {node.op} {node.name!r}: {e}") from None


def _check_result(node: Node, t: TensorType, r: np.ndarray) -> None:
    """A folded result must have the type its value records (else inference and reference disagree)."""
    if r.dtype != t.numpy_dtype or (t.shape is not None and (
            r.ndim != len(t.shape) or any(isinstance(d, int) and d != n for d, n in zip(t.shape, r.shape)))):
        raise IrcError(f"node {node.op} {node.name!r}: folding gave {TensorType.of(r)}, the IR says {t}")


def _replace(graph: Graph, node: Node, results: List[np.ndarray]) -> List[Value]:
    """Put a constant per result before ``node``, move every use onto it, drop ``node``. A graph output
    becomes an identity of the constant (an output keeps a value of its own, never a constant)."""
    consts = []
    for v, r in zip(node.outputs, results):
        _check_result(node, v.type, r)
        c = graph.add_const(np.require(r, requirements="C"), name=node.name, before=node)
        c.name = v.name
        graph.replace_all_uses(v, c)
        if any(o is c for o in graph.outputs):
            copy = Builder(graph, before=node, name=node.name).op("identity", c)
            graph.outputs = [copy if o is c else o for o in graph.outputs]
        consts.append(c)
    graph.remove_node(node)
    return consts


@register_pass("fold-constants", level=1)
def fold_constants(graph: Graph) -> Graph:
    """Replace constant-computable nodes by constants and refine the types that depend on them."""
    table = ShapeValues()
    touched: Set[Value] = set()   # values whose type or producer this walk changed
    for node in list(graph.nodes):
        if node.op == "const":
            continue
        if (_shape_taking(node) or any(v in touched for v in node.inputs if v is not None)) \
                and _refine(node, table):
            touched.update(node.outputs)
        results = _evaluate(node)
        if results is None and table.compute(node) is not None:
            known = table.ints(node.outputs[0])
            results = None if known is None else [known]
        if results is not None:
            touched.update(_replace(graph, node, results))
    return graph
