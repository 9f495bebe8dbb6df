"""int8 post-training quantization: calibration methods, QDQ placement and parameters against
onnxruntime's quantize_static, the per-layer SQNR fallback, the API/CLI options and their errors."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import irc
from irc.ir import print_graph
from irc.quantize import calibrate
from tests.util import assert_close, irc_cli, node_model, run_ort


# -- models ---------------------------------------------------------------------------------------------

def _he(rng, *shape):
    return (rng.standard_normal(shape) * (2.0 / np.prod(shape[1:])) ** 0.5).astype(np.float32)


def cnn(seed: int = 0, hw: int = 8) -> onnx.ModelProto:
    """conv-relu-maxpool-conv-relu-globalavgpool-flatten-gemm over [N, 1, hw, hw]."""
    rng = np.random.default_rng(seed)
    consts = {"w1": _he(rng, 8, 1, 3, 3), "b1": (rng.standard_normal(8) * 0.1).astype(np.float32),
              "w2": _he(rng, 16, 8, 3, 3), "b2": (rng.standard_normal(16) * 0.1).astype(np.float32),
              "wf": _he(rng, 10, 16), "bf": (rng.standard_normal(10) * 0.1).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2], name="pool1"),
             helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1, name="fc")]
    return _model(nodes, {"x": ["N", 1, hw, hw]}, {"y": ["N", 10]}, consts)


def mlp(seed: int = 0, beta: float = 1.0) -> onnx.ModelProto:
    """matmul-add-relu, then a gemm and a residual add: [N, 12] -> [N, 6]."""
    rng = np.random.default_rng(seed)
    consts = {"w1": _he(rng, 12, 6), "b1": (rng.standard_normal(6) * 0.1).astype(np.float32),
              "w2": _he(rng, 6, 6), "b2": (rng.standard_normal(6) * 0.1).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["m"], name="mm"),
             helper.make_node("Add", ["m", "b1"], ["a"], name="bias"),
             helper.make_node("Relu", ["a"], ["h"], name="relu"),
             helper.make_node("Gemm", ["h", "w2", "b2"], ["g"], beta=beta, name="fc"),
             helper.make_node("Add", ["g", "h"], ["y"], name="residual")]
    return _model(nodes, {"x": ["N", 12]}, {"y": ["N", 6]}, consts)


def _model(nodes, inputs, outputs, consts) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "qtest", [helper.make_tensor_value_info(k, TensorProto.FLOAT, s)
                                           for k, s in inputs.items()],
                          [helper.make_tensor_value_info(k, TensorProto.FLOAT, s) for k, s in outputs.items()],
                          [numpy_helper.from_array(v, k) for k, v in consts.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def feeds(shape, n=4, batch=16, seed=1, name="x"):
    rng = np.random.default_rng(seed)
    return [{name: rng.standard_normal((batch, *shape)).astype(np.float32)} for _ in range(n)]


def ort_quantized(model, calib, tmp_path, method="MinMax", activation="QUInt8", **extra) -> onnx.ModelProto:
    """``model`` through onnxruntime's quantize_static (QDQ, per-channel int8 weights)."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib)

        def get_next(self):
            return next(self.it, None)

    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(model, str(src))
    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=getattr(QuantType, activation), weight_type=QuantType.QInt8,
                    calibrate_method=getattr(CalibrationMethod, method), extra_options=extra)
    return onnx.load(str(dst))


# -- calibration methods on known distributions ------------------------------------------------------------

def _gaussian_with_outliers(n=200_000):
    x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    x[:3] = [30.0, -25.0, 40.0]
    return x


def _range(x, method, **kw):
    batches = [{"x": x[i:i + 50_000]} for i in range(0, len(x), 50_000)]
    stats = calibrate.collect(batches, method, batches)["x"]
    return calibrate.choose_range(stats, method, **kw)


@pytest.mark.parametrize("method, lo, hi", [
    ("minmax", (-25.0, -25.0), (40.0, 40.0)),
    ("percentile", (-4.5, -3.0), (3.0, 4.5)),
    ("entropy", (-6.0, -3.0), (3.0, 6.0)),
])
def test_gaussian_with_outliers(method, lo, hi):
    got = _range(_gaussian_with_outliers(), method, percentile=99.99)
    assert lo[0] <= got[0] <= lo[1] and hi[0] <= got[1] <= hi[1], got


