"""Elementwise ops: every op against onnxruntime and the reference, then the kernel generator itself.

The op table below drives the model tests: each row is an ONNX op with the dtypes it is run in and the
domain its random inputs come from. float32 runs every broadcasting shape; other dtypes run one shape,
which keeps the number of generated kernels (and the first, cache-filling run) small.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import pytest
from onnx import TensorProto

import irc
from irc.ops import OPS
from irc.ir.types import DTYPES, from_numpy_dtype
from irc.kernels.cpu import codegen
from irc.kernels.cpu.elementwise import PARALLEL_MIN, TEMPLATES, Expr, elementwise_kernel
from irc.runtime.cache import JitCompiles, cache_dir
from tests.util import NP_TO_ONNX, assert_close, check_model, node_model

# --------------------------------------------------------------------------------------- input domains


def _ints(rng, shape, dt, lo, hi):
    info = np.iinfo(dt)
    return rng.integers(max(lo, info.min), min(hi, info.max) + 1, shape).astype(dt)


def normal(rng, shape, dt, i):
    if dt == np.bool_:
        return rng.random(shape) < 0.5
    if dt.kind in "iu":
        return _ints(rng, shape, dt, -20, 20)
    return (rng.standard_normal(shape) * 2).astype(dt)


def positive(rng, shape, dt, i):
    if dt.kind in "iu":
        return _ints(rng, shape, dt, 1, 20)
    return rng.uniform(0.1, 4.0, shape).astype(dt)


def nonzero(rng, shape, dt, i):
    sign = np.where(rng.random(shape) < 0.5, -1, 1) if dt.kind != "u" else 1
    if dt.kind in "iu":
        return (_ints(rng, shape, dt, 1, 7) * sign).astype(dt)
    return (rng.uniform(0.5, 3.0, shape) * sign).astype(dt)


def divisor_second(rng, shape, dt, i):
    """Any dividend, a nonzero divisor."""
    return nonzero(rng, shape, dt, i) if i == 1 else normal(rng, shape, dt, i)


def uniform(lo, hi):
    return lambda rng, shape, dt, i: rng.uniform(lo, hi, shape).astype(dt)


def halves(rng, shape, dt, i):
    """Values at and between halves, to check round-half-to-even."""
    x = rng.integers(-6, 6, shape) + rng.choice([0.5, 0.25, 0.75, 0.0], shape)
    return x.astype(dt)


def specials(rng, shape, dt, i):
    x = normal(rng, shape, dt, i).reshape(-1)
    x[::3], x[1::5], x[2::7] = np.nan, np.inf, -np.inf
    return x.reshape(shape)


def powers(rng, shape, dt, i):
    """Bases that keep pow real, small exponents that keep integer results exact."""
    if i == 0:
        return positive(rng, shape, dt, i) if dt.kind == "f" else _ints(rng, shape, dt, -4, 4)
    return rng.uniform(-2, 2, shape).astype(dt) if dt.kind == "f" else _ints(rng, shape, dt, 0, 5)


def shifts(rng, shape, dt, i):
    bits = dt.itemsize * 8
    return _ints(rng, shape, dt, 0, 255) if i == 0 else _ints(rng, shape, dt, 0, bits - 1)


def where_operands(rng, shape, dt, i):
    return rng.random(shape) < 0.5 if i == 0 else normal(rng, shape, dt, i)


# ---------------------------------------------------------------------------------------------- the table

F = ("f32", "f64", "f16")
SHAPES_1 = [((2, 3, 4),), ((),), ((0, 3),)]
SHAPES_2 = [((2, 3, 4), (2, 3, 4)), ((2, 3, 4), (4,)), ((2, 1, 4), (3, 1)), ((), (2, 3)), ((0, 3), (3,))]
SHAPES_3 = [((2, 3, 4), (2, 3, 4), (2, 3, 4)), ((2, 3, 4), (4,), (3, 1)), ((2, 1), (), (1, 0))]


@dataclass
class Case:
    onnx: str
    n: int = 1
    dtypes: Sequence[str] = ("f32",)
    domain: Callable = normal
    attrs: Dict = field(default_factory=dict)
    opset: int = 17
    shapes: Optional[list] = None
    dtype_of: Optional[Callable] = None     # operand index -> dtype, where operands differ
    tag: str = ""

    @property
    def id(self) -> str:
        return self.onnx + (f"-{self.tag}" if self.tag else "")

    def all_shapes(self):
        return self.shapes or {1: SHAPES_1, 2: SHAPES_2, 3: SHAPES_3}[self.n]


CASES = [
    Case("Neg", dtypes=("f32", "f16", "i32", "i64")),
    Case("Abs", dtypes=("f32", "f64", "i32")),
    Case("Sign", dtypes=("f32", "i64")),
    Case("Relu", dtypes=("f32", "f64", "f16", "i32")),
    Case("Exp", dtypes=F),
    Case("Log", dtypes=F, domain=positive),
    Case("Sqrt", dtypes=F, domain=positive),
    Case("Reciprocal", dtypes=F, domain=nonzero),
    Case("Sigmoid", dtypes=F),
    Case("Tanh", dtypes=F),
    Case("Erf"),
    Case("Floor", dtypes=F),
    Case("Ceil", dtypes=F),
    Case("Round", dtypes=F, domain=halves),
    Case("Sin", dtypes=("f32", "f64")),
    Case("Cos", dtypes=("f32", "f64")),
    Case("Tan", domain=uniform(-1.3, 1.3)),
    Case("Asin", domain=uniform(-0.95, 0.95)),
    Case("Acos", domain=uniform(-0.95, 0.95)),
    Case("Atan"),
    Case("Sinh"),
    Case("Cosh"),
    Case("Asinh"),
    Case("Acosh", domain=uniform(1.05, 5.0)),
    Case("Atanh", domain=uniform(-0.95, 0.95)),
    Case("Softplus"),
    Case("Softsign"),
    Case("Mish", dtypes=("f32", "f64"), opset=18),
    Case("Not", dtypes=("bool",)),
    Case("BitwiseNot", dtypes=("i32", "u8"), opset=18),
    Case("IsNaN", dtypes=F, domain=specials),
    Case("IsInf", dtypes=("f32", "f64"), domain=specials),
    Case("IsInf", domain=specials, attrs={"detect_negative": 0}, tag="positive"),
    Case("IsInf", domain=specials, attrs={"detect_positive": 0}, tag="negative"),
    Case("LeakyRelu", dtypes=("f32", "f64", "f16"), attrs={"alpha": 0.1}),
    Case("Elu", attrs={"alpha": 0.5}),
    Case("Selu"),
    Case("Selu", attrs={"alpha": 2.0, "gamma": 0.5}, tag="attrs"),
    Case("Celu", attrs={"alpha": 1.5}),
    Case("ThresholdedRelu", attrs={"alpha": 0.3}),
    Case("Shrink", dtypes=("f32", "f64"), attrs={"lambd": 0.7, "bias": 0.2}),
    Case("Shrink", dtypes=("i32",), attrs={"lambd": 3.0, "bias": 2.0}, tag="int"),
    Case("HardSigmoid", attrs={"alpha": 0.3, "beta": 0.4}),
    Case("HardSwish", dtypes=("f32", "f16")),
    Case("Gelu", opset=20),
    Case("Gelu", attrs={"approximate": "tanh"}, opset=20, tag="tanh"),
    Case("Add", 2, dtypes=("f32", "f64", "f16", "i32", "i64")),
    Case("Sub", 2, dtypes=("f32", "i64")),
    Case("Mul", 2, dtypes=("f32", "f16", "i32")),
    Case("Div", 2, dtypes=("f32", "f64", "i32", "i64", "u8"), domain=divisor_second),
    Case("Mod", 2, dtypes=("i32", "i64", "u8"), domain=divisor_second),
    Case("Mod", 2, dtypes=("f32", "f64", "i32", "i64"), domain=divisor_second, attrs={"fmod": 1}, tag="fmod"),
    Case("Pow", 2, dtypes=("f32", "f64", "i32", "i64"), domain=powers),
    Case("Pow", 2, dtypes=("f32",), domain=powers, dtype_of=lambda i, dt: "i64" if i else dt, tag="int-exponent",
         shapes=SHAPES_2[:2]),
    Case("Pow", 2, dtypes=("i64",), domain=powers, dtype_of=lambda i, dt: "f32" if i else dt, tag="float-exponent",
         shapes=SHAPES_2[:2]),
    Case("BitShift", 2, dtypes=("u8", "u32", "u64"), domain=shifts, attrs={"direction": "LEFT"}),
    Case("BitShift", 2, dtypes=("u8", "u64"), domain=shifts, attrs={"direction": "RIGHT"}, tag="right"),
    Case("Equal", 2, dtypes=("f32", "i64", "bool")),
    Case("Less", 2, dtypes=("f32", "i32")),
    Case("LessOrEqual", 2, dtypes=("f32", "i64")),
    Case("Greater", 2, dtypes=("f32", "f64")),
    Case("GreaterOrEqual", 2, dtypes=("f32", "i32")),
    Case("And", 2, dtypes=("bool",)),
    Case("Or", 2, dtypes=("bool",)),
    Case("Xor", 2, dtypes=("bool",)),
    Case("BitwiseAnd", 2, dtypes=("i32", "u8"), opset=18),
    Case("BitwiseOr", 2, dtypes=("i64",), opset=18),
    Case("BitwiseXor", 2, dtypes=("i32",), opset=18),
    Case("PRelu", 2, dtypes=("f32", "f64"),
         shapes=[((2, 3, 4), (2, 3, 4)), ((2, 3, 4), (4,)), ((2, 3, 4), (3, 1)), ((2, 3, 4), ())]),
    Case("Max", 3, dtypes=("f32", "i32")),
    Case("Min", 3, dtypes=("f32", "i64")),
    Case("Sum", 3, dtypes=("f32", "f64")),
    Case("Mean", 3),
    Case("Max", 1, tag="one", shapes=SHAPES_1[:1]),
    Case("Sum", 2, tag="two", shapes=SHAPES_2[1:2]),
    Case("Clip", 3, dtypes=("f32", "i32"), shapes=[((2, 3, 4), (), ())]),
    Case("Where", 3, dtypes=("f32", "i64"), domain=where_operands,
         dtype_of=lambda i, dt: "bool" if i == 0 else dt),
]


def _expand(case: Case):
    for k, dt in enumerate(case.dtypes):
        for shapes in case.all_shapes()[: None if k == 0 else 1]:
            yield pytest.param(case, dt, shapes, id=f"{case.id}-{dt}-{'+'.join(map(str, shapes))}")


def _feeds(case: Case, dt: str, shapes, seed: int = 0):
    rng = np.random.default_rng(seed)
    return {f"x{i}": np.asarray(case.domain(rng, s, DTYPES[case.dtype_of(i, dt) if case.dtype_of else dt], i))
            for i, s in enumerate(shapes)}


@pytest.mark.parametrize("case, dt, shapes", [p for c in CASES for p in _expand(c)])
def test_op_matches_onnxruntime_and_reference(case, dt, shapes):
    feeds = _feeds(case, dt, shapes)
    if case.onnx == "Clip":     # bounds with lo < hi
        feeds["x1"], feeds["x2"] = np.array(-1, feeds["x1"].dtype), np.array(2, feeds["x2"].dtype)
    got = check_model(node_model(case.onnx, feeds, attrs=case.attrs, opset=case.opset), feeds)["out0"]
    assert got.shape == np.broadcast_shapes(*shapes)


def test_every_elementwise_op_has_a_kernel_and_a_test_row():
    ops = {name for name, d in OPS.items() if d.kind == "elementwise"}
    assert ops == set(TEMPLATES)
    tested = {OPS[n].name for n in ops for c in CASES if c.onnx in OPS[n].onnx}
    # cast has its own test over every dtype pair; silu is made by fusion only (no ONNX op)
    assert ops - tested == {"cast", "silu"}


# ------------------------------------------------------------------------------------------------- cast

CAST_DTYPES = ["f32", "f64", "f16", "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "bool"]


def _cast_source(dt: str, to: str) -> np.ndarray:
    """Values every target represents: non-negative (negative too where both sides are signed), with
    fractions for float sources to check truncation toward zero, and zeros for bool."""
    x = np.array([0.0, 1.0, 2.7, 0.5, 99.9, 17.2, 3.0, 0.0])
    if dt[0] in "fi" and to[0] in "fi":
        x = np.concatenate([x, -x])
    if dt == "bool":
        return (x.reshape(2, -1) > 1).astype(np.bool_)
    return x.astype(DTYPES[dt]).reshape(2, -1)


@pytest.mark.parametrize("dt, to", list(itertools.product(CAST_DTYPES, CAST_DTYPES)))
def test_cast_every_dtype_pair(dt, to):
    onnx_to = NP_TO_ONNX[DTYPES[to]]
    x = _cast_source(dt, to)
    got = check_model(node_model("Cast", {"x": x}, attrs={"to": onnx_to}), {"x": x})["out0"]
    assert got.dtype == DTYPES[to]


def test_cast_like_takes_the_dtype_of_its_second_operand():
    x, like = np.array([[1.9, -2.7, 0.0]], np.float32), np.zeros((0,), np.int32)
    got = check_model(node_model("CastLike", {"x": x, "like": like}, opset=15), {"x": x, "like": like})["out0"]
    np.testing.assert_array_equal(got, np.array([[1, -2, 0]], np.int32))


def test_cast_to_string_is_unsupported():
    x = np.zeros(3, np.float32)
    with pytest.raises(irc.IrcError, match="string"):
        irc.compile(node_model("Cast", {"x": x}, attrs={"to": TensorProto.STRING}))


# ----------------------------------------------------------------------------- opset forms and bad models

def test_clip_before_opset_11_takes_bounds_from_attributes():
    x = _feeds(Case("Clip"), "f32", [(2, 3, 4)])["x0"]
    for attrs in ({"min": -0.5, "max": 1.0}, {"min": 0.0}, {"max": -0.25}, {}):
        got = check_model(node_model("Clip", {"x": x}, attrs=attrs, opset=10), {"x": x})["out0"]
        assert got.min() >= attrs.get("min", -np.inf) and got.max() <= attrs.get("max", np.inf)


def test_clip_with_only_an_upper_bound():
    x = _feeds(Case("Clip"), "f32", [(2, 3, 4)])["x0"]
    model = node_model("Clip", {"x": x}, consts={"hi": np.array(0.5, np.float32)}, input_order=["x", "", "hi"])
    assert check_model(model, {"x": x})["out0"].max() == np.float32(0.5)


def test_clip_int64_with_constant_bounds():
    x = _feeds(Case("Clip"), "i64", [(3, 5)])["x0"]
    model = node_model("Clip", {"x": x}, consts={"lo": np.array(-3, np.int64), "hi": np.array(4, np.int64)})
    check_model(model, {"x": x})


def test_integer_division_truncates_toward_zero():
    a = np.array([7, -7, 7, -7, 0, 6], np.int32)
    b = np.array([2, 2, -2, -2, 3, -4], np.int32)
    got = check_model(node_model("Div", {"a": a, "b": b}), {"a": a, "b": b})["out0"]
    np.testing.assert_array_equal(got, [3, -3, -3, 3, 0, -1])


@pytest.mark.parametrize("fmod, want", [(0, [1, 1, -1, -1]), (1, [1, -1, 1, -1])])
def test_integer_mod_sign_follows_divisor_or_dividend(fmod, want):
    a, b = np.array([7, -7, 7, -7], np.int64), np.array([2, 2, -2, -2], np.int64)
    got = check_model(node_model("Mod", {"a": a, "b": b}, attrs={"fmod": fmod}), {"a": a, "b": b})["out0"]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("op, inputs, attrs, opset, match", [
    ("Gelu", {"x": np.zeros(3, np.float32)}, {"approximate": "fast"}, 20, "approximate"),
    ("Mod", {"a": np.zeros(3, np.float32), "b": np.ones(3, np.float32)}, {}, 17, "fmod"),
    ("BitShift", {"a": np.zeros(3, np.uint8), "b": np.ones(3, np.uint8)}, {"direction": "UP"}, 17, "direction"),
    ("PRelu", {"x": np.zeros((2, 3), np.float32), "s": np.ones((3, 2, 3), np.float32)}, {}, 17, "slope"),
    ("Add", {"a": np.zeros(3, np.float32), "b": np.ones(3, np.int32)}, {}, 17, "one dtype"),
    ("Add", {"a": np.zeros(3, np.float32), "b": np.ones(4, np.float32)}, {}, 17, "broadcast"),
    ("Where", {"c": np.zeros(3, np.int32), "a": np.ones(3, np.float32), "b": np.ones(3, np.float32)}, {}, 17,
     "bool"),
])
def test_bad_models_raise_irc_errors_naming_the_problem(op, inputs, attrs, opset, match):
    with pytest.raises(irc.IrcError, match=match):
        irc.compile(node_model(op, inputs, attrs=attrs, opset=opset))


# ----------------------------------------------------------------------------------- the kernel generator

def _reference(tree, operands):
    """Evaluate an expression tree with the ops' numpy references (the oracle of fused kernels)."""
    if tree is None:
        return None
    if isinstance(tree, int):
        return operands[tree]
    args = [_reference(a, operands) for a in tree.args]
    return OPS[tree.op].ref(*args, **OPS[tree.op].full_attrs(dict(tree.attrs)))


