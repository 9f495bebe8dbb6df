"""The Winograd kernel (kernels/cpu/winograd.py) and the stride-phase split it shares with im2col: the
split against numpy padding and slicing; F(2,3) and F(4,3) writing into a given buffer (poisoned with NaN)
against the float64 correlation, on few and many tiles, ragged edges, batches, fused relu/clip bounds and
float64; whole models through the output-buffer protocol against onnxruntime and the reference."""
import numpy as np
import pytest
from onnx import helper

import irc
from irc.backend.registry import lowering
from irc.kernels.cpu.conv import Geometry
from irc.kernels.cpu.winograd import split_phases, winograd_conv
from irc.ops.nn import conv2d, winograd_filter
from tests.test_ops_conv_gemm import chain_model, rand
from tests.util import check_model


# (x shape, pads before (rows, columns), strides, extra plane rows and columns beyond the padded input)
SPLIT_CASES = {
    "stride1_pad1": ((1, 3, 5, 7), (1, 1), (1, 1), (1, 0)),
    "winograd_f4_pad1": ((2, 2, 11, 13), (1, 1), (4, 4), (2, 1)),
    "winograd_f2_pad_left2": ((1, 3, 9, 6), (0, 2), (2, 2), (2, 1)),
    "stride32_pad21": ((1, 2, 10, 9), (2, 1), (3, 2), (0, 3)),
    "stride14_no_pad": ((2, 1, 6, 17), (0, 0), (1, 4), (1, 2)),
    "pad_wider_than_stride": ((1, 1, 4, 4), (3, 3), (2, 2), (0, 0)),
}


@pytest.mark.parametrize("name", list(SPLIT_CASES))
def test_split_phases_is_padding_then_strided_slicing(name):
    """planes[n, c, a*sw + b] is the zero-padded image at rows a, a + sh, ... and columns b, b + sw, ...;
    every element is written (the planes start poisoned with NaN)."""
    shape, (ph, pw), (sh, sw), (extra_r, extra_q) = SPLIT_CASES[name]
    x = rand(shape, len(name))
    hq, wq = -(-(ph + shape[2]) // sh) + extra_r, -(-(pw + shape[3]) // sw) + extra_q
    padded = np.zeros(shape[:2] + (hq * sh, wq * sw), np.float32)
    padded[:, :, ph:ph + shape[2], pw:pw + shape[3]] = x
    want = np.stack([padded[:, :, a::sh, b::sw] for a in range(sh) for b in range(sw)], axis=2)
    planes = np.full(shape[:2] + (sh * sw, hq * wq), np.nan, np.float32)
    split_phases(x, planes, ph, pw, sh, sw, wq)
    np.testing.assert_array_equal(planes, want.reshape(planes.shape))


# bounds on the error against the float64 correlation, relative to its largest value: F(2,3) rounds like
# im2col, F(4,3)'s transforms amplify rounding by their larger entries
BOUND = {(2, np.float32): 4e-6, (4, np.float32): 5e-5, (2, np.float64): 1e-13, (4, np.float64): 1e-12}

# (n, c, h, w, o, (pad top, left, bottom, right), (lo, hi) of a fused relu or clip)
KERNEL_CASES = {
    "many_tiles_pad1": (1, 16, 45, 47, 8, (1, 1, 1, 1), (-np.inf, np.inf)),
    "few_tiles_relu_batch2": (2, 24, 6, 7, 20, (1, 1, 1, 1), (0.0, np.inf)),
    "14x14_clip": (1, 32, 14, 14, 16, (1, 1, 1, 1), (0.0, 6.0)),
    "ragged_asym_pads_batch3": (3, 5, 17, 10, 6, (2, 0, 1, 2), (-1.0, 1.0)),
    "one_tile_no_pad": (1, 4, 4, 4, 3, (0, 0, 0, 0), (0.0, np.inf)),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("name", list(KERNEL_CASES))
def test_winograd_writes_the_clipped_convolution_into_the_buffer(name, m, dtype):
    n, c, h, w, o, (pt, pl, pb, pr), bounds = KERNEL_CASES[name]
    rng = np.random.default_rng(len(name) + m)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = (rng.standard_normal((o, c, 3, 3)) / (3 * np.sqrt(c))).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    oh, ow = h + pt + pb - 2, w + pl + pr - 2
    run = winograd_conv(Geometry(n, c, h, w, o, oh, ow, 1, 3, 3, 1, 1, 1, 1, pt, pl), m, dtype, bounds)
    y = np.full((n, o, oh, ow), np.nan, dtype)
    run.into(y, x, winograd_filter(wt, m), b)
    ref = conv2d(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64), pads=[pt, pl, pb, pr],
                 strides=[1, 1], dilations=[1, 1], group=1, auto_pad="NOTSET", winograd_m=None)
    ref = np.clip(ref, *bounds)
    err = np.abs(y - ref).max() / np.abs(ref).max()
    assert err <= BOUND[m, dtype], err
    np.testing.assert_array_equal(run(x, winograd_filter(wt, m), b), y)


def _n(op, ins, out, **attrs):
    return helper.make_node(op, ins, [out], **attrs)


# (x shape, channels out, conv attributes, nodes after the conv "c" giving "y", residual "r" shape, tile size)
MODEL_CASES = {
    "f4_relu_odd_batch2": ((2, 16, 23, 21), 24, {"pads": [1, 1, 1, 1]}, [_n("Relu", ["c"], "y")], None, 4),
    "f4_residual_relu": ((1, 16, 24, 24), 16, {"pads": [1, 1, 1, 1]},
                         [_n("Add", ["c", "r"], "s"), _n("Relu", ["s"], "y")], (1, 16, 24, 24), 4),
    "f2_clip_14x14": ((1, 32, 14, 14), 32, {"pads": [1, 1, 1, 1]}, [_n("Clip", ["c", "lo", "hi"], "y")], None, 2),
    "f2_no_epilogue_unpadded": ((2, 16, 12, 11), 16, {}, [_n("Identity", ["c"], "y")], None, 2),
}


@pytest.mark.parametrize("name", list(MODEL_CASES))
def test_winograd_models_write_into_the_arena(name):
    """Compiled models take the Winograd form the cost rule picks, lower to a kernel with ``into`` (so the
    plan puts its result in the arena) and agree with onnxruntime and the reference interpreter."""
    x_shape, o, attrs, after, r_shape, m = MODEL_CASES[name]
    feeds = {"x": rand(x_shape, 0), **({} if r_shape is None else {"r": rand(r_shape, 3)})}
    consts = {"w": rand((o, x_shape[1], 3, 3), 1) / np.float32(3 * np.sqrt(x_shape[1])), "b": rand((o,), 2),
              "lo": np.array(0, np.float32), "hi": np.array(1.5, np.float32)}
    model = chain_model([_n("Conv", ["x", "w", "b"], "c", **attrs)] + after, feeds, consts)
    [node] = [n for n in irc.compile(model).graph.nodes if n.op == "conv2d"]
    assert (node.attrs["algo"], node.attrs["winograd_m"]) == ("winograd", m)
    kernel = lowering("conv2d").fn(node)
    assert kernel.algo == "winograd" and kernel.into is not None
    check_model(model, feeds)
