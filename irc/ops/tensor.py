"""Ops that move, view or describe data: shapes, reshapes, slices, gathers, concatenation, padding.

Operands that describe a shape or positions (reshape's shape, slice's starts, squeeze's axes ...) are
operands, as in the newest ONNX opsets; inference reads them when they are constants and keeps symbolic
dims wherever a dim is copied through unchanged. The references are plain numpy and work on any values,
so an op whose shape operand is computed at run time still runs.
"""
import math

import numpy as np

from ..errors import IrcError
from ..ir.types import TensorType, broadcast_shapes, to_numpy_dtype
from .registry import REQUIRED, define, same_as

INT64_MAX = np.iinfo(np.int64).max


# -- helpers shared by inference and references ------------------------------------------------------------
def norm_axis(axis: int, rank: int, what: str = "axis") -> int:
    """``axis`` in [-rank, rank) as a non-negative axis; IrcError when out of range."""
    a = int(axis)
    if not -rank <= a < rank:
        raise IrcError(f"{what} {a} is out of range for rank {rank}")
    return a + rank if a < 0 else a


def norm_axes(axes, rank: int, what: str = "axes") -> list:
    """Every axis normalized; IrcError on an out-of-range or repeated axis."""
    out = [norm_axis(a, rank, what) for a in np.asarray(axes).reshape(-1)]
    if len(set(out)) != len(out):
        raise IrcError(f"{what} {list(np.asarray(axes).reshape(-1))} repeat an axis")
    return out


def ints(value):
    """An integer operand's values as a list of Python ints (None stays None: an unknown or omitted operand)."""
    return None if value is None else [int(v) for v in np.asarray(value).reshape(-1)]


def dim_product(dims):
    """Product of dims: an int when all are static, the symbol when it is the only non-1 dim, else None."""
    dims = [d for d in dims if d != 1]
    if all(isinstance(d, int) for d in dims):
        return math.prod(dims)
    return dims[0] if len(dims) == 1 else None


def _rank_only(dtype: str, rank):
    """A result of unknown dims whose rank is ``rank`` (None: unknown too)."""
    return TensorType(dtype, None if rank is None else (None,) * rank)


def _operand_length(ctx, i: int):
    """The static length of 1-D operand ``i`` (None when unknown)."""
    s = ctx.shape(i)
    return s[0] if s is not None and len(s) == 1 and isinstance(s[0], int) else None


# -- shape, size -------------------------------------------------------------------------------------------
def _infer_shape(ctx):
    s = ctx.shape(0)
    n = None if s is None else len(range(len(s))[ctx["start"]:ctx["end"]])
    return [TensorType("i64", (n,))]


@define("shape", onnx="Shape", kind="shape", attrs={"start": 0, "end": None}, infer=_infer_shape)
def shape(x, *, start, end):
    """The shape of x as an i64 vector, dims [start:end] (negative values count from the end; clamped)."""
    return np.array(x.shape[start:end], dtype=np.int64)


@define("size", onnx="Size", kind="shape", infer=lambda ctx: [TensorType("i64", ())])
def size(x):
    """The number of elements of x, an i64 scalar."""
    return np.array(x.size, dtype=np.int64)


# -- reshape family ----------------------------------------------------------------------------------------
def _solve_minus_one(in_shape, known):
    """The dim that makes ``known`` (without the -1) hold as many elements as ``in_shape``, or None."""
    num, den = list(in_shape), []
    for d in known:
        if isinstance(d, str) and d in num:
            num.remove(d)
        else:
            den.append(d)
    if any(d is None for d in num + den) or any(isinstance(d, str) for d in den):
        return None
    num_syms = [d for d in num if isinstance(d, str)]
    num_int = math.prod(d for d in num if isinstance(d, int))
    den_int = math.prod(den)
    if not num_syms:
        if den_int == 0 or num_int % den_int:
            raise IrcError(f"cannot reshape {list(in_shape)} to {list(known)} with a -1")
        return num_int // den_int
    return num_syms[0] if len(num_syms) == 1 and num_int == den_int else None


