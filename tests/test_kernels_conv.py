"""The parallel convolution kernels: im2col / gemm1x1 (``gemm_conv``), Winograd and conv_transpose2d
(``gemm_col2im``), with their work cut into many tasks (small scratch, one and two workers), on strides,
pads, dilations, groups, batches and odd sizes; float32 against onnxruntime and the reference interpreter,
float64 (which onnxruntime's Conv lacks) against the reference interpreter."""
import numpy as np
import pytest
from onnx import helper

import irc
from irc.backend.registry import lowering
from irc.frontend import import_onnx
from irc.kernels.cpu import conv
from irc.kernels.cpu.conv import Geometry
from irc.kernels.cpu.winograd import winograd_conv
from irc.ops.interpret import interpret
from irc.ops.nn import conv2d, winograd_filter
from tests.test_ops_conv_gemm import _n, chain_model, conv_model, one_node, rand
from tests.util import assert_close, check_model, node_model


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    irc.set_num_threads(request.param)
    yield request.param
    irc.set_num_threads(None)


@pytest.fixture
def small_tasks(monkeypatch):
    """Tasks of a few KiB of scratch, 8 pixels and 4 channels at least: even small convs split into many."""
    monkeypatch.setattr(conv, "SCRATCH_BYTES", 4 << 10)
    monkeypatch.setattr(conv, "MIN_COLS", 8)
    monkeypatch.setattr(conv, "MIN_ROWS", 4)


def check(model, feeds, dtype, tol=1e-3):
    """float32: against onnxruntime and the reference; float64: against the reference only, tighter."""
    if dtype == np.float32:
        check_model(model, feeds, tol=tol)
        return
    got = irc.compile(model).run(feeds)
    for a, r in zip(got.values(), interpret(import_onnx(model), feeds)):
        assert_close(a, r, 1e-9)


# (x shape, w shape, attributes, algorithm)
GEMM_CONV_CASES = {
    "stem_7x7_stride2": ((1, 3, 23, 29), (8, 3, 7, 7), {"strides": [2, 2], "pads": [3, 3, 3, 3]}, "im2col"),
    "3x3_pad1_batch3": ((3, 12, 9, 11), (10, 12, 3, 3), {"pads": [1, 1, 1, 1]}, "im2col"),
    "few_pixels_split_channels": ((1, 16, 5, 5), (32, 16, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]},
                                  "im2col"),
    "groups2_dilated_asym": ((2, 20, 12, 11), (12, 10, 3, 3), {"group": 2, "dilations": [2, 1],
                                                              "pads": [2, 0, 1, 2]}, "im2col"),
    "kernel_2x5_stride31_dil12": ((1, 12, 17, 13), (10, 12, 2, 5), {"strides": [3, 1], "dilations": [1, 2],
                                                                   "pads": [0, 2, 1, 3]}, "im2col"),
    "stride_larger_than_kernel": ((2, 9, 13, 10), (7, 9, 2, 2), {"strides": [3, 4], "pads": [1, 0, 0, 2]},
                                  "im2col"),
    "1x1_stride2_in_place": ((2, 16, 10, 10), (24, 16, 1, 1), {"strides": [2, 2]}, "im2col"),
    "1x1_stride2_padded_in_place": ((1, 16, 7, 7), (8, 16, 1, 1), {"strides": [2, 2], "pads": [1, 1, 1, 1]},
                                    "im2col"),
    "1x1_stride23_pads": ((1, 16, 8, 9), (8, 16, 1, 1), {"strides": [2, 3], "pads": [0, 1, 2, 3]}, "im2col"),
    "gemm1x1_batch2_groups2": ((2, 32, 6, 7), (16, 16, 1, 1), {"group": 2}, "gemm1x1"),
    "pixel_gemm_batch3": ((3, 24, 1, 1), (40, 24, 1, 1), {}, "pixel-gemm"),
    "pixel_gemm_stride2": ((1, 24, 1, 1), (40, 24, 1, 1), {"strides": [2, 2]}, "pixel-gemm"),
    # one image of one column block: with two workers its channels are split and it is unrolled once
    "gemm1x1_few_pixels_split_channels": ((1, 24, 3, 3), (40, 24, 1, 1), {}, "gemm1x1"),
    "dilated_asym_few_pixels_split_channels": ((1, 12, 6, 5), (22, 12, 3, 3), {"dilations": [2, 2],
                                                                               "pads": [2, 1, 1, 2]}, "im2col"),
    "output_one_pixel": ((2, 10, 3, 3), (6, 10, 3, 3), {}, "im2col"),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", list(GEMM_CONV_CASES))
