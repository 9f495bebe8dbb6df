"""Elementwise kernels: numba loops generated from one scalar template per op.

A kernel computes a scalar expression tree (``Expr``) over its operands, broadcasting them as numpy
does. A single op is the one-node tree ``Expr(op, (0, 1, ...))``; the fusion pass hands over bigger
trees, whose equal subtrees are computed once. ``elementwise_kernel(tree, dtypes)`` returns the
(memoized) callable.

Generated code:
- each node of the tree becomes one statement ``t = <ctor>(<template>)``: ``TEMPLATES[op]`` writes the
  expression from the operand names, and attribute values enter it only as number literals
  (``codegen.literal``). Op names are checked against ``TEMPLATES``, string attributes against their
  allowed values, so nothing from a model reaches the text but numbers;
- values are computed in their dtype as onnxruntime does (float16 in float32, rounded back at the end),
  wrapping every statement in its dtype's constructor so numba's integer promotion never leaks;
- float32 exp, log, tanh, erf (and sigmoid, silu, softplus, mish, gelu through them) are spelled out as
  polynomials so the loops vectorize; numba would call libm once per element;
- two loop forms: ``flat`` (every operand contiguous over the whole output, or a broadcast scalar) and
  ``nd`` (operands broadcast to the output with 0 strides, dims that are contiguous for every operand
  coalesced, typically leaving rank 2 or 3: one nested loop per dim carrying offsets, the innermost a
  plain loop). Each comes serial and parallel (prange over the outermost dim, for outputs of
  ``PARALLEL_MIN`` elements or more) and is specialized on its rank and on how each operand is read in
  the innermost loop: ``c`` contiguous, ``b`` broadcast (loaded once outside it), ``s`` strided, ``-``
  unused. A specialization is generated, written and compiled the first time an operand layout needs it;
- an in-place result (plan-memory hands the kernel an operand's own buffer as ``out``) has a variant of
  its own reading that operand from ``out``: given two arrays over one buffer, LLVM's run-time overlap
  check fails and the loop runs its scalar fallback (measured 4-13x slower).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numba
import numpy as np

from ...backend.registry import Kernel, lowers
from ...errors import IrcError, UnsupportedError
from ...ir.types import TensorType, to_numpy_dtype
from ...ops import registry as op_registry
from .codegen import (CTOR, broadcast_strides, coalesce, element_strides, literal, load_module, number,
                      readonly_buffer, walkable)

PARALLEL_MIN = 1 << 18
_PLAN_CACHE_SIZE = 64


def compute_dtype(dtype: str) -> str:
    """The dtype a value is computed in: float16 goes through float32, numba has no float16 math."""
    return "f32" if dtype == "f16" else dtype


class Site:
    """What a template sees of one node: operand names and dtypes, attributes, literal makers."""

    def __init__(self, args: List[Optional[str]], in_dtypes: List[Optional[str]], dtype: str, attrs: dict,
                 emit_tmp: Callable[[str, str], str]):
        self.args = args
        self.in_dtypes = in_dtypes      # IR dtypes of the operands (None for an omitted one)
        self.dtype = dtype              # IR dtype of the result
        self.attrs = attrs
        self._emit_tmp = emit_tmp

    @property
    def a(self) -> str:
        return self.args[0]

    @property
    def b(self) -> str:
        return self.args[1]

    @property
    def ct(self) -> str:
        """Compute dtype of the first operand (the one most templates compute in)."""
        return compute_dtype(self.in_dtypes[0])

    def k(self, value) -> str:
        """A constant in the first operand's compute dtype."""
        return literal(value, self.ct)

    def kf(self, value) -> str:
        """A float constant: in the operand's float dtype, float64 for integer operands."""
        return literal(value, self.ct if self.ct[0] == "f" else "f64")

    def num(self, attr: str):
        return number(self.attrs[attr], f"attribute {attr}")

    def tmp(self, expr: str, dtype: Optional[str] = None) -> str:
        """Bind ``expr`` (of the first operand's dtype unless told) to a new variable; returns its name."""
        return self._emit_tmp(expr, dtype or self.in_dtypes[0])

    def choice(self, attr: str, allowed: Sequence[str]) -> str:
        v = self.attrs[attr]
        if v not in allowed:
            raise IrcError(f"attribute {attr} must be one of {list(allowed)}, got {v!r}")
        return v