def reshape_dims(in_shape, target, allowzero: int):
    """Result dims of reshape(x: in_shape, target): 0 copies the input dim (unless allowzero), -1 is solved."""
    out = []
    for i, t in enumerate(target):
        if t == 0 and not allowzero:
            if in_shape is not None and i >= len(in_shape):
                raise IrcError(f"reshape target {list(target)} copies dim {i} of a rank-{len(in_shape)} operand")
            out.append(None if in_shape is None else in_shape[i])
        elif isinstance(t, int) and t < -1:  # a symbol or None (unknown) entry stays as it is
            raise IrcError(f"reshape target {list(target)} has a negative dim")
        else:
            out.append(t)
    if out.count(-1) > 1:
        raise IrcError(f"reshape target {list(target)} has more than one -1")
    if -1 in out:
        i = out.index(-1)
        out[i] = None if in_shape is None else _solve_minus_one(in_shape, out[:i] + out[i + 1:])
    return tuple(out)


def _infer_reshape(ctx):
    target = ints(ctx.value(1))
    if target is None:
        return [_rank_only(ctx.dtype(0), _operand_length(ctx, 1))]
    return [TensorType(ctx.dtype(0), reshape_dims(ctx.shape(0), target, ctx["allowzero"]))]


@define("reshape", onnx="Reshape", kind="injective", attrs={"allowzero": 0}, infer=_infer_reshape)
def reshape(x, shape, *, allowzero):
    """x with the dims of ``shape``: a 0 copies x's dim (unless allowzero), one -1 takes what is left."""
    return x.reshape(reshape_dims(x.shape, ints(shape), allowzero))


def _flatten_axis(axis, rank):
    a = int(axis)
    if not -rank <= a <= rank:
        raise IrcError(f"flatten axis {a} is out of range for rank {rank}")
    return a + rank if a < 0 else a


def _infer_flatten(ctx):
    s = ctx.shape(0)
    if s is None:
        return [TensorType(ctx.dtype(0), (None, None))]
    a = _flatten_axis(ctx["axis"], len(s))
    return [TensorType(ctx.dtype(0), (dim_product(s[:a]), dim_product(s[a:])))]


@define("flatten", onnx="Flatten", kind="injective", attrs={"axis": 1}, infer=_infer_flatten)
def flatten(x, *, axis):
    """x as a matrix: dims before ``axis`` make the rows, the rest the columns."""
    a = _flatten_axis(axis, x.ndim)
    return x.reshape(math.prod(x.shape[:a]), math.prod(x.shape[a:]))


def squeeze_dims(in_shape, axes):
    """Dims left after removing ``axes`` (all static 1-dims when axes is None)."""
    if axes is None:
        if any(not isinstance(d, int) for d in in_shape):
            return None
        return tuple(d for d in in_shape if d != 1)
    drop = norm_axes(axes, len(in_shape), "squeeze axes")
    for a in drop:
        if isinstance(in_shape[a], int) and in_shape[a] != 1:
            raise IrcError(f"cannot squeeze axis {a} of size {in_shape[a]}")
    return tuple(d for i, d in enumerate(in_shape) if i not in drop)


def _infer_squeeze(ctx):
    s = ctx.shape(0)
    axes = ints(ctx.value(1))
    if s is None or (axes is None and ctx.type(1) is not None):
        return [TensorType(ctx.dtype(0), None)]
    return [TensorType(ctx.dtype(0), squeeze_dims(s, axes))]


@define("squeeze", onnx="Squeeze", kind="injective", infer=_infer_squeeze)
def squeeze(x, axes=None):
    """x without the size-1 dims listed in ``axes`` (every size-1 dim when axes is omitted)."""
    return x.reshape(squeeze_dims(x.shape, ints(axes)))


def unsqueeze_dims(in_shape, axes):
    """Dims with a 1 inserted at each of ``axes`` (axes index the result)."""
    rank = len(in_shape) + len(axes)
    new = norm_axes(axes, rank, "unsqueeze axes")
    rest = iter(in_shape)
    return tuple(1 if i in new else next(rest) for i in range(rank))


def _infer_unsqueeze(ctx):
    s, axes = ctx.shape(0), ints(ctx.value(1))
    if s is None or axes is None:
        n = _operand_length(ctx, 1)
        rank = None if s is None or n is None else len(s) + n
        return [_rank_only(ctx.dtype(0), rank)]
    return [TensorType(ctx.dtype(0), unsqueeze_dims(s, axes))]


@define("unsqueeze", onnx="Unsqueeze", kind="injective", infer=_infer_unsqueeze)
def unsqueeze(x, axes):
    """x with size-1 dims inserted at ``axes`` (positions in the result)."""
    return x.reshape(unsqueeze_dims(x.shape, ints(axes)))


