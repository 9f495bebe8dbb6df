"""Pooling, normalization, softmax and resize: every case is one ONNX node compiled by irc and compared with
onnxruntime and with the op table's reference (tests/util.check_model), plus the import forms and errors."""
from __future__ import annotations

from typing import Dict, NamedTuple, Optional

import numpy as np
import pytest

import irc
from irc.errors import UnsupportedError
from irc.frontend import import_onnx
from irc.ops.interpret import interpret
from tests.util import assert_close, check_model, node_model

F32, F64 = np.float32, np.float64


def rand(*shape, dtype=F32, seed=0, positive=False):
    a = np.random.default_rng(seed + sum(shape)).standard_normal(shape)
    return (np.abs(a) + 0.5 if positive else a).astype(dtype)


class Case(NamedTuple):
    op: str
    inputs: Dict[str, np.ndarray]
    attrs: dict
    opset: int = 17
    consts: Optional[Dict[str, np.ndarray]] = None
    n_outputs: int = 1
    input_order: Optional[list] = None

    def model(self):
        return node_model(self.op, self.inputs, self.attrs, self.consts, self.n_outputs, self.opset,
                          self.input_order)


def cases(**named):
    """pytest params of named cases (the name is the test id)."""
    return [pytest.param(c, id=k) for k, c in named.items()]


X4 = rand(2, 3, 7, 9)
X3 = rand(2, 3, 11)

