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
   bias, clipped (a fused relu or clip), then interleaved into the output rows where the tile lies inside
   the output.
The 1-D passes spell out the few non-zero entries of B^T and A^T as adds (F(4,3) and F(2,3) only) and
address every row as an unsigned offset into one flat C array, which is what lets LLVM vectorize them (a
2-D view of unknown strides stays scalar, 30x slower when measured) without a fixed cost per row: a view
sliced per row costs two reference-count updates, which made the transforms of a channel with few tiles
(14x14 images) 2-5x slower. The result goes straight into the buffer it is given (``WinogradConv.into``
and ``bind``, the output-buffer protocol).

Measured and not taken: a tiled schedule (each worker running chunks of 16-128 tiles through all three
stages, so that V and M stay in its L2) ran 1.05-2x slower than the three stages over all tiles on every
layer of ResNet-18 and VGG-11: the per-chunk loops are short, BLAS handles the few-tile GEMMs less well,
and the whole V and M of these layers (2-4 MB) stay in the 32 MB L3 between stages anyway.
"""
import numpy as np
from numba import njit, prange, uint64

from ...errors import UnsupportedError
from ...runtime.threads import current as current_threads
from .blas import gemm
from .gemm import frozen
from .scratch import scratch


@njit(cache=True)
def _split_channel(src, dst, ph, pw, sh, sw, wq):
    """dst[a*sw + b, r*wq + q] = src [H, W] zero-padded by ph rows above and pw columns left, at row
    r*sh + a and column q*sw + b (0 past the image): one channel split by stride phase, every element of
    dst written once. Indexed with unsigned offsets, not per-row views (each view costs two
    reference-count updates)."""
    h, w = src.shape
    hq = dst.shape[1] // wq
    spans = np.empty((sw, 3), np.int64)  # per column phase b: first input column, first q, count
    for b in range(sw):
        ic0 = (b - pw) % sw
        spans[b, 0], spans[b, 1] = ic0, (pw + ic0) // sw
        spans[b, 2] = max(0, min((w - ic0 + sw - 1) // sw, wq - spans[b, 1]))
    for a in range(sh):
        for r in range(hq):
            ir, base = r * sh + a - ph, uint64(r * wq)
            for b in range(sw):
                p = a * sw + b
                c0, count = uint64(spans[b, 1]), uint64(spans[b, 2])
                if ir < 0 or ir >= h:
                    c0, count = uint64(wq), uint64(0)
                for q in range(c0):
                    dst[p, base + q] = 0
                if count > 0:
                    ic0, step = uint64(spans[b, 0]), uint64(sw)
                    for q in range(count):
                        dst[p, base + c0 + q] = src[ir, ic0 + q * step]
                for q in range(c0 + count, uint64(wq)):
                    dst[p, base + q] = 0


@njit(cache=True, parallel=True)
def split_phases(x, planes, ph, pw, sh, sw, wq):
    """planes[n, c, a*sw + b, r*wq + q] = x[n, c] zero-padded by ph rows above and pw columns left, at row
    r*sh + a and column q*sw + b (0 past the image): every image and channel split by stride phase, in
    parallel (``_split_channel``). A tap of stride (sh, sw) then reads each phase plane at unit stride."""
    c_all = x.shape[1]
    for t in prange(x.shape[0] * c_all):
        _split_channel(x[t // c_all, t % c_all], planes[t // c_all, t % c_all], ph, pw, sh, sw, wq)


def phase_planes(x, ph, pw, sh, sw, hq, wq):
    """The read-only [N, C, sh*sw, hq*wq] stride-phase planes of x (see split_phases), in the thread's
    scratch (valid until its next call); hq and wq must hold the padded input: hq*sh >= ph + H,
    wq*sw >= pw + W."""
    planes = scratch("planes", x.shape[:2] + (sh * sw, hq * wq), x.dtype)
    split_phases(x, planes, ph, pw, sh, sw, wq)
    planes.flags.writeable = False
    return planes


@njit(cache=True, inline="always")
def _offsets(o):
    """The a offsets in o as unsigned integers: an index known not to be negative needs no wrap-around
    fix-up, so the loops below vectorize (views sliced per row instead cost two reference-count updates
    each, which made the transforms of a few tiles 2-5x slower)."""
    if o.shape[0] == 6:
        return uint64(o[0]), uint64(o[1]), uint64(o[2]), uint64(o[3]), uint64(o[4]), uint64(o[5])
    return uint64(o[0]), uint64(o[1]), uint64(o[2]), uint64(o[3]), uint64(0), uint64(0)


@njit(cache=True, inline="always")
def _input_rows(src, s, dst, d, n, k):
    """dst[d[r] + t] = (B^T x_t)[r] for the a-vectors x_t = (src[s[0] + t], ..., src[s[a-1] + t]), t < n (a = 6
    for F(4,3), 4 for F(2,3), the length of d): one 1-D pass of the input transform, B^T's few non-zero
    entries spelled out as adds. The rows are offsets into one flat C array each, so that LLVM sees unit
    strides and vectorizes across t. k holds the constants (2, 4, 5, 8, -inf, inf, 0) in the data's dtype (a
    Python number would promote float32 arithmetic to float64)."""
    two, four, five = k[0], k[1], k[2]
    s0, s1, s2, s3, s4, s5 = _offsets(s)
    d0, d1, d2, d3, d4, d5 = _offsets(d)
    if d.shape[0] == 6:
        for t in range(uint64(n)):
            x0, x1, x2, x3, x4, x5 = src[s0 + t], src[s1 + t], src[s2 + t], src[s3 + t], src[s4 + t], src[s5 + t]
            e, f = x4 - x2, x3 - x1
            dst[d0 + t] = four * x0 - five * x2 + x4
            dst[d1 + t] = (x4 + x3) - four * (x1 + x2)
            dst[d2 + t] = (x4 - x3) + four * (x1 - x2)
            dst[d3 + t] = e + two * f
            dst[d4 + t] = e - two * f
            dst[d5 + t] = four * x1 - five * x3 + x5
    else:
        for t in range(uint64(n)):
            x0, x1, x2, x3 = src[s0 + t], src[s1 + t], src[s2 + t], src[s3 + t]
            dst[d0 + t] = x0 - x2
            dst[d1 + t] = x1 + x2
            dst[d2 + t] = x2 - x1
            dst[d3 + t] = x1 - x3


@njit(cache=True, inline="always")
def _output_rows(src, s, dst, d, n, bias, lo, hi, k):
    """dst[d[r] + t] = clip(bias + (A^T x_t)[r], lo, hi) for x_t as in _input_rows (a = len(s)), t < n: one
    1-D pass of the output transform, A^T spelled out (m = 4: F(4,3); m = 2: F(2,3))."""
    two, four, eight = k[0], k[1], k[3]
    s0, s1, s2, s3, s4, s5 = _offsets(s)
    d0, d1, d2, d3, _, _ = _offsets(d)
    if s.shape[0] == 6:
        for t in range(uint64(n)):
            x0, x1, x2, x3, x4, x5 = src[s0 + t], src[s1 + t], src[s2 + t], src[s3 + t], src[s4 + t], src[s5 + t]
            e, f, g, h = x1 + x2, x1 - x2, x3 + x4, x3 - x4
            dst[d0 + t] = min(max(bias + x0 + e + g, lo), hi)
            dst[d1 + t] = min(max(bias + f + two * h, lo), hi)
            dst[d2 + t] = min(max(bias + e + four * g, lo), hi)
            dst[d3 + t] = min(max(bias + f + eight * h + x5, lo), hi)
    else:
        for t in range(uint64(n)):
            x0, x1, x2, x3 = src[s0 + t], src[s1 + t], src[s2 + t], src[s3 + t]
            dst[d0 + t] = min(max(bias + x0 + x1 + x2, lo), hi)
            dst[d1 + t] = min(max(bias + x1 - x2 - x3, lo), hi)


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
        _output_rows(mm, s, tmp, d, tiles, k[6], k[4], k[5], k)
    for i in range(m):
        for j in range(a):
            s[j] = (i * a + j) * tiles
        for j in range(m):
            d[j] = (i * m + j) * tiles
        _output_rows(tmp, s, out, d, tiles, bias, lo, hi, k)
    oh, ow = y.shape
    full, n = uint64(ow // m), uint64(tiles)
    for oy in range(oh):
        r = uint64((oy % m) * m * tiles + (oy // m) * wq)
        if m == 4:
            for tx in range(full):
                y[oy, 4 * tx], y[oy, 4 * tx + 1] = out[r + tx], out[r + n + tx]
                y[oy, 4 * tx + 2], y[oy, 4 * tx + 3] = out[r + 2 * n + tx], out[r + 3 * n + tx]
        else:
            for tx in range(full):
                y[oy, 2 * tx], y[oy, 2 * tx + 1] = out[r + tx], out[r + n + tx]
        for jj in range(ow - ow // m * m):  # a last tile cut by the output's edge
            y[oy, full * uint64(m) + uint64(jj)] = out[r + uint64(jj) * n + full]


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


class WinogradConv:
    """The conv2d of geometry g (3x3, stride 1, one group) by F(m x m, 3 x 3) from the transformed filter
    u [a*a, O, C], clipped to ``bounds`` (a fused relu or clip), on every worker of numba's pool:
    ``run(x, u, b)`` returns the result; ``into`` and ``bind`` write it into a given buffer (the
    output-buffer protocol of backend/registry.py)."""

    def __init__(self, g, m: int, dtype, bounds=(-np.inf, np.inf)):
        if m not in (2, 4):
            raise UnsupportedError(f"no Winograd kernel for output tiles of {m}; F(2,3) and F(4,3) have one")
        self.g, self.m, self.dtype = g, m, np.dtype(dtype)
        self.k = frozen(np.array([2, 4, 5, 8, -np.inf, np.inf, 0]), dtype)
        self.lo, self.hi = (self.dtype.type(v) for v in bounds)
        th, tw = -(-g.oh // m), -(-g.ow // m)
        # phase planes: the padded input, one more column of tiles for the patches' overlap (so the tiles of
        # a row are wq apart), and two more rows, which the runs of the last tile row reach into
        self.hq, self.wq = max(th + 2, -(-(g.ph + g.h) // m)), max(tw + 1, -(-(g.pw + g.w) // m))
        self.tiles = th * self.wq

    def __call__(self, x, u, b=None):
        y = np.empty((self.g.n, self.g.o, self.g.oh, self.g.ow), self.dtype)
        self.into(y, x, u, b)
        return y

    def into(self, y, x, u, b=None):
        """Write the conv of x by u (+ b), clipped, into y [N, O, OH, OW] (C-contiguous, of the dtype)."""
        self.bind(y, x, u, b)[0]()

    def bind(self, y, x, u, b=None):
        """``(call, ())`` writing the conv into y for arrays that stay where they are: the operands converted
        once; each call splits the input into the thread's scratch planes and runs the kernel."""
        g, m, a, dtype = self.g, self.m, self.m + 2, self.dtype
        x, u = frozen(x, dtype), frozen(u, dtype)
        bias = frozen(np.zeros(g.o, dtype) if b is None else b, dtype)
        threads, shape = current_threads(), (g.n, g.c, m * m * self.hq * self.wq)

        def call():
            planes = phase_planes(x, g.ph, g.pw, m, m, self.hq, self.wq).reshape(shape)
            v = scratch("v", (a * a, g.c, g.n * self.tiles), dtype)
            mm = scratch("m", (a * a, g.o, g.n * self.tiles), dtype)
            winograd(planes, u, bias, self.lo, self.hi, y, v, mm, m, self.wq, self.k, threads)
        return call, ()


def winograd_conv(g, m: int, dtype, bounds=(-np.inf, np.inf)) -> WinogradConv:
    """The Winograd kernel of a conv2d of geometry g by F(m x m, 3 x 3) (see ``WinogradConv``)."""
    return WinogradConv(g, m, dtype, bounds)
