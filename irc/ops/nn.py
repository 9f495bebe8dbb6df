"""Neural-network ops: convolution, matrix products, pooling, normalization, softmax."""
import numpy as np

from ..errors import IrcError
from ..ir.types import TensorType
from .registry import REQUIRED, define, same_as


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


def _infer_conv(ctx):
    x, w = ctx.shape(0), ctx.shape(1)
    if x is None or w is None or len(x) != 4 or len(w) != 4:
        raise IrcError(f"conv2d needs 4-D input and weight, got {ctx.type(0)} and {ctx.type(1)}")
    if isinstance(x[1], int) and isinstance(w[1], int) and x[1] != w[1] * ctx["group"]:
        raise IrcError(f"conv2d input has {x[1]} channels, weight expects {w[1]} x group {ctx['group']}")
    pads = resolve_auto_pad(ctx["auto_pad"], x[2:], w[2:], ctx["strides"], ctx["dilations"], ctx["pads"])
    if pads is None:
        return [TensorType(ctx.dtype(0), (x[0], w[0], None, None))]
    hw = [conv_out_dim(x[2 + i], w[2 + i], ctx["strides"][i], ctx["dilations"][i], pads[i], pads[i + 2])
          for i in range(2)]
    return [TensorType(ctx.dtype(0), (x[0], w[0], *hw))]


def _windows(xp, kh, kw, sh, sw, dh, dw, oh, ow):
    """View of padded NCHW input as [N, C, oh, ow, kh, kw] windows."""
    n, c, _, _ = xp.shape
    s = xp.strides
    return np.lib.stride_tricks.as_strided(
        xp, (n, c, oh, ow, kh, kw), (s[0], s[1], s[2] * sh, s[3] * sw, s[2] * dh, s[3] * dw), writeable=False)


@define("conv2d", onnx="Conv", kind="opaque", infer=_infer_conv,
        attrs={"strides": [1, 1], "pads": [0, 0, 0, 0], "dilations": [1, 1], "group": 1, "auto_pad": "NOTSET"})
def conv2d(x, w, b=None, *, strides, pads, dilations, group, auto_pad):
    """2-D convolution (cross-correlation) of NCHW input with OIHW weight, in groups."""
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
