"""Matrix-product kernels: BLAS GEMM split across numba's pool, with a fused numba epilogue.

Each worker of numba's pool calls the single-threaded CBLAS GEMM (``blas.gemm``, see blas.py) on its own
block of the result: column slices when there are enough columns, else row slices, else a whole batch
entry per worker. BLAS (and so this path) covers float32 and float64; float16 is computed in float32.

A node's fused epilogue (attribute ``epilogue``, see irc/ops/nn.py) runs as one generated elementwise
kernel over the result (``finished``): its expression tree chains the activations and the adds of the
extra operands, so the result is read and written once however many ops were fused.
"""
import numpy as np
from numba import njit, prange

from ...backend.registry import Kernel, lowers
from ...errors import UnsupportedError
from ...ops.nn import epilogue_steps
from ...runtime import threads
from .blas import gemm
from .elementwise import Expr, elementwise_kernel


def compute_dtype(node) -> np.dtype:
    """The dtype a BLAS kernel computes node's result in: float32/64 themselves, float16 in float32."""
    dt = node.outputs[0].type.numpy_dtype
    if dt == np.float16:
        return np.dtype(np.float32)
    if dt in (np.float32, np.float64):
        return dt
    raise UnsupportedError(f"node {node.name!r}: {node.op} of {node.outputs[0].type.dtype} has no CPU kernel")


def frozen(a, dtype) -> np.ndarray:
    """a as a C-contiguous, read-only array of ``dtype`` (a view when it already is one): the one array type
    the numba kernels take for operands, whatever their origin (constants are read-only, run-time arrays
    are not), so that each kernel compiles once per dtype."""
    a = np.ascontiguousarray(a, dtype=dtype).view()
    a.flags.writeable = False
    return a


@njit(cache=True)
def scale_add(y, alpha, beta, c):
    """y = alpha * y + beta * c in place, for a contiguous y [A, B, C] and c [A or 1, B or 1, C or 1]
    broadcast over it: the epilogue of gemm (alpha, beta, C) and of conv2d (bias)."""
    n0, n1, n2 = y.shape
    c0, c1, c2 = c.shape
    for r in range(n0 * n1):
        a, b = r // n1, r % n1
        yrow = y[a, b]
        crow = c[a if c0 > 1 else 0, b if c1 > 1 else 0]
        if c2 == 1:
            v = beta * crow[0]
            for k in range(n2):
                yrow[k] = alpha * yrow[k] + v
        else:
            for k in range(n2):
                yrow[k] = alpha * yrow[k] + beta * crow[k]


def add_scaled(y, alpha, beta, c):
    """scale_add on a contiguous result of rank 1..3 and a c that broadcasts to it (of rank <= y's)."""
    y3 = y.reshape((1,) * (3 - y.ndim) + y.shape)
    c = np.asarray(c)
    scalar = y.dtype.type
    scale_add(y3, scalar(alpha), scalar(beta), frozen(c.reshape((1,) * (3 - c.ndim) + c.shape), y.dtype))


def epilogue_tree(node, first_extra):
    """(tree, bounds): node's epilogue as one expression over its result (operand 0), its extra operands
    node.inputs[first_extra:] (1, 2, ...) and clip's bounds (the arrays ``bounds``, operands after the
    extras); None when the node has no epilogue. The CPU and CUDA kernels both run it."""
    steps = epilogue_steps(node.attrs)
    if not steps:
        return None
    n_extra = max(0, len(node.inputs) - first_extra)  # (a node without its optional operands has none)
    tree, adds, bounds = 0, 0, []

    def bound(name):
        if node.attrs.get(name) is None:
            return None
        bounds.append(np.asarray(node.attrs[name], node.outputs[0].type.numpy_dtype))
        return n_extra + len(bounds)
    for op, params in steps:
        if op == "add":
            adds += 1
            tree = Expr.make("add", tree, adds)
        elif op == "clip":
            tree = Expr.make("clip", tree, bound("clip_min"), bound("clip_max"))
        else:
            tree = Expr.make(op, tree, **params)
    return tree, bounds


def _epilogue(node, first_extra):
    """(elementwise kernel, clip's bounds) of node's epilogue (epilogue_tree), or None without one."""
    found = epilogue_tree(node, first_extra)
    if found is None:
        return None
    tree, bounds = found
    n_operands = 1 + max(0, len(node.inputs) - first_extra) + len(bounds)
    return elementwise_kernel(tree, [node.outputs[0].type.dtype] * n_operands), bounds


