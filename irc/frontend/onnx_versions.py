"""Which version of each ONNX op irc reads.

irc implements every op it converts as the op stands at opset ``BASE_OPSET`` (its converters turn older
forms into that one); ``IMPLEMENTED`` names the ops whose implemented version is a later one. A node whose
op has a newer version in effect at the model's opset is read when the newer version is, as far as its
schema (``onnx.defs``) tells, the implemented one with more element types:

- the inputs and outputs (names, and whether single, optional or variadic) are unchanged,
- the attributes are unchanged, except for added optional attributes, which the node must leave at
  their default (not set, or set to the default value),
- type constraints may differ (the converters and ops check the element types they accept).

Anything else is refused, naming the op, the node's version and the implemented one. ``MAX_OPSET`` is the
newest opset the schemas were reviewed against; a model of a newer opset is read as far as the installed
onnx package knows its ops.
"""
from __future__ import annotations

import functools
from typing import Dict, List, Optional, Tuple

import onnx
import onnx.defs

BASE_OPSET = 23
MAX_OPSET = 28

# op -> newest version irc implements, for ops newer than their version at BASE_OPSET
IMPLEMENTED: Dict[str, int] = {
    "BitShift": 28,  # signed operands; shifts out of range defined (convert_elementwise.bit_shift)
    "Mod": 28,       # floating-point operands with fmod=0 (convert_elementwise.mod)
}


def implemented_version(op_type: str) -> Optional[int]:
    """The newest version of ``op_type`` (default domain) that irc implements; None for an op that did not
    exist at ``BASE_OPSET`` and is not in ``IMPLEMENTED``."""
    if op_type in IMPLEMENTED:
        return IMPLEMENTED[op_type]
    schema = _schema(op_type, BASE_OPSET)
    return None if schema is None else schema.since_version


@functools.lru_cache(maxsize=None)
def _schema(op_type: str, version: int) -> Optional[onnx.defs.OpSchema]:
    try:
        return onnx.defs.get_schema(op_type, version, "")
    except onnx.defs.SchemaError:
        return None


def _formals(params) -> List[Tuple[str, str]]:
    return [(p.name, p.option.name) for p in params]


def _attributes(schema) -> Dict[str, tuple]:
    return {name: (a.type, a.required, a.default_value.SerializeToString())
            for name, a in schema.attributes.items()}


@functools.lru_cache(maxsize=None)
def changes(op_type: str, old: int, new: int) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """How version ``new`` of ``op_type`` differs from version ``old`` beyond element types:
    (changes that make it a different op, names of added optional attributes)."""
    a, b = _schema(op_type, old), _schema(op_type, new)
    breaking: List[str] = []
    for what, fa, fb in (("inputs", a.inputs, b.inputs), ("outputs", a.outputs, b.outputs)):
        if _formals(fa) != _formals(fb):
            breaking.append(f"{what} {[n for n, _ in _formals(fb)]} instead of {[n for n, _ in _formals(fa)]}")
    attrs_a, attrs_b = _attributes(a), _attributes(b)
    added = tuple(sorted(n for n in attrs_b if n not in attrs_a and not attrs_b[n][1]))
    for name in sorted(set(attrs_a) | set(attrs_b)):
        if name in added or attrs_a.get(name) == attrs_b.get(name):
            continue
        breaking.append(f"attribute {name!r} " + ("removed" if name not in attrs_b else
                                                  "added (required)" if name not in attrs_a else "changed"))
    return tuple(breaking), added


def _at_default(node: onnx.NodeProto, schema, name: str) -> bool:
    """Whether ``node`` leaves attribute ``name`` at the schema's default (unset, or set to that value)."""
    given = next((a for a in node.attribute if a.name == name), None)
    if given is None:
        return True
    default = schema.attributes[name].default_value
    if not default.name:
        return False  # no default: any value is a use of the attribute
    return onnx.helper.get_attribute_value(given) == onnx.helper.get_attribute_value(default)


def version_problem(node: onnx.NodeProto, opset: int) -> Optional[str]:
    """Why irc cannot read ``node`` (default domain) at ``opset``; None when it can, or when the op is not
    one irc implements (which is reported as an unsupported op)."""
    schema = _schema(node.op_type, opset)
    implemented = implemented_version(node.op_type)
    if schema is None or implemented is None or schema.since_version <= implemented:
        return None
    version = schema.since_version
    breaking, added = changes(node.op_type, implemented, version)
    prefix = f"version {version} of {node.op_type} is not read (irc implements version {implemented})"
    if breaking:
        return f"{prefix}: {'; '.join(breaking)}"
    used = [name for name in added if not _at_default(node, schema, name)]
    if used:
        return f"{prefix}: attribute {used[0]!r} of version {version} is not supported"
    return None
