"""Generated numba kernels: safe literals, the on-disk module cache, and broadcast layouts.

Kernel families that generate code (elementwise, and the fusion of elementwise chains) build Python
source from whitelisted templates; this module turns that text into an imported module:

- the text is written to ``cache_dir()/"gen"/<prefix>_<hash>.py`` (atomically: temp file + rename), so a
  name stands for one text forever and ``@njit(cache=True)`` keeps the machine code across processes;
- it is imported from that file under the name ``irc_gen_<prefix>_<hash>`` (registered in ``sys.modules``,
  which numba needs to reload a cached kernel), and memoized in process;
- model values reach the text only through ``literal``, which accepts numbers and nothing else.

The layout helpers plan a broadcast loop: each operand becomes a read-only 1-D buffer
(``readonly_buffer``) walked with element strides over the output's shape (``broadcast_strides``: 0 on
broadcast dims), and ``coalesce`` merges the dims that every operand walks contiguously.
"""
from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import sys
import tempfile
import threading
from typing import Dict, List, Sequence, Tuple

import numpy as np

from ...errors import IrcError
from ...runtime.cache import cache_dir

_MODULES: Dict[str, object] = {}
_LOCK = threading.Lock()

# numpy constructor of each compute dtype, as spelled in generated code
CTOR = {"f32": "np.float32", "f64": "np.float64", "i8": "np.int8", "i16": "np.int16", "i32": "np.int32",
        "i64": "np.int64", "u8": "np.uint8", "u16": "np.uint16", "u32": "np.uint32", "u64": "np.uint64",
        "bool": "np.bool_"}


def number(value, what: str = "attribute"):
    """``value`` as a Python int (bools too) or float; anything else, strings included, is an IrcError."""
    if isinstance(value, (bool, np.bool_, int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    raise IrcError(f"{what} must be a number, got {type(value).__name__}")


def literal(value, dtype: str) -> str:
    """Source text of the number ``value`` as a constant of compute dtype ``dtype`` (f32, i64, bool...)."""
    v = number(value, "constant")
    if dtype == "bool":
        return "True" if v else "False"
    if dtype not in CTOR:
        raise IrcError(f"no literal of dtype {dtype}")
    if dtype[0] in "iu":
        if isinstance(v, float) and not v.is_integer():
            raise IrcError(f"constant {v!r} is not an integer of dtype {dtype}")
        text = repr(int(v))
    elif math.isnan(v):
        text = "np.nan"
    elif math.isinf(v):
        text = "np.inf" if v > 0 else "-np.inf"
    else:
        text = repr(float(v))
    return f"{CTOR[dtype]}({text})"


def source_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def _write_atomically(path: str, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-", suffix=".py")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _read(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None


def load_module(text: str, prefix: str):
    """Import generated source ``text`` from its file in the kernel cache (written when missing or
    different), once per process."""
    key = f"{prefix}_{source_hash(text)}"
    with _LOCK:
        mod = _MODULES.get(key)
        if mod is not None:
            return mod
        folder = cache_dir() / "gen"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = str(folder / f"{key}.py")
            if _read(path) != text:
                _write_atomically(path, text)
        except OSError as e:
            raise IrcError(f"cannot write generated kernel to {folder}: {e}") from None
        name = f"irc_gen_{key}"
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        try:
            spec.loader.exec_module(mod)
        except BaseException:
            del sys.modules[name]
            raise
        _MODULES[key] = mod
        return mod


def element_strides(a: np.ndarray) -> Tuple[int, ...]:
    """Strides in elements, 0 on unit dims; the array must have non-negative, aligned strides."""
    size = a.dtype.itemsize
    return tuple(0 if d == 1 else s // size for d, s in zip(a.shape, a.strides))


def walkable(a: np.ndarray) -> np.ndarray:
    """``a``, or a contiguous copy where a stride is negative or not a multiple of the item size."""
    size = a.dtype.itemsize
    if a.flags.c_contiguous or all(s >= 0 and s % size == 0 for s in a.strides):
        return a
    return np.ascontiguousarray(a)


def readonly_buffer(a: np.ndarray) -> np.ndarray:
    """A read-only 1-D contiguous view of the memory a ``walkable`` array spans, from its first element.

    Every operand reaches a kernel in this one form, so a kernel has one signature per dtype whatever
    the operand's layout or writeability; ``element_strides`` tells how to walk it.
    """
    if a.flags.c_contiguous:
        buf = a.reshape(-1).view()
    else:
        span = 1 + sum((d - 1) * s for d, s in zip(a.shape, element_strides(a)))
        buf = np.lib.stride_tricks.as_strided(a, (span,), (a.dtype.itemsize,))
    buf.flags.writeable = False
    return buf


def broadcast_strides(shape: Sequence[int], out_shape: Sequence[int], strides: Sequence[int]) -> List[int]:
    """Element strides of an operand read over ``out_shape`` (numpy broadcasting: 0 on broadcast dims)."""
    pad = len(out_shape) - len(shape)
    return [0 if i < pad or shape[i - pad] == 1 else strides[i - pad] for i in range(len(out_shape))]


def coalesce(out_shape: Sequence[int], strides: Sequence[Sequence[int]]):
    """Drop unit dims and merge neighbours that every operand walks contiguously.

    Dim ``i`` merges into the (already merged) dim after it of size ``n`` when, for every operand,
    ``stride[i] == n * stride[i+1]``; broadcast dims (stride 0) merge with each other. Returns the merged
    shape and, per operand, its strides over it (outermost first).
    """
    dims = [(n, [s[i] for s in strides]) for i, n in enumerate(out_shape) if n != 1]
    merged: List[Tuple[int, List[int]]] = []
    for n, st in reversed(dims):
        if merged:
            m, inner = merged[-1]
            if all(o == m * i for o, i in zip(st, inner)):
                merged[-1] = (m * n, inner)
                continue
        merged.append((n, st))
    merged.reverse()
    shape = [n for n, _ in merged]
    return shape, [[st[k] for _, st in merged] for k in range(len(strides))]
