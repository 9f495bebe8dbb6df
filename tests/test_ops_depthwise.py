"""Depthwise and grouped-direct conv2d (kernels/cpu/depthwise.py): each case against onnxruntime and the
reference interpreter, over the geometries the kernel treats differently (narrow maps gathered, wide maps
copied row by row, stride 2 de-interleaved, other strides, dilation, padding, kernels of more than nine
taps, channel multipliers, several channels per group), plus dtypes, fused epilogues and the kernel
chosen."""
import numpy as np
import pytest
from onnx import helper, numpy_helper

import irc
from irc.backend.registry import lowering
from irc.frontend import import_onnx
from irc.kernels.cpu.depthwise import NARROW, flat_layout, pack_taps
from irc.ops.interpret import interpret
from tests.util import NP_TO_ONNX, assert_close, check_model, node_model


def rand(shape, seed, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def conv_case(x_shape, w_shape, attrs, bias=True, dtype=np.float32, seed=0, weight_input=False):
    """A one-Conv model and its feeds; weight and bias are initializers unless ``weight_input``."""
    x, w = rand(x_shape, seed, dtype), rand(w_shape, seed + 1, dtype)
    params = {"w": w, **({"b": rand((w_shape[0],), seed + 2, dtype)} if bias else {})}
    inputs = {"x": x, **params} if weight_input else {"x": x}
    return node_model("Conv", inputs, attrs, consts=None if weight_input else params), inputs


def one_node(model):
    [node] = [n for n in import_onnx(model).nodes if n.op != "const"]
    return node


def dw(c, size, k=3, stride=1, pad=None, **attrs):
    """(x shape, w shape, attributes) of a depthwise conv of a square map: ``pad`` defaults to 'same'."""
    pad = k // 2 if pad is None else pad
    return (1, c, size, size), (c, 1, k, k), {"group": c, "strides": [stride, stride], "pads": [pad] * 4, **attrs}


W = NARROW + 3  # a map at least NARROW wide: planes are filled row by row, not gathered
# name: (x shape, w shape, attributes, bias, algorithm)
CASES = {
    "mobilenet_3x3_narrow": (*dw(24, 7), True, "depthwise"),
    "mobilenet_3x3_stride2_narrow": (*dw(20, 14, stride=2), True, "depthwise"),
    "3x3_wide": (*dw(5, W), True, "depthwise"),
    "3x3_stride2_wide_odd": ((1, 3, W + 2, W), (3, 1, 3, 3), {"group": 3, "strides": [2, 2], "pads": [1, 1, 1, 1]},
                             False, "depthwise"),
    "5x5_stride2": (*dw(6, 17, k=5, stride=2), True, "depthwise"),
    "convnext_7x7_wide": (*dw(4, W, k=7), True, "depthwise"),
    "7x7_narrow_no_pad": (*dw(8, 9, k=7, pad=0), False, "depthwise"),
    "stride3_asymmetric_pads": ((1, 5, 13, 11), (5, 1, 3, 3), {"group": 5, "strides": [3, 2], "pads": [0, 2, 1, 0]},
                                True, "depthwise"),
    "dilation2": (*dw(6, 12, pad=2, dilations=[2, 2]), True, "depthwise"),
    "dilation_stride_mixed_wide": ((1, 3, 11, W), (3, 1, 3, 3), {"group": 3, "strides": [1, 2], "dilations": [2, 3],
                                                                 "pads": [2, 3, 1, 0]}, True, "depthwise"),
    "multiplier2_batch2": ((2, 4, 10, 9), (8, 1, 3, 3), {"group": 4, "pads": [1, 1, 1, 1]}, True, "depthwise"),
    "multiplier3_stride2": ((1, 3, 9, 11), (9, 1, 3, 3), {"group": 3, "strides": [2, 2], "pads": [1, 0, 1, 0]},
                            False, "depthwise"),
    "rectangular_kernel_same_upper": ((2, 6, 7, 10), (6, 1, 2, 5), {"group": 6, "auto_pad": "SAME_UPPER"}, True,
                                      "depthwise"),
    "kernel_covers_image": ((1, 4, 3, 3), (4, 1, 3, 3), {"group": 4}, True, "depthwise"),
    "one_by_one_map": ((3, 8, 1, 1), (8, 1, 3, 3), {"group": 8, "pads": [1, 1, 1, 1]}, True, "depthwise"),
    "grouped_2_per_group": ((1, 8, 9, 8), (8, 2, 3, 3), {"group": 4, "strides": [2, 2], "pads": [1, 1, 1, 1]}, True,
                            "grouped-direct"),
    "grouped_4_per_group_wide": ((2, 8, 6, W), (6, 4, 3, 3), {"group": 2, "pads": [1, 1, 1, 1]}, False,
                                 "grouped-direct"),
    "grouped_pointwise": ((2, 8, 4, 3), (6, 4, 1, 1), {"group": 2}, True, "grouped-direct"),
    # stride 2 on an even width: flat column phases (the rows between output rows computed and dropped)
    "stride2_even_wide": (*dw(3, W + 1, stride=2), True, "depthwise"),
    "stride2_even_batch2": ((2, 5, 12, 10), (5, 1, 3, 3), {"group": 5, "strides": [2, 2], "pads": [1, 1, 1, 1]},
                            True, "depthwise"),
    "stride2_right_pads_only": ((1, 4, 14, 14), (4, 1, 3, 3), {"group": 4, "strides": [2, 2], "pads": [0, 0, 1, 1]},
                                False, "depthwise"),
    "stride2_dilation2": (*dw(4, 12, stride=2, pad=2, dilations=[2, 2]), True, "depthwise"),
    "stride2_5x5_even": (*dw(6, 18, k=5, stride=2), True, "depthwise"),
    "stride2_no_pad_narrower_output": (*dw(3, 10, stride=2, pad=0), True, "depthwise"),
    "stride_2_1": ((1, 3, 10, 12), (3, 1, 3, 3), {"group": 3, "strides": [2, 1], "pads": [1, 1, 1, 1]}, True,
                   "depthwise"),
    "stride_1_2": ((1, 3, 9, 12), (3, 1, 3, 3), {"group": 3, "strides": [1, 2], "pads": [1, 1, 1, 1]}, True,
                   "depthwise"),
    "multiplier2_stride2_even": ((1, 4, 10, 10), (8, 1, 3, 3), {"group": 4, "strides": [2, 2], "pads": [1, 1, 1, 1]},
                                 True, "depthwise"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_depthwise_conv(name):
    x_shape, w_shape, attrs, bias, algo = CASES[name]
    model, feeds = conv_case(x_shape, w_shape, attrs, bias, seed=len(name))
    assert lowering("conv2d").fn(one_node(model)).algo == algo
    check_model(model, feeds)


@pytest.mark.parametrize("name", ["mobilenet_3x3_narrow", "convnext_7x7_wide", "grouped_2_per_group"])
def test_float64_matches_reference(name):
    """float64 (which onnxruntime's Conv lacks) against the reference interpreter, to float64 precision."""
    x_shape, w_shape, attrs, bias, _ = CASES[name]
    model, feeds = conv_case(x_shape, w_shape, attrs, bias, dtype=np.float64)
    got = irc.compile(model).run(feeds)["out0"]
    [ref] = interpret(import_onnx(model), feeds)
    assert_close(got, ref, tol=1e-12)


def test_weight_as_input_is_packed_at_run_time():
    check_model(*conv_case(*dw(6, 11, k=5, stride=2), weight_input=True))


def test_float16_runs_in_float32():
    check_model(*conv_case(*dw(6, 9), dtype=np.float16), tol=5e-3)


def test_symbolic_batch():
    x_shape, w_shape, attrs = dw(6, 9, stride=2)
    model = node_model("Conv", {"x": rand(x_shape, 0)}, attrs, consts={"w": rand(w_shape, 1)},
                       symbolic={"x": ["N", 6, 9, 9]})
    for batch in (1, 3):
        check_model(model, {"x": rand((batch, 6, 9, 9), batch)})


@pytest.mark.parametrize("stride", [1, 2])
def test_nan_and_inf_stay_in_their_windows(stride):
    """Padding is zeros, never a neighbour's value: a NaN or infinity reaches only the outputs whose window
    holds it (the flat layouts read a neighbouring row or phase where a tap is masked off)."""
    model, feeds = conv_case(*dw(3, 8, stride=stride))
    x = feeds["x"].copy()
    x[0, 0, 0, 7], x[0, 1, 4, 0], x[0, 2, 7, 3] = np.nan, np.inf, -np.inf
    check_model(model, {"x": x})


class Geom:
    """The conv.Geometry fields flat_layout reads."""

    def __init__(self, h, w, oh, ow, kh, kw, sh, sw, dh, dw, ph, pw):
        self.h, self.w, self.oh, self.ow, self.kh, self.kw = h, w, oh, ow, kh, kw
        self.sh, self.sw, self.dh, self.dw, self.ph, self.pw = sh, sw, dh, dw, ph, pw


# (H, W, OH, OW, kh, kw, sh, sw, dh, dw, ph, pw): whether the flat column phases apply
FLAT = [((7, 7, 7, 7, 3, 3, 1, 1, 1, 1, 1, 1), True),        # MobileNet's 'same' 3x3
        ((14, 14, 7, 7, 3, 3, 2, 2, 1, 1, 1, 1), True),      # MobileNet's stride 2
        ((112, 112, 56, 56, 3, 3, 2, 2, 1, 1, 1, 1), True),
        ((15, 15, 8, 8, 3, 3, 2, 2, 1, 1, 1, 1), False),     # odd width: phases of unequal widths
        ((9, 9, 11, 11, 3, 3, 1, 1, 1, 1, 2, 2), False),     # output wider than the input
        ((12, 12, 5, 7, 3, 3, 3, 2, 1, 1, 0, 2), False),     # right padding makes a 7th output column
        ((12, 12, 4, 12, 3, 3, 3, 1, 1, 1, 0, 1), True),     # stride 3 rows, 1 column
        ((12, 12, 4, 4, 3, 3, 3, 3, 1, 1, 1, 1), False)]     # stride 3 columns: planes


@pytest.mark.parametrize("dims,flat", FLAT)
def test_flat_layout_choice(dims, flat):
    assert (flat_layout(Geom(*dims), 9) is not None) == flat


def test_flat_layout_masks_columns_outside_the_input():
    """Stride 2, 3x3, pad 1 on a width of 8: tap column 0 reads column 2p - 1, outside for p = 0 only; tap
    column 2 reads 2p + 1, always inside."""
    masks, layout, offsets = flat_layout(Geom(8, 8, 4, 4, 3, 3, 2, 2, 1, 1, 1, 1), 9)
    pitch = layout[1]
    assert pitch == 8  # two input rows of a 4-wide phase
    rows = masks[:, :4 * pitch].reshape(9, 4, pitch)[:, :, :4]  # the outputs kept
    assert not rows[0, :, 0].any() and rows[0, :, 1:].all()
    assert rows[1].all() and rows[2].all()


def test_pack_taps_pads_to_a_multiple_of_nine():
    w = rand((4, 2, 5, 5), 0)
    taps = pack_taps(w)
    assert taps.shape == (4, 2, 27)
    np.testing.assert_array_equal(taps[:, :, :25], w.reshape(4, 2, 25))
    assert not taps[:, :, 25:].any()


def chain(nodes, x, consts):
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", NP_TO_ONNX[x.dtype], x.shape)],
                              [helper.make_empty_tensor_value_info("y")],
                              [numpy_helper.from_array(v, k) for k, v in consts.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


F = np.float32
# name: (activation nodes reading "c" and writing "y", their constants, the conv's epilogue after -O2);
# the kernel applies a relu or clip as it stores, others run after it
EPILOGUES = {
    "relu": ([helper.make_node("Relu", ["c"], ["y"])], {}, ["relu"]),
    "relu6": ([helper.make_node("Clip", ["c", "lo", "hi"], ["y"])], {"lo": np.array(0, F), "hi": np.array(6, F)},
              ["clip"]),
    "clip_lower_bound_only": ([helper.make_node("Clip", ["c", "lo"], ["y"])], {"lo": np.array(-0.5, F)}, ["clip"]),
    "hard_swish": ([helper.make_node("HardSwish", ["c"], ["y"])], {}, ["hard_swish"]),
}


@pytest.mark.parametrize("name", list(EPILOGUES))
def test_fused_epilogue(name):
    acts, consts, epilogue = EPILOGUES[name]
    x_shape, w_shape, attrs = dw(16, 14, stride=2)
    x = rand(x_shape, 0) * 4
    conv = helper.make_node("Conv", ["x", "w", "b"], ["c"], **attrs)
    model = chain([conv] + acts, x, {"w": rand(w_shape, 1), "b": rand((16,), 2), **consts})
    [node] = [n for n in irc.compile(model).graph.nodes if n.op != "const"]
    assert (node.attrs["algo"], node.attrs["epilogue"]) == ("depthwise", epilogue)
    check_model(model, {"x": x})