# --- templates: op -> fn(Site) -> expression text -----------------------------------------------------
# Conditions combine with | and & (no short-circuit jumps) so the loops stay branch-free and vectorize.

def _call(fn: str):
    return lambda s: f"{fn}({s.a})"


def _infix(op: str):
    return lambda s: f"{s.a} {op} {s.b}"


def _maximum(s: Site, a: str, b: str) -> str:
    """numpy's maximum: NaN wins."""
    return s.tmp(f"{a} if ({a} > {b}) | ({a} != {a}) else {b}")


def _minimum(s: Site, a: str, b: str) -> str:
    return s.tmp(f"{a} if ({a} < {b}) | ({a} != {a}) else {b}")


# --- float32 exp, log, tanh and erf the loop vectorizer can widen -------------------------------------
# numba calls libm one element at a time for these; spelled out of arithmetic, floor, selects and bit
# casts they vectorize. Range reductions and polynomials are Cephes' (expf, logf, tanhf, erff); erf
# beyond 1 is Abramowitz-Stegun 7.1.26 (absolute error below 1.5e-7). float64 keeps libm.

_TANH_P = (-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1, -3.33332819422e-1)
_ERF_P = (7.853861353153693e-5, -8.010193625184903e-4, 5.188327685732524e-3, -2.685381193529856e-2,
          1.128358514861418e-1, -3.761262582423300e-1, 1.128379165726710)
_ERFC_AS = (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592, 0.0)
_LOG_P = (7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1,
          -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1)


def _poly(s: Site, x: str, coeffs: Sequence[float]) -> str:
    """Horner's scheme: coeffs[0] * x**(n-1) + ... + coeffs[-1]."""
    text = s.k(coeffs[0])
    for c in coeffs[1:]:
        text = f"({text}) * {x} + {s.k(c)}"
    return text


def _exp(s: Site, x: str) -> str:
    """e**x of the variable ``x``: float32 through ``vmath.vexp`` (spelled out so the loop vectorizes)."""
    return s.tmp(f"vexp({x})") if s.ct == "f32" else f"math.exp({x})"


def _tanh(s: Site, x: str) -> str:
    """tanh: an odd polynomial below 0.625, 1 - 2/(e**2|x| + 1) above."""
    if s.ct != "f32":
        return f"math.tanh({x})"
    k = s.k
    ax = s.tmp(f"abs({x})")
    z = s.tmp(f"{x} * {x}")
    small = s.tmp(f"({_poly(s, z, _TANH_P)}) * {z} * {x} + {x}")
    big = s.tmp(f"{k(1)} - {k(2)} / ({_exp(s, s.tmp(f'{k(2)} * {ax}'))} + {k(1)})")
    return f"{small} if {ax} < {k(0.625)} else ({big} if {x} > {k(0)} else -{big})"


def _erf(s: Site, x: str) -> str:
    """erf: an odd polynomial below 1, 1 - t*P(t)*e**-x**2 (t = 1/(1 + 0.3275911|x|)) above."""
    if s.ct != "f32":
        return f"math.erf({x})"
    k = s.k
    ax = s.tmp(f"abs({x})")
    z = s.tmp(f"{x} * {x}")
    small = s.tmp(f"{x} * ({_poly(s, z, _ERF_P)})")
    t = s.tmp(f"{k(1)} / ({k(1)} + {k(0.3275911)} * {ax})")
    big = s.tmp(f"{k(1)} - ({_poly(s, t, _ERFC_AS)}) * {_exp(s, s.tmp(f'-{z}'))}")
    return f"{small} if {ax} < {k(1)} else ({big} if {x} > {k(0)} else -{big})"