@pytest.mark.parametrize("method", ["percentile", "entropy"])
def test_nonnegative_and_uniform_data(method):
    x = _gaussian_with_outliers()
    lo, hi = _range(np.maximum(x, 0), method, percentile=99.99)
    assert lo == 0.0 and 2.5 < hi < 8.0
    u = np.random.default_rng(2).uniform(-2, 2, 100_000).astype(np.float32)   # nothing to clip
    lo, hi = _range(u, method, percentile=100.0)
    assert lo < -1.98 and hi > 1.98


def test_entropy_on_sparse_data_away_from_zero():
    """4096 values in [0.25, 1.75] (a pooled activation): a threshold just above the smallest value would
    fold everything into one bin, where the divergence says nothing; the search must not pick it."""
    x = np.random.default_rng(5).uniform(0.25, 1.75, 4096).astype(np.float32)
    lo, hi = _range(x, "entropy")
    assert lo == x.min() and hi > 1.5


def test_constant_data_gives_unit_scale():
    for method in calibrate.METHODS:
        assert _range(np.zeros(100, np.float32), method) == (0.0, 0.0)
    assert calibrate.activation_qparams(0.0, 0.0) == (np.float32(1.0), np.uint8(0))


@pytest.mark.parametrize("pct", [99.9, 99.99])
def test_percentile_matches_onnxruntime(pct):
    from onnxruntime.quantization.calibrate import HistogramCollector
    x = _gaussian_with_outliers()
    h = HistogramCollector("percentile", True, 2048, 128, pct, None)
    h.collect({"x": x})
    ort_lo, ort_hi = h.compute_collection_result()["x"][:2]
    lo, hi = _range(x, "percentile", percentile=pct)
    bin_width = 40.0 / 2048
    assert abs(hi - float(ort_hi)) <= 1.5 * bin_width and abs(lo - float(ort_lo)) <= 1.5 * bin_width


def test_entropy_comparable_to_onnxruntime():
    """onnxruntime's KL search runs on a signed histogram, TensorRT's (ours) on |x|: both clip the
    outliers of a Gaussian to a few sigma, within 30% of each other."""
    from onnxruntime.quantization.calibrate import HistogramCollector
    x = _gaussian_with_outliers()
    h = HistogramCollector("entropy", False, 2048, 128, None, None)
    h.collect({"x": x})
    _, ort_hi = h.compute_collection_result()["x"][:2]
    _, hi = _range(x, "entropy")
    assert 0.7 < hi / float(ort_hi) < 1.3


def test_scale_and_zero_point_match_onnxruntime():
    from onnxruntime.quantization.quant_utils import compute_scale_zp
    rng = np.random.default_rng(3)
    for lo, hi in [(-1.5, 2.5), (0.0, 6.0), (0.3, 4.0), (-3.0, -0.5), (-1e-3, 1e-3)]:
        for dtype, (qmin, qmax) in (("u8", (0, 255)), ("i8", (-128, 127))):
            npdt = np.uint8 if dtype == "u8" else np.int8
            zp, scale = compute_scale_zp(np.float32(lo), np.float32(hi), npdt(qmin), npdt(qmax))
            assert calibrate.activation_qparams(lo, hi, dtype) == (scale, zp), (lo, hi, dtype)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    scales, zps = calibrate.weight_qparams(w, 0)
    for c in range(6):
        zp, scale = compute_scale_zp(w[c].min(), w[c].max(), np.int8(-127), np.int8(127), symmetric=True)
        assert scales[c] == scale and zps[c] == zp


# -- the QDQ form against onnxruntime's quantize_static ---------------------------------------------------

def _ort_qdq_params(qm: onnx.ModelProto):
    """(scale, zero point) of each QuantizeLinear in graph order, and the integer weights and biases."""
    inits = {i.name: numpy_helper.to_array(i) for i in qm.graph.initializer}
    acts = [(inits[n.input[1]], inits[n.input[2]]) for n in qm.graph.node if n.op_type == "QuantizeLinear"]
    ints = sorted((inits[n.input[0]] for n in qm.graph.node
                   if n.op_type == "DequantizeLinear" and n.input[0] in inits), key=lambda a: (a.dtype.str, a.size))
    return acts, ints


