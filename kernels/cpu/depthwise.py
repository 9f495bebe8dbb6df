"""Direct convolution of grouped convs with few channels per group (depthwise above all), and the
phase-split planes it shares with the window pools (pool.py).

A conv2d whose groups read few input channels (one, for depthwise) would run one tiny GEMM per group
through im2col + BLAS; ``grouped_direct`` computes it directly instead, in parallel over (image, group).

Phase-split planes: each input channel is copied once into a padded plane that is split by stride
phase: the plane of phase (a, b) holds the padded input's rows a, a + sh, ... and columns b, b + sw, ...,
each row ``wq`` wide. Tap (i, j) of output (yy, p) then is element q + (i*dh // sh)*wq + (j*dw // sw) of
the flat plane of phase ((i*dh) % sh, (j*dw) % sw), where q = yy*wq + p: every tap is one contiguous
loop over a run of outputs, the same for border and interior (the padding is in the plane), with no
branch and no index arithmetic inside. A run covers a few whole output rows (about SEGMENT outputs, so
that its accumulator stays in L1) and is computed as a whole number of VECTOR-wide chunks on the padded
row pitch: the wq - OW columns past each output row and the chunk's tail are computed into scratch and
dropped. Small maps (7x7, 14x14) so still run full vectors: their flat run is many rows long, where a
loop per output row would be a scalar loop of 7 or 14. Maps narrower than NARROW are filled and stored
by one gathering loop each instead of a short loop per row.

Flat column phases (``flat_layout``): where the input width is a multiple of the column stride sw and the
output is no wider than W/sw (MobileNet's 'same' convs and its stride-2 convs, ConvNeXt's 7x7) the planes
are skipped: the channel is split, as one loop over all of it, into its sw column phases (a copy for
sw = 1, a de-interleave for 2), each wq = W/sw wide and unpadded, after a run of zeros. The flat outputs
take the row pitch sh*wq, so that tap (i, j) of every output is again one fixed offset: a row above or
below the input falls into zeros, and a tap whose column falls outside its row (it would read the
neighbouring row) is masked off by a table worked out at lowering, which compiles to masked vector loads.
With sh = 1 the pitch is the output's, which is stored in one contiguous loop; with sh = 2 the outputs
between two output rows are computed and dropped, which measured faster than the planes' per-row copies
(1.5-1.7x on MobileNetV2's stride-2 convs) and than a segment per output row. Measured on MobileNetV2's
14x14 and 7x7 maps, the stride-1 form runs 2-2.5x faster than the planes.

The convolution runs nine taps per pass (``_taps9``: a 3x3 window in one pass; larger windows in
several, the weight padded with zero taps by ``pack_taps``), the bias as the accumulator's start, and a
fused relu or clip (ReLU6) as the result is stored (``clamp_epilogue``). Scratch (the planes and the
accumulator) is allocated once per worker and reused for its channels; padding is written once, since
every channel fills the same interior.
"""
import numpy as np
from numba import njit, prange

from ...ops.nn import epilogue_steps
from ...runtime import threads
from .gemm import frozen

# outputs per step of the tap loops: one 512-bit vector of float32, two of float64
VECTOR = 16
# outputs computed per pass of the taps: a few KiB of accumulator, so that it stays in L1 across the taps
SEGMENT = 1024
# maps narrower than this fill their planes and store their rows by gathering (see _gather_tables)
NARROW = 32