def _log(s: Site, x: str) -> str:
    """log x = e*ln2 + log m with x = m * 2**e, m in [sqrt(1/2), sqrt(2)); subnormals prescaled by
    2**23; -inf at 0, NaN below, inf kept."""
    if s.ct != "f32":
        return f"math.log({x})"
    k = s.k
    sub = s.tmp(f"{x} < {k(1.17549435e-38)}", "bool")
    xs = s.tmp(f"{x} * {k(8388608.0)} if {sub} else {x}", "f32")
    bits = s.tmp(f"{xs}.view(np.int32)", "i32")
    m0 = s.tmp(f"np.int32(({bits} & np.int32(-2139095041)) | np.int32(1056964608)).view(np.float32)", "f32")
    low = s.tmp(f"{m0} < {k(0.70710678118654752)}", "bool")
    e = s.tmp(f"np.float32(({bits} >> np.int32(23)) - np.int32(126)) - ({k(23)} if {sub} else {k(0)}) - "
              f"({k(1)} if {low} else {k(0)})", "f32")
    f = s.tmp(f"({m0} + {m0} if {low} else {m0}) - {k(1)}", "f32")
    z = s.tmp(f"{f} * {f}", "f32")
    y = s.tmp(f"({_poly(s, f, _LOG_P)}) * {f} * {z} + {e} * {k(-2.12194440e-4)} - {k(0.5)} * {z}", "f32")
    r = s.tmp(f"{f} + {y} + {e} * {k(0.693359375)}", "f32")
    return s.tmp(f"{x} if ({x} != {x}) | ({x} == {k(np.inf)}) else ({r} if {x} > {k(0)} else "
                 f"(-{k(np.inf)} if {x} == {k(0)} else {k(np.nan)}))", "f32")


def _log1p(s: Site, y: str) -> str:
    """log(1 + y) for y >= 0: log u (u = 1 + y rounded) corrected by (y - (u - 1)) / u."""
    if s.ct != "f32":
        return f"math.log1p({y})"
    u = s.tmp(f"{s.k(1)} + {y}")
    return f"{_log(s, u)} + ({y} - ({u} - {s.k(1)})) / {u}"


def _sigmoid(s: Site) -> str:
    return f"{s.k(1)} / ({s.k(1)} + {_exp(s, s.tmp(f'-{s.a}'))})"


def _softplus(s: Site) -> str:
    """log(1 + e**x) = max(x, 0) + log(1 + e**-|x|), which cannot overflow."""
    a = s.a
    tail = _log1p(s, _exp(s, s.tmp(f"-abs({a})")))
    return f"({a} if {a} > {s.k(0)} else {s.k(0)}) + {s.tmp(tail)}"


def _sign(s: Site) -> str:
    a, z = s.a, s.k(0)
    return f"{a} if {a} != {a} else ({a} > {z}) - ({a} < {z})"


def _relu(s: Site) -> str:
    return f"{s.a} if ({s.a} > {s.k(0)}) | ({s.a} != {s.a}) else {s.k(0)}"


def _isinf(s: Site) -> str:
    pos, neg = s.num("detect_positive"), s.num("detect_negative")
    inf = s.k(np.inf)
    tests = ([f"({s.a} == {inf})"] if pos else []) + ([f"({s.a} == -{inf})"] if neg else [])
    return " | ".join(tests) or "False"


def _gelu(s: Site) -> str:
    a, half, one = s.a, s.k(0.5), s.k(1.0)
    if s.choice("approximate", ("none", "tanh")) == "tanh":
        inner = s.tmp(f"{s.k(0.7978845608028654)} * ({a} + {s.k(0.044715)} * {a} * {a} * {a})")
        return f"{half} * {a} * ({one} + {s.tmp(_tanh(s, inner))})"
    return f"{half} * {a} * ({one} + {s.tmp(_erf(s, s.tmp(f'{a} * {s.k(0.7071067811865476)}')))})"


def _int_operands(s: Site) -> bool:
    return s.in_dtypes[0][0] in "iu"


def _trunc_div(s: Site) -> str:
    """Integer division truncating toward zero (numba's // floors)."""
    a, b, z = s.a, s.b, s.k(0)
    q = s.tmp(f"{a} // {b}")
    return f"{q} + {s.k(1)} if ({a} % {b} != {z}) & (({a} < {z}) != ({b} < {z})) else {q}"


def _div(s: Site) -> str:
    return _trunc_div(s) if _int_operands(s) else f"{s.a} / {s.b}"


def _mod(s: Site) -> str:
    a, b, z = s.a, s.b, s.k(0)
    if not _int_operands(s):
        return f"np.fmod({a}, {b})"
    if not s.num("fmod"):
        return f"{a} % {b}"
    r = s.tmp(f"{a} % {b}")     # sign of the divisor; C's remainder takes the dividend's
    return f"{r} - {b} if ({r} != {z}) & (({a} < {z}) != ({b} < {z})) else {r}"


def _pow(s: Site) -> str:
    if s.in_dtypes[0] == s.in_dtypes[1] and s.in_dtypes[0][0] == "f":
        return f"math.pow({s.a}, {s.b})"
    return f"math.pow(np.float64({s.a}), np.float64({s.b}))"