def _irc_qdq_params(graph):
    acts = [(n.inputs[1].const_value, n.inputs[2].const_value) for n in graph.nodes if n.op == "quantize_linear"]
    ints = sorted((n.inputs[0].const_value for n in graph.nodes
                   if n.op == "dequantize_linear" and n.inputs[0].is_const), key=lambda a: (a.dtype.str, a.size))
    return acts, ints


def _qdq_graph(model, calib, **kw):
    return irc.compile(model, quantize="int8", calibration=calib, opt_level=1, **kw)


@pytest.mark.parametrize("build, shape, method, activation", [
    (cnn, (1, 8, 8), "MinMax", "QUInt8"),
    (cnn, (1, 8, 8), "MinMax", "QInt8"),
    (mlp, (12,), "MinMax", "QUInt8"),
    (cnn, (1, 8, 8), "Percentile", "QUInt8"),
])
def test_qdq_form_matches_onnxruntime(build, shape, method, activation, tmp_path):
    """Same tensors quantized, in the same order, with the same scales and zero points (scales to a few
    ulps: the calibration data come from irc's fp32 kernels, not onnxruntime's), the same int8 weights
    and int32 biases (to 1, for the same reason)."""
    model, calib = build(), feeds(shape, n=1 if method == "Percentile" else 3)
    qm = ort_quantized(model, calib, tmp_path, method, activation,
                       **({"CalibPercentile": 99.99} if method == "Percentile" else {}))
    got = _qdq_graph(model, calib, calibration_method=method.lower(), percentile=99.99,
                     activation_type={"QUInt8": "u8", "QInt8": "i8"}[activation])
    (ort_acts, ort_ints), (acts, ints) = _ort_qdq_params(qm), _irc_qdq_params(got.graph)
    assert len(acts) == len(ort_acts) and len(ints) == len(ort_ints)
    for (s, z), (os_, oz) in zip(acts, ort_acts):
        assert z.dtype == oz.dtype and z == oz
        assert abs(s - os_) <= (1e-6 if method == "MinMax" else 2e-3) * os_   # percentile: one bin
    for a, o in zip(ints, ort_ints):
        assert a.dtype == o.dtype and a.shape == o.shape
        if a.dtype == np.int8:
            np.testing.assert_array_equal(a, o)
        elif method == "MinMax":
            assert np.abs(a.astype(np.int64) - o).max() <= 1


def test_relu_absorbed_and_shared_parameters():
    g = _qdq_graph(cnn(), feeds((1, 8, 8), n=1)).graph
    text = print_graph(g)
    assert "relu" not in text
    qs = [n for n in g.nodes if n.op == "quantize_linear"]
    # maxpool's and flatten's results reuse their operand's scale and zero point constants
    by_name = {n.name: n for n in qs}
    assert by_name["p1"].inputs[1] is by_name["c1"].inputs[1]
    assert by_name["f"].inputs[1] is by_name["g"].inputs[1]
    assert by_name["c1"].inputs[2].const_value == 0    # the relu's range: zero point 0 clamps as relu did


def test_relu_kept_when_its_operand_has_other_readers():
    model = mlp()
    g = _qdq_graph(model, feeds((12,), n=1)).graph
    # the add's result feeds only the relu: absorbed; the relu's result has two readers, quantized once
    assert "relu" not in g.op_counts()
    model.graph.output.append(helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 6]))
    g = _qdq_graph(model, feeds((12,), n=1)).graph
    assert g.op_counts()["relu"] == 1


@pytest.mark.parametrize("build, shape, activation", [(cnn, (1, 8, 8), "QUInt8"), (mlp, (12,), "QUInt8"),
                                                      (cnn, (1, 8, 8), "QInt8")])
