"""The op table: importing this package registers every op (see registry.py for how an op is defined)."""
from . import core, elementwise, fused, nn, norm, pool, quant, reduce, tensor  # noqa: F401  (registration)
from .registry import BY_ONNX, OPS, REQUIRED, InferContext, OpDef, define, get, infer_types, run_reference

__all__ = ["BY_ONNX", "OPS", "REQUIRED", "InferContext", "OpDef", "define", "get", "infer_types",
           "run_reference"]
