"""The op table: every op is defined once, with its attributes, type inference and numpy reference.

An op is declared with ``@define``::

    @define("relu", onnx="Relu", kind="elementwise")
    def relu(x):
        return np.maximum(x, 0).astype(x.dtype)

- ``attrs`` maps each attribute to its default (``REQUIRED`` when it has none); the ONNX frontend fills
  the defaults of the spec, so every node of the IR carries all its attributes.
- ``infer(ctx)`` returns the result types; ``ctx`` gives operand types, attributes and the values of
  constant operands. Ops of kind ``elementwise`` default to numpy broadcasting of the operands.
- The reference (the decorated function) is called as ``fn(*operands, **attrs)`` on numpy arrays and
  returns an array or a tuple of arrays. It is the oracle of the tests and what constant folding runs.
- ``kind`` is what fusion reads: ``elementwise`` (maps each element, broadcasting), ``injective`` (moves
  data: reshape, transpose, slice ...), ``reduce``, ``shape`` (computes on shapes only), ``opaque``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import IrcError
from ..ir.types import TensorType, broadcast_shapes, from_numpy_dtype

REQUIRED = object()
KINDS = ("elementwise", "injective", "reduce", "shape", "opaque", "source")


@dataclass
class OpDef:
    name: str
    ref: Callable
    infer: Callable
    kind: str
    attrs: Dict[str, object] = field(default_factory=dict)
    onnx: Tuple[str, ...] = ()
    doc: str = ""

    def full_attrs(self, attrs: dict, where: str = "") -> dict:
        """Attributes with defaults filled in; an unknown or missing attribute is an IrcError."""
        out = {}
        for k, v in attrs.items():
            if k not in self.attrs:
                raise IrcError(f"{where}op {self.name} has no attribute {k!r}")
            out[k] = v
        for k, d in self.attrs.items():
            if k not in out:
                if d is REQUIRED:
                    raise IrcError(f"{where}op {self.name} needs attribute {k!r}")
                out[k] = d
        return out


OPS: Dict[str, OpDef] = {}
BY_ONNX: Dict[str, OpDef] = {}


class InferContext:
    """What an op's type inference may look at: operand types, attributes, constant operand values."""

    def __init__(self, op: OpDef, types: Sequence[Optional[TensorType]], attrs: dict,
                 values: Sequence[Optional[np.ndarray]]):
        self.op = op
        self.types = list(types)
        self.attrs = attrs
        self.values = list(values)

    def type(self, i: int) -> Optional[TensorType]:
        return self.types[i] if i < len(self.types) else None

    def value(self, i: int) -> Optional[np.ndarray]:
        return self.values[i] if i < len(self.values) else None

    def shape(self, i: int):
        t = self.type(i)
        return None if t is None else t.shape

    def dtype(self, i: int) -> str:
        return self.types[i].dtype

    def __getitem__(self, attr: str):
        return self.attrs[attr]


def infer_broadcast(ctx: InferContext) -> List[TensorType]:
    """Result dtype of the first operand, shape broadcast over all operands."""
    shapes = [t.shape for t in ctx.types if t is not None]
    return [TensorType(ctx.types[0].dtype, broadcast_shapes(*shapes))]


def infer_by_reference(ctx: InferContext) -> List[TensorType]:
    """Run the reference on zero-filled operands: for ops whose result type is cheap to find that way."""
    if not all(t is None or t.is_static for t in ctx.types):
        raise IrcError(f"op {ctx.op.name} needs static operand shapes")
    args = [None if t is None else (ctx.values[i] if ctx.values[i] is not None
                                     else np.zeros(t.shape, t.numpy_dtype))
            for i, t in enumerate(ctx.types)]
    outs = run_reference(ctx.op, args, ctx.attrs)
    return [TensorType.of(o) for o in outs]


def define(name: str, *, kind: str, onnx=(), attrs: Optional[dict] = None,
           infer: Optional[Callable] = None):
    """Register the decorated numpy function as the reference of op ``name``."""
    if kind not in KINDS:
        raise ValueError(f"unknown op kind {kind}")
    onnx_names = (onnx,) if isinstance(onnx, str) else tuple(onnx)

    def deco(fn):
        if name in OPS:
            raise ValueError(f"op {name} defined twice")
        inf = infer or (infer_broadcast if kind == "elementwise" else None)
        if inf is None:
            raise ValueError(f"op {name} needs an infer function")
        d = OpDef(name, fn, inf, kind, dict(attrs or {}), onnx_names, (fn.__doc__ or "").strip())
        OPS[name] = d
        for o in onnx_names:
            BY_ONNX[o] = d
        return fn
    return deco


def get(name: str) -> OpDef:
    try:
        return OPS[name]
    except KeyError:
        raise IrcError(f"unknown op {name!r}") from None


def as_outputs(result) -> List[np.ndarray]:
    if isinstance(result, (tuple, list)):
        return [np.asarray(r) for r in result]
    return [np.asarray(result)]


def run_reference(op: OpDef, inputs: Sequence[Optional[np.ndarray]], attrs: dict) -> List[np.ndarray]:
    """Evaluate an op with its numpy reference."""
    return as_outputs(op.ref(*inputs, **attrs))


def infer_types(node) -> List[TensorType]:
    """Type inference for an IR node with the op table."""
    op = get(node.op)
    ctx = InferContext(op, [None if v is None else v.type for v in node.inputs], op.full_attrs(node.attrs),
                       [None if v is None else v.const_value for v in node.inputs])
    return op.infer(ctx)


def same_as(i: int = 0):
    """Infer: the result has the type of operand ``i``."""
    return lambda ctx: [ctx.types[i]]


def np_dtype_name(a: np.ndarray) -> str:
    return from_numpy_dtype(a.dtype)