def test_int8_outputs_match_onnxruntime_int8(build, shape, activation, tmp_path):
    """irc's int8 model agrees with onnxruntime running its own quantized model, within 2 output steps,
    and with fp32 within the quantization error."""
    model, calib = build(), feeds(shape)
    qm = ort_quantized(model, calib, tmp_path, activation=activation)
    out_scale = float(_ort_qdq_params(qm)[0][-1][0])
    x = feeds(shape, n=1, batch=32, seed=7)[0]
    got = irc.compile(model, quantize="int8", calibration=calib,
                      activation_type={"QUInt8": "u8", "QInt8": "i8"}[activation]).run(x)["y"]
    assert np.abs(got - run_ort(qm, x)[0]).max() <= 2 * out_scale + 1e-6
    fp32 = run_ort(model, x)[0]
    assert np.abs(got - fp32).max() <= 0.1 * np.abs(fp32).max()


@pytest.mark.parametrize("build, shape", [(cnn, (1, 8, 8)), (mlp, (12,))])
def test_differential_reference(build, shape):
    """The graph before and after the quantize pass alone, run by the reference interpreter on new inputs,
    agree within the quantization error."""
    from irc.frontend import import_onnx
    from irc.ops.interpret import interpret
    from irc.passes import PassManager
    from irc.quantize import QuantConfig
    before = import_onnx(build())
    config = QuantConfig(feeds(shape))
    after = PassManager(["quantize"], verify_each=True, options={"quantize": {"config": config}}).run(before.clone())
    assert after.op_counts()["quantize_linear"] >= 3
    x = feeds(shape, n=1, batch=8, seed=11)[0]
    ref, got = interpret(before, x)[0], interpret(after, x)[0]
    assert np.abs(got - ref).max() <= 0.05 * np.abs(ref).max()


def test_model_without_layers_is_left_float():
    model = node_model("Exp", {"x": np.zeros((2, 3), np.float32)})
    m = irc.compile(model, quantize="int8", calibration=[{"x": np.ones((2, 3), np.float32)}])
    assert m.graph.op_counts() == {"exp": 1} and m.quant_report.layers == []


def test_artifact_round_trip(tmp_path):
    m = irc.compile(cnn(), quantize="int8", calibration=feeds((1, 8, 8), n=2))
    m.save(tmp_path / "q.bin")
    back = irc.load(tmp_path / "q.bin")
    x = feeds((1, 8, 8), n=1, seed=9)[0]
    np.testing.assert_array_equal(back.run(x)["y"], m.run(x)["y"])
    assert back.options["quantize"] == "int8" and back.graph.op_counts().get("relu") is None


# -- report and fallback ---------------------------------------------------------------------------------

def _with_outlier(calib, value):
    """The same data with one value ``value``: minmax calibration then stretches the input's range."""
    calib = [{"x": f["x"].copy()} for f in calib]
    calib[0]["x"][0, 0, 0, 0] = value
    return calib


def fragile_cnn() -> onnx.ModelProto:
    """cnn() whose conv1 channel 0 is always 0 after the relu, and whose conv2 weights read that channel
    through one tap of 50: harmless in fp32, but every per-channel int8 scale of conv2 becomes 50/127
    and its real weights round away."""
    model = cnn()
    inits = {i.name: i for i in model.graph.initializer}
    arrays = {k: numpy_helper.to_array(v).copy() for k, v in inits.items()}
    arrays["w1"][0], arrays["b1"][0] = 0.0, -1.0
    arrays["w2"][:, 0, 1, 1] = 50.0
    for k in ("w1", "b1", "w2"):
        inits[k].CopyFrom(numpy_helper.from_array(arrays[k], k))
    return model


def test_fragile_layer_falls_back_to_fp32():
    calib = feeds((1, 8, 8))
    m = irc.compile(fragile_cnn(), quantize="int8", calibration=calib)
    rep = m.quant_report
    assert rep.fallback == ["conv2"]
    by_name = {r.name: r for r in rep.layers}
    assert by_name["conv2"].sqnr_db < 10 and min(by_name[n].sqnr_db for n in ("conv1", "gap", "fc")) > 25
    assert "conv2  conv2d" in str(rep) and "fp32 (fallback)" in str(rep)
    # conv2 keeps its float weight and bias; the other layers are int8
    assert m.graph.op_counts().get("qconv2d", 1) == 1
    x = feeds((1, 8, 8), n=1, seed=5)[0]
    fp32 = irc.compile(fragile_cnn()).run(x)["y"]
    forced = irc.compile(fragile_cnn(), quantize="int8", calibration=calib, fallback_sqnr=None)
    err, err_forced = np.abs(m.run(x)["y"] - fp32).max(), np.abs(forced.run(x)["y"] - fp32).max()
    assert err < 0.1 * np.abs(fp32).max() < err_forced
    assert rep.outputs["y"] > 20 > forced.quant_report.outputs["y"]