# -- transpose, concat, split ------------------------------------------------------------------------------
def transpose_perm(perm, rank: int) -> list:
    """The permutation (reversed axes when ``perm`` is None); IrcError when it is not one."""
    p = list(range(rank))[::-1] if perm is None else [int(a) for a in perm]
    if sorted(p) != list(range(rank)):
        raise IrcError(f"transpose perm {p} is not a permutation of {rank} axes")
    return p


def _infer_transpose(ctx):
    s = ctx.shape(0)
    if s is None:
        return [TensorType(ctx.dtype(0), None if ctx["perm"] is None else (None,) * len(ctx["perm"]))]
    return [TensorType(ctx.dtype(0), tuple(s[a] for a in transpose_perm(ctx["perm"], len(s))))]


@define("transpose", onnx="Transpose", kind="injective", attrs={"perm": None}, infer=_infer_transpose)
def transpose(x, *, perm):
    """x with its axes permuted: result axis i is x's axis perm[i] (reversed when perm is omitted)."""
    return np.transpose(x, transpose_perm(perm, x.ndim))


def _merge_dims(dims):
    """One dim from dims that must agree: a static one wins, then a symbol, else None."""
    static = {d for d in dims if isinstance(d, int)}
    if len(static) > 1:
        raise IrcError(f"dims {sorted(static)} differ")
    if static:
        return static.pop()
    syms = [d for d in dims if isinstance(d, str)]
    return syms[0] if syms else None


def _infer_concat(ctx):
    shapes = [s for s in (t.shape for t in ctx.types) if s is not None]
    if not shapes:
        return [TensorType(ctx.dtype(0), None)]
    rank = len(shapes[0])
    if any(len(s) != rank for s in shapes):
        raise IrcError(f"concat operands have different ranks: {[list(s) for s in shapes]}")
    a = norm_axis(ctx["axis"], rank, "concat axis")
    along = [t.shape[a] if t.shape is not None else None for t in ctx.types]
    total = sum(along) if all(isinstance(d, int) for d in along) else None
    dims = [total if i == a else _merge_dims([s[i] for s in shapes]) for i in range(rank)]
    return [TensorType(ctx.dtype(0), tuple(dims))]


@define("concat", onnx="Concat", kind="injective", attrs={"axis": REQUIRED}, infer=_infer_concat)
def concat(*xs, axis):
    """The operands joined along ``axis``."""
    return np.concatenate(xs, axis=norm_axis(axis, xs[0].ndim, "concat axis"))


