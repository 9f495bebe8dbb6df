"""Neural-network ops: 2-D convolution and transposed convolution, matmul and gemm."""
import numpy as np

from ..errors import IrcError
from ..ir.types import TensorType, broadcast_shapes
from .registry import define, get, run_reference


def conv_out_dim(size, k, stride, dilation, pad_begin, pad_end):
    if not isinstance(size, int):
        return size if (k, stride, dilation, pad_begin + pad_end) == (1, 1, 1, 0) else None
    return (size + pad_begin + pad_end - dilation * (k - 1) - 1) // stride + 1


def resolve_auto_pad(auto_pad, in_sizes, kernel, strides, dilations, pads):
    """Explicit [begin..., end...] pads for ONNX auto_pad SAME_UPPER/SAME_LOWER/VALID/NOTSET."""
    n = len(kernel)
    if auto_pad in ("NOTSET", ""):
        return list(pads)
    if auto_pad == "VALID":
        return [0] * (2 * n)
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        raise IrcError(f"unknown auto_pad {auto_pad!r}")
    begin, end = [], []
    for size, k, s, d in zip(in_sizes, kernel, strides, dilations):
        if not isinstance(size, int):
            return None
        out = -(-size // s)
        total = max(0, (out - 1) * s + d * (k - 1) + 1 - size)
        small, big = total // 2, total - total // 2
        begin.append(big if auto_pad == "SAME_LOWER" else small)
        end.append(small if auto_pad == "SAME_LOWER" else big)
    return begin + end


# -- epilogues: elementwise work fused into a producing conv2d, gemm or matmul ------------------------------
# An epilogue is the list attribute ``epilogue`` of op names applied in order to the node's result (after its
# bias): "add" adds the next extra operand (the operands after the op's own, each broadcasting to the
# result), an activation maps every element. An activation's parameters are attributes of the node named
# ``<op>_<parameter>``; clip's bounds, operands of clip itself, are the attributes clip_min and clip_max.
EPILOGUE_PARAMS = {"add": {}, "relu": {}, "sigmoid": {}, "tanh": {}, "silu": {}, "hard_swish": {},
                   "leaky_relu": {"leaky_relu_alpha": "alpha"}, "gelu": {"gelu_approximate": "approximate"},
                   "clip": {}}
# attributes of every op that can carry an epilogue (None: absent, not printed)
FUSED_ATTRS = {"algo": None, "epilogue": None, "leaky_relu_alpha": None, "gelu_approximate": None,
               "clip_min": None, "clip_max": None}


def epilogue_steps(attrs):
    """The node's epilogue as (op, op attributes) pairs; IrcError for an op that cannot be one."""
    steps = []
    for op in attrs.get("epilogue") or ():
        if op not in EPILOGUE_PARAMS:
            raise IrcError(f"epilogue op {op!r} is not one of {sorted(EPILOGUE_PARAMS)}")
        params = {name: attrs.get(key) for key, name in EPILOGUE_PARAMS[op].items() if attrs.get(key) is not None}
        steps.append((op, params))
    return steps


def _check_epilogue(ctx, first_extra, result: TensorType, what):
    """The extra operands match the epilogue's adds in number, dtype and (broadcast) shape."""
    adds = sum(op == "add" for op, _ in epilogue_steps(ctx.attrs))
    extras = ctx.types[first_extra:]
    if len(extras) != adds:
        raise IrcError(f"{what} epilogue {ctx['epilogue']} needs {adds} extra operand(s), got {len(extras)}")
    for t in extras:
        if t is None or t.dtype != result.dtype or not _may_broadcast_to(t.shape, result.shape):
            raise IrcError(f"{what} epilogue operand {t} does not broadcast to the result {result}")
    return [result]


def _may_broadcast_to(shape, target) -> bool:
    """False only when ``shape`` surely does not broadcast to ``target`` (unknown dims may match anything)."""
    if shape is None or target is None:
        return True
    if len(shape) > len(target):
        return False
    return all(s == 1 or s == t or s is None or t is None for s, t in zip(shape[::-1], target[::-1]))


def apply_epilogue(y, extras, attrs):
    """y after the node's epilogue, each step computed by its op's own reference (as the unfused graph)."""
    extras = list(extras)
    for op, params in epilogue_steps(attrs):
        if op == "add":
            operands = [y, extras.pop(0)]
        elif op == "clip":
            bounds = [attrs.get("clip_min"), attrs.get("clip_max")]
            operands = [y] + [None if v is None else np.asarray(v, y.dtype) for v in bounds]
        else:
            operands = [y]
        y = run_reference(get(op), operands, params)[0]
    return y


# -- Winograd F(m x m, 3 x 3) ------------------------------------------------------------------------------
# Output tiles of m x m from input tiles of a = m + 2: Y = A^T [(G g G^T) * (B^T d B)] A (Lavin and Gray).
# The interpolation points are 0, 1, -1 (m = 2) and 0, 1, -1, 2, -2 (m = 4), plus infinity.
_WINOGRAD = {
    2: ([[1, 1, 1, 0], [0, 1, -1, -1]],
        [[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]],
        [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]),
    4: ([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
        [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
         [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
        [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
         [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]),
}


def winograd_matrices(m: int):
    """(A^T [m, a], G [a, 3], B^T [a, a]) of F(m x m, 3 x 3) as float64."""
    if m not in _WINOGRAD:
        raise IrcError(f"winograd output tile must be one of {sorted(_WINOGRAD)}, got {m}")
    return tuple(np.array(t, np.float64) for t in _WINOGRAD[m])


def winograd_filter(w: np.ndarray, m: int) -> np.ndarray:
    """The transformed filter U [a*a, O, C] = G g G^T of an [O, C, 3, 3] weight, in w's dtype."""
    _, g, _ = winograd_matrices(m)
    u = np.einsum("ik,ockl,jl->ijoc", g, w.astype(np.float64), g)
    return np.ascontiguousarray(u.reshape(-1, *w.shape[:2])).astype(w.dtype)


def winograd_unfilter(u: np.ndarray, m: int) -> np.ndarray:
    """The [O, C, 3, 3] weight whose transform is u: G has full column rank, so its pseudo-inverse undoes it."""
    _, g, _ = winograd_matrices(m)
    a = m + 2
    gi = np.linalg.pinv(g)
    return np.einsum("ki,ijoc,lj->ockl", gi, u.astype(np.float64).reshape(a, a, *u.shape[1:]), gi)


def conv_weight_shape(w_shape, attrs):
    """The [O, C/group, kh, kw] shape a conv2d's weight operand stands for (the winograd form is transformed)."""
    if attrs.get("algo") != "winograd" or w_shape is None:
        return w_shape
    m = attrs.get("winograd_m")
    if m not in _WINOGRAD or len(w_shape) != 3 or w_shape[0] != (m + 2) ** 2:
        raise IrcError(f"a winograd conv2d needs winograd_m in {sorted(_WINOGRAD)} and a transformed weight "
                       f"[(m+2)^2, O, C], got m={m} and {list(w_shape)}")
    return (w_shape[1], w_shape[2], 3, 3)


# -- convolution -------------------------------------------------------------------------------------------
_CONV_ATTR_LENGTHS = {"strides": 2, "dilations": 2, "pads": 4, "output_padding": 2}


def _conv_operands(ctx, what):
    """Shapes of input and weight (both 4-D, same dtype) after checking attributes and bias; IrcError else."""
    x, w = ctx.shape(0), conv_weight_shape(ctx.shape(1), ctx.attrs)
    if x is None or w is None or len(x) != 4 or len(w) != 4:
        raise IrcError(f"{what} needs 4-D input and weight, got {ctx.type(0)} and {ctx.type(1)}")
    if ctx.dtype(1) != ctx.dtype(0):
        raise IrcError(f"{what} input is {ctx.dtype(0)} but weight is {ctx.dtype(1)}")
    for name, n in _CONV_ATTR_LENGTHS.items():
        if name in ctx.attrs and len(ctx[name]) != n:
            raise IrcError(f"{what} attribute {name} needs {n} values, got {ctx[name]}")
    if any(s < 1 for s in [*ctx["strides"], *ctx["dilations"]]) or ctx["group"] < 1:
        raise IrcError(f"{what} strides, dilations and group must be >= 1")
    return x, w


def _check_bias(ctx, what, channels):
    b = ctx.type(2)
    if b is not None and (b.rank != 1 or (isinstance(b.shape[0], int) and isinstance(channels, int)
                                          and b.shape[0] != channels)):
        raise IrcError(f"{what} bias must be a vector of {channels} values, got {b}")


def _check_out_dims(what, dims):
    if any(isinstance(d, int) and d < 1 for d in dims):
        raise IrcError(f"{what} output would have spatial size {list(dims)}")


def _infer_conv(ctx):
    x, w = _conv_operands(ctx, "conv2d")
    if isinstance(x[1], int) and isinstance(w[1], int) and x[1] != w[1] * ctx["group"]:
        raise IrcError(f"conv2d input has {x[1]} channels, weight expects {w[1]} x group {ctx['group']}")
    if isinstance(w[0], int) and w[0] % ctx["group"]:
        raise IrcError(f"conv2d has {w[0]} output channels, not a multiple of group {ctx['group']}")
    _check_bias(ctx, "conv2d", w[0])
    pads = resolve_auto_pad(ctx["auto_pad"], x[2:], w[2:], ctx["strides"], ctx["dilations"], ctx["pads"])
    if pads is None:
        hw = [None, None]
    else:
        hw = [conv_out_dim(x[2 + i], w[2 + i], ctx["strides"][i], ctx["dilations"][i], pads[i], pads[i + 2])
              for i in range(2)]
    _check_out_dims("conv2d", hw)
    return _check_epilogue(ctx, 3, TensorType(ctx.dtype(0), (x[0], w[0], *hw)), "conv2d")


def _windows(xp, kh, kw, sh, sw, dh, dw, oh, ow):
    """View of padded NCHW input as [N, C, oh, ow, kh, kw] windows."""
    n, c, _, _ = xp.shape
    s = xp.strides
    return np.lib.stride_tricks.as_strided(
        xp, (n, c, oh, ow, kh, kw), (s[0], s[1], s[2] * sh, s[3] * sw, s[2] * dh, s[3] * dw), writeable=False)


@define("conv2d", onnx="Conv", kind="opaque", infer=_infer_conv,
        attrs={"strides": [1, 1], "pads": [0, 0, 0, 0], "dilations": [1, 1], "group": 1, "auto_pad": "NOTSET",
               "winograd_m": None, **FUSED_ATTRS})
def conv2d(x, w, b=None, *extras, winograd_m, **attrs):
    """2-D convolution (cross-correlation) of NCHW input with OIHW weight, in groups, then the epilogue.
    With algo="winograd" the weight operand is the transformed filter, which is mapped back exactly."""
    if attrs.get("algo") == "winograd":
        w = winograd_unfilter(w, winograd_m)
    y = _conv2d(x, w, b, **{k: attrs[k] for k in ("strides", "pads", "dilations", "group", "auto_pad")})
    return apply_epilogue(y, extras, attrs)


def _conv2d(x, w, b, *, strides, pads, dilations, group, auto_pad):
    pads = resolve_auto_pad(auto_pad, x.shape[2:], w.shape[2:], strides, dilations, pads)
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    kh, kw = w.shape[2:]
    oh = conv_out_dim(x.shape[2], kh, strides[0], dilations[0], pads[0], pads[2])
    ow = conv_out_dim(x.shape[3], kw, strides[1], dilations[1], pads[1], pads[3])
    win = _windows(xp, kh, kw, strides[0], strides[1], dilations[0], dilations[1], oh, ow)
    cin, cout = w.shape[1], w.shape[0] // group
    outs = []
    for g in range(group):
        wg = w[g * cout:(g + 1) * cout].astype(np.float64)
        outs.append(np.einsum("nchwij,ocij->nohw", win[:, g * cin:(g + 1) * cin], wg, optimize=True))
    y = np.concatenate(outs, axis=1)
    if b is not None:
        y = y + b.reshape(1, -1, 1, 1)
    return y.astype(x.dtype)


def conv_transpose_geometry(in_sizes, kernel, attrs):
    """Per spatial axis (pad_begin, out_size) of a transposed convolution, as onnxruntime computes them.

    The full result of axis i has (in-1)*stride + (k-1)*dilation + 1 + output_padding positions; the output
    is a window of it starting at pad_begin (positions past the full result are zero). With output_shape the
    window is that long and the pads ignored; SAME_* ask for in*stride positions. The cut is split evenly,
    the odd position at the end for SAME_UPPER and at the start otherwise. A symbolic size gives None.
    """
    auto_pad, pads, output_shape = attrs["auto_pad"], attrs["pads"], attrs["output_shape"]
    if auto_pad not in ("NOTSET", "", "VALID", "SAME_UPPER", "SAME_LOWER"):
        raise IrcError(f"unknown auto_pad {auto_pad!r}")
    n = len(kernel)
    if output_shape is not None and len(output_shape) != n:
        raise IrcError(f"output_shape must give the {n} spatial sizes, got {list(output_shape)}")
    explicit = auto_pad in ("NOTSET", "")
    geometry = []
    for i, (size, k, s, d, adj) in enumerate(zip(in_sizes, kernel, attrs["strides"], attrs["dilations"],
                                                 attrs["output_padding"])):
        if not isinstance(size, int):
            geometry.append(None)
            continue
        full = (size - 1) * s + (k - 1) * d + 1 + adj
        if output_shape is None and (explicit or auto_pad == "VALID"):
            begin, end = (pads[i], pads[i + n]) if explicit else (0, 0)
            geometry.append((begin, full - begin - end))
            continue
        out = int(output_shape[i]) if output_shape is not None else size * s
        cut = max(0, full - out)
        geometry.append((cut // 2 if auto_pad == "SAME_UPPER" else cut - cut // 2, out))
    return geometry


def _infer_conv_transpose(ctx):
    x, w = _conv_operands(ctx, "conv_transpose2d")
    if isinstance(x[1], int) and isinstance(w[0], int) and (x[1] != w[0] or x[1] % ctx["group"]):
        raise IrcError(f"conv_transpose2d input has {x[1]} channels, weight expects {w[0]} "
                       f"in {ctx['group']} group(s)")
    channels = w[1] * ctx["group"] if isinstance(w[1], int) else None
    _check_bias(ctx, "conv_transpose2d", channels)
    static_kernel = all(isinstance(k, int) for k in w[2:])
    geometry = conv_transpose_geometry(x[2:], w[2:], ctx.attrs) if static_kernel else [None, None]
    hw = [None if g is None else g[1] for g in geometry]
    _check_out_dims("conv_transpose2d", hw)
    return [TensorType(ctx.dtype(0), (x[0], channels, *hw))]


@define("conv_transpose2d", onnx="ConvTranspose", kind="opaque", infer=_infer_conv_transpose,
        attrs={"strides": [1, 1], "pads": [0, 0, 0, 0], "dilations": [1, 1], "group": 1, "auto_pad": "NOTSET",
               "output_padding": [0, 0], "output_shape": None})
def conv_transpose2d(x, w, b=None, **attrs):
    """2-D transposed convolution (the adjoint of conv2d) of NCHW input with [C_in, C_out/group, kh, kw]
    weight: every input pixel scatters its weighted kernel into the output, strided and dilated."""
    (bh, oh), (bw, ow) = conv_transpose_geometry(x.shape[2:], w.shape[2:], attrs)
    n, cin, h, wd = x.shape
    group = attrs["group"]
    cg, og, kh, kw = cin // group, w.shape[1], w.shape[2], w.shape[3]
    (sh, sw), (dh, dw) = attrs["strides"], attrs["dilations"]
    full = np.zeros((n, og * group, max(bh + oh, (h - 1) * sh + (kh - 1) * dh + 1),
                     max(bw + ow, (wd - 1) * sw + (kw - 1) * dw + 1)))
    for g in range(group):
        cols = np.einsum("nchw,cokl->noklhw", x[:, g * cg:(g + 1) * cg], w[g * cg:(g + 1) * cg].astype(np.float64))
        for i in range(kh):
            for j in range(kw):
                full[:, g * og:(g + 1) * og, i * dh:i * dh + (h - 1) * sh + 1:sh,
                     j * dw:j * dw + (wd - 1) * sw + 1:sw] += cols[:, :, i, j]
    y = full[:, :, bh:bh + oh, bw:bw + ow]
    if b is not None:
        y = y + b.reshape(1, -1, 1, 1)
    return y.astype(x.dtype)


# -- matrix products ---------------------------------------------------------------------------------------
def _check_same_dtype(ctx, what):
    if ctx.dtype(1) != ctx.dtype(0):
        raise IrcError(f"{what} operands have dtypes {ctx.dtype(0)} and {ctx.dtype(1)}")


def _contraction_mismatch(k1, k2):
    return isinstance(k1, int) and isinstance(k2, int) and k1 != k2


def _infer_matmul(ctx):
    _check_same_dtype(ctx, "matmul")
    a, b = ctx.shape(0), ctx.shape(1)
    if a is None or b is None:
        return [TensorType(ctx.dtype(0), None)]
    if not a or not b:
        raise IrcError(f"matmul operands must have rank >= 1, got {ctx.type(0)} and {ctx.type(1)}")
    a2 = (1,) + a if len(a) == 1 else a
    b2 = b + (1,) if len(b) == 1 else b
    if _contraction_mismatch(a2[-1], b2[-2]):
        raise IrcError(f"matmul of {ctx.type(0)} and {ctx.type(1)}: inner dims {a2[-1]} and {b2[-2]} differ")
    batch = broadcast_shapes(a2[:-2], b2[:-2])
    rows = (a2[-2],) if len(a) > 1 else ()
    cols = (b2[-1],) if len(b) > 1 else ()
    return _check_epilogue(ctx, 2, TensorType(ctx.dtype(0), batch + rows + cols), "matmul")


def _accumulate_dtype(dtype):
    """float16 is multiplied and summed in float32 and rounded once; other dtypes compute in their own."""
    return np.float32 if dtype == np.float16 else dtype


@define("matmul", onnx="MatMul", kind="opaque", infer=_infer_matmul, attrs=dict(FUSED_ATTRS))
def matmul(a, b, *extras, **attrs):
    """numpy matmul: 1-D operands are promoted to a row/column and the added axis dropped; batch axes
    (all but the last two) broadcast. Then the epilogue."""
    acc = _accumulate_dtype(a.dtype)
    y = np.matmul(a.astype(acc, copy=False), b.astype(acc, copy=False)).astype(a.dtype)
    return apply_epilogue(y, extras, attrs)


def _gemm_dims(a_shape, b_shape, trans_a, trans_b):
    """(M, K of A, K of B, N) of a gemm's operands after the transposes."""
    m, ka = a_shape[::-1] if trans_a else a_shape
    kb, n = b_shape[::-1] if trans_b else b_shape
    return m, ka, kb, n


def _broadcasts_to(shape, target) -> bool:
    try:
        return broadcast_shapes(shape, target) == tuple(target)
    except IrcError:
        return False


def _infer_gemm(ctx):
    _check_same_dtype(ctx, "gemm")
    a, b, c = ctx.shape(0), ctx.shape(1), ctx.shape(2)
    if a is None or b is None or len(a) != 2 or len(b) != 2:
        raise IrcError(f"gemm needs 2-D A and B, got {ctx.type(0)} and {ctx.type(1)}")
    m, ka, kb, n = _gemm_dims(a, b, ctx["transA"], ctx["transB"])
    if _contraction_mismatch(ka, kb):
        raise IrcError(f"gemm of {ctx.type(0)} and {ctx.type(1)} (transA={ctx['transA']}, "
                       f"transB={ctx['transB']}): inner dims {ka} and {kb} differ")
    if c is not None and (len(c) > 2 or not _broadcasts_to(c, (m, n))):
        raise IrcError(f"gemm C {ctx.type(2)} does not broadcast to [{m}, {n}]")
    return _check_epilogue(ctx, 3, TensorType(ctx.dtype(0), (m, n)), "gemm")


@define("gemm", onnx="Gemm", kind="opaque", infer=_infer_gemm,
        attrs={"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0, **FUSED_ATTRS})
def gemm(a, b, c=None, *extras, alpha, beta, transA, transB, **attrs):
    """alpha * A' B' + beta * C with A' = A or A^T (transA), B' likewise, C broadcast to the result; then
    the epilogue."""
    a = a.T if transA else a
    b = b.T if transB else b
    y = alpha * (a.astype(np.float64) @ b.astype(np.float64))
    if c is not None:
        y = y + beta * c
    return apply_epilogue(y.astype(a.dtype), extras, attrs)