def _bit_shift(s: Site) -> str:
    op = "<<" if s.choice("direction", ("LEFT", "RIGHT")) == "LEFT" else ">>"
    bits = literal(to_numpy_dtype(s.in_dtypes[0]).itemsize * 8, s.ct)
    return f"{s.a} {op} {s.b} if {s.b} < {bits} else {s.k(0)}"


def _fold(combine):
    def template(s: Site) -> str:
        acc = s.args[0]
        for b in s.args[1:]:
            acc = combine(s, acc, b)
        return acc
    return template


def _mean(s: Site) -> str:
    return f"({' + '.join(s.args)}) / {s.k(len(s.args))}"


def _clip(s: Site) -> str:
    x = s.a
    lo, hi = (s.args + [None, None])[1:3]
    if lo is not None:
        x = _maximum(s, x, lo)
    if hi is not None:
        x = _minimum(s, x, hi)
    return x


def _cast(s: Site) -> str:
    """The statement's constructor converts (floats to integers truncate); bool means nonzero."""
    if s.dtype == "bool" and s.in_dtypes[0] != "bool":
        return f"{s.a} != {s.k(0)}"
    return s.a


def _shrink(s: Site) -> str:
    a, lam, bias = s.a, s.num("lambd"), s.num("bias")
    return (f"{a} + {s.kf(bias)} if {a} < {s.kf(-lam)} else "
            f"({a} - {s.kf(bias)} if {a} > {s.kf(lam)} else {s.kf(0)})")


TEMPLATES: Dict[str, Callable[[Site], str]] = {
    "neg": lambda s: f"-{s.a}",
    "abs": _call("abs"),
    "sign": _sign,
    "relu": _relu,
    "exp": lambda s: _exp(s, s.a),
    "log": lambda s: _log(s, s.a),
    "sqrt": _call("math.sqrt"),
    "reciprocal": lambda s: f"{s.k(1)} / {s.a}",
    "sigmoid": _sigmoid,
    "tanh": lambda s: _tanh(s, s.a),
    "erf": lambda s: _erf(s, s.a),
    "floor": _call("np.floor"),
    "ceil": _call("np.ceil"),
    "round": _call("np.rint"),
    "sin": _call("math.sin"),
    "cos": _call("math.cos"),
    "tan": _call("math.tan"),
    "asin": _call("math.asin"),
    "acos": _call("math.acos"),
    "atan": _call("math.atan"),
    "sinh": _call("math.sinh"),
    "cosh": _call("math.cosh"),
    "asinh": _call("math.asinh"),
    "acosh": _call("math.acosh"),
    "atanh": _call("math.atanh"),
    "softplus": _softplus,
    "softsign": lambda s: f"{s.a} / ({s.k(1)} + abs({s.a}))",
    "mish": lambda s: f"{s.a} * {s.tmp(_tanh(s, s.tmp(_softplus(s))))}",
    "not": lambda s: f"not {s.a}",
    "bitwise_not": lambda s: f"~{s.a}",
    "isnan": lambda s: f"{s.a} != {s.a}",
    "isinf": _isinf,
    "leaky_relu": lambda s: f"{s.a} if {s.a} >= {s.k(0)} else {s.k(s.num('alpha'))} * {s.a}",
    "elu": lambda s: f"{s.a} if {s.a} >= {s.k(0)} else {s.k(s.num('alpha'))} * math.expm1({s.a})",
    "selu": lambda s: (f"{s.k(s.num('gamma'))} * {s.a} if {s.a} > {s.k(0)} else "
                       f"{s.k(s.num('gamma') * s.num('alpha'))} * math.expm1({s.a})"),
    "celu": lambda s: (f"max({s.a}, {s.k(0)}) + "
                       f"min({s.k(0)}, {s.k(s.num('alpha'))} * math.expm1({s.a} / {s.k(s.num('alpha'))}))"),
    "thresholded_relu": lambda s: f"{s.a} if {s.a} > {s.k(s.num('alpha'))} else {s.k(0)}",
    "shrink": _shrink,
    "hard_sigmoid": lambda s: (f"min(max({s.k(s.num('alpha'))} * {s.a} + {s.k(s.num('beta'))}, {s.k(0)}), "
                               f"{s.k(1)})"),
    "hard_swish": lambda s: f"{s.a} * min(max({s.a} * {s.k(1 / 6)} + {s.k(0.5)}, {s.k(0)}), {s.k(1)})",
    "gelu": _gelu,
    "silu": lambda s: f"{s.a} * {s.tmp(_sigmoid(s))}",
    "add": _infix("+"),
    "sub": _infix("-"),
    "mul": _infix("*"),
    "div": _div,
    "mod": _mod,
    "pow": _pow,
    "bit_shift": _bit_shift,
    "equal": _infix("=="),
    "less": _infix("<"),
    "less_equal": _infix("<="),
    "greater": _infix(">"),
    "greater_equal": _infix(">="),
    "and": _infix("&"),
    "or": _infix("|"),
    "xor": _infix("!="),
    "bitwise_and": _infix("&"),
    "bitwise_or": _infix("|"),
    "bitwise_xor": _infix("^"),
    "prelu": lambda s: f"{s.a} if {s.a} >= {s.k(0)} else {s.a} * {s.b}",
    "max": _fold(_maximum),
    "min": _fold(_minimum),
    "sum": lambda s: " + ".join(s.args),
    "mean": _mean,
    "clip": _clip,
    "where": lambda s: f"{s.args[1]} if {s.a} else {s.args[2]}",
    "cast": _cast,
}


