"""Converters for the ONNX quantization ops whose form differs from the op table's.

- QuantizeLinear, DequantizeLinear (opsets 10..28): ``output_dtype`` (an ONNX element type) becomes the IR
  dtype name; ``saturate`` only concerns float8 results, which irc does not read, so it is dropped;
  ``precision`` (opset 25+) left at its default is dropped (the version check refuses any other value).
- ConvInteger, QLinearConv: 2-D only; ``kernel_shape`` is checked against the weight and dropped.
MatMulInteger, QLinearMatMul and DynamicQuantizeLinear map one to one onto their ops.
"""
from __future__ import annotations

from ..errors import IrcError, UnsupportedError
from .onnx import Converter, converter, onnx_dtype

_QUANT_OPS = {"QuantizeLinear": "quantize_linear", "DequantizeLinear": "dequantize_linear"}
_CONV_OPS = {"ConvInteger": ("conv_integer", 1), "QLinearConv": ("qlinear_conv", 3)}   # op, weight operand


@converter("QuantizeLinear", "DequantizeLinear")
def linear_quantization(cv: Converter, node):
    attrs = cv.attrs(node)
    attrs.pop("saturate", None)
    attrs.pop("precision", None)
    if attrs.get("output_dtype"):
        attrs["output_dtype"] = onnx_dtype(attrs["output_dtype"], f"{cv.where(node)}: output_dtype")
    else:
        attrs.pop("output_dtype", None)
    return cv.emit(node, _QUANT_OPS[node.op_type], cv.inputs(node), attrs)


@converter("ConvInteger", "QLinearConv")
def integer_conv(cv: Converter, node):
    op, wi = _CONV_OPS[node.op_type]
    ins = cv.inputs(node)
    if len(ins) <= wi or ins[0] is None or ins[wi] is None:
        raise IrcError(f"{cv.where(node)}: needs an input and a weight")
    x, w = ins[0], ins[wi]
    if x.type.rank != 4 or w.type.rank != 4:
        raise UnsupportedError(f"{cv.where(node)}: only 2-D {node.op_type} is supported "
                               f"(input {x.type}, weight {w.type})")
    attrs = cv.attrs(node)
    kernel = attrs.pop("kernel_shape", None)
    if kernel is not None and w.type.shape is not None and list(w.type.shape[2:]) != list(kernel):
        raise IrcError(f"{cv.where(node)}: kernel_shape {kernel} does not match the weight {w.type}")
    return cv.emit(node, op, ins, attrs)
