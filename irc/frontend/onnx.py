"""ONNX -> IR.

Each ONNX node becomes IR nodes through a converter. Most ONNX ops map one to one onto an op of the table
(the op's ``onnx=`` names): the generic converter copies the attributes the op declares and the op's
defaults fill the rest. Ops whose form changed across opsets (attributes that became inputs, new
defaults) or that need rewriting get a converter of their own in ``convert_*.py``, registered with
``@converter``, which produces the newest form.

Graph inputs that are also initializers are treated as constants. Every unsupported node is listed in one
UnsupportedError: node name, op type, domain and opset. Which versions of each op irc reads is decided in
``onnx_versions``; a node irc cannot convert whose op has an ONNX function is replaced by its body first
(``onnx_functions``).
"""
from __future__ import annotations

import heapq
import os
from typing import Callable, Dict, List, Optional

import numpy as np
import onnx
from onnx import external_data_helper, numpy_helper

from .. import ops as _ops
from ..errors import IrcError, UnsupportedError
from ..ir import Builder, Graph, TensorType, Value
from ..ir.types import Dim
from ..limits import check_tensor_size
from .onnx_functions import inline_functions
from .onnx_versions import MAX_OPSET, version_problem

# ONNX TensorProto element type -> IR dtype
ONNX_DTYPES = {
    onnx.TensorProto.FLOAT: "f32", onnx.TensorProto.FLOAT16: "f16", onnx.TensorProto.DOUBLE: "f64",
    onnx.TensorProto.INT8: "i8", onnx.TensorProto.INT16: "i16", onnx.TensorProto.INT32: "i32",
    onnx.TensorProto.INT64: "i64", onnx.TensorProto.UINT8: "u8", onnx.TensorProto.UINT16: "u16",
    onnx.TensorProto.UINT32: "u32", onnx.TensorProto.UINT64: "u64", onnx.TensorProto.BOOL: "bool",
    onnx.TensorProto.STRING: "str",
}
MIN_OPSET = 7

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
        if not isinstance(model, (str, os.PathLike)):
            raise IrcError(f"cannot read an ONNX model from a {type(model).__name__}")
        path = os.fspath(model)
        if not os.path.exists(path):
            raise IrcError(f"model file {path!r} does not exist")
        proto = onnx.load(path, load_external_data=False)
        _check_external_sizes(proto)
        external_data_helper.load_external_data_for_model(proto, os.path.dirname(os.path.abspath(path)))
        return proto
    except IrcError:
        raise
    except Exception as e:
        raise IrcError(f"cannot read ONNX model: {type(e).__name__}: {e}") from None


def _check_external_sizes(proto: onnx.ModelProto) -> None:
    """Check the size of every tensor stored outside the model file before its bytes are read."""
    g = proto.graph
    tensors = list(g.initializer) + [a.t for n in g.node for a in n.attribute if a.HasField("t")]
    for t in tensors:
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        where = f"initializer {t.name!r} (external data {info.get('location', '?')!r})"
        check_tensor_size(t.dims, _itemsize(t.data_type), where)
        if info.get("length", "").isdigit():
            check_tensor_size([int(info["length"])], 1, where)


def _itemsize(elem_type: int) -> int:
    dtype = ONNX_DTYPES.get(elem_type)
    return TensorType(dtype, ()).numpy_dtype.itemsize if dtype else 1


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
    for i, d in enumerate(tt.shape.dim):
        if d.HasField("dim_value"):
            if d.dim_value < 0:
                raise IrcError(f"value {vi.name!r}: dim {i} is negative ({d.dim_value})")
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param:
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return TensorType(dtype, tuple(dims))


def tensor_to_array(t: onnx.TensorProto, where: str) -> np.ndarray:
    """The tensor's value, after checking its element type and that its size is within the limit."""
    onnx_dtype(t.data_type, where)
    check_tensor_size(t.dims, _itemsize(t.data_type), where)
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
        return f"node {node_label(node)} ({node.op_type})"

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

    def check_attrs(self, node: onnx.NodeProto, op: str, attrs: dict) -> None:
        """Attributes IR op ``op`` does not know are an UnsupportedError naming ``node``."""
        unknown = [k for k in attrs if k not in _ops.get(op).attrs]
        if unknown:
            raise UnsupportedError(f"{self.where(node)}: attributes {unknown} are not supported")

    def emit(self, node: onnx.NodeProto, op: str, operands, attrs: dict) -> List[Value]:
        """Add IR op ``op`` for ``node`` (trailing omitted operands dropped; attributes checked)."""
        self.check_attrs(node, op, attrs)
        operands = list(operands)
        while operands and operands[-1] is None:
            operands.pop()
        return self.builder(node).node(op, operands, attrs).outputs

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
    op = _ops.BY_ONNX[node.op_type].name
    attrs = cv.attrs(node)
    cv.check_attrs(node, op, attrs)
    return cv.builder(node).node(op, cv.inputs(node), attrs).outputs