# --- expression trees ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Expr:
    """A scalar expression: op ``op`` (a key of TEMPLATES) over ``args``.

    An arg is an ``Expr``, an ``int`` (the kernel operand of that index) or ``None`` (an omitted
    optional operand, as clip's bounds). ``attrs`` holds the op's attributes as sorted (name, value)
    pairs; missing ones take the op's defaults.
    """
    op: str
    args: Tuple[object, ...]
    attrs: Tuple[Tuple[str, object], ...] = ()

    @staticmethod
    def make(op: str, *args, **attrs) -> "Expr":
        return Expr(op, tuple(args), tuple(sorted((k, _hashable(v)) for k, v in attrs.items())))

    @staticmethod
    def of_node(node) -> "Expr":
        """The one-node tree of an IR node; operands are numbered over its present inputs."""
        args, i = [], 0
        for v in node.inputs:
            args.append(None if v is None else i)
            i += v is not None
        return Expr.make(node.op, *args, **node.attrs)

    def __str__(self) -> str:
        args = ", ".join("_" if a is None else f"x{a}" if isinstance(a, int) else str(a) for a in self.args)
        return f"{self.op}({args})"


def _hashable(v):
    return tuple(v) if isinstance(v, list) else v


class _Emitter:
    """Writes the statements of a tree, one per node (equal subtrees once), typing nodes as it goes."""

    def __init__(self, in_dtypes: Sequence[str]):
        self.in_dtypes = list(in_dtypes)
        self.lines: List[str] = []
        self.done: Dict[Expr, Tuple[str, str]] = {}
        self.used = set()

    def tmp(self, expr: str, dtype: str) -> str:
        name = f"t{len(self.lines)}"
        self.lines.append(f"{name} = {CTOR[compute_dtype(dtype)]}({expr})")
        return name

    def leaf(self, i: int) -> Tuple[str, str]:
        if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < len(self.in_dtypes):
            raise IrcError(f"expression operand {i!r} is not one of the {len(self.in_dtypes)} kernel operands")
        if compute_dtype(self.in_dtypes[i]) not in CTOR:
            raise UnsupportedError(f"elementwise kernels take numbers and bools, not {self.in_dtypes[i]} "
                                   f"(operand {i})")
        self.used.add(i)
        return f"x{i}", self.in_dtypes[i]

    def visit(self, e) -> Tuple[Optional[str], Optional[str]]:
        """The variable holding ``e`` and its IR dtype."""
        if e is None:
            return None, None
        if not isinstance(e, Expr):
            return self.leaf(e)
        if e in self.done:
            return self.done[e]
        if e.op not in TEMPLATES:
            raise IrcError(f"op {e.op!r} has no elementwise kernel")
        args = [self.visit(a) for a in e.args]
        opdef = op_registry.get(e.op)
        attrs = opdef.full_attrs(dict(e.attrs), f"op {e.op}: ")
        types = [None if dt is None else TensorType(dt, ()) for _, dt in args]
        try:
            dtype = opdef.infer(op_registry.InferContext(opdef, types, attrs, [None] * len(types)))[0].dtype
            site = Site([n for n, _ in args], [dt for _, dt in args], dtype, attrs, self.tmp)
            text = TEMPLATES[e.op](site)
        except IrcError as err:
            msg = str(err)
            raise IrcError(msg if msg.startswith("op ") else f"op {e.op}: {msg}") from None
        self.done[e] = (self.tmp(text, dtype), dtype)
        return self.done[e]