def split_sizes(dim, split, num_outputs: int):
    """Part sizes along the split axis: ``split`` when given, else equal parts (the last one smaller)."""
    if split is not None:
        if len(split) != num_outputs or any(s < 0 for s in split):
            raise IrcError(f"split sizes {split} do not make {num_outputs} parts")
        if isinstance(dim, int) and sum(split) != dim:
            raise IrcError(f"split sizes {split} do not add up to the axis size {dim}")
        return list(split)
    if not isinstance(dim, int):
        return [None] * num_outputs
    part = -(-dim // num_outputs)
    sizes = [min(part, max(dim - part * i, 0)) for i in range(num_outputs)]
    if sum(sizes) != dim or sizes[-1] == 0 and dim:
        raise IrcError(f"an axis of size {dim} cannot be split into {num_outputs} parts")
    return sizes


def _infer_split(ctx):
    s, n = ctx.shape(0), ctx["num_outputs"]
    if s is None:
        return [TensorType(ctx.dtype(0), None)] * n
    a = norm_axis(ctx["axis"], len(s), "split axis")
    split = ints(ctx.value(1))
    sizes = split_sizes(s[a], split, n) if split is not None or ctx.type(1) is None else [None] * n
    return [TensorType(ctx.dtype(0), s[:a] + (d,) + s[a + 1:]) for d in sizes]


@define("split", onnx="Split", kind="injective", attrs={"axis": 0, "num_outputs": REQUIRED}, infer=_infer_split)
def split(x, sizes=None, *, axis, num_outputs):
    """``num_outputs`` consecutive parts of x along ``axis``, of the given sizes or equal (last smaller)."""
    a = norm_axis(axis, x.ndim, "split axis")
    ends = np.cumsum(split_sizes(x.shape[a], ints(sizes), num_outputs))
    return tuple(np.split(x, ends[:-1], axis=a))


# -- slice -------------------------------------------------------------------------------------------------
def _slice_bounds(dim: int, start: int, end: int, step: int) -> slice:
    """ONNX's clamping of one axis' start/end as a Python slice."""
    if step == 0:
        raise IrcError("slice step is 0")
    if start < 0:
        start += dim
    if end < 0:
        end += dim
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
    else:
        start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    return slice(start, end if end >= 0 else None, step)


def slice_params(rank: int, starts, ends, axes, steps):
    """{axis: (start, end, step)} from the operands (axes default to 0..n-1, steps to 1)."""
    starts, ends = ints(starts), ints(ends)
    if len(starts) != len(ends):
        raise IrcError(f"slice starts {starts} and ends {ends} differ in length")
    axes = list(range(len(starts))) if axes is None else norm_axes(axes, rank, "slice axes")
    steps = [1] * len(starts) if steps is None else ints(steps)
    if not len(axes) == len(steps) == len(starts):
        raise IrcError(f"slice axes {axes} and steps {steps} must have {len(starts)} entries")
    return dict(zip(axes, zip(starts, ends, steps)))


def _slice_dim(dim, start, end, step):
    if isinstance(dim, int):
        return len(range(dim)[_slice_bounds(dim, start, end, step)])
    whole = start == 0 and end >= INT64_MAX and step == 1
    return dim if whole else None


def _infer_slice(ctx):
    s = ctx.shape(0)
    vals = [ctx.value(i) for i in range(1, 5)]
    if s is None:
        return [TensorType(ctx.dtype(0), None)]
    if any(v is None and ctx.type(i + 1) is not None for i, v in enumerate(vals)):
        return [TensorType(ctx.dtype(0), (None,) * len(s))]
    params = slice_params(len(s), *vals)
    dims = tuple(_slice_dim(d, *params[i]) if i in params else d for i, d in enumerate(s))
    return [TensorType(ctx.dtype(0), dims)]


@define("slice", onnx="Slice", kind="injective", infer=_infer_slice)
def slice_(x, starts, ends, axes=None, steps=None):
    """x[start:end:step] on each of ``axes``; negative positions count from the end, all are clamped."""
    params = slice_params(x.ndim, starts, ends, axes, steps)
    return x[tuple(_slice_bounds(x.shape[a], *params[a]) if a in params else slice(None) for a in range(x.ndim))]


# -- gathers -----------------------------------------------------------------------------------------------
def _wrap_indices(idx, dim, what):
    """Indices with negatives counted from the end; IrcError when any is out of [-dim, dim)."""
    idx = np.asarray(idx, dtype=np.int64)
    if idx.size and (idx.min() < -dim or idx.max() >= dim):
        raise IrcError(f"{what} indices out of range for an axis of size {dim}")
    return np.where(idx < 0, idx + dim, idx)


def _infer_gather(ctx):
    s, i = ctx.shape(0), ctx.shape(1)
    if s is None or i is None:
        return [TensorType(ctx.dtype(0), None)]
    a = norm_axis(ctx["axis"], len(s), "gather axis")
    return [TensorType(ctx.dtype(0), s[:a] + i + s[a + 1:])]


@define("gather", onnx="Gather", kind="injective", attrs={"axis": 0}, infer=_infer_gather)
def gather(x, indices, *, axis):
    """Entries of x along ``axis`` at ``indices`` (negative from the end); result dims x[:axis] + idx + x[axis+1:]."""
    a = norm_axis(axis, x.ndim, "gather axis")
    return np.take(x, _wrap_indices(indices, x.shape[a], "gather"), axis=a)


def _infer_gather_elements(ctx):
    return [TensorType(ctx.dtype(0), ctx.shape(1))]


@define("gather_elements", onnx="GatherElements", kind="injective", attrs={"axis": 0},
        infer=_infer_gather_elements)
def gather_elements(x, indices, *, axis):
    """out[i...] = x[i... with axis replaced by indices[i...]]; the result has the shape of indices."""
    a = norm_axis(axis, x.ndim, "gather_elements axis")
    return np.take_along_axis(x, _wrap_indices(indices, x.shape[a], "gather_elements"), axis=a)


def _infer_gather_nd(ctx):
    s, i, b = ctx.shape(0), ctx.shape(1), ctx["batch_dims"]
    if s is None or i is None or not isinstance(i[-1], int):
        return [TensorType(ctx.dtype(0), None)]
    if b + i[-1] > len(s):
        raise IrcError(f"gather_nd index tuples of {i[-1]} address more than the {len(s) - b} dims of x")
    return [TensorType(ctx.dtype(0), i[:-1] + s[b + i[-1]:])]


@define("gather_nd", onnx="GatherND", kind="injective", attrs={"batch_dims": 0}, infer=_infer_gather_nd)
def gather_nd(x, indices, *, batch_dims):
    """Slices of x addressed by the index tuples in the last dim of ``indices``, after ``batch_dims`` shared dims."""
    b, k = batch_dims, indices.shape[-1]
    if b + k > x.ndim:
        raise IrcError(f"gather_nd index tuples of {k} address more than the {x.ndim - b} dims of x")
    n = math.prod(x.shape[:b])
    xb = x.reshape((n,) + x.shape[b:])
    ib = indices.reshape(n, -1, k)
    pos = tuple(_wrap_indices(ib[..., j], x.shape[b + j], "gather_nd") for j in range(k))
    out = xb[(np.arange(n)[:, None],) + pos]
    return out.reshape(indices.shape[:-1] + x.shape[b + k:])


# -- scatters ----------------------------------------------------------------------------------------------
SCATTER_REDUCTIONS = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


def _scatter(x, index, updates, reduction):
    """A copy of x with ``updates`` written (or combined by ``reduction``) at the ``index`` tuple."""
    out = np.array(x, copy=True)
    if reduction == "none":
        out[index] = updates
    elif reduction in SCATTER_REDUCTIONS:
        SCATTER_REDUCTIONS[reduction].at(out, index, updates)
    else:
        raise IrcError(f"unknown scatter reduction {reduction!r}")
    return out


@define("scatter_elements", onnx=("ScatterElements", "Scatter"), kind="injective",
        attrs={"axis": 0, "reduction": "none"}, infer=same_as(0))
def scatter_elements(x, indices, updates, *, axis, reduction):
    """x with x[i... with axis replaced by indices[i...]] = updates[i...] (or combined by ``reduction``)."""
    a = norm_axis(axis, x.ndim, "scatter_elements axis")
    if indices.shape != updates.shape:
        raise IrcError(f"scatter_elements indices {list(indices.shape)} and updates {list(updates.shape)} differ")
    index = list(np.indices(indices.shape, sparse=True))
    index[a] = _wrap_indices(indices, x.shape[a], "scatter_elements")
    return _scatter(x, tuple(index), updates.astype(x.dtype), reduction)


@define("scatter_nd", onnx="ScatterND", kind="injective", attrs={"reduction": "none"}, infer=same_as(0))
def scatter_nd(x, indices, updates, *, reduction):
    """x with the slices addressed by the index tuples in the last dim of ``indices`` set to ``updates``."""
    k = indices.shape[-1]
    if k > x.ndim or updates.shape != indices.shape[:-1] + x.shape[k:]:
        raise IrcError(f"scatter_nd updates {list(updates.shape)} do not fit indices {list(indices.shape)} "
                       f"into {list(x.shape)}")
    index = tuple(_wrap_indices(indices[..., j], x.shape[j], "scatter_nd") for j in range(k))
    return _scatter(x, index, updates.astype(x.dtype), reduction)


# -- expand, tile, pad -------------------------------------------------------------------------------------
def _infer_expand(ctx):
    target = ints(ctx.value(1))
    if target is None:
        n, s = _operand_length(ctx, 1), ctx.shape(0)
        rank = None if n is None or s is None else max(n, len(s))
        return [_rank_only(ctx.dtype(0), rank)]
    return [TensorType(ctx.dtype(0), broadcast_shapes(ctx.shape(0), tuple(target)))]


@define("expand", onnx="Expand", kind="injective", infer=_infer_expand)
def expand(x, shape):
    """x broadcast with ``shape`` (numpy rules, both ways: a 1 in shape keeps x's dim)."""
    target = np.broadcast_shapes(x.shape, tuple(ints(shape)))
    return np.broadcast_to(x, target)


def _infer_tile(ctx):
    s, reps = ctx.shape(0), ints(ctx.value(1))
    if s is None or reps is None:
        return [TensorType(ctx.dtype(0), None if s is None else (None,) * len(s))]
    if len(reps) != len(s):
        raise IrcError(f"tile repeats {reps} must have one entry per dim of {list(s)}")
    return [TensorType(ctx.dtype(0), tuple(d if r == 1 else d * r if isinstance(d, int) else None
                                           for d, r in zip(s, reps)))]


@define("tile", onnx="Tile", kind="injective", infer=_infer_tile)
def tile(x, repeats):
    """x repeated ``repeats[i]`` times along each dim i."""
    reps = ints(repeats)
    if len(reps) != x.ndim:
        raise IrcError(f"tile repeats {reps} must have one entry per dim of {list(x.shape)}")
    return np.tile(x, reps)


PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "edge", "wrap": "wrap"}


