"""Elementwise ops: each maps elements independently, operands broadcast as in numpy.

The numpy functions here are the references; the CPU kernels generate their loops from the scalar
expressions in ``kernels/cpu/elementwise.py``, which must agree with these. Float math that numpy would
do in the input's precision is done in float64 and rounded back, so the reference is the more exact side.
Integer semantics follow onnxruntime: division truncates toward zero, ``pow`` goes through float64.
"""
import math

import numpy as np

from ..errors import IrcError
from ..ir.types import FLOAT_DTYPES, TensorType, broadcast_shapes, to_numpy_dtype
from .registry import REQUIRED, define

_erf_object = np.frompyfunc(math.erf, 1, 1)


def _erf(x):
    """The error function in float64 (numpy has none)."""
    return np.asarray(_erf_object(x), dtype=np.float64)


def _float(fn):
    """Apply ``fn`` in float64 where the input is narrower, then return the input's dtype."""
    def ref(x):
        with np.errstate(all="ignore"):
            return np.asarray(fn(x.astype(np.float64) if x.dtype != np.float64 else x)).astype(x.dtype)
    ref.__doc__ = fn.__doc__
    return ref


def _same_dtypes(ctx):
    """The operands' common dtype; an IrcError when the present operands differ in dtype."""
    dts = {t.dtype for t in ctx.types if t is not None}
    if len(dts) > 1:
        raise IrcError(f"op {ctx.op.name}: operands must have one dtype, got {sorted(dts)}")
    return dts.pop()


def _shape(ctx):
    return broadcast_shapes(*(t.shape for t in ctx.types if t is not None))


def _infer_same(result=None):
    """Infer: operands of one dtype broadcast together; the result is that dtype (or ``result``)."""
    def infer(ctx):
        dt = _same_dtypes(ctx)
        return [TensorType(result or dt, _shape(ctx))]
    return infer


def _choice(ctx, attr, allowed):
    if ctx[attr] not in allowed:
        raise IrcError(f"op {ctx.op.name}: attribute {attr} must be one of {list(allowed)}, got {ctx[attr]!r}")


def _unary(name, onnx, fn, doc, result=None):
    fn.__doc__ = doc
    define(name, onnx=onnx, kind="elementwise", infer=_infer_same(result))(fn)


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
_unary("erf", "Erf", _float(_erf), "the error function")
_unary("floor", "Floor", lambda x: np.floor(x), "round down")
_unary("ceil", "Ceil", lambda x: np.ceil(x), "round up")
_unary("round", "Round", lambda x: np.round(x), "round half to even")
_unary("sin", "Sin", _float(np.sin), "sine")
_unary("cos", "Cos", _float(np.cos), "cosine")
_unary("tan", "Tan", _float(np.tan), "tangent")
_unary("asin", "Asin", _float(np.arcsin), "arcsine")
_unary("acos", "Acos", _float(np.arccos), "arccosine")
_unary("atan", "Atan", _float(np.arctan), "arctangent")
_unary("sinh", "Sinh", _float(np.sinh), "hyperbolic sine")
_unary("cosh", "Cosh", _float(np.cosh), "hyperbolic cosine")
_unary("asinh", "Asinh", _float(np.arcsinh), "inverse hyperbolic sine")
_unary("acosh", "Acosh", _float(np.arccosh), "inverse hyperbolic cosine")
_unary("atanh", "Atanh", _float(np.arctanh), "inverse hyperbolic tangent")
_unary("softplus", "Softplus", _float(lambda x: np.logaddexp(0.0, x)), "log(1+e**x)")
_unary("softsign", "Softsign", _float(lambda x: x / (1.0 + np.abs(x))), "x/(1+|x|)")
_unary("mish", "Mish", _float(lambda x: x * np.tanh(np.logaddexp(0.0, x))), "x * tanh(softplus(x))")
_unary("not", "Not", lambda x: np.logical_not(x), "logical not")
_unary("bitwise_not", "BitwiseNot", lambda x: np.invert(x), "bitwise complement of an integer")
_unary("isnan", "IsNaN", lambda x: np.isnan(x), "x is NaN", result="bool")


@define("isinf", onnx="IsInf", kind="elementwise", attrs={"detect_negative": 1, "detect_positive": 1},
        infer=_infer_same("bool"))
def isinf(x, *, detect_negative, detect_positive):
    """x is +inf (when detect_positive) or -inf (when detect_negative)"""
    return (np.isposinf(x) & bool(detect_positive)) | (np.isneginf(x) & bool(detect_negative))


@define("leaky_relu", onnx="LeakyRelu", kind="elementwise", attrs={"alpha": 0.01}, infer=_infer_same())
def leaky_relu(x, *, alpha):
    """x if x >= 0 else alpha*x"""
    return _float(lambda v: np.where(v >= 0, v, alpha * v))(x)