# --- loop sources -------------------------------------------------------------------------------------

_HEADER = '''"""irc elementwise kernel: {expr}"""
import math

import numpy as np
from numba import njit, prange

from irc.kernels.cpu.vmath import vexp
'''


def _head(parallel: bool, params: str, n: int) -> List[str]:
    """Decorator and signature: ``serial``/``parallel`` (out, params..., a0, ..., a<n-1>)."""
    return [f"@njit(cache=True, error_model=\"numpy\"{', parallel=True' if parallel else ''})",
            f"def {'parallel' if parallel else 'serial'}(out{params}{''.join(f', a{i}' for i in range(n))}):"]


def _flat_source(body: List[str], root: str, pattern: str, parallel: bool, alias: int) -> str:
    """One loop over the output; contiguous operands read at the same index, broadcast ones once; operand
    ``alias`` (-1: none) is read from the output it is (module docstring)."""
    n = len(pattern)
    loads = [f"x{i} = {'out' if i == alias else f'a{i}'}[i]" for i in range(n) if pattern[i] == "c"]
    hoisted = [f"x{i} = a{i}[0]" for i in range(n) if pattern[i] == "b"]
    lines = [*_head(parallel, "", n),
             *(f"    {h}" for h in hoisted),
             f"    for i in {'prange' if parallel else 'range'}(out.shape[0]):",
             *(f"        {s}" for s in loads + body),
             f"        out[i] = {root}"]
    return "\n".join(lines) + "\n"


def _nd_source(body: List[str], root: str, pattern: str, parallel: bool, rank: int, alias: int) -> str:
    """Nested loops over a coalesced shape of ``rank`` dims (prange over the outermost in the parallel
    variant, the innermost a plain loop); each loop carries the operands' offsets to the next. Operand
    ``alias`` (-1: none) is read from the output it is, at the output's offsets."""
    n = len(pattern)
    live = [i for i in range(n) if pattern[i] != "-"]
    last = rank - 1

    def at(name: str, depth: int) -> str:
        """The offset ``name`` reached by the loops outside ``depth``, as a prefix to add to."""
        return f"{name}{depth - 1} + " if depth else ""

    lines = [*(f"    n{d} = shape[{d}]" for d in range(rank)),
             *(f"    s{i}_{d} = strides[{i}, {d}]" for i in live for d in range(rank)
               if d < last or pattern[i] == "s"),
             *(f"    m{d} = {f'm{d + 1} * ' if d < last - 1 else ''}n{d + 1}" for d in range(last - 1, -1, -1))]
    for d in range(last):
        ind = "    " * (d + 1)
        lines += [f"{ind}for i{d} in {'prange' if parallel and d == 0 else 'range'}(n{d}):",
                  *(f"{ind}    p{i}_{d} = {at(f'p{i}_', d)}i{d} * s{i}_{d}" for i in live),
                  f"{ind}    q{d} = {at('q', d)}i{d} * m{d}"]
    ind = "    " * (last + 1)
    loads = {"c": "a{i}[{p}j]", "s": "a{i}[{p}j * s{i}_{last}]"}
    lines += [*(f"{ind}x{i} = a{i}[{f'p{i}_{last - 1}' if last else 0}]" for i in live if pattern[i] == "b"),
              f"{ind}for j in {'prange' if parallel and last == 0 else 'range'}(n{last}):",
              *(f"{ind}    x{i} = {loads[pattern[i]].format(i=i, p=at(f'p{i}_', last), last=last)}"
                for i in live if pattern[i] in "cs" and i != alias),
              *([f"{ind}    x{alias} = out[{at('q', last)}j]"] if alias >= 0 else []),
              *(f"{ind}    {st}" for st in body),
              f"{ind}    out[{at('q', last)}j] = {root}"]
    return "\n".join(_head(parallel, ", shape, strides", n) + lines) + "\n"


@dataclass
class _Plan:
    """How one operand layout is run: the output shape, the loop form and its specialization (rank and
    how each operand is read), and the coalesced shape and strides the ``nd`` loops take."""
    shape: Tuple[int, ...]
    kind: str
    pattern: str
    rank: int = 0
    loop_shape: Optional[np.ndarray] = None
    loop_strides: Optional[np.ndarray] = None

    def parallel(self, size: int) -> bool:
        return size >= PARALLEL_MIN and numba.config.NUMBA_NUM_THREADS > 1 and \
            (self.kind == "flat" or int(self.loop_shape[0]) > 1)