def pad_widths(rank: int, pads, axes):
    """[(before, after)] per dim from ONNX pads [begin..., end...] over ``axes`` (all dims when None)."""
    pads = ints(pads)
    axes = list(range(rank)) if axes is None else norm_axes(axes, rank, "pad axes")
    if len(pads) != 2 * len(axes):
        raise IrcError(f"pads {pads} must have 2 x {len(axes)} entries")
    widths = [(0, 0)] * rank
    for i, a in enumerate(axes):
        widths[a] = (pads[i], pads[i + len(axes)])
    return widths


def _infer_pad(ctx):
    s, pads = ctx.shape(0), ctx.value(1)
    if s is None or pads is None or (ctx.type(3) is not None and ctx.value(3) is None):
        return [TensorType(ctx.dtype(0), None if s is None else (None,) * len(s))]
    if ctx["mode"] not in PAD_MODES:
        raise IrcError(f"unknown pad mode {ctx['mode']!r}")
    widths = pad_widths(len(s), pads, ctx.value(3))
    return [TensorType(ctx.dtype(0), tuple(d if (b, e) == (0, 0) else d + b + e if isinstance(d, int) else None
                                           for d, (b, e) in zip(s, widths)))]


@define("pad", onnx="Pad", kind="injective", attrs={"mode": "constant"}, infer=_infer_pad)
def pad(x, pads, value=None, axes=None, *, mode):
    """x padded by pads [begin..., end...] (negative pads crop) with a constant, its reflection, edge or wrap."""
    if mode not in PAD_MODES:
        raise IrcError(f"unknown pad mode {mode!r}")
    widths = pad_widths(x.ndim, pads, axes)
    x = x[tuple(slice(max(-b, 0), d - max(-e, 0)) for d, (b, e) in zip(x.shape, widths))]
    grow = [(max(b, 0), max(e, 0)) for b, e in widths]
    if mode == "constant":
        fill = 0 if value is None or np.size(value) == 0 else np.asarray(value).reshape(-1)[0]
        return np.pad(x, grow, mode="constant", constant_values=np.asarray(fill).astype(x.dtype))
    return np.pad(x, grow, mode=PAD_MODES[mode])


