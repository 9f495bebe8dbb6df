"""Reads the text form printed by ``printer.py`` back into a Graph (print -> parse -> print is the identity).

Result types are taken from the text as written; ``//`` starts a comment. A malformed text raises
IrcError naming the line and column.
"""
from __future__ import annotations

import json
import re
from typing import Callable, Optional

import numpy as np

from ..errors import IrcError
from .graph import Graph
from .types import DTYPES, TensorType

_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r\n]+|//[^\n]*)
  | (?P<value>%(?:[A-Za-z0-9_.]+|"(?:[^"\\]|\\.)*"))
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<number>-?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|-?inf\b|nan\b)
  | (?P<ellipsis>\.\.\.)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<punct>[(){}\[\],=:<>*?])
""", re.VERBOSE)


class _Tokens:
    def __init__(self, text: str):
        self.toks = []
        pos, line, col0 = 0, 1, 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None:
                raise IrcError(f"IR text line {line} column {pos - col0 + 1}: unexpected {text[pos]!r}")
            kind = m.lastgroup
            if kind != "ws":
                self.toks.append((kind, m.group(), line, pos - col0 + 1))
            nl = m.group().count("\n")
            if nl:
                line += nl
                col0 = pos + m.group().rindex("\n") + 1
            pos = m.end()
        self.i = 0
        self.end = ("eof", "", line, pos - col0 + 1)

    def peek(self, k: int = 0):
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else self.end

    def next(self):
        t = self.peek()
        self.i += 1
        return t

    def error(self, msg: str, tok=None):
        kind, text, line, col = tok or self.peek()
        raise IrcError(f"IR text line {line} column {col}: {msg} (found {text or 'end of text'!r})")

    def expect(self, text: str):
        t = self.next()
        if t[1] != text:
            self.error(f"expected {text!r}", t)
        return t

    def accept(self, text: str) -> bool:
        if self.peek()[1] == text:
            self.i += 1
            return True
        return False


def _value_name(tok) -> str:
    s = tok[1][1:]
    return json.loads(s) if s.startswith('"') else s


def _number(text: str):
    if text in ("nan", "inf", "-inf"):
        return float(text)
    if any(c in text for c in ".eE"):
        return float(text)
    return int(text)


class _Parser:
    def __init__(self, text: str, resolve: Optional[Callable[[int], np.ndarray]]):
        self.t = _Tokens(text)
        self.resolve = resolve
        self.env = {}

    def type(self) -> TensorType:
        tok = self.t.next()
        if tok[0] != "ident" or tok[1] not in DTYPES:
            self.t.error("expected a dtype", tok)
        self.t.expect("[")
        if self.t.accept("*"):
            self.t.expect("]")
            return TensorType(tok[1], None)
        dims = []
        while not self.t.accept("]"):
            if dims:
                self.t.expect(",")
            d = self.t.next()
            if d[0] == "number" and re.fullmatch(r"\d+", d[1]):
                dims.append(int(d[1]))
            elif d[0] == "ident":
                dims.append(d[1])
            elif d[0] == "string":
                dims.append(json.loads(d[1]))
            elif d[1] == "?":
                dims.append(None)
            else:
                self.t.error("expected a dim", d)
        return TensorType(tok[1], tuple(dims))

    def operand(self):
        tok = self.t.next()
        if tok[0] == "ident" and tok[1] == "none":
            return None
        if tok[0] != "value":
            self.t.error("expected an operand", tok)
        name = _value_name(tok)
        if name not in self.env:
            self.t.error(f"use of undefined value %{name}", tok)
        return self.env[name]

    def attr_value(self):
        tok = self.t.next()
        kind, text = tok[0], tok[1]
        if kind == "number":
            return _number(text)
        if kind == "string":
            return json.loads(text)
        if text == "[":
            items = []
            while not self.t.accept("]"):
                if items:
                    self.t.expect(",")
                items.append(self.attr_value())
            return items
        if text in ("dense", "dense_resource"):
            self.t.expect("<")
            if text == "dense_resource":
                ref = self.t.next()
                self.t.expect(">")
                if self.resolve is None or ref[0] != "number":
                    self.t.error("dense_resource needs a tensor table", ref)
                dense = ("resource", self.resolve(int(ref[1])))
            else:
                dense = ("dense", self.dense_items())
            if self.t.accept(":"):
                return self.tensor(dense, self.type(), tok)
            return dense
        self.t.error("expected an attribute value", tok)

    def dense_items(self) -> Optional[list]:
        """The elements of ``dense<...>`` after its ``<``; None when elided."""
        if self.t.accept("..."):
            self.t.expect(">")
            return None
        items = []
        while not self.t.accept(">"):
            if items:
                self.t.expect(",")
            v = self.t.next()
            if v[0] not in ("number", "string"):
                self.t.error("expected a tensor element", v)
            items.append(json.loads(v[1]) if v[0] == "string" else _number(v[1]))
        return items

    def node(self, g: Graph):
        results = [self.t.next()]
        while self.t.accept(","):
            results.append(self.t.next())
        for r in results:
            if r[0] != "value":
                self.t.error("expected a result name", r)
        self.t.expect("=")
        op_tok = self.t.next()
        if op_tok[0] != "ident":
            self.t.error("expected an op name", op_tok)
        self.t.expect("(")
        operands = []
        while not self.t.accept(")"):
            if operands:
                self.t.expect(",")
            operands.append(self.operand())
        attrs = {}
        if self.t.accept("{"):
            while not self.t.accept("}"):
                if attrs:
                    self.t.expect(",")
                key = self.t.next()
                if key[0] != "ident":
                    self.t.error("expected an attribute name", key)
                self.t.expect("=")
                attrs[key[1]] = self.attr_value()
        self.t.expect(":")
        types = [self.type()]
        while self.t.accept(","):
            types.append(self.type())
        if len(types) != len(results):
            self.t.error(f"{len(results)} results but {len(types)} types", op_tok)
        name = ""
        if self.t.peek()[1] == "loc":
            self.t.next()
            self.t.expect("(")
            s = self.t.next()
            if s[0] != "string":
                self.t.error("expected a location string", s)
            name = json.loads(s[1])
            self.t.expect(")")
        node = g.add_node(op_tok[1], operands, types, self.node_attrs(op_tok, attrs, types), name)
        for r, v in zip(results, node.outputs):
            nm = _value_name(r)
            if nm in self.env:
                self.t.error(f"value %{nm} defined twice", r)
            self.env[nm] = v

    def node_attrs(self, op_tok, attrs: dict, types) -> dict:
        """Attributes with the op's defaults filled in; an untyped ``dense`` is a constant's value."""
        from ..ops import registry
        if op_tok[1] not in registry.OPS:
            self.t.error(f"unknown op {op_tok[1]!r}", op_tok)
        for k, v in list(attrs.items()):
            if isinstance(v, tuple):
                if op_tok[1] != "const" or k != "value":
                    self.t.error(f"attribute {k!r}: an array attribute needs a type (dense<...> : f32[1])", op_tok)
                attrs[k] = self.tensor(v, types[0], op_tok)
        try:
            return registry.OPS[op_tok[1]].full_attrs(attrs)
        except IrcError as e:
            self.t.error(str(e), op_tok)

    def tensor(self, v, type: TensorType, tok):
        kind, items = v
        if kind == "resource":
            return items
        if items is None:
            return None
        if not type.is_static:
            self.t.error("a dense constant needs a static result type", tok)
        arr = np.array(items, dtype=type.numpy_dtype)
        if arr.size != type.numel():
            self.t.error(f"dense constant has {arr.size} elements, its type {type} needs {type.numel()}", tok)
        return arr.reshape(type.shape)

    def graph(self) -> Graph:
        self.t.expect("graph")
        name = self.t.next()
        if name[0] not in ("ident", "string"):
            self.t.error("expected a graph name", name)
        g = Graph(json.loads(name[1]) if name[0] == "string" else name[1])
        self.t.expect("(")
        while not self.t.accept(")"):
            if g.inputs:
                self.t.expect(",")
            tok = self.t.next()
            if tok[0] != "value":
                self.t.error("expected an input name", tok)
            self.t.expect(":")
            nm = _value_name(tok)
            if nm in self.env:
                self.t.error(f"input %{nm} listed twice", tok)
            self.env[nm] = g.add_input(nm, self.type())
        self.t.expect("{")
        while True:
            tok = self.t.peek()
            if tok[1] == "return":
                self.t.next()
                while self.t.peek()[1] != "}":
                    if g.outputs:
                        self.t.expect(",")
                    v = self.operand()
                    self.t.expect("as")
                    s = self.t.next()
                    if s[0] != "string":
                        self.t.error("expected an output name", s)
                    g.add_output(v, json.loads(s[1]))
                self.t.expect("}")
                break
            if tok[0] == "eof":
                self.t.error("unterminated graph")
            self.node(g)
        if self.t.peek()[0] != "eof":
            self.t.error("text after the graph")
        return g


def parse_graph(text: str, resolve: Optional[Callable[[int], np.ndarray]] = None) -> Graph:
    """Parse the text form. ``resolve(n)`` supplies the array of ``dense_resource<n>``."""
    return _Parser(text, resolve).graph()
