"""Converters for ONNX pool and norm ops whose form differs from the op table's (opset changes, rewrites)."""
from __future__ import annotations

from ..errors import UnsupportedError
from .onnx import Converter, converter, generic