# -- generators --------------------------------------------------------------------------------------------
def _infer_constant_of_shape(ctx):
    dims = ints(ctx.value(0))
    if dims is None:
        return [_rank_only(ctx["dtype"], _operand_length(ctx, 0))]
    return [TensorType(ctx["dtype"], tuple(dims))]


@define("constant_of_shape", onnx="ConstantOfShape", kind="opaque", attrs={"value": 0.0, "dtype": "f32"},
        infer=_infer_constant_of_shape)
def constant_of_shape(shape, *, value, dtype):
    """A tensor of the given shape filled with ``value`` of ``dtype``."""
    return np.full(tuple(ints(shape)), value, dtype=to_numpy_dtype(dtype))


def scalar_value(v, what):
    """The one value of a scalar (or one-element) operand; IrcError otherwise."""
    a = np.asarray(v)
    if a.size != 1:
        raise IrcError(f"{what} must hold one value, got shape {list(a.shape)}")
    return a.reshape(-1)[0]


def range_length(start, limit, delta) -> int:
    """max(ceil((limit - start) / delta), 0)"""
    if delta == 0:
        raise IrcError("range delta is 0")
    return max(int(math.ceil((float(limit) - float(start)) / float(delta))), 0)


def _infer_range(ctx):
    vals = [ctx.value(i) for i in range(3)]
    n = None if any(v is None for v in vals) else range_length(*(scalar_value(v, "range operand") for v in vals))
    return [TensorType(ctx.dtype(0), (n,))]


