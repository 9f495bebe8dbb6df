"""Ops that the ``fuse`` pass makes out of several others: ``fused_elementwise`` and ``attention``.

``fused_elementwise`` computes a tree of elementwise ops over its operands in one pass over memory. The
tree is data, held in two attributes so that the IR text and the artifact store it as they store any
attribute (no code, nothing evaluated):

- ``expr``: a node is ``[op, [arg, ...]]`` or ``[op, [arg, ...], [attr, ref, attr, ref, ...]]``; ``op``
  is an op of kind ``elementwise`` (the whitelist), an ``arg`` is a node, the int ``i`` (operand ``i``
  of the fused node) or ``"_"`` (an omitted optional operand); an attribute ``ref`` is a string (a string
  attribute's value) or the int ``k``: the number ``params[k]``;
- ``params``: the numeric attribute values, floats (an int attribute is read back as an int).

For example ``relu(x0 * x1 + x2)`` is ``expr=["relu", [["add", [["mul", [0, 1]], 2]]]], params=[]``.
The result broadcasts all operands, as each op of the tree broadcasts its own.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import IrcError
from ..ir.types import TensorType, broadcast_shapes
from .registry import OPS, REQUIRED, InferContext, define, run_reference

OMITTED = "_"

# a decoded tree node: (op, args, attributes); an arg is a decoded node, an operand index or None
Tree = Tuple[str, tuple, Dict[str, object]]


def encode(op: str, args: Sequence[object], attrs: dict, params: List[float]) -> list:
    """One ``expr`` node of ``op`` over already encoded ``args`` (ints, lists, None for omitted);
    numeric attribute values are appended to ``params``."""
    items = []
    for k in sorted(attrs):
        v = attrs[k]
        if v is None:
            continue
        if isinstance(v, str):
            items += [k, v]
        elif isinstance(v, (bool, int, float, np.integer, np.floating)):
            items += [k, len(params)]
            params.append(float(v))
        else:
            raise IrcError(f"fused_elementwise: attribute {k} of {op} is not a number or a string")
    node = [op, [OMITTED if a is None else a for a in args]]
    return node + [items] if items else node


def decode(expr, params: Sequence[float], n_operands: int) -> Tree:
    """The tree an ``expr`` attribute holds, checked: whitelisted ops, operand indices in range,
    attribute names of the op and parameter indices in range."""
    if not isinstance(expr, list) or len(expr) not in (2, 3) or not isinstance(expr[0], str) \
            or not isinstance(expr[1], list):
        raise IrcError(f"fused_elementwise: malformed expression node {expr!r}")
    op = expr[0]
    d = OPS.get(op)
    if d is None or d.kind != "elementwise":
        raise IrcError(f"fused_elementwise: {op!r} is not an elementwise op")
    args = tuple(_decode_arg(a, params, n_operands) for a in expr[1])
    items = expr[2] if len(expr) == 3 else []
    if not isinstance(items, list) or len(items) % 2:
        raise IrcError(f"fused_elementwise: attributes of {op} must be name, value pairs")
    attrs = {}
    for k, ref in zip(items[::2], items[1::2]):
        if k not in d.attrs:
            raise IrcError(f"fused_elementwise: op {op} has no attribute {k!r}")
        attrs[k] = ref if isinstance(ref, str) else _param(params, ref, d.attrs[k])
    return op, args, attrs


def _decode_arg(a, params, n_operands):
    if a == OMITTED:
        return None
    if isinstance(a, list):
        return decode(a, params, n_operands)
    if isinstance(a, int) and not isinstance(a, bool) and 0 <= a < n_operands:
        return a
    raise IrcError(f"fused_elementwise: operand reference {a!r} is not one of {n_operands} operands")


def _param(params, k, default):
    if not isinstance(k, int) or not 0 <= k < len(params):
        raise IrcError(f"fused_elementwise: parameter reference {k!r} is not one of {len(params)} params")
    v = params[k]
    return int(v) if isinstance(default, int) and default is not REQUIRED else float(v)


def evaluate(tree, operands: Sequence[np.ndarray]):
    """The tree computed with each op's numpy reference (operands by index, None for omitted)."""
    if tree is None or isinstance(tree, int):
        return None if tree is None else operands[tree]
    op, args, attrs = tree
    d = OPS[op]
    return run_reference(d, [evaluate(a, operands) for a in args], d.full_attrs(attrs))[0]


def result_dtype(tree, dtypes: Sequence[str]) -> Optional[str]:
    """The dtype of the tree's result over operands of ``dtypes``, by each op's type inference."""
    if tree is None or isinstance(tree, int):
        return None if tree is None else dtypes[tree]
    op, args, attrs = tree
    d = OPS[op]
    types = [None if t is None else TensorType(t, ()) for t in (result_dtype(a, dtypes) for a in args)]
    ctx = InferContext(d, types, d.full_attrs(attrs, f"op {op}: "), [None] * len(types))
    return d.infer(ctx)[0].dtype


def _infer_fused(ctx):
    tree = decode(ctx["expr"], ctx["params"], len(ctx.types))
    if any(t is None for t in ctx.types):
        raise IrcError("fused_elementwise operands cannot be omitted")
    shape = broadcast_shapes(*(t.shape for t in ctx.types))
    return [TensorType(result_dtype(tree, [t.dtype for t in ctx.types]), shape)]


# the one float of the params default tells the artifact reader that the list holds floats
@define("fused_elementwise", kind="opaque", attrs={"expr": REQUIRED, "params": [0.0]}, infer=_infer_fused)
def fused_elementwise(*operands, expr, params):
    """A tree of elementwise ops (``expr``, ``params``: see the module docstring) over the operands."""
    out = evaluate(decode(expr, params, len(operands)), operands)
    shape = np.broadcast_shapes(*(np.shape(a) for a in operands))
    return np.broadcast_to(out, shape).copy() if out.shape != shape else out


def _infer_attention(ctx):
    q, kt, v = ctx.type(0), ctx.type(1), ctx.type(2)
    if q.shape is None or v.shape is None:
        return [TensorType(q.dtype, None)]
    if len(q.shape) < 2 or len(q.shape) != len(v.shape) or (kt.shape is not None and len(kt.shape) != len(q.shape)):
        raise IrcError(f"attention needs q, k^T, v of one rank >= 2, got {q}, {kt}, {v}")
    return [TensorType(q.dtype, tuple(q.shape[:-1]) + (v.shape[-1],))]


@define("attention", kind="opaque", attrs={"scale": 1.0}, infer=_infer_attention)
def attention(q, kt, v, mask=None, *, scale):
    """Scaled dot-product attention: softmax(q @ kt * scale + mask) @ v, the softmax over the last axis.
    ``kt`` is the key already transposed ([..., D, T]); ``mask`` (optional) broadcasts to the scores
    [..., S, T]; batch axes (all but the last two) are equal in q, kt and v."""
    scores = np.matmul(q.astype(np.float64), kt.astype(np.float64)) * scale
    if mask is not None:
        scores = scores + mask
    with np.errstate(invalid="ignore", over="ignore"):
        shifted = scores - scores.max(axis=-1, keepdims=True)
        p = np.exp(shifted)
        p = p / p.sum(axis=-1, keepdims=True)
    return np.matmul(p, v.astype(np.float64)).astype(q.dtype)