def _check_tree(tree, operands, tol=1e-5):
    k = elementwise_kernel(tree, [from_numpy_dtype(a.dtype) for a in operands])
    got = k(*operands)
    assert_close(got, _reference(tree, operands), tol, str(tree))
    return got


X = np.random.default_rng(1).standard_normal((6, 5, 4)).astype(np.float32)
Y = np.random.default_rng(2).standard_normal((5, 4)).astype(np.float32)
SILU_ADD = Expr.make("mul", Expr.make("add", 0, 1), Expr.make("sigmoid", Expr.make("add", 0, 1)))


def test_fused_tree_with_a_shared_subtree_computes_it_once():
    _check_tree(SILU_ADD, [X, Y])
    source = elementwise_kernel(SILU_ADD, ["f32", "f32"]).source("flat", "cc")
    assert source.count("x0 + x1") == source.count("def ") == 2     # once in the serial, once in the parallel loop


def test_fused_tree_with_attributes_casts_and_mixed_dtypes():
    bound = Expr.make("cast", 2, to="f32")
    tree = Expr.make("where", Expr.make("greater", 0, bound), Expr.make("leaky_relu", 0, alpha=0.2),
                     Expr.make("clip", 1, None, bound))
    _check_tree(tree, [X, Y, np.array(1, np.int32)[()]])