def is_supported(node: onnx.NodeProto) -> bool:
    return node.domain in ("", "ai.onnx") and (node.op_type in CONVERTERS or node.op_type in _ops.BY_ONNX)


def node_label(node: onnx.NodeProto) -> str:
    """How messages name a node: its name, or its first output when it has none."""
    if node.name:
        return repr(node.name)
    return f"(output {node.output[0]!r})" if node.output and node.output[0] else "(unnamed)"


def _opsets(proto: onnx.ModelProto) -> Dict[str, int]:
    """Domain -> imported opset version ("" for the default domain, which must be in range)."""
    opsets = {("" if o.domain == "ai.onnx" else o.domain): int(o.version) for o in proto.opset_import}
    if "" not in opsets:
        raise UnsupportedError("model imports no version of the default ONNX domain")
    if opsets[""] < MIN_OPSET:
        raise UnsupportedError(f"opset {opsets['']} is not supported (irc reads opsets {MIN_OPSET} to {MAX_OPSET})")
    return opsets


def _unique(names, what: str) -> set:
    seen = set()
    for n in names:
        if n in seen:
            raise IrcError(f"{what} {n!r} is defined twice")
        seen.add(n)
    return seen


def ordered_nodes(g: onnx.GraphProto) -> List[onnx.NodeProto]:
    """The nodes in an order where each input is defined before use (the file's order where it is one).

    IrcError names an input defined nowhere, an output defined twice, or the nodes of a cycle.
    """
    sources = _unique([t.name for t in g.initializer], "initializer") | _unique([v.name for v in g.input],
                                                                                   "graph input")
    producer: Dict[str, int] = {}
    for i, node in enumerate(g.node):
        for name in filter(None, node.output):
            if name in producer or name in sources:
                other = "a graph input or initializer" if name in sources else \
                    f"node {node_label(g.node[producer[name]])}"
                raise IrcError(f"node {node_label(node)} ({node.op_type}): output {name!r} is already defined "
                               f"by {other}")
            producer[name] = i
    deps = []
    for node in g.node:
        for name in filter(None, node.input):
            if name not in producer and name not in sources:
                raise IrcError(f"node {node_label(node)} ({node.op_type}): input {name!r} is not defined by "
                               "any node, initializer or graph input")
        deps.append({producer[n] for n in node.input if n in producer})
    return [g.node[i] for i in _topological(deps, g)]


