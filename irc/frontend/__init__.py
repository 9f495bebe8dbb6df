"""Frontends: model formats -> IR."""
from .onnx import import_onnx, load_onnx

__all__ = ["import_onnx", "load_onnx"]
