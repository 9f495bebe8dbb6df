"""Quantized ONNX models made by onnxruntime.quantization compile in irc and agree with onnxruntime's own
int8 results: a small CNN and an MLP in the QDQ format (per channel and per tensor, int8 and uint8), the
QOperator format (QLinearConv, QLinearMatMul) and dynamic quantization (DynamicQuantizeLinear,
ConvInteger, MatMulInteger). Agreement is "exactly or within one quantization step of the output on at
least 99% of the elements". The fuse-qdq pass is checked to fire, and differentially: the graph before
and after it gives the same outputs within one quantization step."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import irc
from irc.frontend import import_onnx
from irc.ir import parse_graph
from irc.ops.interpret import interpret
from irc.passes import PassManager, pipeline
from tests.passes.fixtures import load_cases, random_feeds
from tests.util import run_ort

ort_quant = pytest.importorskip("onnxruntime.quantization")
RNG = np.random.default_rng(11)


def _init(name, *shape, scale=0.2):
    return numpy_helper.from_array((RNG.standard_normal(shape) * scale).astype(np.float32), name)


def cnn_model() -> onnx.ModelProto:
    """conv-relu-maxpool-conv(stride 2)-relu-flatten-gemm on a 3x16x16 image."""
    inits = [_init("w1", 8, 3, 3, 3, scale=0.3), _init("b1", 8, scale=0.1), _init("w2", 16, 8, 3, 3),
             _init("b2", 16, scale=0.1), _init("w3", 256, 10, scale=0.1), _init("b3", 10, scale=0.1)]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("Flatten", ["r2"], ["f"]),
             helper.make_node("Gemm", ["f", "w3", "b3"], ["y"])]
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def mlp_model() -> onnx.ModelProto:
    """matmul-add-relu twice, then a matmul, on a batch of 4 rows of 32 features."""
    inits = [_init("w1", 32, 64), _init("b1", 64, scale=0.1), _init("w2", 64, 48), _init("b2", 48, scale=0.1),
             _init("w3", 48, 5)]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["m1"]), helper.make_node("Add", ["m1", "b1"], ["a1"]),
             helper.make_node("Relu", ["a1"], ["r1"]),
             helper.make_node("MatMul", ["r1", "w2"], ["m2"]), helper.make_node("Add", ["m2", "b2"], ["a2"]),
             helper.make_node("Relu", ["a2"], ["r2"]),
             helper.make_node("MatMul", ["r2", "w3"], ["y"])]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 5])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


MODELS = {"cnn": (cnn_model, (1, 3, 16, 16)), "mlp": (mlp_model, (4, 32))}


class _Calibration(ort_quant.CalibrationDataReader):
    def __init__(self, shape, n=8):
        self.samples = iter([{"x": RNG.standard_normal(shape).astype(np.float32)} for _ in range(n)])

    def get_next(self):
        return next(self.samples, None)


Q = ort_quant.QuantType
VARIANTS = {
    # id: (model, quantize_static keyword arguments, or None for quantize_dynamic)
    "cnn-qdq-per-channel": ("cnn", dict(per_channel=True)),
    "cnn-qdq-per-tensor-u8": ("cnn", dict(per_channel=False, activation_type=Q.QUInt8, weight_type=Q.QUInt8)),
    "cnn-qdq-u8-act-i8-weight": ("cnn", dict(per_channel=True, activation_type=Q.QUInt8)),
    "cnn-qoperator": ("cnn", dict(quant_format=ort_quant.QuantFormat.QOperator, per_channel=True,
                                  op_types_to_quantize=["Conv", "MaxPool", "Flatten"])),
    "cnn-dynamic": ("cnn", None),
    "mlp-qdq-per-channel": ("mlp", dict(per_channel=True)),
    "mlp-qdq-per-tensor": ("mlp", dict(per_channel=False)),
    "mlp-qoperator": ("mlp", dict(quant_format=ort_quant.QuantFormat.QOperator, op_types_to_quantize=["MatMul"])),
    "mlp-dynamic": ("mlp", None),
}


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    """Variant id -> (quantized ModelProto, input shape), made on first use."""
    folder, made = tmp_path_factory.mktemp("quantized"), {}

    def get(name):
        if name not in made:
            base, kwargs = VARIANTS[name]
            build, shape = MODELS[base]
            src, dst = folder / f"{base}.onnx", folder / f"{name}.onnx"
            onnx.save(build(), str(src))
            if kwargs is None:
                ort_quant.quantize_dynamic(str(src), str(dst))
            else:
                kwargs = {"quant_format": ort_quant.QuantFormat.QDQ, **kwargs}
                ort_quant.quantize_static(str(src), str(dst), _Calibration(shape), **kwargs)
            made[name] = (onnx.load(str(dst)), shape)
        return made[name]
    return get


def output_step(model: onnx.ModelProto) -> float:
    """The quantization step of the output: the scale of the DequantizeLinear that produces it (0 when the
    output is computed in float, as after dynamic quantization)."""
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    out = model.graph.output[0].name
    node = next(n for n in model.graph.node if out in n.output)
    return float(inits[node.input[1]].reshape(-1)[0]) if node.op_type == "DequantizeLinear" else 0.0


def assert_within_one_step(actual, expected, step, what):
    """|actual - expected| within one step (plus float rounding) on >= 99% of the elements."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, what
    tol = step * 1.001 + 1e-5 * max(1.0, float(np.abs(expected).max()))
    close = np.abs(actual.astype(np.float64) - expected) <= tol
    assert close.mean() >= 0.99, f"{what}: {100 * (1 - close.mean()):.2f}% of elements differ by more than {tol:g}"