@njit(cache=True)
def plane_plan(h, w, oh, ow, kh, kw, sh, sw, dh, dw, ph, pw):
    """The layout of the phase-split padded plane of an input channel [H, W] for a window of kh x kw
    taps (see the module docstring), all divisions done here, once per call. A tuple of
    - size: the plane's length, sh*sw phases of hq rows of wq, enough for every tap of every output,
      chunk tails included;
    - wq: the row pitch, shared by the flat outputs; rows: output rows per segment (about SEGMENT);
    - sh, sw: the strides;
    - fills [sh*sw, 5]: per phase (first element, rows, first input row, first input column, columns) of
      the input that lands in it, rows sh and columns sw apart in the input;
    - offsets [kh*kw]: tap (i, j)'s element for flat output 0;
    - index, store: for a narrow map the gathering tables (``_gather_tables``), else empty."""
    wq = -(-max(pw + w, (ow - 1) * sw + (kw - 1) * dw + 1) // sw)
    hq = max(-(-(ph + h) // sh), oh + (kh - 1) * dh // sh + 2)
    phase = hq * wq + VECTOR
    fills = np.zeros((sh * sw, 5), np.int64)
    for a in range(sh):
        r_lo, r_hi = max(0, -(-(ph - a) // sh)), -(-(h + ph - a) // sh)
        for b in range(sw):
            c_lo, c_hi = max(0, -(-(pw - b) // sw)), -(-(w + pw - b) // sw)
            fills[a * sw + b] = ((a * sw + b) * phase + r_lo * wq + c_lo, max(0, r_hi - r_lo),
                                 r_lo * sh + a - ph, c_lo * sw + b - pw, max(0, c_hi - c_lo))
    offsets = np.empty(kh * kw, np.int64)
    for i in range(kh):
        for j in range(kw):
            a, b = (i * dh) % sh, (j * dw) % sw
            offsets[i * kw + j] = (a * sw + b) * phase + (i * dh // sh) * wq + j * dw // sw
    size, rows = sh * sw * phase, min(oh, max(1, SEGMENT // wq))
    index, store = _gather_tables(size if w < NARROW else 0, fills, wq, sh, sw, w, rows, ow)
    return size, wq, rows, sh, sw, fills, offsets, index, store


@njit(cache=True)
def _gather_tables(size, fills, wq, sh, sw, w, rows, ow):
    """(index, store): plane[k] = src[index[k]] (-1: padding) fills the whole phase-split plane from the
    flat input channel src [H*w], and out[p] = acc[store[p]] takes ``rows`` output rows of ``ow`` out of
    the accumulator's pitch wq. Empty tables for size 0."""
    index = np.full(size, -1, np.int64)
    for f in range(fills.shape[0] if size else 0):
        start, n_rows, row0, col0, count = fills[f, 0], fills[f, 1], fills[f, 2], fills[f, 3], fills[f, 4]
        for r in range(n_rows):
            for k in range(count):
                index[start + r * wq + k] = (row0 + r * sh) * w + col0 + k * sw
    store = np.empty(rows * ow if size else 0, np.int64)
    for p in range(store.shape[0]):
        store[p] = (p // ow) * wq + p % ow
    return index, store


@njit(cache=True, inline="always")
def _deinterleave(row, even, odd):
    """even[k], odd[k] = row[2k], row[2k + 1]: both column phases of stride 2 in one pass, which
    compiles to wide loads and shuffles (one phase alone would be a gather)."""
    for k in range(odd.shape[0]):
        even[k] = row[2 * k]
        odd[k] = row[2 * k + 1]
    if even.shape[0] > odd.shape[0]:
        even[odd.shape[0]] = row[2 * odd.shape[0]]


@njit(cache=True)
def _fill_rows(src, plane, fills, wq, sh, sw):
    """Copy the input channel src [H, W] into its phase-split plane row by row; the padding positions
    are left as they are. Loops index slices from 0, so that numba adds no negative-index fix-up and
    LLVM vectorizes them."""
    for f in range(0, fills.shape[0], 2 if sw == 2 else 1):
        start, rows, row0, col0, count = fills[f, 0], fills[f, 1], fills[f, 2], fills[f, 3], fills[f, 4]
        for r in range(rows):
            dst = plane[start + r * wq:start + r * wq + count]
            if sw == 1:
                row = src[row0 + r * sh, col0:col0 + count]
                for k in range(count):
                    dst[k] = row[k]
            elif sw == 2:  # phases f and f + 1 (column phases 0 and 1 of one row phase) at once
                other = plane[fills[f + 1, 0] + r * wq:fills[f + 1, 0] + r * wq + fills[f + 1, 4]]
                if col0 == 0:
                    _deinterleave(src[row0 + r * sh], dst, other)
                else:
                    _deinterleave(src[row0 + r * sh], other, dst)
            else:
                row = src[row0 + r * sh, col0::sw]
                for k in range(count):
                    dst[k] = row[k]


@njit(cache=True, inline="always")
def _gather(dst, src, index, pad):
    """dst[k] = src[index[k]], or ``pad`` (a scalar of dst's dtype) where index[k] < 0, over dst's length
    (at most index's); a loop LLVM vectorizes into masked gathers."""
    for k in range(dst.shape[0]):
        i = index[k]
        dst[k] = src[max(i, 0)] if i >= 0 else pad


@njit(cache=True, inline="always")
def load_plane(plan, src, plane, pad):
    """plane = the phase-split plane (``plan`` from plane_plan) of the C-contiguous input channel src
    [H, W], padded with ``pad`` (a scalar of the plane's dtype): gathered for a narrow map, else copied
    row by row into a plane whose padding already holds ``pad``."""
    wq, sh, sw, fills, index = plan[1], plan[3], plan[4], plan[5], plan[7]
    if index.shape[0]:
        _gather(plane, src.reshape(src.size), index, pad)
    else:
        _fill_rows(src, plane, fills, wq, sh, sw)


@njit(cache=True, inline="always")
def _clamp(v, lo, hi):
    """v limited to [lo, hi] as numpy's maximum then minimum (a NaN stays); lo = -inf, hi = inf keep v."""
    v = v if (v > lo) | (v != v) else lo
    return v if (v < hi) | (v != v) else hi


@njit(cache=True, inline="always")
def store_segment(plan, acc, dst, flat, lo, hi):
    """dst [r, OW] = the r output rows in the accumulator acc (row pitch wq), limited to [lo, hi] (a fused
    relu or clip; -inf and inf for none); ``flat`` is dst as one contiguous run, which a narrow map's
    gathering loop writes."""
    wq, store = plan[1], plan[8]
    if store.shape[0]:
        for p in range(flat.shape[0]):
            flat[p] = _clamp(acc[store[p]], lo, hi)
        return
    for r in range(dst.shape[0]):
        row, src = dst[r], acc[r * wq:r * wq + dst.shape[1]]
        for p in range(row.shape[0]):
            row[p] = _clamp(src[p], lo, hi)


@njit(cache=True, inline="always")
def _taps9(acc, plane, w, offsets, n):
    """acc[k] += the sum over 9 taps t of w[t] * plane[offsets[t] + k], for k < n rounded up to a whole
    number of VECTOR-wide chunks (the buffers have that slack). Nine taps per pass (a 3x3 window in one)
    read and write the accumulator once per nine multiply-adds, and the loop never runs its scalar
    remainder. The nine sources are slices of one plane, so LLVM's overlap check is one comparison."""
    w0, w1, w2, w3, w4, w5, w6, w7, w8 = w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], w[8]
    s0, s1, s2 = plane[offsets[0]:], plane[offsets[1]:], plane[offsets[2]:]
    s3, s4, s5 = plane[offsets[3]:], plane[offsets[4]:], plane[offsets[5]:]
    s6, s7, s8 = plane[offsets[6]:], plane[offsets[7]:], plane[offsets[8]:]
    for k in range((n + VECTOR - 1) // VECTOR * VECTOR):
        acc[k] += (w0 * s0[k] + w1 * s1[k] + w2 * s2[k] + w3 * s3[k] + w4 * s4[k] + w5 * s5[k]
                   + w6 * s6[k] + w7 * s7[k] + w8 * s8[k])


@njit(cache=True, inline="always")
def _taps9_masked(acc, plane, w, offsets, masks, z, n):
    """_taps9 where each tap t reads plane[offsets[t] + k] only where masks[t, k], else z (0): the taps of
    a flat, unpadded channel whose column runs past its row (``flat_layout``)."""
    w0, w1, w2, w3, w4, w5, w6, w7, w8 = w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], w[8]
    s0, s1, s2 = plane[offsets[0]:], plane[offsets[1]:], plane[offsets[2]:]
    s3, s4, s5 = plane[offsets[3]:], plane[offsets[4]:], plane[offsets[5]:]
    s6, s7, s8 = plane[offsets[6]:], plane[offsets[7]:], plane[offsets[8]:]
    m0, m1, m2, m3, m4, m5, m6, m7, m8 = masks[0], masks[1], masks[2], masks[3], masks[4], masks[5], \
        masks[6], masks[7], masks[8]
    for k in range((n + VECTOR - 1) // VECTOR * VECTOR):
        acc[k] += (w0 * (s0[k] if m0[k] else z) + w1 * (s1[k] if m1[k] else z) + w2 * (s2[k] if m2[k] else z)
                   + w3 * (s3[k] if m3[k] else z) + w4 * (s4[k] if m4[k] else z) + w5 * (s5[k] if m5[k] else z)
                   + w6 * (s6[k] if m6[k] else z) + w7 * (s7[k] if m7[k] else z) + w8 * (s8[k] if m8[k] else z))


def flat_layout(g, taps):
    """(masks, layout, offsets) of the flat column phases (see the module docstring) of a conv of geometry g
    (conv.Geometry) whose packed weight has ``taps`` taps, or None where they do not apply (a column stride
    above 2, an input width that is not a multiple of it, an output wider than a phase). Worked out at
    lowering:
    - layout (size, pitch, rows, guard, region, phases, count): the per-channel buffer's length, the flat
      outputs' row pitch sh*wq (wq = W/sw, a phase's width), output rows per segment, the zeros before
      each phase's data, the distance between phases, sw, and a phase's H*wq elements;
    - offsets[t]: tap t's element for flat output 0 (the zero-weight padding taps read the first phase);
    - masks[t, q]: whether tap t's column is inside the input for flat output q (False for the padding
      taps), which compiles to masked vector loads."""
    if g.sw > 2 or g.w % g.sw or g.ow > g.w // g.sw:
        return None
    wq = g.w // g.sw
    pitch = g.sh * wq
    # about SEGMENT outputs per segment; with sh > 1 the pitch spans sh input rows, and the outputs between
    # are computed and dropped (measured faster than a segment per output row, even at 56 wide)
    rows = min(g.oh, max(1, SEGMENT // pitch))
    tap = np.arange(g.kh * g.kw)
    col = (tap % g.kw) * g.dw - g.pw
    shift = (tap // g.kw * g.dh - g.ph) * wq + col // g.sw  # (floor division: the phase's column)
    guard = max(0, -int(shift.min()))
    region = guard + max(g.h * wq, max(0, int(shift.max())) + g.oh * pitch + VECTOR)
    offsets = np.full(taps, guard, np.int64)
    offsets[:tap.size] = (col % g.sw) * region + guard + shift
    p = np.arange(g.oh * pitch + VECTOR) % pitch
    masks = np.zeros((taps, p.size), np.bool_)
    for t in tap:
        masks[t] = (p + col[t] // g.sw >= 0) & (p + col[t] // g.sw < wq)
    return masks, (g.sw * region, pitch, rows, guard, region, g.sw, g.h * wq), offsets


@njit(cache=True, inline="always")
def _fill_flat(src, plane, guard, region, phases, n):
    """Column phase b of the flat input channel src [H*W] (columns b, b + sw, ...: n = H*W/sw elements) into
    plane[b*region + guard:], for the ``phases`` = sw (1 or 2) phases: a copy or a de-interleave, one loop
    over the whole channel."""
    if phases == 1:
        _copy(plane[guard:guard + n], src)
    else:
        _deinterleave(src, plane[guard:guard + n], plane[region + guard:region + guard + n])


def clamp_epilogue(node):
    """(lo, hi) when node's fused epilogue is a single relu or clip, which ``grouped_direct`` applies as it
    stores its result (measured 8-21% of a MobileNetV2 depthwise conv as a separate pass); else None."""
    steps = epilogue_steps(node.attrs)
    if len(steps) != 1 or steps[0][0] not in ("relu", "clip"):
        return None
    if steps[0][0] == "relu":
        return 0.0, np.inf
    lo, hi = node.attrs.get("clip_min"), node.attrs.get("clip_max")
    return (-np.inf if lo is None else float(lo)), (np.inf if hi is None else float(hi))


def pack_taps(w: np.ndarray) -> np.ndarray:
    """The weight [O, C/g, kh, kw] as [O, C/g, taps]: its kh*kw taps in row-major order, then taps of
    weight 0 up to a multiple of 9 (the kernel runs nine taps per pass)."""
    o, cg, kh, kw = w.shape
    taps = np.zeros((o, cg, -(-kh * kw // 9) * 9), w.dtype)
    taps[:, :, :kh * kw] = w.reshape(o, cg, kh * kw)
    return taps


@njit(cache=True, inline="always")
def _segment(planes, w, bias, offsets, masks, z, acc, q0, n):
    """acc = bias + every tap of the weights w [C/g, taps] of one output channel over the flat outputs
    q0 .. q0 + n of its group's planes (masked taps where ``masks`` has rows, see flat_layout; z is a zero
    of the planes' dtype)."""
    for k in range(acc.shape[0]):
        acc[k] = bias
    for ci in range(w.shape[0]):
        for t in range(0, w.shape[1], 9):
            if masks.shape[0]:
                _taps9_masked(acc, planes[ci, q0:], w[ci, t:t + 9], offsets[t:t + 9], masks[t:t + 9, q0:], z, n)
            else:
                _taps9(acc, planes[ci, q0:], w[ci, t:t + 9], offsets[t:t + 9], n)


@njit(cache=True, inline="always")
def _copy(dst, src):
    """dst = src (one contiguous loop, indices from 0: vector copies)."""
    for k in range(dst.shape[0]):
        dst[k] = src[k]


@njit(cache=True, inline="always")
def _store_flat(acc, dst, lo, hi):
    """dst = acc[:len(dst)] limited to [lo, hi]: outputs whose row pitch is the output's own."""
    for p in range(dst.shape[0]):
        dst[p] = _clamp(acc[p], lo, hi)


@njit(cache=True, inline="always")
def _store_rows(plan, acc, dst, run, flat, pitch, lo, hi):
    """dst [r, OW] (``run``: the same as one contiguous run) = the r output rows in the accumulator acc of
    row pitch ``pitch``, limited to [lo, hi]: one contiguous loop where the pitch is the output's, else a
    loop per row for the flat column phases (``flat``), else ``store_segment`` (phase-split planes)."""
    if pitch == dst.shape[1]:
        _store_flat(acc, run, lo, hi)
    elif flat:
        for r in range(dst.shape[0]):
            _store_flat(acc[r * pitch:], dst[r], lo, hi)
    else:
        store_segment(plan, acc, dst, run, lo, hi)


@njit(cache=True, parallel=True, fastmath={"contract"})
def grouped_direct(x, w, b, y, masks, plan, layout, offsets, lo, hi, workers):
    """y [N, O, OH, OW] = b + the grouped convolution of x [N, C, H, W] with the weight w [O, C/g, taps]
    (``pack_taps``), limited to [lo, hi] (``clamp_epilogue``), computed directly (no GEMM) in parallel over
    (image, group) by up to ``workers`` threads: on flat column phases where ``masks`` has rows
    (``flat_layout``, which also gives layout and offsets), else on phase-split planes (``plan``; layout
    (size, pitch, rows, ...) and offsets from ``conv_layout``). See the module docstring."""
    n_img, c_in, h, wd = x.shape
    o_all, cg = w.shape[0], w.shape[1]
    groups, oh, ow = c_in // cg, y.shape[2], y.shape[3]
    og = o_all // groups
    flat, zero = masks.shape[0] > 0, np.zeros(1, x.dtype)[0]
    size, pitch, rows, guard, region, phases, n_phase = layout
    xf, yf = x.reshape((n_img, c_in, h * wd)), y.reshape((n_img, o_all, oh * ow))
    items = n_img * groups
    workers = min(items, workers)
    for t in prange(workers):
        planes = np.zeros((cg, size), x.dtype)
        acc = np.empty(rows * pitch + VECTOR, y.dtype)
        for item in range(t * items // workers, (t + 1) * items // workers):
            n, g = item // groups, item % groups
            for ci in range(cg):
                if flat:
                    _fill_flat(xf[n, g * cg + ci], planes[ci], guard, region, phases, n_phase)
                else:
                    load_plane(plan, x[n, g * cg + ci], planes[ci], zero)
            for o in range(g * og, (g + 1) * og):
                for y0 in range(0, oh, rows):
                    r_n = min(rows, oh - y0)
                    _segment(planes, w[o], b[o], offsets, masks, zero, acc, y0 * pitch, r_n * pitch)
                    _store_rows(plan, acc, y[n, o, y0:y0 + r_n], yf[n, o, y0 * ow:(y0 + r_n) * ow], flat, pitch, lo, hi)


def conv_layout(g, taps):
    """(masks, plan, layout, offsets) that ``grouped_direct`` reads for a conv of geometry g (conv.Geometry)
    whose packed weight has ``taps`` taps: the flat column phases where they apply (``flat_layout``), else
    the phase-split planes (``plane_plan``), with layout (size, row pitch, rows per segment, 0, 0, 0, 0) and
    the per-tap offsets."""
    plan = plane_plan(g.h, g.w, g.oh, g.ow, *g.window())  # (passed on either way: one compiled signature)
    flat = flat_layout(g, taps)
    if flat is not None:
        masks, layout, offsets = flat
        return masks, plan, layout, offsets
    offsets = np.zeros(taps, np.int64)
    offsets[:g.kh * g.kw] = plan[6]  # (the zero-weight padding taps read offset 0)
    return np.zeros((0, 0), np.bool_), plan, (plan[0], plan[1], plan[2], 0, 0, 0, 0), offsets


class DirectConv:
    """A grouped conv of geometry g (conv.Geometry) through ``grouped_direct``, its layout worked out once:
    ``into(out, x, w, b)`` and ``bind`` write the result into out (the output-buffer protocol of
    irc.backend.registry), calling it makes a fresh result. weight(w) gives the packed weight
    (``pack_taps``), bias(b) the bias, bounds the fused clamp (lo, hi)."""

    def __init__(self, g, weight, bias, dtype, bounds):
        self.shape, self.dtype = (g.n, g.o, g.oh, g.ow), np.dtype(dtype)
        self.weight, self.bias, self.bounds = weight, bias, bounds
        self.masks, self.plan, self.layout, self.offsets = conv_layout(g, -(-g.kh * g.kw // 9) * 9)

    def bind(self, out, x, w, b=None):
        """(call, ()) writing the conv of x by w (+ b), clipped, into ``out`` for arrays that stay where they
        are (irc.backend.registry's ``bind``): x converted once; the weight and bias are fetched per call
        (a constant's packed once, at lowering; an operand's contents change from run to run)."""
        x, tail = frozen(x, self.dtype), (self.masks, self.plan, self.layout, self.offsets, *self.bounds,
                                          threads.current())

        def call():
            grouped_direct(x, self.weight(w), self.bias(b), out, *tail)
        return call, ()

    def into(self, out, x, w, b=None):
        call, args = self.bind(out, x, w, b)
        call(*args)

    def __call__(self, x, w, b=None):
        y = np.empty(self.shape, self.dtype)
        self.into(y, x, w, b)
        return y


def direct_run(g, weight, bias, dtype, threads, bounds):
    """run(x, w, b) of a grouped conv of geometry g (conv.Geometry) through ``grouped_direct`` (a
    ``DirectConv``, which also writes into a given buffer): weight(w) gives the packed weight
    (``pack_taps``), bias(b) the bias, bounds the fused clamp. The thread count is the run's
    (``irc.runtime.threads.current``); ``threads`` is kept for callers that pass the lowering's."""
    return DirectConv(g, weight, bias, dtype, bounds)
