"""Elementwise ops: each maps elements independently, operands broadcast as in numpy.

The numpy functions here are the references; the CPU kernels generate their loops from the scalar
expressions in ``kernels/cpu/elementwise.py``, which must agree with these.
"""
import math

import numpy as np

from ..ir.types import TensorType, broadcast_shapes
from .registry import REQUIRED, define

_erf = np.frompyfunc(math.erf, 1, 1)


def _float(fn):
    """Apply ``fn`` in float64 where the input is narrower, then return the input's dtype."""
    def ref(x):
        return np.asarray(fn(x.astype(np.float64) if x.dtype != np.float64 else x)).astype(x.dtype)
    ref.__doc__ = fn.__doc__
    return ref


def _unary(name, onnx, fn, doc):
    fn.__doc__ = doc
    define(name, onnx=onnx, kind="elementwise")(fn)


_unary("neg", "Neg", lambda x: np.negative(x), "-x")
_unary("abs", "Abs", lambda x: np.abs(x), "|x|")
_unary("sign", "Sign", lambda x: np.sign(x), "sign of x (0 at 0)")
_unary("relu", "Relu", lambda x: np.maximum(x, np.zeros((), x.dtype)), "max(x, 0)")
_unary("exp", "Exp", _float(np.exp), "e**x")
_unary("log", "Log", _float(np.log), "natural logarithm")
_unary("sqrt", "Sqrt", _float(np.sqrt), "square root")
_unary("reciprocal", "Reciprocal", _float(lambda x: 1.0 / x), "1/x")
_unary("sigmoid", "Sigmoid", _float(lambda x: 1.0 / (1.0 + np.exp(-x))), "1/(1+e**-x)")
_unary("tanh", "Tanh", _float(np.tanh), "hyperbolic tangent")
_unary("erf", "Erf", _float(lambda x: _erf(x).astype(np.float64)), "the error function")
_unary("floor", "Floor", lambda x: np.floor(x), "round down")
_unary("ceil", "Ceil", lambda x: np.ceil(x), "round up")
_unary("round", "Round", lambda x: np.round(x), "round half to even")
_unary("sin", "Sin", _float(np.sin), "sine")
_unary("cos", "Cos", _float(np.cos), "cosine")
_unary("softplus", "Softplus", _float(lambda x: np.logaddexp(0.0, x)), "log(1+e**x)")
_unary("softsign", "Softsign", _float(lambda x: x / (1.0 + np.abs(x))), "x/(1+|x|)")
_unary("not", "Not", lambda x: np.logical_not(x), "logical not")


@define("leaky_relu", onnx="LeakyRelu", kind="elementwise", attrs={"alpha": 0.01})
def leaky_relu(x, *, alpha):
    """x if x >= 0 else alpha*x"""
    return np.where(x >= 0, x, x * x.dtype.type(alpha)).astype(x.dtype)


@define("elu", onnx="Elu", kind="elementwise", attrs={"alpha": 1.0})
def elu(x, *, alpha):
    """x if x >= 0 else alpha*(e**x - 1)"""
    return _float(lambda v: np.where(v >= 0, v, alpha * np.expm1(v)))(x)


@define("hard_sigmoid", onnx="HardSigmoid", kind="elementwise", attrs={"alpha": 0.2, "beta": 0.5})
def hard_sigmoid(x, *, alpha, beta):
    """clip(alpha*x + beta, 0, 1)"""
    return _float(lambda v: np.clip(alpha * v + beta, 0.0, 1.0))(x)


@define("hard_swish", onnx="HardSwish", kind="elementwise")
def hard_swish(x):
    """x * clip(x/6 + 1/2, 0, 1)"""
    return _float(lambda v: v * np.clip(v / 6.0 + 0.5, 0.0, 1.0))(x)


@define("gelu", onnx="Gelu", kind="elementwise", attrs={"approximate": "none"})
def gelu(x, *, approximate):
    """x * Phi(x): the erf form, or the tanh approximation with approximate="tanh"."""
    if approximate == "tanh":
        return _float(lambda v: 0.5 * v * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (v + 0.044715 * v ** 3))))(x)
    return _float(lambda v: 0.5 * v * (1.0 + _erf(v / math.sqrt(2.0)).astype(np.float64)))(x)


