"""The graph as Graphviz DOT (``irc dump --format dot``).

Each node is a box labelled with its op, its name and its key attributes (the algorithm, the fused
epilogue, the kernel family); constants are not drawn as nodes but listed in their users' labels (small
ones with their values); edges carry the value's type. Graph inputs and outputs are ellipses. Nodes that
carry a fusion group (a string ``group`` or a ``fusion_group`` attribute) are drawn inside one cluster
per group. ``render`` turns the text into SVG/PNG/PDF with the ``dot`` program.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Callable, Dict, List, Optional

from ..errors import IrcError
from ..ir import Graph, Node, Value
from ..ir.printer import format_attr
from .text import write_text

KEY_ATTRS = ("algo", "epilogue", "kernel", "kernel_shape", "strides")


def _quote(text: str) -> str:
    """A DOT string literal (JSON escaping is a subset DOT reads)."""
    return json.dumps(text)


def fusion_group(node: Node) -> Optional[str]:
    g = node.attrs.get("fusion_group", node.attrs.get("group"))
    return g if isinstance(g, str) else None


def _const_text(v: Value) -> str:
    """A constant in a label: its values when it has at most 4 elements, else its name; and its type."""
    a = v.const_value
    shown = format_attr(a, elide_above=4).split(" : ")[0] if a is not None and a.size <= 4 else v.name or "const"
    return f"{shown} : {v.type}"


def node_label(node: Node, extra: Optional[dict] = None) -> str:
    lines = [node.op + (f"  {node.name}" if node.name else "")]
    attrs = {**{k: node.attrs[k] for k in KEY_ATTRS if node.attrs.get(k)}, **(extra or {})}
    lines += [f"{k}={format_attr(v)}" for k, v in attrs.items()]
    lines += [f"in{i}: {_const_text(v)}" for i, v in enumerate(node.inputs) if v is not None and v.is_const]
    return "\n".join(lines)


def to_dot(graph: Graph, annotate: Optional[Callable[[Node], dict]] = None) -> str:
    """DOT text of ``graph``; ``annotate(node)`` may add attributes to show in a node's label."""
    ids: Dict[int, str] = {}
    lines = [f"digraph {_quote(graph.name)} {{", "  rankdir=TB;",
             '  node [shape=box, style="rounded,filled", fillcolor="#eef3fb", fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=8];']
    for i, v in enumerate(graph.inputs):
        ids[id(v)] = f"in{i}"
        lines.append(f'  in{i} [shape=ellipse, fillcolor="#e4f5e4", label={_quote(f"{v.name}: {v.type}")}];')
    groups: Dict[str, List[str]] = {}
    for i, n in enumerate(graph.nodes):
        if n.op == "const":
            continue
        for v in n.outputs:
            ids[id(v)] = f"n{i}"
        decl = f"  n{i} [label={_quote(node_label(n, annotate(n) if annotate else None))}];"
        g = fusion_group(n)
        if g is None:
            lines.append(decl)
        else:
            groups.setdefault(g, []).append(decl)
    for k, (g, decls) in enumerate(groups.items()):
        lines += [f"  subgraph cluster_{k} {{", f"    label={_quote(g)}; style=dashed;", *decls, "  }"]
    for i, n in enumerate(graph.nodes):
        for v in n.inputs:
            if v is not None and not v.is_const:
                lines.append(f"  {ids[id(v)]} -> n{i} [label={_quote(str(v.type))}];")
    for k, (v, name) in enumerate(zip(graph.outputs, graph.output_names)):
        src = ids.get(id(v))
        if src is None:  # a constant output
            src = f"c{k}"
            lines.append(f"  {src} [shape=note, fontsize=8, label={_quote(_const_text(v))}];")
        lines.append(f'  out{k} [shape=ellipse, fillcolor="#fbeee4", label={_quote(name)}];')
        lines.append(f"  {src} -> out{k} [label={_quote(str(v.type))}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(dot_text: str, path: str) -> None:
    """Write ``dot_text`` to ``path``: as is for .dot/.gv, else through ``dot -T<extension>``."""
    ext = os.path.splitext(path)[1].lstrip(".").lower()
    if ext in ("dot", "gv", ""):
        write_text(path, dot_text)
        return
    exe = shutil.which("dot")
    if exe is None:
        raise IrcError(f"cannot write {path!r}: rendering .{ext} needs Graphviz's dot program, which is not "
                       f"installed (write a .dot file instead)")
    p = subprocess.run([exe, f"-T{ext}", "-o", path], input=dot_text, text=True, capture_output=True)
    if p.returncode != 0:
        raise IrcError(f"dot -T{ext} failed: {p.stderr.strip()}")