def test_gemm_conv_in_many_tasks(name, dtype, small_tasks, threads):
    x_shape, w_shape, attrs, algo = GEMM_CONV_CASES[name]
    model, feeds = conv_model("Conv", x_shape, w_shape, attrs, bias=True, seed=len(name), dtype=dtype)
    assert lowering("conv2d").fn(one_node(model)).algo == algo
    check(model, feeds, dtype)


@pytest.mark.parametrize("name", ["stem_7x7_stride2", "3x3_pad1_batch3", "gemm1x1_batch2_groups2"])
def test_gemm_conv_default_tasks_and_no_bias(name):
    x_shape, w_shape, attrs, _ = GEMM_CONV_CASES[name]
    check_model(*conv_model("Conv", x_shape, w_shape, attrs, bias=False, seed=3))


@pytest.mark.parametrize("oh, ow, n, units, threads", [
    (112, 112, 1, 1, 2), (56, 56, 1, 1, 2), (28, 28, 1, 1, 2), (7, 7, 1, 1, 2), (7, 7, 3, 1, 2), (14, 14, 1, 2, 2),
    (5, 3, 1, 1, 1), (1, 1, 4, 1, 2)])
def test_gemm_blocks_cover_the_output_evenly(oh, ow, n, units, threads):
    """The tasks of _gemm_blocks tile every pixel and channel; with pixels to spare, their count is a
    multiple of the workers; with too few, the channels are split so that every worker has one, and a
    unit of one column block is unrolled once for all its tasks (shared)."""
    g = Geometry(n, 64 * units, oh, ow, 128 * units, oh, ow, units, 3, 3, 1, 1, 1, 1, 1, 1)
    cols, rows, shared = conv._gemm_blocks(g, g.cg * 9, 4, threads)
    p = oh * ow
    n_cols, n_rows = -(-p // cols), -(-g.og // rows)
    assert (n_cols - 1) * cols < p <= n_cols * cols and (n_rows - 1) * rows < g.og <= n_rows * rows
    assert cols >= min(p, conv.MIN_COLS) and rows >= min(g.og, conv.MIN_ROWS)
    tasks = n * units * n_cols * n_rows
    assert tasks >= threads
    if n_rows == 1 and n_cols > 1:
        assert tasks % threads == 0
    assert shared == (n_cols == 1 and n_rows > 1)


# Winograd kernel against the float64 correlation (bounds as in test_ops_conv_gemm: F(2,3) rounds like
# im2col, F(4,3)'s transforms amplify rounding by their larger entries)
WINOGRAD_BOUND = {(2, np.float32): 4e-6, (4, np.float32): 5e-5, (2, np.float64): 1e-13, (4, np.float64): 1e-12}

# (n, c, h, w, o, (pad top, left, bottom, right))
WINOGRAD_GEOMETRIES = {
    "one_tile_no_pad": (1, 4, 4, 4, 3, (0, 0, 0, 0)),
    "single_output_pixel": (2, 3, 3, 3, 5, (0, 0, 0, 0)),
    "ragged_both_sides_batch3": (3, 5, 11, 13, 6, (1, 1, 1, 1)),
    "asym_pads_wide": (2, 7, 6, 19, 4, (2, 0, 0, 2)),
    "tall_odd": (1, 16, 21, 5, 9, (1, 2, 1, 0)),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("name", list(WINOGRAD_GEOMETRIES))
def test_winograd_kernel_matches_direct_convolution(name, m, dtype, threads):
    n, c, h, w, o, (pt, pl, pb, pr) = WINOGRAD_GEOMETRIES[name]
    rng = np.random.default_rng(len(name) + m)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = (rng.standard_normal((o, c, 3, 3)) / (3 * np.sqrt(c))).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    oh, ow = h + pt + pb - 2, w + pl + pr - 2
    g = Geometry(n, c, h, w, o, oh, ow, 1, 3, 3, 1, 1, 1, 1, pt, pl)
    y = winograd_conv(g, m, dtype)(x, winograd_filter(wt, m), b)
    ref = conv2d(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64), pads=[pt, pl, pb, pr],
                 strides=[1, 1], dilations=[1, 1], group=1, auto_pad="NOTSET", winograd_m=None)
    assert y.dtype == dtype and y.shape == ref.shape
    err = np.abs(y - ref).max() / np.abs(ref).max()
    assert err <= WINOGRAD_BOUND[m, dtype], err


def test_winograd_kernel_refuses_other_tiles():
    g = Geometry(1, 4, 8, 8, 4, 8, 8, 1, 3, 3, 1, 1, 1, 1, 1, 1)
    with pytest.raises(irc.IrcError, match="output tiles of 3"):
        winograd_conv(g, 3, np.float32)


# (x shape, w shape, attributes)
CONV_TRANSPOSE_CASES = {
    "unet_up_2x2_stride2_batch2": ((2, 16, 5, 6), (16, 8, 2, 2), {"strides": [2, 2]}),
    "3x3_stride2_pads_output_padding": ((1, 12, 7, 5), (12, 10, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1],
                                                                         "output_padding": [1, 1]}),
    "groups2_dilated_stride12": ((2, 8, 4, 6), (8, 6, 3, 2), {"group": 2, "dilations": [2, 1],
                                                              "strides": [1, 2], "pads": [0, 1, 2, 0]}),
    "one_output_channel": ((1, 6, 5, 5), (6, 1, 3, 3), {}),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", list(CONV_TRANSPOSE_CASES))
def test_conv_transpose_in_many_tasks(name, dtype, small_tasks, threads):
    x_shape, w_shape, attrs = CONV_TRANSPOSE_CASES[name]
    check(*conv_model("ConvTranspose", x_shape, w_shape, attrs, bias=True, seed=len(name), dtype=dtype), dtype)


@pytest.mark.parametrize("op, w_shape, attrs, algo, out_shape", [
    ("Conv", (16, 16, 3, 3), {"pads": [1, 1, 1, 1]}, "winograd", (0, 16, 8, 8)),
    ("Conv", (8, 16, 3, 3), {"strides": [2, 2]}, "im2col", (0, 8, 3, 3)),
    ("Conv", (8, 16, 1, 1), {}, "gemm1x1", (0, 8, 8, 8)),
    ("ConvTranspose", (16, 4, 2, 2), {"strides": [2, 2]}, "gemm-col2im", (0, 4, 16, 16)),
])
def test_empty_batch_runs_no_task(op, w_shape, attrs, algo, out_shape):
    """A symbolic batch bound to 0 gives an empty result of the right shape, whatever the algorithm."""
    x = np.ones((1, 16, 8, 8), np.float32)
    w = np.random.default_rng(0).standard_normal(w_shape).astype(np.float32)   # distinct filters
    model = node_model(op, {"x": x}, attrs, consts={"w": w},
                       symbolic={"x": ["N", 16, 8, 8]})
    compiled = irc.compile(model)
    [node] = [n for n in compiled.graph.nodes if n.op.startswith("conv")]
    assert lowering(node.op).fn(node).algo == algo
    assert compiled.run({"x": np.zeros((0, 16, 8, 8), np.float32)})["out0"].shape == out_shape


# (x shape, w shape, conv attributes, activation nodes after the conv, algorithm)
ACTIVATION_CASES = {
    "im2col_relu": ((2, 6, 9, 8), (8, 6, 3, 3), {"strides": [2, 1], "pads": [1, 1, 1, 1]}, [("Relu", {})],
                    "im2col"),
    "gemm1x1_clip": ((1, 16, 5, 7), (12, 16, 1, 1), {}, [("Clip", {})], "gemm1x1"),
    "pixel_gemm_relu": ((2, 16, 1, 1), (8, 16, 1, 1), {}, [("Relu", {})], "pixel-gemm"),
    "winograd_f4_relu": ((2, 16, 22, 21), (16, 16, 3, 3), {"pads": [1, 1, 1, 1]}, [("Relu", {})], "winograd"),
    "winograd_f2_clip": ((1, 16, 9, 10), (24, 16, 3, 3), {"pads": [1, 0, 1, 2]}, [("Clip", {})], "winograd"),
    "im2col_leaky_relu_not_clamped": ((1, 4, 7, 7), (5, 4, 2, 2), {}, [("LeakyRelu", {"alpha": 0.1})], "im2col"),
}


@pytest.mark.parametrize("name", list(ACTIVATION_CASES))
def test_fused_relu_and_clip_applied_as_stored(name, small_tasks):
    """A conv's lone relu or clip (bounds 0 and 6) is clipped by the conv kernel itself as it stores."""
    x_shape, w_shape, attrs, acts, algo = ACTIVATION_CASES[name]
    op, act_attrs = acts[0]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], **attrs),
             helper.make_node(op, ["c", "lo", "hi"] if op == "Clip" else ["c"], ["y"], **act_attrs)]
    consts = {"w": rand(w_shape, 1), "b": rand((w_shape[0],), 2)}
    if op == "Clip":
        consts.update(lo=np.array(0, np.float32), hi=np.array(6, np.float32))
    inputs = {"x": rand(x_shape, 0) * 3}
    model = chain_model(nodes, inputs, consts)
    [node] = [n for n in irc.compile(model).graph.nodes if n.op == "conv2d"]
    assert lowering("conv2d").fn(node).algo == algo and len(node.attrs["epilogue"]) == 1
    check_model(model, inputs)