@define("elu", onnx="Elu", kind="elementwise", attrs={"alpha": 1.0}, infer=_infer_same())
def elu(x, *, alpha):
    """x if x >= 0 else alpha*(e**x - 1)"""
    return _float(lambda v: np.where(v >= 0, v, alpha * np.expm1(v)))(x)


@define("selu", onnx="Selu", kind="elementwise", attrs={"alpha": 1.6732632, "gamma": 1.050701},
        infer=_infer_same())
def selu(x, *, alpha, gamma):
    """gamma*x if x > 0 else gamma*alpha*(e**x - 1)"""
    return _float(lambda v: gamma * np.where(v > 0, v, alpha * np.expm1(v)))(x)


@define("celu", onnx="Celu", kind="elementwise", attrs={"alpha": 1.0}, infer=_infer_same())
def celu(x, *, alpha):
    """max(0, x) + min(0, alpha*(e**(x/alpha) - 1))"""
    return _float(lambda v: np.maximum(v, 0.0) + np.minimum(0.0, alpha * np.expm1(v / alpha)))(x)


@define("thresholded_relu", onnx="ThresholdedRelu", kind="elementwise", attrs={"alpha": 1.0},
        infer=_infer_same())
def thresholded_relu(x, *, alpha):
    """x if x > alpha else 0"""
    return _float(lambda v: np.where(v > alpha, v, 0.0))(x)


@define("shrink", onnx="Shrink", kind="elementwise", attrs={"bias": 0.0, "lambd": 0.5}, infer=_infer_same())
def shrink(x, *, bias, lambd):
    """x+bias if x < -lambd, x-bias if x > lambd, else 0"""
    v = x.astype(np.float64)
    return np.where(v < -lambd, v + bias, np.where(v > lambd, v - bias, 0.0)).astype(x.dtype)


@define("hard_sigmoid", onnx="HardSigmoid", kind="elementwise", attrs={"alpha": 0.2, "beta": 0.5},
        infer=_infer_same())
def hard_sigmoid(x, *, alpha, beta):
    """clip(alpha*x + beta, 0, 1)"""
    return _float(lambda v: np.clip(alpha * v + beta, 0.0, 1.0))(x)


@define("hard_swish", onnx="HardSwish", kind="elementwise", infer=_infer_same())
def hard_swish(x):
    """x * clip(x/6 + 1/2, 0, 1)"""
    return _float(lambda v: v * np.clip(v / 6.0 + 0.5, 0.0, 1.0))(x)


def _infer_gelu(ctx):
    _choice(ctx, "approximate", ("none", "tanh"))
    return _infer_same()(ctx)


@define("gelu", onnx="Gelu", kind="elementwise", attrs={"approximate": "none"}, infer=_infer_gelu)
def gelu(x, *, approximate):
    """x * Phi(x): the erf form, or the tanh approximation with approximate="tanh"."""
    if approximate == "tanh":
        return _float(lambda v: 0.5 * v * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (v + 0.044715 * v ** 3))))(x)
    return _float(lambda v: 0.5 * v * (1.0 + _erf(v / math.sqrt(2.0))))(x)


@define("silu", kind="elementwise", infer=_infer_same())
def silu(x):
    """x * sigmoid(x) (made by fusion; ONNX spells it Sigmoid then Mul)"""
    return _float(lambda v: v / (1.0 + np.exp(-v)))(x)


def _binary(name, onnx, fn, doc, result=None, infer=None, attrs=None):
    fn.__doc__ = doc
    define(name, onnx=onnx, kind="elementwise", attrs=attrs, infer=infer or _infer_same(result))(fn)


def _trunc_div(a, b):
    """a / b; integers truncate toward zero exactly (C semantics), a zero divisor gives 0."""
    with np.errstate(all="ignore"):
        if a.dtype.kind not in "iu":
            return (a / b).astype(a.dtype)
        q = np.floor_divide(a, b)
        inexact = (np.remainder(a, b) != 0) & ((a < 0) != (b < 0))
        return (q + inexact).astype(a.dtype)


def _pow(a, b):
    """a ** b computed in float64 and converted to a's dtype (integers truncate), as onnxruntime does."""
    with np.errstate(all="ignore"):
        return np.power(a.astype(np.float64), b.astype(np.float64)).astype(a.dtype)


def _infer_pow(ctx):
    return [TensorType(ctx.dtype(0), _shape(ctx))]


def _infer_mod(ctx):
    dt = _same_dtypes(ctx)
    if dt in FLOAT_DTYPES and not ctx["fmod"]:
        raise IrcError("op mod: floating-point operands need fmod=1")
    return [TensorType(dt, _shape(ctx))]


def _mod(a, b, *, fmod):
    with np.errstate(all="ignore"):
        return (np.fmod(a, b) if fmod else np.mod(a, b)).astype(a.dtype)


def _infer_bit_shift(ctx):
    _choice(ctx, "direction", ("LEFT", "RIGHT"))
    return _infer_same()(ctx)


def _bit_shift(a, b, *, direction):
    return (np.left_shift(a, b) if direction == "LEFT" else np.right_shift(a, b)).astype(a.dtype)