@define("range", onnx="Range", kind="opaque", infer=_infer_range)
def range_(start, limit, delta):
    """start, start + delta, ... while before limit."""
    s, lim, d = (scalar_value(v, "range operand") for v in (start, limit, delta))
    n = range_length(s, lim, d)
    if start.dtype.kind == "f":
        return (float(s) + np.arange(n, dtype=np.float64) * float(d)).astype(start.dtype)
    return (int(s) + np.arange(n, dtype=np.int64) * int(d)).astype(start.dtype)


def _infer_one_hot(ctx):
    s, depth = ctx.shape(0), ctx.value(1)
    if s is None:
        return [TensorType(ctx.dtype(2), None)]
    a = norm_axis(ctx["axis"], len(s) + 1, "one_hot axis")
    d = None if depth is None else int(scalar_value(depth, "one_hot depth"))
    return [TensorType(ctx.dtype(2), s[:a] + (d,) + s[a:])]


@define("one_hot", onnx="OneHot", kind="injective", attrs={"axis": -1}, infer=_infer_one_hot)
def one_hot(indices, depth, values, *, axis):
    """values[1] where the new ``axis`` position equals the index (negatives from depth), else values[0]."""
    d = int(scalar_value(depth, "one_hot depth"))
    a = norm_axis(axis, indices.ndim + 1, "one_hot axis")
    idx = indices.astype(np.int64)
    idx = np.where(idx < 0, idx + d, idx)
    hot = np.moveaxis(idx[..., None] == np.arange(d), -1, a)
    return np.where(hot, values.reshape(-1)[1], values.reshape(-1)[0]).astype(values.dtype)


def _infer_eye_like(ctx):
    s = ctx.shape(0)
    if s is not None and len(s) != 2:
        raise IrcError(f"eye_like needs a 2-D operand, got {ctx.type(0)}")
    return [TensorType(ctx["dtype"], s)]


@define("eye_like", onnx="EyeLike", kind="opaque", attrs={"k": 0, "dtype": REQUIRED}, infer=_infer_eye_like)
def eye_like(x, *, k, dtype):
    """Ones on diagonal k of a matrix shaped like x, zeros elsewhere, of ``dtype``."""
    if x.ndim != 2:
        raise IrcError(f"eye_like needs a 2-D operand, got shape {list(x.shape)}")
    return np.eye(x.shape[0], x.shape[1], k, dtype=to_numpy_dtype(dtype))


# -- triangles, blocks -------------------------------------------------------------------------------------
@define("trilu", onnx="Trilu", kind="injective", attrs={"upper": 1}, infer=same_as(0))
def trilu(x, k=None, *, upper):
    """The upper (or lower) triangle of the last two dims from diagonal k; the rest zero."""
    kk = 0 if k is None else int(scalar_value(k, "trilu k"))
    return np.triu(x, kk) if upper else np.tril(x, kk)


