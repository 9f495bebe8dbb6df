"""Winograd F(m x m, 3 x 3) convolution (the conv2d of ``algo="winograd"``, see irc/passes/winograd.py), and
the stride-phase split of a padded input that it shares with conv.py's im2col.

The filter arrives transformed (U [a*a, O, C], a = m + 2, made at compile time). The padded input is split
by phase modulo m (``split_phases``): element (i, j) of the a x a patch of tile (ty, tx) is then element
t + (i // m)*wq + j // m of the flat phase plane (i % m, j % m), t = ty*wq + tx, with wq (> the tiles per
row) the planes' pitch. Tiles are numbered that way throughout, so that every pass runs over all the tiles
of an image as one unit-stride loop; the wq - tw extra tiles per row are computed and never stored (a few
percent more GEMM columns, against a compaction copy of short rows). A run is three parallel stages over
numba's pool, all images at once (their tiles side by side, T per image):
1. input transform, per (image, channel): B^T d B as two 1-D passes (``_input_rows``: rows, then
   columns), written as V [a*a, C, N*T];
2. one GEMM per frequency f, M[f] = U[f] V[f] ([O, C] x [C, N*T]), the a*a frequencies shared out across
   the workers (single-threaded ``blas.gemm`` each, every worker reading only its own U[f]);
3. output transform, per (image, output channel): A^T M A as two 1-D passes (``_output_rows``), plus the
   bias, then interleaved into the output rows where the tile lies inside the output.
The 1-D passes spell out the few non-zero entries of B^T and A^T as adds (F(4,3) and F(2,3) only) and
address every row as an offset into one flat C array, which is what lets LLVM vectorize them (a 2-D view
of unknown strides stays scalar, 30x slower when measured).
"""
import threading

import numba
import numpy as np
from numba import njit, prange

from ...errors import UnsupportedError
from .blas import gemm
from .gemm import frozen


_pool = threading.local()


