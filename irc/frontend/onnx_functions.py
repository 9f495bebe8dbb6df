"""Inlining of ONNX functions: a node irc does not convert becomes the nodes of its op's function body.

ONNX defines many ops as functions of other ops (Attention, RMSNormalization, NegativeLogLikelihoodLoss,
the window functions, MeanVarianceNormalization ...), and a model may define its own functions
(``ModelProto.functions``, called by op type and domain). A node that irc cannot convert as it stands is
replaced by such a body when one exists:

- a function of the model with the node's domain and op type, its attribute defaults from the function;
- otherwise the op's schema function for the model's opset (``onnx.defs``): the plain function body of the
  newest version at or below that opset, or the context-dependent body, built from the node and the
  element types of its inputs (found by ONNX shape inference of the graph).

The body's inputs and outputs are the node's (an omitted optional input stays omitted); its other values
get fresh names ``NODE/value``, its nodes the names ``NODE/inner``. Attributes that refer to the
function's attributes (``ref_attr_name``) take the node's value, else the default, else are left unset.
Bodies are inlined again while they contain nodes that need it, at most ``MAX_DEPTH`` levels deep. A node
whose body cannot be used (onnx builds none for its operands, or it holds subgraphs, whose captured names
are not renamed) stays as it is, for the importer to report.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Set

import onnx
import onnx.defs
from onnx import helper

from ..errors import UnsupportedError

MAX_DEPTH = 16


def inline_functions(proto: onnx.ModelProto, opsets: Dict[str, int],
                     converts: Callable[[onnx.NodeProto], bool]) -> onnx.GraphProto:
    """The model's graph with every node for which ``converts`` is false and whose op has a function
    replaced by the function's body: the model's own graph when there is none, else a copy (the model is
    left as it is)."""
    local = {(f.domain, f.name): f for f in proto.functions}
    graph, kept = proto.graph, set()  # kept: the outputs of nodes left as they are
    for _ in range(MAX_DEPTH):
        todo = {i for i, n in enumerate(graph.node) if tuple(n.output) not in kept and not converts(n) and
                _has_function(n, opsets, local)}
        if not todo:
            return graph
        nodes = _inline_once(proto, graph, todo, opsets, local, kept)
        if graph is proto.graph:
            graph = onnx.GraphProto()
            graph.CopyFrom(proto.graph)
        del graph.node[:]
        graph.node.extend(nodes)
    raise UnsupportedError(f"function bodies nest more than {MAX_DEPTH} levels deep "
                           f"(op {graph.node[min(todo)].op_type})")


def _domain(node) -> str:
    return "" if node.domain == "ai.onnx" else node.domain


def _schema(node, opsets: Dict[str, int]) -> Optional[onnx.defs.OpSchema]:
    domain = _domain(node)
    if domain not in opsets:
        return None
    try:
        return onnx.defs.get_schema(node.op_type, opsets[domain], domain)
    except onnx.defs.SchemaError:
        return None


def _newest(versions, opset: int) -> Optional[int]:
    return max((v for v in versions if v <= opset), default=None)


def _has_function(node, opsets, local) -> bool:
    if (node.domain, node.op_type) in local:
        return True
    schema = _schema(node, opsets)
    if schema is None:
        return False
    opset = opsets[_domain(node)]
    return (_newest(schema.function_opset_versions, opset) is not None or
            _newest(schema.context_dependent_function_opset_versions, opset) is not None)


class _Names:
    """Fresh value names: never one the graph already uses."""

    def __init__(self, graph: onnx.GraphProto):
        self.used: Set[str] = {v.name for v in list(graph.input) + list(graph.output) + list(graph.value_info)}
        self.used.update(t.name for t in graph.initializer)
        for n in graph.node:
            self.used.update(n.input)
            self.used.update(n.output)

    def fresh(self, base: str) -> str:
        name, k = base, 1
        while name in self.used:
            name, k = f"{base}_{k}", k + 1
        self.used.add(name)
        return name


def _inline_once(proto, graph, todo: Set[int], opsets, local, kept: Set[tuple]) -> List[onnx.NodeProto]:
    """One level of inlining: the graph's nodes with those at the indices ``todo`` replaced by their bodies
    (those whose body cannot be used stay, their outputs added to ``kept``)."""
    names = _Names(graph)
    need_types = any(_needs_types(graph.node[i], opsets, local) for i in todo)
    types = _value_types(proto, graph) if need_types else {}
    nodes: List[onnx.NodeProto] = []
    for i, node in enumerate(graph.node):
        function = _function(node, opsets, local, types) if i in todo else (None, None)
        if function[0] is None:
            if i in todo:
                kept.add(tuple(node.output))
            nodes.append(onnx.NodeProto.FromString(node.SerializeToString()))  # the node list is replaced next
        else:
            nodes.extend(_expand(node, *function, names))
    return nodes


def _needs_types(node, opsets, local) -> bool:
    if (node.domain, node.op_type) in local:
        return False
    schema = _schema(node, opsets)
    return _newest(schema.function_opset_versions, opsets[_domain(node)]) is None


def _function(node, opsets, local, types) -> tuple:
    """The function body for ``node`` and the defaults of its attributes (name -> AttributeProto); the body
    is None when onnx builds none (an input type unknown, operands it does not accept) or it holds
    subgraphs."""
    if (node.domain, node.op_type) in local:
        f = local[(node.domain, node.op_type)]
        return (f if _usable(f) else None), {a.name: a for a in f.attribute_proto}
    schema = _schema(node, opsets)
    opset = opsets[_domain(node)]
    defaults = {name: a.default_value for name, a in schema.attributes.items() if a.default_value.name}
    version = _newest(schema.function_opset_versions, opset)
    function = onnx.FunctionProto()
    if version is not None:
        function.ParseFromString(schema.get_function_with_opset_version(version))
    elif all(name == "" or name in types for name in node.input):
        version = _newest(schema.context_dependent_function_opset_versions, opset)
        try:
            function.ParseFromString(schema.get_context_dependent_function_with_opset_version(
                version, node.SerializeToString(),
                [(types[n] if n else onnx.TypeProto()).SerializeToString() for n in node.input]))
        except Exception:  # onnx refuses to build a body for these operands
            return None, defaults
    return (function if _usable(function) else None), defaults


def _usable(function: onnx.FunctionProto) -> bool:
    """A body with nodes and no subgraphs (whose names captured from the body would need renaming)."""
    return bool(function.node) and not any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                                           for inner in function.node for a in inner.attribute)


def _value_types(proto: onnx.ModelProto, graph: onnx.GraphProto) -> Dict[str, onnx.TypeProto]:
    """The type of every value ONNX shape inference finds (declared types where inference fails)."""
    model = onnx.ModelProto()
    model.ir_version = proto.ir_version
    model.opset_import.extend(proto.opset_import)
    model.functions.extend(proto.functions)
    model.graph.CopyFrom(graph)
    del model.graph.initializer[:]  # inference needs only their types, given as inputs below
    known = {v.name for v in model.graph.input}
    model.graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, t.dims)
                             for t in graph.initializer if t.name not in known)
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # inference is a help here: the declared types remain
        pass
    g = model.graph
    return {v.name: v.type for v in list(g.input) + list(g.value_info) + list(g.output)}


def _expand(node, function: onnx.FunctionProto, defaults: Dict[str, onnx.AttributeProto],
            names: _Names) -> List[onnx.NodeProto]:
    """The body's nodes with the node's values and attributes put in and fresh names elsewhere."""
    prefix = node.name or (node.output[0] if node.output and node.output[0] else node.op_type)
    rename: Dict[str, str] = {"": ""}
    for i, formal in enumerate(function.input):
        rename[formal] = node.input[i] if i < len(node.input) else ""
    for i, formal in enumerate(function.output):
        actual = node.output[i] if i < len(node.output) else ""
        rename[formal] = actual or names.fresh(f"{prefix}/{formal}")
    given = {a.name: a for a in node.attribute}
    out = []
    for inner in function.node:
        for name in list(inner.input) + list(inner.output):
            if name not in rename:
                rename[name] = names.fresh(f"{prefix}/{name}")
        new = helper.make_node(inner.op_type, [rename[n] for n in inner.input], [rename[n] for n in inner.output],
                               name=f"{prefix}/{inner.name or inner.op_type}", domain=inner.domain)
        new.attribute.extend(_attributes(inner, given, defaults))
        out.append(new)
    return out


def _attributes(inner, given, defaults) -> List[onnx.AttributeProto]:
    """The inner node's attributes, references to the function's attributes resolved."""
    out = []
    for a in inner.attribute:
        if not a.ref_attr_name:
            out.append(a)
            continue
        source = given.get(a.ref_attr_name) or defaults.get(a.ref_attr_name)
        if source is not None:
            resolved = onnx.AttributeProto()
            resolved.CopyFrom(source)
            resolved.name = a.name
            out.append(resolved)
    return out