@pytest.mark.parametrize("name", list(VARIANTS))
def test_quantized_model_agrees_with_onnxruntime(quantized, name):
    model, shape = quantized(name)
    compiled = irc.compile(model)
    step = output_step(model)
    for seed in range(3):
        x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
        expected = run_ort(model, {"x": x})[0]
        assert_within_one_step(compiled.run({"x": x})["y"], expected, step, f"{name}, seed {seed}")


# variant -> the op counts after -O2: every conv/gemm/matmul became a fused int8 op. The CNN keeps a Q at
# its input and a DQ at its output only (maxpool and flatten run on int8); the MLP's quantized adds (the
# quantizer rounds the matmul's result before adding the bias) keep their own DQ -> add -> Q.
FUSED = {"cnn-qdq-per-channel": {"qconv2d": 2, "qgemm": 1, "maxpool": 1, "flatten": 1, "quantize_linear": 1,
                                 "dequantize_linear": 1},
         "cnn-qdq-per-tensor-u8": {"qconv2d": 2, "qgemm": 1, "maxpool": 1, "flatten": 1, "quantize_linear": 1,
                                   "dequantize_linear": 1},
         "mlp-qdq-per-channel": {"qgemm": 3, "quantize_linear": 3, "dequantize_linear": 3, "add": 2},
         "mlp-qdq-per-tensor": {"qgemm": 3, "quantize_linear": 3, "dequantize_linear": 3, "add": 2}}


@pytest.mark.parametrize("name", list(FUSED))
def test_fuse_qdq_turns_the_float_ops_into_int8_ops(quantized, name):
    graph = PassManager(pipeline(2)).run(import_onnx(quantized(name)[0]))
    assert graph.op_counts() == FUSED[name]


@pytest.mark.parametrize("name", ["cnn-qdq-per-channel", "cnn-qdq-per-tensor-u8", "mlp-qdq-per-tensor"])
def test_fuse_qdq_keeps_the_outputs_within_one_step(quantized, name):
    """Differential: the reference interpreter on the graph before and after fuse-qdq."""
    model, shape = quantized(name)
    before = PassManager(pipeline(2)[:pipeline(2).index("fuse-qdq")]).run(import_onnx(model))
    after = PassManager(["fuse-qdq"], verify_each=True).run(before.clone())
    for seed in range(3):
        feeds = {"x": np.random.default_rng(seed).standard_normal(shape).astype(np.float32)}
        assert_within_one_step(interpret(after, feeds)[0], interpret(before, feeds)[0], output_step(model),
                               f"{name}, seed {seed}")


GOLDEN = [c for c in load_cases() if c.passes == ["fuse-qdq"]]


@pytest.mark.parametrize("case", GOLDEN, ids=[c.what for c in GOLDEN])
def test_fuse_qdq_golden_cases_keep_their_outputs(case):
    """Differential on the golden cases: integer results within one step, float results within rounding."""
    before = parse_graph(case.before)
    after = PassManager(["fuse-qdq"], verify_each=True).run(parse_graph(case.before))
    for seed in range(4):
        feeds = random_feeds(before, seed)
        for a, b in zip(interpret(after, feeds), interpret(before, feeds)):
            assert a.dtype == b.dtype and a.shape == b.shape
            tol = 1 if a.dtype.kind in "iu" else 1e-5 * max(1.0, float(np.abs(b).max()))
            assert np.abs(a.astype(np.float64) - b).max() <= tol


def test_int8_model_runs_at_other_batch_sizes(quantized):
    """A symbolic batch: the int8 kernels are lowered per bound shape."""
    model, _ = quantized("mlp-qdq-per-channel")
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for vi in (model.graph.input[0], model.graph.output[0]):
        vi.type.tensor_type.shape.dim[0].dim_param = "batch"
    compiled = irc.compile(model)
    for batch in (1, 7):
        x = RNG.standard_normal((batch, 32)).astype(np.float32)
        assert_within_one_step(compiled.run({"x": x})["y"], run_ort(model, {"x": x})[0], output_step(model),
                               f"batch {batch}")


def test_int8_model_round_trips_through_the_artifact(quantized, tmp_path):
    """The fused int8 ops (their constants and attributes) survive save and load exactly."""
    model, shape = quantized("cnn-qdq-per-channel")
    compiled = irc.compile(model)
    compiled.save(str(tmp_path / "cnn.bin"))
    x = RNG.standard_normal(shape).astype(np.float32)
    np.testing.assert_array_equal(irc.load(str(tmp_path / "cnn.bin")).run({"x": x})["y"], compiled.run({"x": x})["y"])
