"""CUDA kernels of the ops the fuse pass makes (mirrors kernels/cpu/fused.py).

- ``fused_elementwise``: its expression tree as one generated device kernel;
- ``attention``: three launches over device buffers, scores made once and never leaving the device: the
  tiled GEMM (shared-memory tiles) computes q @ kt with the scale as its alpha; one kernel takes each
  row of scores through mask and softmax in place (float64 sums); the tiled GEMM again multiplies the
  probabilities by v. The batch axes (all but the last two) fold into the GEMM's two batch dims, the
  mask read at its broadcast strides.
"""
import math

import numpy as np
from numba import cuda, float64

from ...backend.cuda_registry import lowers
from ...backend.registry import Kernel
from ..cpu.codegen import broadcast_strides
from ..cpu.fused import fused_kernel
from .device import contiguous_strides, empty, flat, launch, require_float32, static_shape
from .elementwise import device_elementwise
from .gemm import batch_strides, run_gemm


@lowers("fused_elementwise", family="elementwise")
def lower_fused_elementwise(node):
    """The node's tree as one generated device kernel over its operands."""
    return Kernel(fused_kernel(node, device_elementwise))


@cuda.jit(cache=True)
def _masked_softmax(s, mask, sm, dims, has_mask):
    """In place over the scores s [Z1, Z2, S, T] (contiguous), dims = (Z2, S, T): each row x becomes
    softmax(x + its mask row), the mask read at strides ``sm`` (z1, z2, row, col); one thread per row."""
    g2, rows, cols = dims
    r = cuda.grid(1)
    step = cuda.gridsize(1)
    while r < s.shape[0] // cols:
        z = r // rows
        base, mbase = r * cols, (z // g2) * sm[0] + (z % g2) * sm[1] + (r % rows) * sm[2]
        top = -math.inf
        for j in range(cols):
            x = float64(s[base + j]) + (mask[mbase + j * sm[3]] if has_mask else float64(0))
            top = max(top, x)
        total = float64(0)
        for j in range(cols):
            total += math.exp(float64(s[base + j]) + (mask[mbase + j * sm[3]] if has_mask else float64(0)) - top)
        for j in range(cols):
            x = float64(s[base + j]) + (mask[mbase + j * sm[3]] if has_mask else float64(0))
            s[base + j] = math.exp(x - top) / total
        r += step


def _mask_strides(mask_shape, batch, rows, cols):
    """The mask's (row, col) strides over scores [..., rows, cols], and its shape padded to their rank
    (from which ``batch_strides`` takes its batch strides)."""
    full = (1,) * (len(batch) + 2 - len(mask_shape)) + tuple(mask_shape)
    tail = broadcast_strides(full[-2:], (rows, cols), contiguous_strides(full[-2:]))
    return tail, full


@lowers("attention", family="fused")
def lower_attention(node):
    """softmax(q @ kt * scale + mask) @ v in three device launches (see the module docstring)."""
    require_float32(node, *node.inputs, node.outputs[0])
    q_shape, kt_shape = static_shape(node.inputs[0], node), static_shape(node.inputs[1], node)
    out_shape = static_shape(node.outputs[0], node)
    batch, (rows, depth), cols, width = q_shape[:-2], q_shape[-2:], kt_shape[-1], out_shape[-1]
    has_mask = len(node.inputs) > 3 and node.inputs[3] is not None
    operands = [q_shape, kt_shape, static_shape(node.inputs[2], node), out_shape]
    if has_mask:
        tail, mask_shape = _mask_strides(static_shape(node.inputs[3], node), batch, rows, cols)
        operands.append(mask_shape)
    (g1, g2), strides = batch_strides(batch, operands)
    sq, sk = (*strides[0], depth, 1), (*strides[1], cols, 1)
    sv, so = (*strides[2], width, 1), (*strides[3], width, 1)
    sm = (*strides[4], *tail) if has_mask else (0, 0, 0, 0)
    ss = (g2 * rows * cols, rows * cols, cols, 1)
    scale, n_rows = float(node.attrs["scale"]), g1 * g2 * rows

    def run(q, kt, v, mask=None):
        s = empty((g1 * g2 * rows * cols,), np.float32)
        out = empty(out_shape, np.float32)
        run_gemm(flat(q), sq, flat(kt), sk, s, ss, rows, cols, depth, g1 * g2, g2, scale)
        if n_rows and cols:
            _masked_softmax[launch(n_rows)](s, flat(s if mask is None else mask), sm, (g2, rows, cols), has_mask)
        run_gemm(s, ss, flat(v), sv, flat(out), so, rows, width, cols, g1 * g2, g2)
        return out
    return Kernel(run, algo="tiled-attention")