def _block_dims(s, bs, to_space: bool, what: str):
    if len(s) != 4:
        raise IrcError(f"{what} needs a 4-D operand, got {list(s)}")
    n, c, h, w = s
    mul = (lambda d, f: d * f if isinstance(d, int) else None)
    if to_space:
        if isinstance(c, int) and c % (bs * bs):
            raise IrcError(f"{what}: {c} channels do not divide by blocksize {bs} squared")
        return (n, c // (bs * bs) if isinstance(c, int) else None, mul(h, bs), mul(w, bs))
    if any(isinstance(d, int) and d % bs for d in (h, w)):
        raise IrcError(f"{what}: spatial dims {h}x{w} do not divide by blocksize {bs}")
    return (n, mul(c, bs * bs), h // bs if isinstance(h, int) else None, w // bs if isinstance(w, int) else None)


def _infer_blocks(to_space):
    def infer(ctx):
        s = ctx.shape(0)
        what = "depth_to_space" if to_space else "space_to_depth"
        return [TensorType(ctx.dtype(0), None if s is None else _block_dims(s, ctx["blocksize"], to_space, what))]
    return infer


@define("depth_to_space", onnx="DepthToSpace", kind="injective", attrs={"blocksize": REQUIRED, "mode": "DCR"},
        infer=_infer_blocks(True))
def depth_to_space(x, *, blocksize, mode):
    """NCHW: channel blocks of blocksize^2 move into blocksize x blocksize spatial tiles (DCR or CRD order)."""
    n, c, h, w = x.shape
    b = blocksize
    _, oc, oh, ow = _block_dims(x.shape, b, True, "depth_to_space")
    if mode == "DCR":
        y = x.reshape(n, b, b, oc, h, w).transpose(0, 3, 4, 1, 5, 2)
    elif mode == "CRD":
        y = x.reshape(n, oc, b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    else:
        raise IrcError(f"unknown depth_to_space mode {mode!r}")
    return y.reshape(n, oc, oh, ow)


@define("space_to_depth", onnx="SpaceToDepth", kind="injective", attrs={"blocksize": REQUIRED, "mode": "DCR"},
        infer=_infer_blocks(False))
def space_to_depth(x, *, blocksize, mode):
    """NCHW: each blocksize x blocksize spatial tile moves into channels (the inverse of depth_to_space)."""
    n, c, h, w = x.shape
    b = blocksize
    _, oc, oh, ow = _block_dims(x.shape, b, False, "space_to_depth")
    y = x.reshape(n, c, oh, b, ow, b)
    if mode == "DCR":
        y = y.transpose(0, 3, 5, 1, 2, 4)
    elif mode == "CRD":
        y = y.transpose(0, 1, 3, 5, 2, 4)
    else:
        raise IrcError(f"unknown space_to_depth mode {mode!r}")
    return y.reshape(n, oc, oh, ow)


# -- data-dependent ----------------------------------------------------------------------------------------
def _infer_nonzero(ctx):
    s = ctx.shape(0)
    return [TensorType("i64", (None if s is None else len(s), None))]


@define("nonzero", onnx="NonZero", kind="opaque", infer=_infer_nonzero)
def nonzero(x):
    """Indices of the non-zero entries, one column per entry: i64[rank, count] (row-major order)."""
    if x.ndim == 0:
        return np.zeros((0, int(bool(x))), dtype=np.int64)
    return np.array(np.nonzero(x), dtype=np.int64).reshape(x.ndim, -1)


def _infer_compress(ctx):
    s, axis = ctx.shape(0), ctx["axis"]
    if axis is None:
        return [TensorType(ctx.dtype(0), (None,))]
    if s is None:
        return [TensorType(ctx.dtype(0), None)]
    a = norm_axis(axis, len(s), "compress axis")
    return [TensorType(ctx.dtype(0), s[:a] + (None,) + s[a + 1:])]


@define("compress", onnx="Compress", kind="opaque", attrs={"axis": None}, infer=_infer_compress)
def compress(x, condition, *, axis):
    """The slices of x along ``axis`` (of x flattened when None) where ``condition`` is true; a shorter
    condition leaves the rest out."""
    cond = np.asarray(condition, dtype=bool).reshape(-1)
    if axis is None:
        x = x.reshape(-1)
    a = norm_axis(0 if axis is None else axis, x.ndim, "compress axis")
    if cond.size > x.shape[a]:
        raise IrcError(f"compress condition of {cond.size} entries is longer than the axis ({x.shape[a]})")
    return np.compress(cond, x, axis=a)


def _infer_reverse_sequence(ctx):
    return [ctx.types[0]]


@define("reverse_sequence", onnx="ReverseSequence", kind="injective", attrs={"batch_axis": 1, "time_axis": 0},
        infer=_infer_reverse_sequence)
def reverse_sequence(x, sequence_lens, *, batch_axis, time_axis):
    """For each batch entry b, its first sequence_lens[b] steps along ``time_axis`` in reverse order."""
    b, t = norm_axis(batch_axis, x.ndim, "batch_axis"), norm_axis(time_axis, x.ndim, "time_axis")
    lens = ints(sequence_lens)
    if len(lens) != x.shape[b] or any(not 0 <= n <= x.shape[t] for n in lens):
        raise IrcError(f"sequence_lens {lens} do not fit a batch of {x.shape[b]} sequences of {x.shape[t]} steps")
    out = np.array(x, copy=True)
    for i, n in enumerate(lens):
        index = [slice(None)] * x.ndim
        index[b], index[t] = i, slice(0, n)
        out[tuple(index)] = np.flip(x[tuple(index)], t - (b < t))
    return out