def _topological(deps: List[set], g: onnx.GraphProto) -> List[int]:
    """Kahn's algorithm, smallest index first (keeps an already sorted order)."""
    users: Dict[int, List[int]] = {}
    for i, d in enumerate(deps):
        for j in d:
            users.setdefault(j, []).append(i)
    waiting = [len(d) for d in deps]
    ready = [i for i, n in enumerate(waiting) if n == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users.get(i, ()):
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    if len(order) < len(deps):
        stuck = set(range(len(deps))) - set(order)
        while True:  # drop the nodes that only wait on a cycle: what is left lies on one
            sinks = {i for i in stuck if not stuck.intersection(users.get(i, ()))}
            if not sinks:
                break
            stuck -= sinks
        raise IrcError("graph has a cycle through nodes " +
                       ", ".join(f"{node_label(g.node[i])} ({g.node[i].op_type})" for i in sorted(stuck)))
    return order


def _tensor_hints(g: onnx.GraphProto) -> Dict[str, TensorType]:
    """Declared types of values (value_info and graph outputs) that name an element type."""
    hints = {}
    for vi in list(g.value_info) + list(g.output):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type in ONNX_DTYPES:
            hints[vi.name] = value_type(vi)
    return hints


class Unsupported:
    """The unsupported nodes met while converting, reported together in one UnsupportedError."""

    def __init__(self, opsets: Dict[str, int]):
        self.opsets = opsets
        self.groups: Dict[tuple, List[str]] = {}

    def add(self, node: onnx.NodeProto, reason: str = ""):
        domain = "" if node.domain == "ai.onnx" else node.domain
        key = (node.op_type, domain or "ai.onnx", self.opsets.get(domain, "?"))
        self.groups.setdefault(key, []).append(node_label(node) + (f" ({reason})" if reason else ""))

    def raise_if_any(self):
        if not self.groups:
            return
        count = sum(len(v) for v in self.groups.values())
        lines = [f"{count} unsupported node(s):"]
        for (op, domain, version), labels in sorted(self.groups.items(), key=lambda kv: kv[0][:2]):
            lines.append(f"  {op} (domain {domain!r}, opset {version}): {', '.join(labels)}")
        raise UnsupportedError("\n".join(lines))


def _add_sources(cv: Converter, g: onnx.GraphProto) -> None:
    """Graph inputs (those that are not also initializers) and initializers (as constants)."""
    inits = {t.name for t in g.initializer}
    if g.sparse_initializer:
        raise UnsupportedError(f"sparse initializers are not supported ({g.sparse_initializer[0].values.name!r})")
    for vi in g.input:
        if vi.name not in inits:
            cv.env[vi.name] = cv.graph.add_input(vi.name, value_type(vi))
    for t in g.initializer:
        v = cv.graph.add_const(tensor_to_array(t, f"initializer {t.name!r}"), name=t.name)
        v.name = t.name
        cv.env[t.name] = v


def _convert(cv: Converter, node: onnx.NodeProto) -> List[Value]:
    """The node's converter; any failure becomes an IrcError of the same class naming the node."""
    fn = CONVERTERS.get(node.op_type, generic)
    try:
        return fn(cv, node)
    except IrcError as e:
        msg = str(e)
        raise type(e)(msg if msg.startswith("node ") else f"{cv.where(node)}: {msg}") from None
    except Exception as e:  # a converter bug must still name the node
        raise IrcError(f"{cv.where(node)}: conversion failed: {type(e).__name__}: {e}") from e


def _bind(cv: Converter, node: onnx.NodeProto, outs: List[Value], hints: Dict[str, TensorType],
          needed: set) -> Optional[str]:
    """Name the results after the node's outputs, refined by declared types and checked against the
    tensor size limit; the reason when an output another node reads was not produced."""
    for i, name in enumerate(node.output):
        if not name:
            continue
        if i >= len(outs) or outs[i] is None:
            if name in needed:
                return f"output {i} ({name!r}) is not supported"
            continue
        v = outs[i]
        hint = hints.get(name)
        if hint is not None:
            if hint.dtype != v.type.dtype:
                raise IrcError(f"{cv.where(node)}: output {name!r} is declared {hint} but the node gives {v.type}")
            v.type = v.type.refined_by(hint)
        if v.type.shape is not None:  # before constant folding could allocate it
            check_tensor_size(v.type.shape, v.type.numpy_dtype.itemsize, f"{cv.where(node)}: output {name!r}")
        v.name = name
        cv.env[name] = v
    return None


def _reason(cv: Converter, node: onnx.NodeProto, err: IrcError) -> str:
    msg, prefix = str(err), cv.where(node) + ": "
    return msg[len(prefix):] if msg.startswith(prefix) else msg


def _add_outputs(cv: Converter, g: onnx.GraphProto) -> None:
    _unique([vi.name for vi in g.output], "graph output")
    for vi in g.output:
        if vi.name not in cv.env:
            raise IrcError(f"graph output {vi.name!r} is not produced by any node")
        v = cv.env[vi.name]
        if v.producer is None or v.is_const or v in cv.graph.outputs:
            # an output that is an input, a constant or another output gets its own copy
            v = Builder(cv.graph, name=vi.name).op("identity", v)
        cv.graph.add_output(v, vi.name)


def import_onnx(model) -> Graph:
    """Convert an ONNX model (path, bytes or ModelProto) to an IR graph.

    Every unsupported node is reported in one UnsupportedError; nodes of supported ops that read an
    unsupported node's results are not converted (nor reported: they may well convert).
    """
    from . import (convert_core, convert_elementwise, convert_nn, convert_pool_norm,  # noqa: F401
                   convert_quant, convert_tensor)  # (registers the converters)
    proto = load_onnx(model)
    if not proto.HasField("graph"):
        raise IrcError("not an ONNX model: it has no graph")
    opsets = _opsets(proto)
    g = inline_functions(proto, opsets, lambda n: is_supported(n) and version_problem(n, opsets[""]) is None)
    nodes = ordered_nodes(g)
    cv = Converter(min(opsets[""], MAX_OPSET))
    _add_sources(cv, g)
    hints = _tensor_hints(g)
    needed = {n for node in g.node for n in node.input} | {vi.name for vi in g.output}
    unsupported, skipped = Unsupported(opsets), set()
    for node in nodes:
        reason = None
        if not is_supported(node):
            reason = ""
        elif (problem := version_problem(node, opsets[""])) is not None:
            reason = problem
        elif any(name in skipped for name in node.input):
            skipped.update(node.output)  # not converted: it reads a result that does not exist
        else:
            try:
                reason = _bind(cv, node, _convert(cv, node), hints, needed)
            except UnsupportedError as e:
                reason = _reason(cv, node, e)
        if reason is not None:
            unsupported.add(node, reason)
            skipped.update(node.output)
    unsupported.raise_if_any()
    _add_outputs(cv, g)
    return cv.graph