# (x shape, w shape, conv attributes, nodes after the conv "c" giving "y", residual "r" shape, algorithm)
INTO_CASES = {
    "im2col_no_epilogue": ((2, 5, 9, 8), (6, 5, 3, 3), {"strides": [2, 1], "pads": [1, 0, 1, 1]}, [], None,
                           "im2col"),
    "im2col_residual_relu": ((1, 6, 7, 7), (8, 6, 3, 3), {"pads": [1, 1, 1, 1], "dilations": [1, 1]},
                             [_n("Add", ["c", "r"], "s"), _n("Relu", ["s"], "y")], (1, 8, 7, 7), "im2col"),
    "shared_unroll_relu": ((1, 16, 4, 4), (64, 16, 3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2]},
                           [_n("Relu", ["c"], "y")], None, "im2col"),
    "gemm1x1_leaky_relu": ((2, 8, 5, 6), (12, 8, 1, 1), {}, [_n("LeakyRelu", ["c"], "y", alpha=0.1)], None,
                           "gemm1x1"),
    "pixel_gemm_sigmoid": ((2, 16, 1, 1), (8, 16, 1, 1), {}, [_n("Sigmoid", ["c"], "y")], None, "pixel-gemm"),
    "strided_1x1_residual": ((1, 8, 9, 9), (16, 8, 1, 1), {"strides": [2, 2]}, [_n("Add", ["r", "c"], "y")],
                             (1, 16, 5, 5), "im2col"),
}


