"""Tensor types of the IR: an element dtype and a shape whose dims are ints, symbols or unknown.

A dim is an ``int`` (static), a ``str`` (a named symbolic dim such as ``batch``, bound at run time) or
``None`` (unknown, printed ``?``). A shape of ``None`` means the rank itself is unknown (printed ``[*]``).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import numpy as np

from ..errors import IrcError

Dim = Union[int, str, None]

# IR dtype name -> numpy dtype. The names are what the text form prints.
DTYPES = {
    "f16": np.dtype(np.float16), "f32": np.dtype(np.float32), "f64": np.dtype(np.float64),
    "i8": np.dtype(np.int8), "i16": np.dtype(np.int16), "i32": np.dtype(np.int32), "i64": np.dtype(np.int64),
    "u8": np.dtype(np.uint8), "u16": np.dtype(np.uint16), "u32": np.dtype(np.uint32), "u64": np.dtype(np.uint64),
    "bool": np.dtype(np.bool_), "str": np.dtype(object),
}
_BY_NUMPY = {v: k for k, v in DTYPES.items()}

FLOAT_DTYPES = ("f16", "f32", "f64")
INT_DTYPES = ("i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64")


def to_numpy_dtype(name: str) -> np.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise IrcError(f"unknown dtype {name!r}") from None


def from_numpy_dtype(dt) -> str:
    dt = np.dtype(dt)
    if dt.kind in "US":
        return "str"
    try:
        return _BY_NUMPY[dt]
    except KeyError:
        raise IrcError(f"unsupported numpy dtype {dt}") from None


def _check_dim(d) -> Dim:
    if d is None or isinstance(d, str):
        return d
    if isinstance(d, (int, np.integer)) and not isinstance(d, (bool, np.bool_)) and d >= 0:
        return int(d)
    raise IrcError(f"invalid dim {d!r} (a dim is a non-negative int, a symbol name or None)")


@dataclass(frozen=True)
class TensorType:
    dtype: str
    shape: Optional[Tuple[Dim, ...]]

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise IrcError(f"unknown dtype {self.dtype!r}")
        if self.shape is not None:
            object.__setattr__(self, "shape", tuple(_check_dim(d) for d in self.shape))

    @property
    def rank(self) -> Optional[int]:
        return None if self.shape is None else len(self.shape)

    @property
    def is_static(self) -> bool:
        return self.shape is not None and all(isinstance(d, int) for d in self.shape)

    @property
    def numpy_dtype(self) -> np.dtype:
        return DTYPES[self.dtype]

    def numel(self) -> Optional[int]:
        if not self.is_static:
            return None
        return int(np.prod(self.shape, dtype=np.int64))

    def with_shape(self, shape) -> "TensorType":
        return TensorType(self.dtype, shape)

    def with_dtype(self, dtype: str) -> "TensorType":
        return TensorType(dtype, self.shape)

    def refined_by(self, hint: "TensorType") -> "TensorType":
        """This type with each unknown dim (or an unknown rank) taken from ``hint``; dtype unchanged."""
        if self.shape is None:
            return TensorType(self.dtype, hint.shape)
        if hint.shape is None or len(hint.shape) != len(self.shape):
            return self
        return TensorType(self.dtype, tuple(h if d is None else d for d, h in zip(self.shape, hint.shape)))

    def __str__(self) -> str:
        if self.shape is None:
            return f"{self.dtype}[*]"
        return f"{self.dtype}[{', '.join(format_dim(d) for d in self.shape)}]"

    @staticmethod
    def of(array: np.ndarray) -> "TensorType":
        return TensorType(from_numpy_dtype(array.dtype), tuple(int(d) for d in array.shape))


_BARE_DIM = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_RESERVED_DIMS = ("nan", "inf")


def format_dim(d: Dim) -> str:
    """``?`` for unknown, the number, or the symbol (JSON-quoted unless it is a plain identifier)."""
    if d is None:
        return "?"
    if isinstance(d, str) and (not _BARE_DIM.match(d) or d in _RESERVED_DIMS):
        return json.dumps(d)
    return str(d)


def broadcast_shapes(*shapes):
    """Numpy broadcasting over shapes with symbolic dims; None when a rank is unknown.

    Two different symbols broadcast to an unknown dim; a static dim other than 1 wins over a symbol.
    Raises IrcError when two static dims disagree.
    """
    if any(s is None for s in shapes):
        return None
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(rank):
        dims = [s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0]
        dims = [d for d in dims if d != 1]
        static = {d for d in dims if isinstance(d, int)}
        if len(static) > 1:
            raise IrcError(f"shapes {', '.join(str(list(s)) for s in shapes)} do not broadcast")
        if static:
            out.append(static.pop())
        elif not dims:
            out.append(1)
        elif all(d == dims[0] for d in dims) and dims[0] is not None:
            out.append(dims[0])
        else:
            out.append(None)
    return tuple(out)