_VIEWS = {     # name: (the view of an (8, 12) array, the shape of the contiguous operand beside it)
    "transposed": (lambda b: b.T[:8, :8], (8, 8)),
    "stepped": (lambda b: b[::2, 1::3], (4, 4)),
    "reversed": (lambda b: b[::-1, ::-1], (8, 12)),
    "broadcast_view": (lambda b: np.broadcast_to(b[0], (8, 12)), (8, 12)),
    "column": (lambda b: b[:, 3:4], (8, 12)),
    "row_of_column": (lambda b: b[:, 3:4].T, (3, 8)),
}


@pytest.mark.parametrize("view", list(_VIEWS))
def test_operands_of_any_layout(view):
    rng = np.random.default_rng(3)
    make, shape = _VIEWS[view]
    other = make(rng.standard_normal((8, 12)).astype(np.float32))
    first = rng.standard_normal(shape).astype(np.float32)
    _check_tree(Expr.make("sub", 0, 1), [first, other])
    _check_tree(Expr.make("sub", 0, 1), [other, first])


_ROWS = PARALLEL_MIN // 400 + 1


@pytest.mark.parametrize("shapes, form", [
    (((_ROWS, 400), (_ROWS, 400)), "flat cc parallel"),
    (((_ROWS, 400), (400,)), "nd2 cc parallel"),
    (((3, 1, PARALLEL_MIN // 10), (5, 1)), "nd3 cb parallel"),
    (((2, 1, 3, 1, 4), (1, 5, 1, 6, 1)), "nd5 cb serial"),
    (((2, 3), (1,)), "flat cb serial"),
])
def test_loop_forms(shapes, form):
    rng = np.random.default_rng(4)
    ops = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    assert elementwise_kernel(SILU_ADD, ["f32", "f32"]).loop_form(*ops) == form
    _check_tree(SILU_ADD, ops)


@pytest.mark.parametrize("shape, strides, want", [
    ((2, 3, 4), [[12, 4, 1], [12, 4, 1]], ([24], [[1], [1]])),
    ((2, 3, 4), [[12, 4, 1], [0, 0, 1]], ([6, 4], [[4, 1], [0, 1]])),
    ((2, 3, 4), [[4, 0, 1], [0, 1, 0]], ([2, 3, 4], [[4, 0, 1], [0, 1, 0]])),
    ((2, 1, 4), [[4, 0, 1]], ([8], [[1]])),
    ((5, 6), [[0, 0]], ([30], [[0]])),
    ((), [[]], ([], [[]])),
])
def test_coalesce_merges_dims_contiguous_for_every_operand(shape, strides, want):
    assert codegen.coalesce(shape, strides) == want


_WIDE = np.linspace(-110, 100, 400_001)
_ACCURACY_GRIDS = {
    "exp": _WIDE, "tanh": _WIDE, "erf": _WIDE, "sigmoid": _WIDE, "softplus": _WIDE,
    "mish": np.linspace(-80, 100, 400_001),
    "log": np.concatenate([np.geomspace(1e-45, 3e38, 400_001), np.linspace(0.5, 2, 200_001), [-1.0]]),
}


@pytest.mark.parametrize("op", list(_ACCURACY_GRIDS))
def test_float32_transcendentals_are_within_a_few_ulps(op):
    """These are spelled out as polynomials (to vectorize): check them densely against float64."""
    x = np.concatenate([_ACCURACY_GRIDS[op], np.linspace(-4, 4, 400_001),
                        [0.0, -0.0, np.inf, -np.inf, np.nan]]).astype(np.float32)
    got = elementwise_kernel(Expr.make(op, 0), ["f32"])(x).astype(np.float64)
    with np.errstate(all="ignore"):
        want = OPS[op].ref(x.astype(np.float64))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    normal = np.abs(want) >= np.finfo(np.float32).tiny
    representable = np.abs(want) <= np.finfo(np.float32).max
    np.testing.assert_array_equal(got[~representable & normal], np.sign(want[~representable & normal]) * np.inf)
    ok = normal & representable
    ulps = np.abs(got[ok] - want[ok]) / np.spacing(np.abs(want[ok]).astype(np.float32))
    assert ulps.max() <= 4, f"{op}: {ulps.max():.2f} ulps at x = {x[ok][ulps.argmax()]}"


def test_float16_is_computed_in_float32_and_rounded_back():
    x = X.astype(np.float16)
    got = _check_tree(Expr.make("gelu", 0), [x], tol=1e-3)
    assert got.dtype == np.float16


@pytest.mark.parametrize("bad", ["0; import os", "nan", b"1", None, [1]])
def test_literals_are_numbers_only(bad):
    with pytest.raises(irc.IrcError):
        codegen.literal(bad, "f32")


def test_literal_spellings():
    assert codegen.literal(0.5, "f32") == "np.float32(0.5)"
    assert codegen.literal(-math.inf, "f64") == "np.float64(-np.inf)"
    assert codegen.literal(3, "u8") == "np.uint8(3)"
    with pytest.raises(irc.IrcError):
        codegen.literal(2.5, "i32")


@pytest.mark.parametrize("tree, match", [
    (Expr.make("os.system", 0), "no elementwise kernel"),
    (Expr.make("gelu", 0, approximate="tanh\nimport os"), "approximate"),
    (Expr.make("leaky_relu", 0, alpha="0.1"), "number"),
    (Expr.make("add", 0, 2), "operand"),
    (Expr.make("relu", 0, beta=1.0), "attribute"),
])
def test_generator_rejects_what_is_not_whitelisted(tree, match):
    with pytest.raises(irc.IrcError, match=match):
        elementwise_kernel(tree, ["f32", "f32"])


def test_string_operands_are_unsupported():
    with pytest.raises(irc.errors.UnsupportedError, match="not str"):
        elementwise_kernel(Expr.make("equal", 0, 1), ["str", "str"])


def test_operands_are_checked():
    k = elementwise_kernel(Expr.make("add", 0, 1), ["f32", "f32"])
    with pytest.raises(irc.IrcError, match="operand 1"):
        k(X, Y.astype(np.float64))
    with pytest.raises(irc.IrcError, match="broadcast"):
        k(X, np.zeros((3,), np.float32))


def test_generated_source_lives_in_the_cache_named_by_its_hash():
    k = elementwise_kernel(SILU_ADD, ["f32", "f32"])
    k(X, Y)
    text = k.source("nd", "cc", 2)      # (6, 5, 4) + (5, 4) coalesces to (6, 20) + (20,)
    path = cache_dir() / "gen" / f"ew_{codegen.source_hash(text)}.py"
    assert path.read_text() == text


def test_kernels_reload_from_the_disk_cache_without_compiling():
    tree = Expr.make("hard_swish", Expr.make("sub", 0, 1))
    elementwise_kernel(tree, ["f32", "f32"])(X, Y)       # compiles (or loads) and writes the cache
    fresh = type(elementwise_kernel(tree, ["f32", "f32"]))(tree, ["f32", "f32"])
    codegen._MODULES.clear()                             # forget the imported modules: reimport from disk
    with JitCompiles() as jit:
        assert_close(fresh(X, Y), _reference(tree, [X, Y]), 1e-5)
    assert jit.names == []


@pytest.mark.parametrize("shapes", [[(6, 50), (6, 50)], [(6, 50), (50,)], [(4, 6, 50), (6, 1)]],
                         ids=["flat", "row-broadcast", "nd"])
def test_in_place_result_reads_the_operand_it_overwrites(shapes):
    """plan-memory may hand a kernel an operand's own buffer as its result: the variant for that reads the
    operand from the result (one buffer, so the loop vectorizes) and must compute what a fresh result gets."""
    rng = np.random.default_rng(3)
    x, b = (rng.standard_normal(s).astype(np.float32) for s in shapes)
    k = elementwise_kernel(Expr.make("mul", Expr.make("add", 0, 1), 0), ["f32", "f32"])
    want = (x + b) * x
    k.into(x, x, b)
    assert_close(x, want)


def test_a_result_overlapping_an_operand_without_being_it_is_refused():
    k = elementwise_kernel(Expr.make("neg", 0), ["f32"])
    buf = np.zeros(101, np.float32)
    with pytest.raises(irc.IrcError, match="overlaps"):
        k.into(buf[1:], buf[:-1])
