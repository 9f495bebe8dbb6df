"""Shape values: what is known of small integer (and boolean) tensors computed from shapes.

Exporters compute shapes at run time: ``Shape -> Gather -> Unsqueeze -> Concat -> Reshape``. With a
symbolic batch the ``Shape`` is not a constant, yet most of its entries are: ``shape(x: f32[batch, 3, 4])``
is ``(batch, 3, 4)``. A *shape value* is that tuple for a 0-D or 1-D integer value of at most
``MAX_ELEMENTS`` entries; each entry is an ``int``, a symbol name (``str``, equal to that dim of the inputs)
or ``None`` (unknown). The table is built in graph order by ``ShapeValues.compute``:

- ``const`` integer tensors and ``shape(x)`` give their entries;
- ops that only move entries (gather, slice, concat, unsqueeze, squeeze, reshape, flatten, identity,
  expand, and where with a known condition) are run by their own reference on *positions* (``arange``)
  and the positions mapped back to entries, so the op's definition is reused exactly;
- ``cast`` to i32 or i64 keeps entries; ``size`` gives the product of dims;
- ``add``/``sub``/``mul``/``div``/``max``/``min`` compute entries that are ints with the op's reference,
  keep a symbol under ``+ 0``, ``- 0``, ``* 1``, ``/ 1`` and are unknown otherwise;
- ``equal`` compares ints, and knows a symbol equals itself and no negative int (a dim is a size): the
  ``Where(Equal(shape, -1), 1, shape)`` that exporters put before ``Expand`` resolves.

Boolean values are tracked too, their entries 0 and 1.

Sound because a symbol names the run-time value of one dim of the inputs and each rule is the op's
definition applied entrywise.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from ..ir import Node, Value
from ..ir.types import INT_DTYPES
from ..ops import OPS, run_reference
from ..ops.tensor import dim_product

MAX_ELEMENTS = 64
Entries = Tuple[object, ...]

# op -> the operands whose entries it moves (None: all operands); the others must be known ints
_MOVERS = {"identity": (0,), "gather": (0,), "slice": (0,), "unsqueeze": (0,), "squeeze": (0,),
           "reshape": (0,), "flatten": (0,), "expand": (0,), "where": (1, 2), "concat": None}
# op -> the (left, right) neutral ints: ``left op x`` and ``x op right`` are x for a symbolic x
_ARITH = {"add": (0, 0), "sub": (None, 0), "mul": (1, 1), "div": (None, 1), "max": (None, None),
          "min": (None, None)}


def _tracked(v: Value) -> bool:
    """A 0-D or 1-D integer or boolean value of at most MAX_ELEMENTS entries."""
    t = v.type
    return t.dtype in INT_DTYPES + ("bool",) and t.rank in (0, 1) and (t.rank == 0 or (
        isinstance(t.shape[0], int) and t.shape[0] <= MAX_ELEMENTS))


class ShapeValues:
    """The side table Value -> entries, filled node by node in graph order."""

    def __init__(self):
        self.known: Dict[Value, Entries] = {}

    def get(self, v: Optional[Value]) -> Optional[Entries]:
        """The entries of ``v`` (constants included), or None when nothing is known."""
        if v is None:
            return None
        if v in self.known:
            return self.known[v]
        c = v.const_value
        if c is not None and c.dtype.kind in "iub" and c.ndim <= 1 and c.size <= MAX_ELEMENTS:
            return tuple(int(x) for x in c.reshape(-1))
        return None

    def ints(self, v: Optional[Value]) -> Optional[np.ndarray]:
        """The value as an array when all its entries are ints (None when not)."""
        e = self.get(v)
        if e is None or not all(isinstance(x, int) for x in e):
            return None
        return np.array(e, dtype=v.type.numpy_dtype).reshape(() if v.type.rank == 0 else (len(e),))

    def compute(self, node: Node) -> Optional[Entries]:
        """Entries of the node's first result (recorded in the table), or None."""
        if len(node.outputs) != 1 or not _tracked(node.outputs[0]):
            return None
        entries = self._rule(node)
        if entries is not None:
            self.known[node.outputs[0]] = entries
        return entries

    def _rule(self, node: Node) -> Optional[Entries]:
        if node.op == "shape":
            dims = node.inputs[0].type.shape
            return None if dims is None else tuple(dims[node.attrs["start"]:node.attrs["end"]])
        if node.op == "size":
            shape = node.inputs[0].type.shape
            return None if shape is None else (dim_product(shape),)
        if node.op == "cast":  # dims fit in 32 bits; narrower casts could wrap
            return self.get(node.inputs[0]) if node.attrs["to"] in ("i32", "i64") else None
        if node.op in _MOVERS:
            return self._move(node, _MOVERS[node.op])
        if node.op in _ARITH and len(node.inputs) == 2:
            return self._pairwise(node, _arith_entry)
        if node.op == "equal":
            return self._pairwise(node, _equal_entry)
        return None

    def _move(self, node: Node, data: Optional[Sequence[int]]) -> Optional[Entries]:
        """Run the op on positions of the data operands' entries, then read the entries back."""
        pool, args = [], []
        for i, v in enumerate(node.inputs):
            if v is None:
                args.append(None)
            elif data is None or i in data:
                e = self.get(v)
                if e is None or v.type.rank not in (0, 1):
                    return None
                pos = np.arange(len(pool), len(pool) + len(e), dtype=np.int64)
                args.append(pos.reshape(()) if v.type.rank == 0 else pos)
                pool.extend(e)
            else:
                a = self.ints(v)
                if a is None:
                    return None
                args.append(a)
        try:
            out = run_reference(OPS[node.op], args, node.attrs)[0]
        except Exception:  # an invalid index or shape: left for run time to report
            return None
        if out.ndim > 1:
            return None
        return tuple(pool[int(p)] for p in out.reshape(-1))

    def _pairwise(self, node: Node, entry) -> Optional[Entries]:
        """Entries of a two-operand elementwise op, ``entry(node, x, y)`` each, a one-entry operand broadcast."""
        a, b = (self.get(v) for v in node.inputs)
        if a is None or b is None or (len(a) != len(b) and 1 not in (len(a), len(b))):
            return None
        n = max(len(a), len(b))
        a, b = (e * n if len(e) == 1 else e for e in (a, b))
        return tuple(entry(node, x, y) for x, y in zip(a, b))


def _static(node: Node, x: int, y: int):
    """The op's reference on two int entries (None where it divides by zero or overflows)."""
    if node.op == "div" and y == 0:
        return None  # reported at run time
    dt = node.inputs[0].type.numpy_dtype
    try:
        return int(run_reference(OPS[node.op], [np.array(x, dt), np.array(y, dt)], node.attrs)[0])
    except Exception:  # out of the dtype's range: unknown here
        return None


def _arith_entry(node: Node, x, y):
    if isinstance(x, int) and isinstance(y, int):
        return _static(node, x, y)
    left, right = _ARITH[node.op]  # the neutral ints on each side (None: no neutral)
    if isinstance(x, str) and isinstance(y, int) and y == right:
        return x
    if isinstance(y, str) and isinstance(x, int) and x == left:
        return y
    return None


def _equal_entry(node: Node, x, y):
    """A symbol equals itself and never a negative int (it is a size); ints compare."""
    if isinstance(x, int) and isinstance(y, int):
        return _static(node, x, y)
    if isinstance(x, str) and x == y:
        return 1
    if any(isinstance(a, str) and isinstance(b, int) and b < 0 for a, b in ((x, y), (y, x))):
        return 0
    return None