def test_gemm_beta_folded_into_bias():
    model, calib = mlp(beta=0.5), feeds((12,))
    m = irc.compile(model, quantize="int8", calibration=calib)
    assert m.quant_report.outputs["y"] > 25
    x = feeds((12,), n=1, batch=32, seed=3)[0]
    fp32 = run_ort(model, x)[0]
    assert np.abs(m.run(x)["y"] - fp32).max() < 0.05 * np.abs(fp32).max()


def test_report_of_healthy_model():
    m = irc.compile(cnn(), quantize="int8", calibration=feeds((1, 8, 8)))
    rep = m.quant_report
    assert [r.name for r in rep.layers] == ["conv1", "conv2", "gap", "fc"] and not rep.fallback
    assert all(r.sqnr_db > 25 for r in rep.layers) and rep.outputs["y"] > 25
    assert rep.samples == 64 and rep.to_dict()["layers"][0]["int8"] is True


@pytest.mark.parametrize("method", calibrate.METHODS)
def test_methods_end_to_end(method):
    calib = _with_outlier(feeds((1, 8, 8)), 200.0)
    m = irc.compile(cnn(), quantize="int8", calibration=calib, calibration_method=method, percentile=99.9,
                    fallback_sqnr=None)
    conv1 = next(r for r in m.quant_report.layers if r.name == "conv1")
    # the outlier sinks conv1 under minmax only: the histogram methods clip it
    assert (conv1.sqnr_db < 20) == (method == "minmax")


# -- API / CLI -------------------------------------------------------------------------------------------

def test_stacked_calibration_and_symbolic_batch():
    x = np.random.default_rng(4).standard_normal((40, 1, 8, 8)).astype(np.float64)   # cast to float32
    m = irc.compile(cnn(), quantize="int8", calibration={"x": x})
    assert m.quant_report.samples == 40
    per_sample = irc.compile(cnn(), quantize="int8", calibration={"x": x[:, None]})
    assert per_sample.quant_report.samples == 40


@pytest.mark.parametrize("kwargs, match", [
    ({"quantize": "int8"}, "needs calibration data"),
    ({"quantize": "int8", "calibration": []}, "calibration data is empty"),
    ({"quantize": "int4", "calibration": [{}]}, "quantize='int4' is not supported"),
    ({"calibration": [{}]}, "without quantize='int8'"),
    ({"quantize": "int8", "calibration": [{"y": np.zeros((1, 1, 8, 8), np.float32)}]},
     r"calibration sample 0: unknown input\(s\) \['y'\]"),
    ({"quantize": "int8", "calibration": [{"x": np.zeros((1, 2, 8, 8), np.float32)}]},
     r"calibration sample 0: input 'x'.*axis 1 must be 1"),
    ({"quantize": "int8", "calibration": {"x": np.zeros((3, 8, 8), np.float32)}}, r"input 'x' is f32\[N, 1, 8, 8\]"),
    ({"quantize": "int8", "calibration": {"x": np.zeros((3, 1, 8, 8), np.float32), "z": np.zeros(3)}},
     r"unknown input\(s\) \['z'\]"),
    ({"quantize": "int8", "calibration": 5}, "iterable of feed dicts"),
    ({"quantize": "int8", "calibration": [{"x": np.full((1, 1, 8, 8), np.nan, np.float32)}]},
     "calibration sample 0: input 'x' holds NaN or infinite values"),
    ({"quantize": "int8", "calibration": [{"x": np.zeros((1, 1, 8, 8), np.float32)}], "percentile": 0},
     r"percentile must be in \(0, 100\]"),
    ({"quantize": "int8", "calibration": [{"x": np.zeros((1, 1, 8, 8), np.float32)}],
      "calibration_method": "kl"}, "unknown calibration method 'kl'"),
    ({"quantize": "int8", "calibration": [{"x": np.zeros((1, 1, 8, 8), np.float32)}],
      "activation_type": "u4"}, "activation type must be"),
])
def test_bad_quantization_input(kwargs, match):
    with pytest.raises(irc.IrcError, match=match):
        irc.compile(cnn(), **kwargs)