def epilogue_kernel(node, first_extra):
    """``fn(y, extras) -> y`` applying node's epilogue to its result y (of the result dtype), the extra
    operands being node.inputs[first_extra:]; None when the node has no epilogue. Clip's bounds enter the
    elementwise kernel as scalar operands after the extras."""
    found = _epilogue(node, first_extra)
    if found is None:
        return None
    kernel, bounds = found
    return lambda y, extras: kernel(y, *extras, *bounds)


def finished(node, run, first_extra):
    """The kernel of ``node``: ``run`` on its own operands (those before ``first_extra``), the result in
    the IR's dtype, then the epilogue on the extra operands."""
    dt = node.outputs[0].type.numpy_dtype
    epilogue = epilogue_kernel(node, first_extra)

    def fn(*args):
        y = run(*args[:first_extra]).astype(dt, copy=False)
        return y if epilogue is None else epilogue(y, args[first_extra:])
    return fn


def finished_into(node, compute, first_extra):
    """``into(out, *operands)`` of the kernel ``finished`` makes, for a node whose result dtype is the
    compute dtype: ``compute(out, *own operands)`` writes the product into out, then the epilogue runs
    over it in place (an elementwise kernel may overwrite an operand)."""
    found = _epilogue(node, first_extra)
    if found is None:
        return lambda out, *args: compute(out, *args[:first_extra])
    kernel, bounds = found

    def into(out, *args):
        compute(out, *args[:first_extra])
        kernel.into(out, out, *args[first_extra:], *bounds)
    return into


# a GEMM with fewer multiply-adds than this runs on the calling thread: starting the pool costs more
PARALLEL_MIN_MACS = 1 << 18


