"""The text form of the IR (what ``irc dump`` prints); ``parser.py`` reads it back.

    graph main(%x: f32[batch, 3, 224, 224]) {
      %0 = const() {value=dense<...>} : f32[64, 3, 7, 7]
      %1 = conv2d(%x, %0, none) {strides=[2, 2], pads=[3, 3, 3, 3]} : f32[batch, 64, 112, 112] loc("conv1")
      return %1 as "y"
    }

Graph inputs keep their names; every other value is numbered in order of definition. A name, symbolic
dim or graph name that is not a plain identifier is JSON-quoted. Constants with more than ``elide_above``
elements print as ``dense<...>``; ``tensor_ref`` lets the artifact writer print ``dense_resource<N>``
instead, pointing into its tensor table. A constant's array takes the node's result type; an array
attribute of any other op carries its own (``value=dense<0.0> : f32[1]``). Attributes whose value is None
(an optional attribute left unset) are not printed; the parser fills them back from the op's defaults.
"""
from __future__ import annotations

import json
import math
import re
from typing import Callable, Optional

import numpy as np

from .graph import Graph, Value
from .types import TensorType

_BARE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def format_name(name: str) -> str:
    return "%" + (name if _BARE.match(name) or name.isdigit() else json.dumps(name))


def format_float(x) -> str:
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return repr(x)


def _scalar(x, dtype: np.dtype) -> str:
    if dtype.kind == "f":
        if np.isnan(x):
            return "nan"
        if np.isinf(x):
            return "inf" if x > 0 else "-inf"
        s = str(x)  # numpy prints the shortest text that reads back as the same value of its dtype
        return s if any(c in s for c in ".en") else s + ".0"
    if dtype.kind == "b":
        return "1" if x else "0"
    if dtype.kind in "OUS":
        return json.dumps(str(x))
    return str(int(x))


def format_array(v: np.ndarray, elide_above: Optional[int] = 16, tensor_ref: Optional[Callable] = None) -> str:
    """``dense<elements>`` (row-major), ``dense<...>`` above ``elide_above`` elements, or a tensor reference."""
    if tensor_ref is not None:
        return f"dense_resource<{tensor_ref(v)}>"
    if elide_above is not None and v.size > elide_above:
        return "dense<...>"
    return "dense<" + ", ".join(_scalar(x, v.dtype) for x in v.reshape(-1)) + ">"


def format_attr(v, elide_above: Optional[int] = 16, tensor_ref: Optional[Callable] = None) -> str:
    """An attribute value; an array carries its own type (``dense<1.0> : f32[1]``)."""
    if isinstance(v, np.ndarray):
        return f"{format_array(v, elide_above, tensor_ref)} : {TensorType.of(v)}"
    if isinstance(v, (bool, np.bool_)):
        return str(int(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return format_float(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(format_attr(x, elide_above, tensor_ref) for x in v) + "]"
    raise TypeError(f"cannot print attribute value of type {type(v).__name__}")


def _const_value(v: Optional[np.ndarray], elide_above, tensor_ref) -> str:
    """A constant's value; its type is the node's result type. None (an elided text) prints elided."""
    return "dense<...>" if v is None else format_array(v, elide_above, tensor_ref)


class ValueNames:
    """The text names of values: graph inputs by name, every result numbered in order of definition."""

    def __init__(self, graph: Graph):
        self.names = {}
        taken = set()
        for v in graph.inputs:
            self.names[v] = format_name(v.name)
            taken.add(v.name)
        counter = 0
        for n in graph.nodes:
            for v in n.outputs:
                while str(counter) in taken:
                    counter += 1
                self.names[v] = f"%{counter}"
                counter += 1

    def __call__(self, v: Optional[Value]) -> str:
        if v is None:
            return "none"
        return self.names.get(v, f"%<undefined {v.uid}>")


def print_graph(graph: Graph, elide_above: Optional[int] = 16, locations: bool = True,
                tensor_ref: Optional[Callable] = None, annotate: Optional[Callable] = None) -> str:
    """The graph as text. ``annotate(node) -> dict`` adds display-only attributes (the lowered stage)."""
    name = ValueNames(graph)
    gname = graph.name if _BARE.match(graph.name) else json.dumps(graph.name)
    lines = [f"graph {gname}(" + ", ".join(f"{name(v)}: {v.type}" for v in graph.inputs) + ") {"]
    for n in graph.nodes:
        attrs = {k: v for k, v in n.attrs.items() if v is not None}
        if annotate is not None:
            attrs.update(annotate(n))
        res = ", ".join(name(v) for v in n.outputs)
        ops = ", ".join(name(v) for v in n.inputs)
        line = f"  {res} = {n.op}({ops})"
        items = [f"{k}={format_attr(v, elide_above, tensor_ref)}" for k, v in attrs.items()
                 if not (n.op == "const" and k == "value")]
        if n.op == "const":
            items.insert(0, "value=" + _const_value(n.attrs.get("value"), elide_above, tensor_ref))
        if items:
            line += " {" + ", ".join(items) + "}"
        line += " : " + ", ".join(str(v.type) for v in n.outputs)
        if locations and n.name:
            line += f" loc({json.dumps(n.name)})"
        lines.append(line)
    rets = ", ".join(f"{name(v)} as {json.dumps(nm)}" for v, nm in zip(graph.outputs, graph.output_names))
    lines.append(f"  return {rets}")
    lines.append("}")
    return "\n".join(lines) + "\n"