def test_quantize_pass_only_on_request():
    from irc.passes import PASSES
    from irc.frontend import import_onnx
    with pytest.raises(irc.IrcError, match="runs only when quantization is requested"):
        PASSES["quantize"].fn(import_onnx(cnn()))
    with pytest.raises(irc.IrcError, match="do not run in this pipeline"):
        irc.compile(cnn(), print_after=["quantize"])


def test_quantize_runs_after_the_weights_are_final_and_before_fusion():
    from irc.passes import pipeline
    from irc.quantize.qdq import with_quantize
    o2 = with_quantize(pipeline(2))
    assert o2.index("quantize") == o2.index("fold-batchnorm") + 1 and o2.index("quantize") < o2.index("fuse")
    assert with_quantize(pipeline(0)) == ["quantize"]
    assert with_quantize(pipeline(1)) == pipeline(1) + ["quantize"]
    no_bn = with_quantize(pipeline(2, ["fold-batchnorm"]))
    assert no_bn.index("quantize") == no_bn.index("dce") + 1


def test_print_after_quantize_and_disable(capsys):
    import io
    out = io.StringIO()
    irc.compile(cnn(), quantize="int8", calibration=feeds((1, 8, 8), n=1), print_after=["quantize"], out=out)
    assert out.getvalue().startswith("// IR after quantize\n") and "quantize_linear" in out.getvalue()
    m = irc.compile(cnn(), quantize="int8", calibration=feeds((1, 8, 8), n=1), disable_passes=["quantize"])
    assert "quantize_linear" not in m.graph.op_counts()


def _calib_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_cli_compile_quantized(tmp_path, capsys):
    model = tmp_path / "cnn.onnx"
    onnx.save(cnn(), str(model))
    calib = _calib_npz(tmp_path / "calib.npz", x=np.random.default_rng(0).standard_normal((32, 1, 8, 8)))
    rc, out, err = irc_cli(capsys, "compile", model, "-o", tmp_path / "q.bin", "--quantize", "int8",
                           "--calibration", calib, "--calibration-method", "entropy", "--report", "--no-warm")
    assert rc == 0, err
    assert "entropy calibration" in out and "conv2  conv2d" in out and "output 'y'" in out
    x = np.random.default_rng(1).standard_normal((2, 1, 8, 8)).astype(np.float32)
    q = irc.load(tmp_path / "q.bin")
    assert q.options["calibration_method"] == "entropy"
    assert_close(q.run({"x": x})["y"], run_ort(cnn(), {"x": x})[0], tol=0.1)


@pytest.mark.parametrize("args, match", [
    (["--quantize", "int8"], "needs calibration data"),
    (["--quantize", "int8", "--calibration", "BAD"], r"calibration data: unknown input\(s\) \['image'\]"),
    (["--quantize", "int8", "--calibration", "SHAPE"], r"input 'x' is f32\[N, 1, 8, 8\]"),
    (["--quantize", "int8", "--calibration", "MISSING.npz"], "--calibration: cannot read"),
    (["--report"], "--report: the quantization report needs --quantize int8"),
])
def test_cli_errors(args, match, tmp_path, capsys):
    model = tmp_path / "cnn.onnx"
    onnx.save(cnn(), str(model))
    files = {"BAD": _calib_npz(tmp_path / "bad.npz", image=np.zeros((4, 1, 8, 8), np.float32)),
             "SHAPE": _calib_npz(tmp_path / "shape.npz", x=np.zeros((4, 8, 8), np.float32)),
             "MISSING.npz": tmp_path / "missing.npz"}
    args = [files.get(a, a) for a in args]
    rc, _, err = irc_cli(capsys, "compile", model, "-o", tmp_path / "q.bin", "--no-warm", *args)
    assert rc == 1 and "Traceback" not in err
    assert err.startswith("irc: error:") and __import__("re").search(match, err), err


def test_cli_rejects_other_schemes(tmp_path, capsys):
    rc, _, err = irc_cli(capsys, "compile", tmp_path / "m.onnx", "-o", tmp_path / "q.bin", "--quantize", "int4")
    assert rc == 2 and "invalid choice: 'int4'" in err