@pytest.mark.parametrize("name", list(INTO_CASES))
def test_gemm_conv_writes_into_the_buffer_it_is_given(name, threads):
    """The output-buffer protocol: ``into`` fills every element of a given buffer (poisoned with NaN) with
    the conv and its fused epilogue, matching the reference; the compiled model (whose plan puts the
    result in the arena) matches onnxruntime."""
    x_shape, w_shape, attrs, after, r_shape, algo = INTO_CASES[name]
    feeds = {"x": rand(x_shape, 0), **({} if r_shape is None else {"r": rand(r_shape, 3)})}
    conv_node = _n("Conv", ["x", "w", "b"], "c" if after else "y", **attrs)
    model = chain_model([conv_node, *after], feeds, {"w": rand(w_shape, 1), "b": rand((w_shape[0],), 2)})
    [node] = [n for n in irc.compile(model).graph.nodes if n.op == "conv2d"]
    kernel = lowering("conv2d").fn(node)
    assert kernel.algo == algo and kernel.into is not None and len(node.attrs.get("epilogue") or ()) == len(after)
    out = np.full(node.outputs[0].type.shape, np.nan, np.float32)
    kernel.into(out, *[feeds.get(v.name) if v.const_value is None else v.const_value for v in node.inputs])
    [ref] = interpret(import_onnx(model), feeds)
    assert_close(out, ref)
    check_model(model, feeds)


def test_float16_conv_writes_no_buffer():
    """A float16 conv computes in float32: it returns its result (rounded) rather than writing a buffer."""
    model, feeds = conv_model("Conv", (1, 4, 6, 6), (5, 4, 3, 3), {"pads": [1, 1, 1, 1]}, bias=True,
                              dtype=np.float16)
    assert lowering("conv2d").fn(one_node(model)).into is None
    check_model(model, feeds, tol=5e-3)


def test_conv_transpose_writes_into_the_buffer_it_is_given():
    x_shape, w_shape, attrs = CONV_TRANSPOSE_CASES["3x3_stride2_pads_output_padding"]
    model, feeds = conv_model("ConvTranspose", x_shape, w_shape, attrs, bias=True, seed=4)
    node = one_node(model)
    kernel = lowering("conv_transpose2d").fn(node)
    out = np.full(node.outputs[0].type.shape, np.nan, np.float32)
    kernel.into(out, feeds["x"], *[v.const_value for v in node.inputs[1:]])
    [ref] = interpret(import_onnx(model), feeds)
    assert_close(out, ref)