@njit(cache=True)
def _blocks(rows, cols, depth, threads):
    """(block count, True to split columns, block size) cutting a [rows, cols] GEMM result over ``depth``
    into at most ``threads`` blocks: columns in 16-aligned slices where there are enough (BLAS's kernels
    are 16 floats wide, and a column split shares nothing but the packed weight rows), else rows; one block
    when the product is too small to pay for the pool."""
    if threads > 1 and rows * cols * depth >= PARALLEL_MIN_MACS:
        if cols >= 32 * threads:
            step = (-(-cols // threads) + 15) // 16 * 16
            return -(-cols // step), True, step
        if rows >= 8 * threads:
            step = -(-rows // threads)
            return -(-rows // step), False, step
    return 1, True, cols


@njit(cache=True)
def _finish_rows(c, bias, lo, hi):
    """c[i, j] = clamp(c[i, j] + bias[j], lo, hi) in place: a bias row (length 0: none) and a clamp
    (relu: lo = 0; clip; +-inf: none). NaN stays NaN, as in the unfused ops."""
    if bias.shape[0] == 0 and lo == -np.inf and hi == np.inf:
        return
    for i in range(c.shape[0]):
        row = c[i]
        if bias.shape[0]:
            for j in range(row.shape[0]):
                row[j] += bias[j]
        for j in range(row.shape[0]):
            v = row[j]
            if v < lo:
                v = lo
            if v > hi:
                v = hi
            row[j] = v


@njit(cache=True, parallel=True)
def gemm_fused(a, b, c, beta, threads, bias, lo, hi, alpha):
    """c = clamp(alpha * a @ b + beta * c + bias, lo, hi) for 2-D views (as ``blas.gemm``), split by
    ``_blocks`` across ``threads`` workers of numba's pool (an argument: numba.get_num_threads() inside a
    kernel would keep it out of the disk cache), each worker finishing its own block of c right after its
    GEMM, while the block is in cache."""
    m, n = c.shape
    count, by_cols, step = _blocks(m, n, a.shape[1], threads)
    if count == 1:
        gemm(a, b, c, beta, alpha)
        _finish_rows(c, bias, lo, hi)
        return
    for t in prange(count):
        lo_i = t * step
        if by_cols:
            hi_i = min(n, lo_i + step)
            gemm(a, b[:, lo_i:hi_i], c[:, lo_i:hi_i], beta, alpha)
            _finish_rows(c[:, lo_i:hi_i], bias[lo_i:hi_i] if bias.shape[0] else bias, lo, hi)
        else:
            hi_i = min(m, lo_i + step)
            gemm(a[lo_i:hi_i], b, c[lo_i:hi_i], beta, alpha)
            _finish_rows(c[lo_i:hi_i], bias, lo, hi)


@njit(cache=True)
def gemm_parallel(a, b, c, beta, threads):
    """c = a @ b + beta * c split across ``threads`` workers of numba's pool (``gemm_fused`` without a
    bias or clamp)."""
    inf = c.dtype.type(np.inf)
    gemm_fused(a, b, c, beta, threads, np.empty(0, c.dtype), -inf, inf, c.dtype.type(1))


@njit(cache=True, parallel=True)
def gemm_batched(a, b, c, threads):
    """c[i] = a[i] @ b[i] for 3-D operands (a stride-0 batch axis broadcasts): one GEMM per worker when the
    batch covers the pool, else each product split across it."""
    if c.shape[0] >= threads and c.shape[0] * c.shape[1] * c.shape[2] * a.shape[2] >= PARALLEL_MIN_MACS:
        for i in prange(c.shape[0]):
            gemm(a[i], b[i], c[i], 0.0)
    else:
        for i in range(c.shape[0]):
            gemm_parallel(a[i], b[i], c[i], 0.0, threads)


def _as_matrix_operands(a, b):
    """1-D operands as a [1, K] row and a [K, 1] column (numpy matmul's promotion)."""
    return (a[None, :] if a.ndim == 1 else a), (b[:, None] if b.ndim == 1 else b)


def _operand(x, dtype):
    """x in ``dtype`` as a view BLAS can read in place (one unit-stride axis), copied only when it is not."""
    x = x.astype(dtype, copy=False)
    if x.ndim >= 2 and x.strides[-1] != x.itemsize and x.strides[-2] != x.itemsize:
        x = np.ascontiguousarray(x)
    return x


def matmul_blas(a, b, dtype, out=None):
    """numpy matmul of float arrays in ``dtype`` through ``blas.gemm`` on numba's pool: against a single
    matrix, all of a's rows in one GEMM; otherwise one GEMM per index of the broadcast batch. The result
    keeps the promoted 1-D axes (the caller reshapes it to the IR's result shape); with ``out`` (a
    C-contiguous array of the result's size and ``dtype``) it is written there."""
    a, b = _as_matrix_operands(_operand(a, dtype), _operand(b, dtype))
    if b.ndim == 2:
        rows = np.ascontiguousarray(a).reshape(-1, a.shape[-1])
        shape = (rows.shape[0], b.shape[1])
        y = np.empty(shape, dtype) if out is None else out.reshape(shape)
        gemm_parallel(rows, b, y, 0.0, threads.current())
        return y
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a = np.broadcast_to(a, batch + a.shape[-2:]).reshape((-1,) + a.shape[-2:])
    b = np.broadcast_to(b, batch + b.shape[-2:]).reshape((-1,) + b.shape[-2:])
    shape = batch + (a.shape[-2], b.shape[-1])
    y = np.empty(shape, dtype) if out is None else out.reshape(shape)
    gemm_batched(a, b, y.reshape((-1,) + y.shape[-2:]), threads.current())
    return y


def _clamp(steps, attrs):
    """(lo, hi) of an epilogue that is at most one relu or clip, the GEMM kernel's own; None otherwise."""
    if not steps:
        return -np.inf, np.inf
    if len(steps) == 1 and steps[0][0] == "relu":
        return 0.0, np.inf
    if len(steps) == 1 and steps[0][0] == "clip":
        lo, hi = attrs.get("clip_min"), attrs.get("clip_max")
        return (-np.inf if lo is None else float(lo)), (np.inf if hi is None else float(hi))
    return None


def _row_vector(t, n) -> bool:
    """Whether a value of type t is a bias row of length n (shape [..., 1, n] or [n], all static)."""
    return t is not None and t.is_static and t.shape and t.shape[-1] == n and all(d == 1 for d in t.shape[:-1])


def _fused_gemm_kernel(node, cd, rows, n, alpha, bias, lo, hi):
    """A Kernel computing clamp(alpha * A @ B + bias, lo, hi) in one numba call: ``rows(args)`` gives the
    2-D operands (a, b), ``bias`` (a ``_bias_row``, or None) the bias row from operand 2. Its algorithm
    reads "fused-gemm"."""
    shape, dt = node.outputs[0].type.shape, node.outputs[0].type.numpy_dtype
    none = np.zeros(0, cd)
    lo, hi, alpha = cd.type(lo), cd.type(hi), cd.type(alpha)

    def operands(out, args):
        """gemm_fused's operands writing into out: a, b, out as [rows, n], the bias row."""
        a, b = rows(args)
        return a, b, out.reshape(a.shape[0], n), none if bias is None else bias(args[2])

    def into(out, *args):
        a, b, y, row = operands(out, args)
        gemm_fused(a, b, y, 0.0, threads.current(), row, lo, hi, alpha)

    def bind(out, *args):
        """The call with its operands made once, unless one of them is a copy of an operand (converted,
        or a bias computed from one), which must be made again from each run's values."""
        a, b, y, row = operands(out, args)
        if not (np.may_share_memory(a, args[0]) and np.may_share_memory(b, args[1])) or (
                bias is not None and node.inputs[2].const_value is None):
            return into, (out, *args)
        return (lambda: gemm_fused(a, b, y, 0.0, threads.current(), row, lo, hi, alpha)), ()

    def run(*args):
        y = np.empty(shape, cd)
        into(y, *args)
        return y.astype(dt, copy=False)
    if cd != dt:
        return Kernel(run, algo="fused-gemm")
    return Kernel(run, algo="fused-gemm", into=into, bind=bind)


def _bias_row(value, n, cd, scale=1.0):
    """``fn(x)`` giving the operand x of ``value`` as a contiguous bias row of ``cd`` (times ``scale``),
    computed once when the operand is a constant."""
    def make(x):
        return np.ascontiguousarray(np.asarray(x, cd).reshape(n) * cd.type(scale))
    if value.const_value is not None:
        fixed = make(value.const_value)
        return lambda x: fixed
    return make


@lowers("matmul", family="gemm")
def lower_matmul(node):
    """Float matmul through BLAS on numba's pool. Against a single matrix whose epilogue is at most a bias
    row then a relu or clip, one fused kernel; otherwise matmul_blas then the epilogue. Integer matmul
    runs numpy's matmul, whose integer loops are exact, since BLAS takes no integers."""
    t = node.outputs[0].type
    shape, dt = t.shape, t.numpy_dtype
    if dt.kind != "f":
        return Kernel(lambda a, b: np.matmul(a, b), algo="numpy")
    cd = compute_dtype(node)
    b_type = node.inputs[1].type
    steps = epilogue_steps(node.attrs)
    has_bias = bool(steps) and steps[0][0] == "add" and len(node.inputs) > 2
    n = b_type.shape[-1] if b_type.rank == 2 else None
    clamp = _clamp(steps[1:] if has_bias else steps, node.attrs)
    if (b_type.rank == 2 and node.inputs[0].type.rank >= 2 and clamp is not None and t.is_static
            and (not has_bias or (len(node.inputs) == 3 and _row_vector(node.inputs[2].type, n)))):
        k = b_type.shape[0]
        bias = _bias_row(node.inputs[2], n, cd) if has_bias else None
        return _fused_gemm_kernel(
            node, cd, lambda args: (_operand(args[0], cd).reshape(-1, k), _operand(args[1], cd)), n, 1.0, bias,
            *clamp)
    algo = "gemm" if b_type.rank <= 2 else "batched-gemm"
    run = finished(node, lambda a, b: matmul_blas(a, b, cd).reshape(shape), 2)
    if cd != dt or not t.is_static:
        return Kernel(run, algo=algo)
    return Kernel(run, algo=algo, into=finished_into(node, lambda out, a, b: matmul_blas(a, b, cd, out), 2))


@lowers("gemm", family="gemm")
def lower_gemm(node):
    """Y = alpha A' B' + beta C: one GEMM split across numba's pool (the transposes are read in place).
    When C is absent or a row and the epilogue at most a relu or clip, all in one fused kernel; otherwise
    beta C and the epilogue after the GEMM."""
    at = node.attrs
    cd = compute_dtype(node)
    alpha, beta, trans_a, trans_b = at["alpha"], at["beta"], at["transA"], at["transB"]
    n = node.outputs[0].type.shape[1]
    has_c = len(node.inputs) > 2 and node.inputs[2] is not None and beta != 0
    clamp = _clamp(epilogue_steps(at), at)

    def operands(a, b):
        """A' and B': BLAS-readable views, the transposes read in place."""
        a, b = _operand(a, cd), _operand(b, cd)
        return (a.T if trans_a else a), (b.T if trans_b else b)
    if clamp is not None and len(node.inputs) <= 3 and node.outputs[0].type.is_static and (
            not has_c or _row_vector(node.inputs[2].type, n)):
        bias = _bias_row(node.inputs[2], n, cd, beta) if has_c else None
        return _fused_gemm_kernel(node, cd, lambda args: operands(args[0], args[1]), n, alpha, bias, *clamp)

    def compute(out, a, b, c=None):
        """alpha A' B' + beta C into out (None: a fresh array), returned."""
        a, b = operands(a, b)
        y = np.empty((a.shape[0], b.shape[1]), cd) if out is None else out
        gemm_parallel(a, b, y, 0.0, threads.current())
        if c is not None and beta != 0:
            add_scaled(y, alpha, beta, c)
        elif alpha != 1:
            y *= cd.type(alpha)
        return y
    run = finished(node, lambda *args: compute(None, *args), 3)
    if cd != node.outputs[0].type.numpy_dtype or not node.outputs[0].type.is_static:
        return Kernel(run, algo="gemm")
    return Kernel(run, algo="gemm", into=finished_into(node, compute, 3))
