"""Winograd F(m x m, 3 x 3) convolution kernels (the conv2d of ``algo="winograd"``, see irc/passes/winograd.py).

The filter arrives transformed (U [a*a, O, C], a = m + 2, made at compile time). Per image, every step but
two copies is a BLAS GEMM:
1. ``gather_tiles`` (numba) copies the a x a input patches at stride m (zero outside the image) into
   D [C, a*a, T], T tiles;
2. the input transform V = B^T d B of every patch is one product by the [a*a, a*a] matrix B^T (x) B^T
   (Kronecker), batched over channels: V [C, a*a, T];
3. the a*a elementwise products summed over channels are a batch of GEMMs M[k] = U[k] V[:, k] ([O, C] x
   [C, T], V read in place with its row stride);
4. the output transform A^T M A is one product by A^T (x) A^T [m*m, a*a]: Y [m*m, O*T];
5. ``scatter_tiles`` (numba) writes Y's tiles where inside the output, adding the bias.
Spelled as GEMMs, the transforms cost more multiplies than hand-unrolled ones but run at BLAS speed.
"""
import numpy as np
from numba import njit

from ...ops.nn import winograd_matrices


@njit(cache=True)
def gather_tiles(x, d, ph, pw, m, th, tw):
    """d[c, i*a + j, ty*tw + tx] = x[c, ty*m - ph + i, tx*m - pw + j] for the image x [C, H, W], 0 outside."""
    c_in, h, w = x.shape
    a = m + 2
    d[:] = 0
    for c in range(c_in):
        for i in range(a):
            for ty in range(th):
                iy = ty * m - ph + i
                if iy < 0 or iy >= h:
                    continue
                for j in range(a):
                    dst = d[c, i * a + j, ty * tw:(ty + 1) * tw]
                    for tx in range(tw):
                        ix = tx * m - pw + j
                        if 0 <= ix < w:
                            dst[tx] = x[c, iy, ix]


@njit(cache=True)
def scatter_tiles(yt, b, y, m, tw):
    """y[o, ty*m + i, tx*m + j] = b[o] + yt[i*m + j, o, ty*tw + tx] for the positions inside y [O, OH, OW]."""
    o_all, oh, ow = y.shape
    for o in range(o_all):
        for row in range(oh):
            ty, i = row // m, row % m
            src_base = ty * tw
            dst = y[o, row]
            for col in range(ow):
                dst[col] = yt[i * m + col % m, o, src_base + col // m] + b[o]


def transform_matrices(m: int, dtype):
    """(B^T (x) B^T [a*a, a*a], A^T (x) A^T [m*m, a*a]) in ``dtype``: the input and output transforms of
    whole flattened tiles."""
    at, _, bt = winograd_matrices(m)
    return np.kron(bt, bt).astype(dtype), np.kron(at, at).astype(dtype)


def winograd_conv(g, m: int, dtype):
    """``run(x, u, b)``: the conv2d of geometry g (3x3, stride 1, one group) by F(m x m, 3 x 3) from the
    transformed filter u [a*a, O, C]."""
    kb, ka = transform_matrices(m, dtype)
    th, tw = -(-g.oh // m), -(-g.ow // m)
    a, t = m + 2, th * tw

    def run(x, u, b=None):
        x = np.ascontiguousarray(x, dtype)
        u = np.asarray(u, dtype)
        bias = np.zeros(g.o, dtype) if b is None else np.ascontiguousarray(b, dtype)
        y = np.empty((g.n, g.o, g.oh, g.ow), dtype)
        d = np.empty((g.c, a * a, t), dtype)
        for n in range(g.n):
            gather_tiles(x[n], d, g.ph, g.pw, m, th, tw)
            v = np.matmul(kb, d)                                    # [C, a*a, T]
            mt = np.matmul(u, v.transpose(1, 0, 2))                  # [a*a, O, T]
            yt = np.dot(ka, mt.reshape(a * a, g.o * t)).reshape(m * m, g.o, t)
            scatter_tiles(yt, bias, y[n], m, tw)
        return y
    return run