_binary("add", "Add", lambda a, b: (a + b).astype(a.dtype), "a + b")
_binary("sub", "Sub", lambda a, b: (a - b).astype(a.dtype), "a - b")
_binary("mul", "Mul", lambda a, b: (a * b).astype(a.dtype), "a * b")
_binary("div", "Div", _trunc_div, "a / b (integers truncate toward zero)")
_binary("mod", "Mod", _mod, "remainder: sign of the divisor, or of the dividend with fmod=1 (C fmod)",
        infer=_infer_mod, attrs={"fmod": 0})
_binary("pow", "Pow", _pow, "a ** b (the exponent may have another dtype; the result has a's)", infer=_infer_pow)
_binary("bit_shift", "BitShift", _bit_shift, "a << b or a >> b on unsigned integers",
        infer=_infer_bit_shift, attrs={"direction": REQUIRED})
_binary("equal", "Equal", lambda a, b: np.equal(a, b), "a == b", result="bool")
_binary("less", "Less", lambda a, b: np.less(a, b), "a < b", result="bool")
_binary("less_equal", "LessOrEqual", lambda a, b: np.less_equal(a, b), "a <= b", result="bool")
_binary("greater", "Greater", lambda a, b: np.greater(a, b), "a > b", result="bool")
_binary("greater_equal", "GreaterOrEqual", lambda a, b: np.greater_equal(a, b), "a >= b", result="bool")
_binary("and", "And", lambda a, b: np.logical_and(a, b), "a and b", result="bool")
_binary("or", "Or", lambda a, b: np.logical_or(a, b), "a or b", result="bool")
_binary("xor", "Xor", lambda a, b: np.logical_xor(a, b), "a xor b", result="bool")
_binary("bitwise_and", "BitwiseAnd", lambda a, b: np.bitwise_and(a, b), "a & b on integers")
_binary("bitwise_or", "BitwiseOr", lambda a, b: np.bitwise_or(a, b), "a | b on integers")
_binary("bitwise_xor", "BitwiseXor", lambda a, b: np.bitwise_xor(a, b), "a ^ b on integers")


def _infer_prelu(ctx):
    """The result has x's type: the slope broadcasts to x's shape (one-directional broadcasting)."""
    dt = _same_dtypes(ctx)
    x, s = ctx.shape(0), ctx.shape(1)
    if x is not None and s is not None and broadcast_shapes(x, s) != tuple(x) \
            and all(isinstance(d, int) for d in (*x, *s)):
        raise IrcError(f"op prelu: slope of shape {list(s)} does not broadcast to x of shape {list(x)}")
    return [TensorType(dt, x)]


_binary("prelu", "PRelu", lambda x, s: np.where(x >= 0, x, x * s).astype(x.dtype), "x if x >= 0 else slope*x",
        infer=_infer_prelu)


def _variadic(name, onnx, fn, doc):
    def ref(*xs):
        out = xs[0]
        for x in xs[1:]:
            out = fn(out, x)
        return np.asarray(out).astype(xs[0].dtype)
    ref.__doc__ = doc
    define(name, onnx=onnx, kind="elementwise", infer=_infer_same())(ref)


_variadic("max", "Max", np.maximum, "elementwise maximum of all operands (NaN wins)")
_variadic("min", "Min", np.minimum, "elementwise minimum of all operands (NaN wins)")
_variadic("sum", "Sum", np.add, "elementwise sum of all operands")


@define("mean", onnx="Mean", kind="elementwise", infer=_infer_same())
def mean(*xs):
    """elementwise mean of all operands"""
    return (sum(x.astype(np.float64) for x in xs) / len(xs)).astype(xs[0].dtype)


def _infer_clip(ctx):
    return [TensorType(_same_dtypes(ctx), ctx.shape(0))]


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
    if ctx.dtype(0) != "bool":
        raise IrcError(f"op where: the condition must be bool, got {ctx.dtype(0)}")
    if ctx.dtype(1) != ctx.dtype(2):
        raise IrcError(f"op where: both branches must have one dtype, got {ctx.dtype(1)} and {ctx.dtype(2)}")
    return [TensorType(ctx.dtype(1), _shape(ctx))]


@define("where", onnx="Where", kind="elementwise", infer=_infer_where)
def where(cond, x, y):
    """x where cond else y"""
    return np.where(cond, x, y).astype(x.dtype)


def _infer_cast(ctx):
    if "str" in (ctx["to"], ctx.dtype(0)):
        raise IrcError(f"op cast: casts from {ctx.dtype(0)} to {ctx['to']} are not supported")
    return [TensorType(ctx["to"], ctx.types[0].shape)]


@define("cast", onnx="Cast", kind="elementwise", attrs={"to": REQUIRED}, infer=_infer_cast)
def cast(x, *, to):
    """Convert to dtype ``to`` (an IR dtype name): floats to integers truncate, nonzero is True."""
    with np.errstate(all="ignore"):
        return x.astype(to_numpy_dtype(to))
