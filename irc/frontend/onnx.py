"""ONNX -> IR.

Each ONNX node becomes IR nodes through a converter. Most ONNX ops map one to one onto an op of the table
(the op's ``onnx=`` names): the generic converter copies the attributes the op declares and the op's
defaults fill the rest. Ops whose form changed across opsets (attributes that became inputs, new
defaults) or that need rewriting get a converter of their own in ``convert_*.py``, registered with
``@converter``, which produces the newest form.

Graph inputs that are also initializers are treated as constants. Every unsupported node is listed in one
UnsupportedError: node name, op type, domain and opset.
"""
from __future__ import annotations

import os
from typing import Callable, Dict, List, Optional

import numpy as np
import onnx
from onnx import numpy_helper

from .. import ops as _ops
from ..errors import IrcError, UnsupportedError
from ..ir import Builder, Graph, TensorType, Value
from ..ir.types import Dim

# ONNX TensorProto element type -> IR dtype
ONNX_DTYPES = {
    onnx.TensorProto.FLOAT: "f32", onnx.TensorProto.FLOAT16: "f16", onnx.TensorProto.DOUBLE: "f64",
    onnx.TensorProto.INT8: "i8", onnx.TensorProto.INT16: "i16", onnx.TensorProto.INT32: "i32",
    onnx.TensorProto.INT64: "i64", onnx.TensorProto.UINT8: "u8", onnx.TensorProto.UINT16: "u16",
    onnx.TensorProto.UINT32: "u32", onnx.TensorProto.UINT64: "u64", onnx.TensorProto.BOOL: "bool",
    onnx.TensorProto.STRING: "str",
}
MIN_OPSET, MAX_OPSET = 7, 23

CONVERTERS: Dict[str, Callable] = {}


def converter(*op_types: str):
    """Register a converter ``fn(cv, node) -> list of Values`` for the given ONNX op types."""
    def deco(fn):
        for t in op_types:
            CONVERTERS[t] = fn
        return fn
    return deco


def load_onnx(model) -> onnx.ModelProto:
    """A ModelProto from a path, bytes or ModelProto; external data is read from beside the file."""
    if isinstance(model, onnx.ModelProto):
        return model
    try:
        if isinstance(model, (bytes, bytearray, memoryview)):
            return onnx.load_from_string(bytes(model))
        path = os.fspath(model)
        if not os.path.exists(path):
            raise IrcError(f"model file {path!r} does not exist")
        return onnx.load(path, load_external_data=True)
    except IrcError:
        raise
    except Exception as e:
        raise IrcError(f"cannot read ONNX model: {type(e).__name__}: {e}") from None


def onnx_dtype(elem_type: int, where: str) -> str:
    try:
        return ONNX_DTYPES[elem_type]
    except KeyError:
        name = onnx.TensorProto.DataType.Name(elem_type) if elem_type in onnx.TensorProto.DataType.values() \
            else str(elem_type)
        raise UnsupportedError(f"{where}: element type {name} is not supported") from None


def value_type(vi: onnx.ValueInfoProto) -> TensorType:
    tt = vi.type.tensor_type
    if not vi.type.HasField("tensor_type"):
        raise UnsupportedError(f"input {vi.name!r}: only tensor inputs are supported")
    dtype = onnx_dtype(tt.elem_type, f"input {vi.name!r}")
    if not tt.HasField("shape"):
        return TensorType(dtype, None)
    dims: List[Dim] = []
    for d in tt.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param:
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return TensorType(dtype, tuple(dims))


def tensor_to_array(t: onnx.TensorProto, where: str) -> np.ndarray:
    onnx_dtype(t.data_type, where)
    try:
        return np.array(numpy_helper.to_array(t))
    except Exception as e:
        raise IrcError(f"{where}: cannot read tensor {t.name!r}: {e}") from None


def attribute_value(a: onnx.AttributeProto, where: str):
    """An ONNX attribute as a Python value: ints, floats (float32 read at its shortest), str, arrays."""
    A = onnx.AttributeProto
    if a.type == A.INT:
        return int(a.i)
    if a.type == A.FLOAT:
        return float(str(np.float32(a.f)))
    if a.type == A.STRING:
        return a.s.decode("utf-8", "replace")
    if a.type == A.INTS:
        return [int(x) for x in a.ints]
    if a.type == A.FLOATS:
        return [float(str(np.float32(x))) for x in a.floats]
    if a.type == A.STRINGS:
        return [s.decode("utf-8", "replace") for s in a.strings]
    if a.type == A.TENSOR:
        return tensor_to_array(a.t, where)
    raise UnsupportedError(f"{where}: attribute {a.name!r} of type {A.AttributeType.Name(a.type)} is not supported")