@define("silu", kind="elementwise")
def silu(x):
    """x * sigmoid(x) (made by fusion; ONNX spells it Sigmoid then Mul)"""
    return _float(lambda v: v / (1.0 + np.exp(-v)))(x)


def _binary(name, onnx, fn, doc, result=None):
    fn.__doc__ = doc

    def infer(ctx):
        t = ctx.types[0]
        return [TensorType(result or t.dtype, broadcast_shapes(*(x.shape for x in ctx.types)))]
    define(name, onnx=onnx, kind="elementwise", infer=infer)(fn)


def _int_div(a, b):
    if a.dtype.kind in "iu":
        q = np.trunc(a.astype(np.float64) / b.astype(np.float64))  # C-style truncation toward zero
        return q.astype(a.dtype)
    return (a / b).astype(a.dtype)


_binary("add", "Add", lambda a, b: (a + b).astype(a.dtype), "a + b")
_binary("sub", "Sub", lambda a, b: (a - b).astype(a.dtype), "a - b")
_binary("mul", "Mul", lambda a, b: (a * b).astype(a.dtype), "a * b")
_binary("div", "Div", _int_div, "a / b (integers truncate toward zero)")
_binary("pow", "Pow", lambda a, b: np.power(a.astype(np.float64), b.astype(np.float64)).astype(a.dtype)
        if a.dtype.kind == "f" else np.power(a, b.astype(a.dtype)).astype(a.dtype), "a ** b")
_binary("equal", "Equal", lambda a, b: np.equal(a, b), "a == b", result="bool")
_binary("less", "Less", lambda a, b: np.less(a, b), "a < b", result="bool")
_binary("less_equal", "LessOrEqual", lambda a, b: np.less_equal(a, b), "a <= b", result="bool")
_binary("greater", "Greater", lambda a, b: np.greater(a, b), "a > b", result="bool")
_binary("greater_equal", "GreaterOrEqual", lambda a, b: np.greater_equal(a, b), "a >= b", result="bool")
_binary("and", "And", lambda a, b: np.logical_and(a, b), "a and b", result="bool")
_binary("or", "Or", lambda a, b: np.logical_or(a, b), "a or b", result="bool")
_binary("xor", "Xor", lambda a, b: np.logical_xor(a, b), "a xor b", result="bool")
_binary("prelu", "PRelu", lambda x, s: np.where(x >= 0, x, x * s).astype(x.dtype), "x if x >= 0 else slope*x")


def _variadic(name, onnx, fn, doc):
    def ref(*xs):
        out = xs[0]
        for x in xs[1:]:
            out = fn(out, x)
        return np.asarray(out).astype(xs[0].dtype)
    ref.__doc__ = doc
    define(name, onnx=onnx, kind="elementwise")(ref)


_variadic("max", "Max", np.maximum, "elementwise maximum of all operands")
_variadic("min", "Min", np.minimum, "elementwise minimum of all operands")
_variadic("sum", "Sum", np.add, "elementwise sum of all operands")


@define("mean", onnx="Mean", kind="elementwise")
def mean(*xs):
    """elementwise mean of all operands"""
    return (sum(x.astype(np.float64) for x in xs) / len(xs)).astype(xs[0].dtype)


def _infer_clip(ctx):
    return [ctx.types[0]]


@define("clip", onnx="Clip", kind="elementwise", infer=_infer_clip)
def clip(x, lo=None, hi=None):
    """min(max(x, lo), hi); a missing bound does not clip."""
    out = x
    if lo is not None:
        out = np.maximum(out, lo)
    if hi is not None:
        out = np.minimum(out, hi)
    return out.astype(x.dtype)


def _infer_where(ctx):
    return [TensorType(ctx.types[1].dtype, broadcast_shapes(*(t.shape for t in ctx.types)))]


@define("where", onnx="Where", kind="elementwise", infer=_infer_where)
def where(cond, x, y):
    """x where cond else y"""
    return np.where(cond, x, y).astype(x.dtype)


def _infer_cast(ctx):
    return [TensorType(ctx["to"], ctx.types[0].shape)]


@define("cast", onnx="Cast", kind="elementwise", attrs={"to": REQUIRED}, infer=_infer_cast)
def cast(x, *, to):
    """Convert to dtype ``to`` (an IR dtype name)."""
    from ..ir.types import to_numpy_dtype
    return x.astype(to_numpy_dtype(to))