class ElementwiseKernel:
    """Runs an expression tree over broadcast operands: ``k(*arrays) -> array of k.out_dtype``."""

    def __init__(self, tree: Expr, in_dtypes: Sequence[str]):
        if not isinstance(tree, Expr):
            raise IrcError("an elementwise kernel needs an expression tree at its root")
        self.tree = tree
        self.in_dtypes = tuple(in_dtypes)
        em = _Emitter(self.in_dtypes)
        self._root, self.out_dtype = em.visit(tree)
        self._body = em.lines
        self._used = em.used
        self._in_np = [to_numpy_dtype(d) for d in self.in_dtypes]
        self._out_np = to_numpy_dtype(self.out_dtype)
        self._buf_np = to_numpy_dtype(compute_dtype(self.out_dtype))
        self._plans: Dict[tuple, _Plan] = {}
        self._modules: Dict[Tuple[str, str, int], object] = {}

    def source(self, kind: str, pattern: str, rank: int = 1, alias: int = -1) -> str:
        """The module text of one loop form (its serial and parallel functions)."""
        def loop(parallel):
            if kind == "flat":
                return _flat_source(self._body, self._root, pattern, parallel, alias)
            return _nd_source(self._body, self._root, pattern, parallel, rank, alias)
        return _HEADER.format(expr=self.tree) + "\n\n" + loop(False) + "\n\n" + loop(True)

    def _module(self, plan: _Plan, alias: int):
        key = (plan.kind, plan.pattern, plan.rank, alias)
        mod = self._modules.get(key)
        if mod is None:
            mod = self._modules[key] = load_module(self.source(*key), "ew")
        return mod

    def _plan(self, arrays) -> _Plan:
        key = tuple((a.shape, a.strides) for a in arrays)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= _PLAN_CACHE_SIZE:
                self._plans.clear()
            plan = self._plans[key] = self._make_plan(arrays)
        return plan

    def _make_plan(self, arrays) -> _Plan:
        try:
            shape = tuple(np.broadcast_shapes(*(a.shape for a in arrays)))
        except ValueError:
            raise IrcError(f"elementwise kernel {self.tree}: operand shapes "
                           f"{[list(a.shape) for a in arrays]} do not broadcast") from None
        full = [broadcast_strides(a.shape, shape, element_strides(a)) for a in arrays]
        cshape, cstrides = coalesce(shape, full)
        inner = [st[-1] if st else 0 for st in cstrides]
        code = "".join("-" if i not in self._used else "b" if s == 0 else "c" if s == 1 else "s"
                       for i, s in enumerate(inner))
        if len(cshape) <= 1 and "s" not in code:
            return _Plan(shape, "flat", code)
        # unsigned offsets: numba then indexes without its negative-index wraparound, which would
        # keep the innermost loop from vectorizing (strides are never negative here)
        return _Plan(shape, "nd", code, len(cshape), np.array(cshape, np.uint64),
                     np.array(cstrides, np.uint64).reshape(len(arrays), len(cshape)))

    def _operands(self, arrays) -> List[np.ndarray]:
        if len(arrays) != len(self.in_dtypes):
            raise IrcError(f"elementwise kernel {self.tree} takes {len(self.in_dtypes)} operands, "
                           f"got {len(arrays)}")
        out = []
        for i, (a, dt) in enumerate(zip(arrays, self._in_np)):
            a = np.asarray(a)
            if a.dtype != dt:
                raise IrcError(f"elementwise kernel {self.tree}: operand {i} is {a.dtype}, expected {dt}")
            out.append(a.astype(np.float32) if dt == np.float16 else walkable(a))
        return out

    def loop_form(self, *arrays) -> str:
        """Which loop runs these operands: ``flat``/``nd<rank>``, the operand pattern, serial/parallel."""
        arrays = self._operands(arrays)
        plan = self._plan(arrays)
        size = int(np.prod(plan.shape))
        kind = plan.kind if plan.kind == "flat" else f"nd{plan.rank}"
        return f"{kind} {plan.pattern} {'parallel' if plan.parallel(size) else 'serial'}"

    def _launch(self, out: np.ndarray, arrays: List[np.ndarray]):
        """``(loop function, args)`` writing the result over the checked operands ``arrays`` into ``out``
        (C-contiguous, of the broadcast shape and the compute dtype)."""
        plan = self._plan(arrays)
        if out.shape != plan.shape:
            raise IrcError(f"elementwise kernel {self.tree}: result buffer of shape {list(out.shape)}, "
                           f"the operands broadcast to {list(plan.shape)}")
        if out.size == 0:
            return _nothing, ()
        fn = getattr(self._module(plan, _alias(out, arrays, plan.pattern)),
                     "parallel" if plan.parallel(out.size) else "serial")
        bufs = [readonly_buffer(a) for a in arrays]
        if plan.kind == "flat":
            return fn, (out.reshape(-1), *bufs)
        return fn, (out.reshape(-1), plan.loop_shape, plan.loop_strides, *bufs)

    def __call__(self, *arrays) -> np.ndarray:
        arrays = self._operands(arrays)
        out = np.empty(self._plan(arrays).shape, self._buf_np)
        fn, args = self._launch(out, arrays)
        fn(*args)
        return out if self._buf_np == self._out_np else out.astype(self._out_np)

    # the output-buffer protocol (backend/registry.py: Kernel): the loops read each element of an operand
    # before writing the same element of the result, so the result may overwrite an operand
    inplace = True

    def into(self, out: np.ndarray, *arrays) -> None:
        """Write the result into ``out`` (C-contiguous, the result's shape and dtype)."""
        if self._buf_np != self._out_np:    # float16: computed in float32, rounded into out
            out[...] = self(*arrays)
            return
        fn, args = self._launch(out, self._operands(arrays))
        fn(*args)

    def bind(self, out: np.ndarray, *arrays):
        """``(call, args)`` doing ``into(out, *arrays)`` for arrays that stay where they are: the loop
        function with its operands already flattened and read-only (no Python work left per call)."""
        checked = self._operands(arrays)
        if self._buf_np != self._out_np or any(c is not a for c, a in zip(checked, arrays)):
            return self.into, (out, *arrays)    # an operand converted or copied: redo it every run
        return self._launch(out, checked)


