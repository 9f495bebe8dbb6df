"""Golden tests of the quantize pass: a hand-made graph and calibration feed, and the QDQ graph derived by
hand from them (scales and zero points by onnxruntime's formulas, written out below)."""
import numpy as np

from irc.ir import parse_graph, print_graph
from irc.passes import PassManager
from irc.quantize import QuantConfig


def _f32(x: float) -> str:
    """A float32 value as text that parses back to the same float32."""
    return f"{float(np.float32(x)):.9g}"


def _quantize(text: str, feed: dict) -> str:
    config = QuantConfig([{k: np.asarray(v, np.float32) for k, v in feed.items()}])
    graph = PassManager(["quantize"], verify_each=True, options={"quantize": {"config": config}})
    return print_graph(graph.run(parse_graph(text)))


def test_matmul_relu_flatten():
    """x in [-2.984375, 0]: u8 scale 2.984375/255, zero point 255. The weight's columns have max|w|
    127/64 and 127/128: scales 1/64 and 1/128, int8 [[127, 32], [-32, -127]]. The relu reads the matmul
    alone and goes: the matmul's result takes the relu's range [0, 2.984375 * 127/128], zero point 0.
    The flatten reuses those constants."""
    before = """graph main(%x: f32[2, 2]) {
  %0 = const() {value=dense<1.984375, 0.25, -0.5, -0.9921875>} : f32[2, 2]
  %1 = matmul(%x, %0) : f32[2, 2]
  %2 = relu(%1) : f32[2, 2]
  %3 = flatten(%2) {axis=0} : f32[1, 4]
  return %3 as "y"
}"""
    after = f"""graph main(%x: f32[2, 2]) {{
  %0 = const() {{value=dense<{_f32(2.984375 / 255)}>}} : f32[]
  %1 = const() {{value=dense<255>}} : u8[]
  %2 = quantize_linear(%x, %0, %1) : u8[2, 2] loc("x")
  %3 = dequantize_linear(%2, %0, %1) : f32[2, 2] loc("x")
  %4 = const() {{value=dense<127, 32, -32, -127>}} : i8[2, 2]
  %5 = const() {{value=dense<0.015625, 0.0078125>}} : f32[2]
  %6 = const() {{value=dense<0, 0>}} : i8[2]
  %7 = dequantize_linear(%4, %5, %6) : f32[2, 2]
  %8 = matmul(%3, %7) : f32[2, 2]
  %9 = const() {{value=dense<{_f32(2.984375 * 0.9921875 / 255)}>}} : f32[]
  %10 = const() {{value=dense<0>}} : u8[]
  %11 = quantize_linear(%8, %9, %10) : u8[2, 2]
  %12 = dequantize_linear(%11, %9, %10) : f32[2, 2]
  %13 = flatten(%12) {{axis=0}} : f32[1, 4]
  %14 = quantize_linear(%13, %9, %10) : u8[1, 4]
  %15 = dequantize_linear(%14, %9, %10) : f32[1, 4]
  return %15 as "y"
}}"""
    got = _quantize(before, {"x": [[-1, 0], [0, -2.984375]]})
    assert got == print_graph(parse_graph(after))


def test_gemm_bias_with_beta():
    """x in [-1, 1]: scale 2/255, zero point round-half-even(127.5) = 128. The weight row [1, 0.5]: scale
    1/127, int8 [127, 64] (63.5 rounds to even). beta 0.5 folds into the bias, 0.25, which becomes int32
    round(0.25 / (2/255 * 1/127)) = 4048, and beta becomes 1. The result, 0.75, gives scale 0.75/255."""
    before = """graph main(%x: f32[1, 2]) {
  %0 = const() {value=dense<1.0, 0.5>} : f32[1, 2]
  %1 = const() {value=dense<0.5>} : f32[1]
  %2 = gemm(%x, %0, %1) {transB=1, beta=0.5} : f32[1, 1] loc("fc")
  return %2 as "y"
}"""
    bias_scale = np.float32(np.float32(2 / 255) * np.float32(1 / 127))
    after = f"""graph main(%x: f32[1, 2]) {{
  %0 = const() {{value=dense<{_f32(2 / 255)}>}} : f32[]
  %1 = const() {{value=dense<128>}} : u8[]
  %2 = quantize_linear(%x, %0, %1) : u8[1, 2] loc("x")
  %3 = dequantize_linear(%2, %0, %1) : f32[1, 2] loc("x")
  %4 = const() {{value=dense<127, 64>}} : i8[1, 2]
  %5 = const() {{value=dense<{_f32(1 / 127)}>}} : f32[1]
  %6 = const() {{value=dense<0>}} : i8[1]
  %7 = dequantize_linear(%4, %5, %6) {{axis=0}} : f32[1, 2] loc("fc")
  %8 = const() {{value=dense<4048>}} : i32[1]
  %9 = const() {{value=dense<{_f32(bias_scale)}>}} : f32[1]
  %10 = const() {{value=dense<0>}} : i32[1]
  %11 = dequantize_linear(%8, %9, %10) {{axis=0}} : f32[1] loc("fc")
  %12 = gemm(%3, %7, %11) {{transB=1, beta=1.0}} : f32[1, 1] loc("fc")
  %13 = const() {{value=dense<{_f32(0.75 / 255)}>}} : f32[]
  %14 = const() {{value=dense<0>}} : u8[]
  %15 = quantize_linear(%12, %13, %14) : u8[1, 1] loc("fc")
  %16 = dequantize_linear(%15, %13, %14) : f32[1, 1] loc("fc")
  return %16 as "y"
}}"""
    got = _quantize(before, {"x": [[1, -1]]})
    assert got == print_graph(parse_graph(after))