class Converter:
    """State while converting one graph: the IR graph, the name -> Value map, the opset."""

    def __init__(self, opset: int):
        self.graph = Graph()
        self.opset = opset
        self.env: Dict[str, Value] = {}

    def builder(self, node: onnx.NodeProto) -> Builder:
        return Builder(self.graph, name=node.name or (node.output[0] if node.output else node.op_type))

    def where(self, node: onnx.NodeProto) -> str:
        return f"node {node.name or '?'!r} ({node.op_type})"

    def inputs(self, node: onnx.NodeProto) -> List[Optional[Value]]:
        out = []
        for name in node.input:
            if name == "":
                out.append(None)
            elif name not in self.env:
                raise IrcError(f"{self.where(node)}: input {name!r} is not defined by any node, "
                               "initializer or graph input")
            else:
                out.append(self.env[name])
        while out and out[-1] is None:
            out.pop()
        return out

    def attrs(self, node: onnx.NodeProto) -> dict:
        return {a.name: attribute_value(a, self.where(node)) for a in node.attribute}

    def const_input(self, node, i: int, what: str) -> Optional[np.ndarray]:
        """The value of operand ``i`` which must be a constant (None when the operand is omitted)."""
        ins = self.inputs(node)
        if i >= len(ins) or ins[i] is None:
            return None
        v = ins[i].const_value
        if v is None:
            raise UnsupportedError(f"{self.where(node)}: {what} (input {i}) must be a constant")
        return v


def generic(cv: Converter, node: onnx.NodeProto) -> List[Value]:
    """One ONNX op onto the op of the table that names it, attributes copied."""
    opdef = _ops.BY_ONNX[node.op_type]
    attrs = cv.attrs(node)
    unknown = [k for k in attrs if k not in opdef.attrs]
    if unknown:
        raise UnsupportedError(f"{cv.where(node)}: attributes {unknown} are not supported")
    return cv.builder(node).node(opdef.name, cv.inputs(node), attrs).outputs


def is_supported(node: onnx.NodeProto) -> bool:
    return node.domain in ("", "ai.onnx") and (node.op_type in CONVERTERS or node.op_type in _ops.BY_ONNX)


def import_onnx(model) -> Graph:
    """Convert an ONNX model (path, bytes or ModelProto) to an IR graph."""
    from . import (convert_core, convert_elementwise, convert_nn, convert_pool_norm,  # noqa: F401
                   convert_tensor)  # (registers the converters)
    proto = load_onnx(model)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        raise UnsupportedError("model imports no version of the default ONNX domain")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UnsupportedError(f"opset {opset} is not supported (irc reads opsets {MIN_OPSET} to {MAX_OPSET})")
    g = proto.graph
    bad = [n for n in g.node if not is_supported(n)]
    if bad:
        lines = [f"{n.name or '?'!r}: {n.op_type} (domain {n.domain or 'ai.onnx'!r}, opset {opset})" for n in bad]
        raise UnsupportedError(f"{len(bad)} unsupported node(s): " + "; ".join(lines))
    cv = Converter(opset)
    cv.graph.name = "main"
    inits = {t.name for t in g.initializer}
    for vi in g.input:
        if vi.name not in inits:
            cv.env[vi.name] = cv.graph.add_input(vi.name, value_type(vi))
    for t in g.initializer:
        cv.env[t.name] = cv.graph.add_const(tensor_to_array(t, f"initializer {t.name!r}"), name=t.name)
    for node in g.node:
        fn = CONVERTERS.get(node.op_type, generic)
        try:
            outs = fn(cv, node)
        except IrcError as e:
            msg = str(e)
            raise type(e)(msg if msg.startswith("node ") else f"{cv.where(node)}: {msg}") from None
        for name, v in zip(node.output, outs):
            if name:
                if name in cv.env:
                    raise IrcError(f"{cv.where(node)}: output {name!r} is defined twice")
                v.name = name
                cv.env[name] = v
    for vi in g.output:
        if vi.name not in cv.env:
            raise IrcError(f"graph output {vi.name!r} is not produced by any node")
        v = cv.env[vi.name]
        if v.producer is None or v.is_const or v in cv.graph.outputs:
            # an output that is an input, a constant or another output gets its own copy
            v = Builder(cv.graph, name=vi.name).op("identity", v)
        cv.graph.add_output(v, vi.name)
    return cv.graph