def _alias(out: np.ndarray, arrays, pattern: str) -> int:
    """The operand that is ``out`` itself (an in-place result), -1 for none. Only an exact alias can be:
    plan-memory gives a result either an operand's whole buffer or memory no operand uses."""
    for i, a in enumerate(arrays):
        if pattern[i] == "c" and a.shape == out.shape and np.may_share_memory(a, out):
            if a.ctypes.data == out.ctypes.data and a.strides == out.strides:
                return i
            raise IrcError("elementwise kernel: an operand overlaps the result without being it")
    return -1


def _nothing() -> None:
    """The call of an empty result."""


def memoized(make: Callable) -> Callable:
    """``make(tree, in_dtypes)`` memoized per process: one kernel per expression and operand dtypes."""
    cache: Dict[tuple, object] = {}

    def get(tree: Expr, in_dtypes: Sequence[str]):
        key = (tree, tuple(in_dtypes))
        k = cache.get(key)
        if k is None:
            k = cache[key] = make(tree, in_dtypes)
        return k
    return get


# The kernel computing ``tree`` over operands of IR dtypes ``in_dtypes``.
elementwise_kernel = memoized(ElementwiseKernel)


def lower_with(node, make: Callable) -> Kernel:
    """An elementwise ``node`` as its one-node tree through ``make(tree, in_dtypes)``, whose kernel
    must compute the node's result dtype; omitted operands are skipped."""
    k = make(Expr.of_node(node), [v.type.dtype for v in node.inputs if v is not None])
    if k.out_dtype != node.outputs[0].type.dtype:
        raise IrcError(f"kernel computes {k.out_dtype}, the node's result is {node.outputs[0].type}")
    if None not in node.inputs:
        return Kernel(k, views=())

    def present(arrays):
        return [a for a in arrays if a is not None]
    return Kernel(lambda *arrays: k(*present(arrays)), views=(), inplace=k.inplace,
                  into=lambda out, *arrays: k.into(out, *present(arrays)),
                  bind=lambda out, *arrays: k.bind(out, *present(arrays)))


@lowers(*TEMPLATES, family="elementwise")
def lower_elementwise(node):
    """Every elementwise op: its one-node tree through the generated kernels."""
    return lower_with(node, elementwise_kernel)