POOLS = cases(
    max_k3=Case("MaxPool", {"x": X4}, {"kernel_shape": [3, 3]}),
    max_k3_s2_pad1=Case("MaxPool", {"x": X4}, {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    max_ceil=Case("MaxPool", {"x": X4}, {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}),
    max_ceil_pads=Case("MaxPool", {"x": X4}, {"kernel_shape": [3, 2], "strides": [2, 3], "pads": [0, 1, 1, 0],
                                            "ceil_mode": 1}),
    max_ceil_last_window_dropped=Case("MaxPool", {"x": rand(1, 2, 5, 5)},
                                      {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [1, 1, 1, 1],
                                       "ceil_mode": 1}),
    max_dilated=Case("MaxPool", {"x": X4}, {"kernel_shape": [3, 2], "dilations": [2, 3], "pads": [2, 1, 1, 1]}),
    max_dilated_ceil=Case("MaxPool", {"x": X4}, {"kernel_shape": [2, 2], "dilations": [2, 2], "strides": [2, 2],
                                               "ceil_mode": 1}),
    max_same_upper=Case("MaxPool", {"x": X4}, {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    max_same_lower=Case("MaxPool", {"x": X4}, {"kernel_shape": [2, 4], "auto_pad": "SAME_LOWER"}),
    max_valid=Case("MaxPool", {"x": X4}, {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "VALID"}),
    max_1d=Case("MaxPool", {"x": X3}, {"kernel_shape": [3], "strides": [2], "pads": [1, 1]}),
    max_opset8=Case("MaxPool", {"x": X4}, {"kernel_shape": [2, 3], "strides": [1, 2]}, opset=8),
    max_f64=Case("MaxPool", {"x": rand(1, 2, 6, 5, dtype=F64)}, {"kernel_shape": [2, 2], "pads": [1, 0, 0, 1]}),
    max_uint8_opset12=Case("MaxPool", {"x": np.arange(60, dtype=np.uint8).reshape(1, 2, 6, 5)[..., ::-1].copy()},
                           {"kernel_shape": [2, 2], "pads": [1, 1, 0, 0]}, opset=12),
    max_int8_opset12=Case("MaxPool", {"x": (rand(1, 2, 6, 5) * 40).astype(np.int8)},
                          {"kernel_shape": [3, 3], "strides": [2, 2]}, opset=12),
    max_f16=Case("MaxPool", {"x": rand(1, 2, 6, 5, dtype=np.float16)}, {"kernel_shape": [3, 3], "strides": [2, 2]}),
    avg_f16=Case("AveragePool", {"x": rand(1, 2, 6, 5, dtype=np.float16)}, {"kernel_shape": [2, 2]}),
    max_storage_order_without_indices=Case("MaxPool", {"x": X4}, {"kernel_shape": [2, 2], "storage_order": 1}),
    avg_k3=Case("AveragePool", {"x": X4}, {"kernel_shape": [3, 3]}),
    avg_pads=Case("AveragePool", {"x": X4}, {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    avg_pads_count_include_pad=Case("AveragePool", {"x": X4}, {"kernel_shape": [3, 3], "strides": [2, 2],
                                                              "pads": [1, 2, 2, 1], "count_include_pad": 1}),
    avg_ceil=Case("AveragePool", {"x": X4}, {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    avg_ceil_count_include_pad=Case("AveragePool", {"x": X4}, {"kernel_shape": [3, 3], "strides": [2, 2],
                                                              "pads": [1, 1, 1, 1], "ceil_mode": 1,
                                                              "count_include_pad": 1}),
    avg_same_upper=Case("AveragePool", {"x": X4}, {"kernel_shape": [3, 2], "strides": [2, 2],
                                                 "auto_pad": "SAME_UPPER"}),
    avg_1d_count_include_pad=Case("AveragePool", {"x": X3}, {"kernel_shape": [4], "strides": [3], "pads": [2, 1],
                                                            "count_include_pad": 1}),
    avg_dilated_opset19=Case("AveragePool", {"x": X4}, {"kernel_shape": [2, 2], "dilations": [2, 3],
                                                      "pads": [1, 1, 1, 1]}, opset=19),
    avg_opset7=Case("AveragePool", {"x": X4}, {"kernel_shape": [2, 2], "pads": [1, 1, 0, 0],
                                             "count_include_pad": 1}, opset=7),
    global_avg=Case("GlobalAveragePool", {"x": X4}, {}),
    global_max=Case("GlobalMaxPool", {"x": X4}, {}),
    global_avg_1d=Case("GlobalAveragePool", {"x": X3}, {}),
    global_max_3d=Case("GlobalMaxPool", {"x": rand(2, 3, 3, 4, 5)}, {}),
)

C = 3
BN = {k: rand(C, seed=i, positive=(k == "var")) for i, k in enumerate(("scale", "bias", "mean", "var"))}
BN_ACT = {k: rand(C, 4, seed=i, positive=(k == "var")) for i, k in enumerate(("scale", "bias", "mean", "var"))}
X5 = rand(2, 3, 5, 4)

NORMS = cases(
    batchnorm=Case("BatchNormalization", {"x": X4}, {"epsilon": 1e-3}, consts=BN),
    batchnorm_2d=Case("BatchNormalization", {"x": rand(4, 3)}, {}, consts=BN, opset=9),
    batchnorm_spatial=Case("BatchNormalization", {"x": X3}, {"spatial": 1}, consts=BN, opset=7),
    batchnorm_per_activation=Case("BatchNormalization", {"x": rand(2, 3, 4)}, {"spatial": 0}, consts=BN_ACT,
                                  opset=7),
    batchnorm_training_mode_0=Case("BatchNormalization", {"x": X4}, {"training_mode": 0, "momentum": 0.8},
                                   consts=BN, opset=15),
    batchnorm_operands=Case("BatchNormalization", {"x": X4, **BN}, {}),
    instance_norm=Case("InstanceNormalization", {"x": X4}, {"epsilon": 1e-2},
                       consts={"s": rand(3, seed=1), "b": rand(3, seed=2)}),
    instance_norm_1d=Case("InstanceNormalization", {"x": X3}, {}, consts={"s": rand(3, seed=1), "b": rand(3, seed=2)}),
    layernorm=Case("LayerNormalization", {"x": X5}, {}, consts={"s": rand(4, seed=1), "b": rand(4, seed=2)}),
    layernorm_axis1_stats=Case("LayerNormalization", {"x": X5}, {"axis": 1, "epsilon": 1e-3},
                               consts={"s": rand(3, 5, 4, seed=1), "b": rand(3, 5, 4, seed=2)}, n_outputs=3),
    layernorm_axis_neg2_no_bias=Case("LayerNormalization", {"x": X5}, {"axis": -2},
                                     consts={"s": rand(5, 4, seed=1)}, n_outputs=3),
    layernorm_f64=Case("LayerNormalization", {"x": rand(3, 6, dtype=F64)}, {},
                       consts={"s": rand(6, seed=1, dtype=F64), "b": rand(6, seed=2, dtype=F64)}, n_outputs=3),
    group_norm_opset18=Case("GroupNormalization", {"x": rand(2, 6, 3, 5)}, {"num_groups": 3, "epsilon": 1e-3},
                            consts={"s": rand(3, seed=1), "b": rand(3, seed=2)}, opset=18),
    group_norm_opset21=Case("GroupNormalization", {"x": rand(2, 6, 3, 5)}, {"num_groups": 2},
                            consts={"s": rand(6, seed=1), "b": rand(6, seed=2)}, opset=21),
    group_norm_opset21_2d=Case("GroupNormalization", {"x": rand(4, 6)}, {"num_groups": 3},
                               consts={"s": rand(6, seed=1), "b": rand(6, seed=2)}, opset=21),
    lrn_3=Case("LRN", {"x": X4}, {"size": 3}),
    lrn_5=Case("LRN", {"x": rand(2, 7, 3, 4)}, {"size": 5, "alpha": 0.01, "beta": 0.5, "bias": 2.0}),
)

SOFTMAX = cases(**{
    f"{op.lower()}_{name}": Case(op, {"x": x}, attrs, opset)
    for op in ("Softmax", "LogSoftmax")
    for name, x, attrs, opset in (
        ("opset11_default_axis_flattens", X4, {}, 11),
        ("opset11_axis2_flattens", X4, {"axis": 2}, 11),
        ("opset11_last_axis", X4, {"axis": -1}, 11),
        ("opset11_trailing_ones", rand(2, 5, 1, 1), {"axis": 1}, 11),
        ("opset11_axis0", rand(3, 4), {"axis": 0}, 11),
        ("opset9_2d", rand(3, 10), {}, 9),
        ("opset13_default", X4, {}, 13),
        ("opset13_axis1", X4, {"axis": 1}, 13),
        ("opset13_axis0", X4, {"axis": 0}, 13),
        ("opset13_f64", rand(3, 7, dtype=F64), {"axis": -1}, 13),
        ("opset13_f16", rand(3, 7, dtype=np.float16), {"axis": 0}, 13),
        ("opset13_masked", np.where(rand(4, 9, seed=5) > 0.5, -np.inf, rand(4, 9)).astype(F32), {}, 13),
        ("opset13_long_rows", rand(3, 3000) * 30, {}, 13),
        ("opset13_nan_and_all_masked_rows", np.array([[1, 2, 3], [0, np.nan, 1], [-np.inf] * 3], F32), {}, 13),
    )
})

XR = rand(1, 2, 5, 7)
S2 = np.array([1, 1, 2, 2], F32)
SDOWN = np.array([1, 1, 0.6, 0.5], F32)
SIZES = np.array([1, 2, 8, 4], np.int64)


def resize(opset=13, scales=None, sizes=None, x=XR, **attrs):
    """A Resize case in the opset-11+ operand form (empty roi, scales S2 unless sizes or scales given)."""
    names = ["x", "roi", "scales", "sizes"]
    consts = {"roi": np.zeros(0, F32), "scales": S2 if scales is None and sizes is None else scales,
              "sizes": sizes}
    consts = {k: v for k, v in consts.items() if v is not None}
    order = [n if n in consts or n == "x" else "" for n in names]
    while not order[-1]:
        order.pop()
    return Case("Resize", {"x": x}, attrs, opset, consts, input_order=order)


RESIZES = cases(
    opset10_nearest_up=Case("Resize", {"x": XR}, {"mode": "nearest"}, 10, {"s": np.array([1, 1, 1.5, 2.5], F32)}),
    opset10_nearest_down=Case("Resize", {"x": XR}, {"mode": "nearest"}, 10, {"s": SDOWN}),
    opset10_linear_up=Case("Resize", {"x": XR}, {"mode": "linear"}, 10, {"s": np.array([1, 1, 2, 1.5], F32)}),
    upsample7_nearest=Case("Upsample", {"x": XR}, {"scales": [1.0, 1.0, 2.0, 3.0]}, 7),
    upsample7_linear=Case("Upsample", {"x": XR}, {"scales": [1.0, 1.0, 2.0, 1.5], "mode": "linear"}, 7),
    upsample9_nearest=Case("Upsample", {"x": XR}, {"mode": "nearest"}, 9, {"s": np.array([1, 1, 3, 2], F32)}),
    nearest_half_pixel=resize(11, S2),
    nearest_down_half_pixel=resize(13, SDOWN),
    nearest_asymmetric_floor=resize(13, np.array([1, 1, 1.7, 2.3], F32), coordinate_transformation_mode="asymmetric",
                                    nearest_mode="floor"),
    nearest_align_corners_ceil=resize(13, sizes=SIZES, coordinate_transformation_mode="align_corners",
                                      nearest_mode="ceil"),
    nearest_round_prefer_ceil=resize(13, sizes=np.array([1, 2, 10, 14], np.int64), nearest_mode="round_prefer_ceil"),
    nearest_pytorch_half_pixel_sizes=resize(13, sizes=np.array([1, 2, 3, 1], np.int64),
                                            coordinate_transformation_mode="pytorch_half_pixel"),
    nearest_channels_too=resize(13, np.array([1, 2, 2, 1], F32)),
    nearest_sizes_with_empty_scales=resize(11, np.zeros(0, F32), SIZES),
    nearest_uint8=resize(13, S2, x=np.arange(70, dtype=np.uint8).reshape(1, 2, 5, 7)),
    linear_uint8=resize(13, np.array([1, 1, 1.5, 0.5], F32), mode="linear",
                        x=np.arange(0, 210, 3, dtype=np.uint8).reshape(1, 2, 5, 7)),
    linear_half_pixel=resize(13, S2, mode="linear"),
    linear_down_half_pixel=resize(11, SDOWN, mode="linear"),
    linear_align_corners_sizes=resize(13, sizes=SIZES, mode="linear", coordinate_transformation_mode="align_corners"),
    linear_asymmetric=resize(13, np.array([1, 1, 1.5, 0.8], F32), mode="linear",
                             coordinate_transformation_mode="asymmetric"),
    linear_pytorch_half_pixel=resize(13, sizes=np.array([1, 2, 1, 9], np.int64), mode="linear",
                                     coordinate_transformation_mode="pytorch_half_pixel"),
    cubic=resize(13, S2, mode="cubic"),
    cubic_exclude_outside=resize(13, sizes=SIZES, mode="cubic", cubic_coeff_a=-0.5, exclude_outside=1),
    cubic_down_align_corners=resize(13, SDOWN, mode="cubic", coordinate_transformation_mode="align_corners"),
    opset18_axes_scales=resize(18, np.array([2.0, 1.5], F32), mode="linear", axes=[2, 3]),
    opset18_not_larger=resize(18, sizes=np.array([9, 9], np.int64), axes=[2, 3],
                              keep_aspect_ratio_policy="not_larger", mode="linear"),
    opset18_not_smaller=resize(18, sizes=np.array([9, 9], np.int64), axes=[2, 3],
                               keep_aspect_ratio_policy="not_smaller"),
    opset19_half_pixel_symmetric=resize(19, np.array([1, 1, 1.6, 0.7], F32), mode="linear",
                                        coordinate_transformation_mode="half_pixel_symmetric"),
)


@pytest.mark.parametrize("case", POOLS + NORMS + SOFTMAX + RESIZES)
def test_matches_onnxruntime_and_reference(case):
    feeds = dict(case.inputs)
    check_model(case.model(), feeds)


SYMBOLIC = [("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, 11, True),
            ("LRN", {"size": 3}, 11, True), ("Softmax", {"axis": 1}, 13, True), ("InstanceNormalization", {}, 11, True),
            ("Softmax", {"axis": 1}, 11, False)]   # the last flattens and reshapes to shape(x): dims known at run time


@pytest.mark.parametrize("op,attrs,opset,batch_is_kept", SYMBOLIC)
def test_symbolic_batch_runs_at_any_batch_size(op, attrs, opset, batch_is_kept):
    x = rand(2, 3, 6, 5)
    consts = {"s": rand(3, seed=1), "b": rand(3, seed=2)} if op == "InstanceNormalization" else None
    model = node_model(op, {"x": x}, attrs, consts, opset=opset, symbolic={"x": ["N", 3, 6, 5]})
    out = import_onnx(model).outputs[0].type
    assert out.rank == 4 and (out.shape[0] == "N") == batch_is_kept
    compiled = irc.compile(model)
    for batch in (1, 3):
        xb = rand(batch, 3, 6, 5, seed=batch)
        check_model(model, {"x": xb})
        assert compiled.run({"x": xb})["out0"].shape[0] == batch


def _lrn_by_definition(x, size, alpha, beta, bias):
    """LRN written out element by element from the ONNX formula."""
    y = np.empty_like(x, dtype=F64)
    c = x.shape[1]
    for idx in np.ndindex(*x.shape):
        lo, hi = max(0, idx[1] - (size - 1) // 2), min(c - 1, idx[1] + (size - 1) - (size - 1) // 2)
        sq = sum(float(x[(idx[0], k) + idx[2:]]) ** 2 for k in range(lo, hi + 1))
        y[idx] = x[idx] / (bias + alpha / size * sq) ** beta
    return y


@pytest.mark.parametrize("shape,size", [((2, 6, 3, 4), 4), ((2, 7, 5), 5), ((1, 3, 2), 6)])
def test_lrn_forms_onnxruntime_lacks(shape, size):
    """Even sizes and ranks other than 4, against the formula (onnxruntime supports neither)."""
    x = rand(*shape)
    attrs = {"size": size, "alpha": 0.05, "beta": 0.6, "bias": 1.5}
    got = irc.compile(node_model("LRN", {"x": x}, attrs)).run({"x": x})["out0"]
    assert_close(got, _lrn_by_definition(x, **attrs).astype(F32))


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_resize_float64_matches_reference(mode):
    """onnxruntime has no float64 Resize: the kernel against the reference."""
    case = resize(13, np.array([1, 1, 1.5, 0.75], F32), x=rand(1, 2, 4, 6, dtype=F64), mode=mode)
    model = case.model()
    got = irc.compile(model).run(case.inputs)["out0"]
    assert_close(got, interpret(import_onnx(model), case.inputs)[0])


def test_resize_negative_axes():
    pos = resize(18, sizes=np.array([9, 9], np.int64), axes=[2, 3], keep_aspect_ratio_policy="not_larger")
    neg = resize(18, sizes=np.array([9, 9], np.int64), axes=[-2, -1], keep_aspect_ratio_policy="not_larger")
    expected = check_model(pos.model(), pos.inputs)["out0"]
    assert_close(irc.compile(neg.model()).run(neg.inputs)["out0"], expected)


def test_resize_keeps_symbolic_batch_with_constant_scales():
    model = resize(13, S2).model()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    out = import_onnx(model).outputs[0].type
    assert out.shape == ("N", 2, 10, 14)


def _ops(model):
    return [n.op for n in import_onnx(model).nodes if n.op != "const"]


def test_old_softmax_is_one_axis_when_the_trailing_dims_are_one():
    assert _ops(node_model("Softmax", {"x": rand(2, 5, 1)}, {"axis": 1}, opset=11)) == ["softmax"]
    assert _ops(node_model("Softmax", {"x": X4}, {"axis": 1}, opset=11)) == ["flatten", "softmax", "reshape"]


def test_opset18_group_norm_parameters_become_per_channel():
    model = node_model("GroupNormalization", {"x": rand(2, 6, 3)}, {"num_groups": 3},
                       {"s": np.array([1, 2, 3], F32), "b": np.zeros(3, F32)}, opset=18)
    node = next(n for n in import_onnx(model).nodes if n.op == "group_norm")
    np.testing.assert_array_equal(node.inputs[1].const_value, [1, 1, 2, 2, 3, 3])


UNSUPPORTED = cases(
    maxpool_indices=Case("MaxPool", {"x": X4}, {"kernel_shape": [2, 2]}, n_outputs=2),
    maxpool_3d=Case("MaxPool", {"x": rand(1, 1, 3, 3, 3)}, {"kernel_shape": [2, 2, 2]}),
    batchnorm_training=Case("BatchNormalization", {"x": X4}, {"training_mode": 1}, consts=BN, opset=15,
                            n_outputs=3),
    resize_crop=resize(13, S2, coordinate_transformation_mode="tf_crop_and_resize"),
    resize_antialias=resize(18, SDOWN, mode="linear", antialias=1),
    group_norm18_dynamic_scale=Case("GroupNormalization", {"x": rand(2, 6, 3), "s": rand(3), "b": rand(3)},
                                    {"num_groups": 3}, opset=18),
)


@pytest.mark.parametrize("case", UNSUPPORTED)
def test_unsupported_forms_name_the_node(case):
    with pytest.raises(UnsupportedError, match=case.op.lower() + "_node"):
        irc.compile(case.model())


BAD = cases(
    pool_window_larger_than_input=Case("MaxPool", {"x": X4}, {"kernel_shape": [9, 9]}),
    pool_pad_not_smaller_than_window=Case("AveragePool", {"x": X4}, {"kernel_shape": [2, 2], "pads": [2, 0, 0, 0]}),
    group_norm_channels_not_divisible=Case("GroupNormalization", {"x": X4}, {"num_groups": 2},
                                           consts={"s": rand(3), "b": rand(3)}, opset=21),
    softmax_axis_out_of_range=Case("Softmax", {"x": X4}, {"axis": 4}),
    layernorm_axis_out_of_range=Case("LayerNormalization", {"x": X4}, {"axis": -5}, consts={"s": rand(9)}),
    resize_scales_of_wrong_length=resize(13, np.array([2.0, 2.0], F32)),
    resize_without_scales_or_sizes=Case("Resize", {"x": XR}, {}, 13),
    resize_unknown_mode=resize(13, S2, mode="area"),
)


@pytest.mark.parametrize("case", BAD)
def test_bad_models_are_irc_errors_naming_the_node(case):
    with pytest.raises(irc.IrcError, match=case.op.lower() + "_node"):
        irc.compile(case.model())


def test_resize_to_sizes_computed_from_the_input_shape():
    """sizes = concat(shape(x)[:2], [10, 3]), as exporters write it: known once the batch is bound."""
    from onnx import TensorProto, helper, numpy_helper
    nodes = [helper.make_node("Shape", ["x"], ["s"], end=2),
             helper.make_node("Concat", ["s", "hw"], ["sizes"], axis=0),
             helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="linear", name="resize_node")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 5, 7])],
                              [helper.make_empty_tensor_value_info("y")],
                              [numpy_helper.from_array(np.array([10, 3], np.int64), "hw")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    for batch in (1, 2):
        got = check_model(model, {"x": rand(batch, 2, 5, 7, seed=batch)})["y"]
        assert got.shape == (batch, 2, 10, 3)


@pytest.mark.filterwarnings("ignore")   # the exporter's tracer and deprecation warnings
@pytest.mark.parametrize("opset", [11, 17])
def test_torch_exported_block_matches_onnxruntime_at_two_batch_sizes(opset):
    """interpolate / pools / norms / softmax as torch exports them (dynamic batch, exporter's own forms)."""
    torch = pytest.importorskip("torch")
    import io

    import onnx

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bn, self.gn, self.ln = torch.nn.BatchNorm2d(4), torch.nn.GroupNorm(2, 4), torch.nn.LayerNorm(9)
            self.inorm = torch.nn.InstanceNorm2d(4, affine=True)
            with torch.no_grad():
                self.bn.running_mean.uniform_()
                self.bn.running_var.uniform_(0.5, 1.5)

        def forward(self, x):
            f = torch.nn.functional
            y = f.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            y = f.max_pool2d(y, 3, 2, padding=1, ceil_mode=True)
            y = f.avg_pool2d(y, 3, 2, padding=1, ceil_mode=True, count_include_pad=False)
            y = self.inorm(self.gn(self.bn(y)))
            y = f.interpolate(y, size=(7, 9), mode="nearest")
            y = self.ln(f.interpolate(y, scale_factor=1.5, mode="bicubic", align_corners=True)[..., :9])
            return torch.softmax(y, dim=1), f.log_softmax(y, dim=-1), f.adaptive_avg_pool2d(y, 1)

    buf = io.BytesIO()
    torch.onnx.export(Block().eval(), (torch.zeros(2, 4, 9, 11),), buf, opset_version=opset, input_names=["x"],
                      dynamic_axes={"x": {0: "N"}}, dynamo=False)
    model = onnx.load_from_string(buf.getvalue())
    for batch in (1, 3):
        check_model(model, {"x": rand(batch, 4, 9, 11, seed=batch)})