def scratch(key: str, shape, dtype) -> np.ndarray:
    """An uninitialized C-contiguous array of ``shape`` and ``dtype`` kept for the calling thread under
    ``key`` and handed out again by the next call with that key (grown when too small): the kernels'
    big temporaries stay mapped between runs. Allocated afresh, each one came back from the OS and
    page-faulted in on every run (a 64-channel 56x56 Winograd conv took 2.2 ms instead of 0.6)."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    pool = _pool.__dict__.setdefault("arrays", {})
    buf = pool.get(key)
    if buf is None or buf.size < size:
        buf = pool[key] = np.empty(size, np.uint8)
    return buf[:size].view(dtype).reshape(shape)


@njit(cache=True, parallel=True)
def split_phases(x, planes, ph, pw, sh, sw, wq):
    """planes[n, c, a*sw + b, r*wq + q] = x[n, c] zero-padded by ph rows above and pw columns left, at row
    r*sh + a and column q*sw + b (0 past the image): every image and channel split by stride phase, in
    parallel. A tap of stride (sh, sw) then reads each phase plane at unit stride."""
    n_img, c_all, h, w = x.shape
    for t in prange(n_img * c_all):
        src, dst = x[t // c_all, t % c_all], planes[t // c_all, t % c_all]
        dst[:] = 0
        for b in range(sw):  # (the divisions are hoisted: per (row, phase) they cost more than the copy)
            ic0 = (b - pw) % sw
            c0, count = (pw + ic0) // sw, (w - ic0 + sw - 1) // sw
            a, rr = ph % sh, ph // sh
            for ir in range(h):
                row, srow = dst[a * sw + b, rr * wq + c0:rr * wq + c0 + count], src[ir, ic0:]
                if sw == 1:
                    row[:] = srow[:count]
                else:
                    for k in range(count):
                        row[k] = srow[k * sw]
                a += 1
                if a == sh:
                    a, rr = 0, rr + 1


def phase_planes(x, ph, pw, sh, sw, hq, wq):
    """The read-only [N, C, sh*sw, hq*wq] stride-phase planes of x (see split_phases), in the thread's
    scratch (valid until its next call); hq and wq must hold the padded input: hq*sh >= ph + H,
    wq*sw >= pw + W."""
    planes = scratch("planes", x.shape[:2] + (sh * sw, hq * wq), x.dtype)
    split_phases(x, planes, ph, pw, sh, sw, wq)
    planes.flags.writeable = False
    return planes


@njit(cache=True, inline="always")
def _input_rows(src, s, dst, d, n, k):
    """dst[d[r] + t] = (B^T x_t)[r] for the a-vectors x_t = (src[s[0] + t], ..., src[s[a-1] + t]), t < n (a = 6
    for F(4,3), 4 for F(2,3), the length of d): one 1-D pass of the input transform, B^T's few non-zero
    entries spelled out as adds. The rows are offsets into one flat C array each, so that LLVM sees unit
    strides and vectorizes across t. k holds the constants (2, 4, 5, 8) in the data's dtype (a Python
    number would promote float32 arithmetic to float64)."""
    two, four, five = k[0], k[1], k[2]
    if d.shape[0] == 6:
        i0, i1, i2 = src[s[0]:s[0] + n], src[s[1]:s[1] + n], src[s[2]:s[2] + n]
        i3, i4, i5 = src[s[3]:s[3] + n], src[s[4]:s[4] + n], src[s[5]:s[5] + n]
        o0, o1, o2 = dst[d[0]:d[0] + n], dst[d[1]:d[1] + n], dst[d[2]:d[2] + n]
        o3, o4, o5 = dst[d[3]:d[3] + n], dst[d[4]:d[4] + n], dst[d[5]:d[5] + n]
        for t in range(n):
            x0, x1, x2, x3, x4, x5 = i0[t], i1[t], i2[t], i3[t], i4[t], i5[t]
            e, f = x4 - x2, x3 - x1
            o0[t] = four * x0 - five * x2 + x4
            o1[t] = (x4 + x3) - four * (x1 + x2)
            o2[t] = (x4 - x3) + four * (x1 - x2)
            o3[t] = e + two * f
            o4[t] = e - two * f
            o5[t] = four * x1 - five * x3 + x5
    else:
        i0, i1, i2, i3 = src[s[0]:s[0] + n], src[s[1]:s[1] + n], src[s[2]:s[2] + n], src[s[3]:s[3] + n]
        o0, o1, o2, o3 = dst[d[0]:d[0] + n], dst[d[1]:d[1] + n], dst[d[2]:d[2] + n], dst[d[3]:d[3] + n]
        for t in range(n):
            x0, x1, x2, x3 = i0[t], i1[t], i2[t], i3[t]
            o0[t] = x0 - x2
            o1[t] = x1 + x2
            o2[t] = x2 - x1
            o3[t] = x1 - x3


@njit(cache=True, inline="always")
def _output_rows(src, s, dst, d, n, bias, k):
    """dst[d[r] + t] = bias + (A^T x_t)[r] for x_t as in _input_rows (a = len(s)), t < n: one 1-D pass of
    the output transform, A^T spelled out (m = 4: F(4,3); m = 2: F(2,3))."""
    two, four, eight = k[0], k[1], k[3]
    if s.shape[0] == 6:
        i0, i1, i2 = src[s[0]:s[0] + n], src[s[1]:s[1] + n], src[s[2]:s[2] + n]
        i3, i4, i5 = src[s[3]:s[3] + n], src[s[4]:s[4] + n], src[s[5]:s[5] + n]
        o0, o1, o2, o3 = dst[d[0]:d[0] + n], dst[d[1]:d[1] + n], dst[d[2]:d[2] + n], dst[d[3]:d[3] + n]
        for t in range(n):
            x0, x1, x2, x3, x4, x5 = i0[t], i1[t], i2[t], i3[t], i4[t], i5[t]
            e, f, g, h = x1 + x2, x1 - x2, x3 + x4, x3 - x4
            o0[t] = bias + x0 + e + g
            o1[t] = bias + f + two * h
            o2[t] = bias + e + four * g
            o3[t] = bias + f + eight * h + x5
    else:
        i0, i1, i2, i3 = src[s[0]:s[0] + n], src[s[1]:s[1] + n], src[s[2]:s[2] + n], src[s[3]:s[3] + n]
        o0, o1 = dst[d[0]:d[0] + n], dst[d[1]:d[1] + n]
        for t in range(n):
            x0, x1, x2, x3 = i0[t], i1[t], i2[t], i3[t]
            o0[t] = bias + x0 + x1 + x2
            o1[t] = bias + x1 - x2 - x3


@njit(cache=True)
def _input_transform(planes, v, v0, vs, m, wq, k, tmp, s, d):
    """v[v0 + (i*a + j)*vs + t] = (B^T x B)[i, j] for the a x a patch x of every tile t = ty*wq + tx of one
    channel (module docstring), read from its flat phase planes [m*m * hq*wq]: rows into tmp [a*a*T], then
    columns; s, d: scratch for a offsets each."""
    a, tiles, plane = m + 2, tmp.shape[0] // (m + 2) ** 2, planes.shape[0] // (m * m)
    for i in range(a):
        for j in range(a):
            s[j] = ((i % m) * m + j % m) * plane + (i // m) * wq + j // m
            d[j] = (i * a + j) * tiles
        _input_rows(planes, s, tmp, d, tiles, k)
    for j in range(a):
        for i in range(a):
            s[i] = (i * a + j) * tiles
            d[i] = v0 + (i * a + j) * vs
        _input_rows(tmp, s, v, d, tiles, k)


@njit(cache=True)
def _output_transform(mm, m0, ms, bias, lo, hi, y, m, wq, k, tmp, out, s, d):
    """y[ty*m + i, tx*m + j] = clip(bias + (A^T M A)[i, j], lo, hi) for the a x a products M of tile
    t = ty*wq + tx, read from mm[m0 + f*ms + t] (f = frequency), where that lies inside y [OH, OW]:
    columns into tmp [m*a*T], rows into out [m*m*T], then out's tiles interleaved into y's rows; s, d:
    scratch for a offsets each."""
    a, tiles = m + 2, tmp.shape[0] // ((m + 2) * m)
    for j in range(a):
        for i in range(a):
            s[i] = m0 + (i * a + j) * ms
        for i in range(m):
            d[i] = (i * a + j) * tiles
        _output_rows(mm, s, tmp, d[:m], tiles, bias - bias, k)  # (a float32 zero: bias * 0 is float64)
    for i in range(m):
        for j in range(a):
            s[j] = (i * a + j) * tiles
        for j in range(m):
            d[j] = (i * m + j) * tiles
        _output_rows(tmp, s, out, d[:m], tiles, bias, k)
    oh, ow = y.shape
    for oy in range(oh):
        dst = y[oy]
        for jj in range(m):
            src = out[((oy % m) * m + jj) * tiles + (oy // m) * wq:]
            for tx in range((ow - jj + m - 1) // m):
                dst[tx * m + jj] = min(max(src[tx], lo), hi)


@njit(cache=True, parallel=True)
def winograd(planes, u, b, lo, hi, y, v, mm, m, wq, k, threads):
    """y [N, O, OH, OW] = clip(b + the 3x3 convolution of the images whose stride-m phase planes are ``planes``
    [N, C, m*m * hq*wq], by F(m, 3) with the transformed filter u [a*a, O, C] (module docstring), lo, hi)
    on ``threads`` workers; v [a*a, C, N*T] and mm [a*a, O, N*T] are scratch."""
    n_img, c_all = planes.shape[0], planes.shape[1]
    aa, o_all = u.shape[0], u.shape[1]
    a, tiles = m + 2, -(-y.shape[2] // m) * wq
    nt = n_img * tiles
    for t in prange(threads):
        tmp, s, d = np.empty(aa * tiles, y.dtype), np.empty(a, np.int64), np.empty(a, np.int64)
        for task in range(t, n_img * c_all, threads):
            n, c = task // c_all, task % c_all
            _input_transform(planes[n, c], v.reshape(-1), c * nt + n * tiles, c_all * nt, m, wq, k, tmp, s, d)
    for f in prange(aa):
        gemm(u[f], v[f], mm[f], 0.0)
    for t in prange(threads):
        tmp, out = np.empty(m * a * tiles, y.dtype), np.empty(m * m * tiles, y.dtype)
        s, d = np.empty(a, np.int64), np.empty(a, np.int64)
        for task in range(t, n_img * o_all, threads):
            n, o = task // o_all, task % o_all
            _output_transform(mm.reshape(-1), o * nt + n * tiles, o_all * nt, b[o], lo, hi, y[n, o], m, wq, k,
                              tmp, out, s, d)


def winograd_conv(g, m: int, dtype, bounds=(-np.inf, np.inf)):
    """``run(x, u, b)``: the conv2d of geometry g (3x3, stride 1, one group) by F(m x m, 3 x 3) from the
    transformed filter u [a*a, O, C], clipped to ``bounds`` (a fused relu or clip), on every worker of
    numba's pool."""
    if m not in (2, 4):
        raise UnsupportedError(f"no Winograd kernel for output tiles of {m}; F(2,3) and F(4,3) have one")
    th, tw = -(-g.oh // m), -(-g.ow // m)
    k = frozen(np.array([2, 4, 5, 8]), dtype)
    lo, hi = (np.dtype(dtype).type(v) for v in bounds)
    # phase planes: the padded input, one more column of tiles for the patches' overlap (so the tiles of a
    # row are wq apart), and two more rows, which the runs of the last tile row reach into
    hq, wq = max(th + 2, -(-(g.ph + g.h) // m)), max(tw + 1, -(-(g.pw + g.w) // m))
    a, tiles = m + 2, th * wq

    def run(x, u, b=None):
        planes = phase_planes(frozen(x, dtype), g.ph, g.pw, m, m, hq, wq).reshape(g.n, g.c, m * m * hq * wq)
        bias = frozen(np.zeros(g.o, dtype) if b is None else b, dtype)
        y = np.empty((g.n, g.o, g.oh, g.ow), dtype)
        v, mm = scratch("v", (a * a, g.c, g.n * tiles), dtype), scratch("m", (a * a, g.o, g.n * tiles), dtype)
        winograd(planes, frozen(u, dtype), bias, lo, hi, y, v, mm, m, wq, k, numba.get_num_threads())
        return y
    return run
