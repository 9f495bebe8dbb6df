"""The IR written back as an ONNX model (``irc dump --format onnx``), to look at in ONNX tools.

An op whose op-table entry names an ONNX op becomes that op (its first ``onnx=`` name) at opset
``MAX_OPSET`` of the frontend, the IR's newest form, with the attributes the ONNX schema knows; dtype
names become ONNX element types. A node that ONNX cannot express (no ONNX name, or an attribute the
schema lacks with a non-default value, such as a fused epilogue or a chosen algorithm) becomes an op of
domain ``irc`` named after the IR op, carrying all its attributes. Constants become initializers. The
standard part of the result passes ``onnx.checker``.
"""
from __future__ import annotations

import json
from typing import Dict, List, Optional

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import IrcError
from ..frontend.onnx import MAX_OPSET, ONNX_DTYPES
from ..ir import Graph, Node, TensorType, Value
from ..ir.types import to_numpy_dtype
from ..ops.registry import REQUIRED, get

IRC_DOMAIN = "irc"
ELEM_TYPES = {name: code for code, name in ONNX_DTYPES.items()}


def value_info(name: str, t: TensorType) -> onnx.ValueInfoProto:
    shape = None if t.shape is None else [d if isinstance(d, (int, str)) else None for d in t.shape]
    return helper.make_tensor_value_info(name, ELEM_TYPES[t.dtype], shape)


def _plain(v):
    """Attribute values as the python types onnx.helper takes."""
    if isinstance(v, (bool, np.bool_, np.integer)):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.ndarray):
        return numpy_helper.from_array(v)
    return v


def _onnx_attr(name: str, value, attr_type) -> onnx.AttributeProto:
    A = onnx.AttributeProto
    if attr_type == A.INT and isinstance(value, str) and value in ELEM_TYPES:   # a dtype (Cast's ``to``)
        value = ELEM_TYPES[value]
    elif attr_type == A.TENSOR and not isinstance(value, np.ndarray):
        value = np.asarray([value])
    return helper.make_attribute(name, _plain(value), attr_type=attr_type)


def _special_attrs(node: Node) -> dict:
    """Attributes of ops whose IR form splits what ONNX keeps together."""
    a = dict(node.attrs)
    if node.op == "constant_of_shape":
        a = {"value": np.full([1], a["value"], to_numpy_dtype(a.pop("dtype")))}
    return a


def standard_form(node: Node):
    """(op_type, attributes) of the node as a standard ONNX op, or None where ONNX cannot express it."""
    opdef = get(node.op)
    if not opdef.onnx:
        return None
    op_type = opdef.onnx[0]
    try:
        schema = onnx.defs.get_schema(op_type, MAX_OPSET, "")
    except onnx.defs.SchemaError:
        return None
    attrs = []
    for k, v in _special_attrs(node).items():
        if k in schema.attributes:
            if v is not None:
                attrs.append(_onnx_attr(k, v, schema.attributes[k].type))
        elif v is not None and opdef.attrs.get(k, REQUIRED) != v:
            return None
    if len(node.inputs) > schema.max_input:
        return None
    return op_type, attrs


def _irc_attrs(node: Node) -> List[onnx.AttributeProto]:
    out = []
    for k, v in node.attrs.items():
        if v is None:
            continue
        if isinstance(v, (list, tuple)) and not v:
            out.append(helper.make_attribute(k, [], attr_type=onnx.AttributeProto.INTS))
        elif isinstance(v, list) and any(isinstance(x, list) for x in v):   # a tree (fused_elementwise's expr)
            out.append(helper.make_attribute(k, json.dumps(v)))
        else:
            out.append(helper.make_attribute(k, _plain(v)))
    return out


class _Names:
    """Unique ONNX names for the values: inputs and outputs keep theirs, others keep theirs when free."""

    def __init__(self):
        self.of: Dict[int, str] = {}
        self.taken = set()

    def bind(self, v: Value, name: str) -> str:
        if name in self.taken:
            name = f"{name}_{v.uid}"
        self.of[id(v)] = name
        self.taken.add(name)
        return name

    def __call__(self, v: Optional[Value]) -> str:
        if v is None:
            return ""
        return self.of.get(id(v)) or self.bind(v, v.name or f"v{v.uid}")


def to_onnx(graph: Graph) -> onnx.ModelProto:
    """An ONNX model computing what ``graph`` computes (see the module docstring)."""
    names = _Names()
    inputs = [value_info(names.bind(v, v.name), v.type) for v in graph.inputs]
    renamed = set()  # values that take their output's name
    for v, out in zip(graph.outputs, graph.output_names):
        if id(v) not in names.of and not v.is_const and out not in names.taken:
            names.bind(v, out)
            renamed.add(id(v))
    nodes, inits, infos, custom = [], [], [], False
    for n in graph.nodes:
        if n.op == "const":
            inits.append(numpy_helper.from_array(np.asarray(n.attrs["value"]), names(n.outputs[0])))
            continue
        form = standard_form(n)
        ins, outs = [names(v) for v in n.inputs], [names(v) for v in n.outputs]
        while ins and not ins[-1]:
            ins.pop()
        if form is None:
            custom = True
            proto = helper.make_node(n.op, ins, outs, name=n.name, domain=IRC_DOMAIN)
            proto.attribute.extend(_irc_attrs(n))
        else:
            proto = helper.make_node(form[0], ins, outs, name=n.name)
            proto.attribute.extend(form[1])
        nodes.append(proto)
        infos += [value_info(names(v), v.type) for v in n.outputs if id(v) not in renamed]
    outputs = []
    for v, out in zip(graph.outputs, graph.output_names):
        if names(v) != out:
            nodes.append(helper.make_node("Identity", [names(v)], [out], name=f"output {out}"))
        outputs.append(value_info(out, v.type))
    g = helper.make_graph(nodes, graph.name, inputs, outputs, inits, value_info=infos)
    opsets = [helper.make_opsetid("", MAX_OPSET)] + ([helper.make_opsetid(IRC_DOMAIN, 1)] if custom else [])
    model = helper.make_model(g, opset_imports=opsets, producer_name="irc")
    model.ir_version = helper.find_min_ir_version_for(opsets[:1])
    return model


def save_onnx(graph: Graph, path: str) -> None:
    model = to_onnx(graph)
    try:
        onnx.save(model, path)
    except OSError as e:
        raise IrcError(f"cannot write {path!r}: {e.strerror or e}") from None
