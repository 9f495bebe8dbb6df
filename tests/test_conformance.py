"""The onnx package's node conformance cases, compiled with irc.compile and compared as onnx's runner does.

Every case of ``onnx.backend.test.case.node.collect_testcases`` is a test, named by the case. The cases
irc is known to fail are listed, each with its reason, in tests/conformance_xfail.txt (written by
``python3 tools/conformance.py --write-xfail``); they are strict expected failures, so a listed case that
starts passing fails here until its line is removed.
"""
import importlib.util
import pathlib
import sys

import numpy as np
import pytest

import irc
from irc.frontend import import_onnx
from irc.ops.interpret import interpret
from tests.util import assert_close, check_model, node_model, run_ort

_TOOL = pathlib.Path(__file__).resolve().parent.parent / "tools" / "conformance.py"


def _load_tool():
    spec = importlib.util.spec_from_file_location("irc_conformance_tool", _TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (its dataclasses look their module up there)
    spec.loader.exec_module(module)
    return module


conformance = _load_tool()
CASES = conformance.load_cases()
XFAIL = conformance.load_xfail()


def _params():
    for name in CASES:
        marks = [pytest.mark.xfail(strict=True, reason=XFAIL[name])] if name in XFAIL else []
        yield pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", list(_params()))
def test_node_case(name):
    """Compile the case with irc and compare every data set. A listed failure is reported in one line
    (pytest formatting ~1,000 deep tracebacks would take most of this file's time); others in full."""
    if name not in XFAIL:
        conformance.check_case(CASES[name], "irc")
        return
    try:
        conformance.check_case(CASES[name], "irc")
    except Exception as e:
        pytest.fail(conformance.reason_of(e), pytrace=False)


def test_xfail_list_names_known_cases_with_reasons():
    """Every line of the expected-failure file names an existing case and gives a reason."""
    assert XFAIL, "the expected-failure file is missing or empty"
    unknown = sorted(set(XFAIL) - set(CASES))
    assert not unknown, f"expected failures that are not cases: {unknown[:10]}"
    assert all(reason and reason != "expected to fail" for reason in XFAIL.values())


def test_compare_outputs_is_strict():
    """The comparison itself: dtype, shape, integer exactness and tolerance each make a case fail."""
    from irc.backend.onnx_backend import compare_outputs
    ref = [np.array([1.0, 2.0], np.float32), np.array([1, 2], np.int64)]
    compare_outputs(ref, [ref[0] + 1e-7, ref[1].copy()], rtol=1e-3, atol=1e-7)
    bad = [[ref[0].astype(np.float64), ref[1]], [ref[0][:1], ref[1]], [ref[0], ref[1] + 1],
           [ref[0] * 1.01, ref[1]], [ref[0]]]
    for outputs in bad:
        with pytest.raises(AssertionError):
            compare_outputs(ref, outputs, rtol=1e-3, atol=1e-7)


# -- ops the suite covers at one opset or one operand type only: the other forms against onnxruntime ---------

def _rng_input(shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


HARDMAX = [  # (opset, shape, axis or None)
    (11, (3, 4, 5), None), (11, (3, 4, 5), 2), (11, (2, 6), 0), (13, (2, 3, 4), -2), (13, (5,), None),
]


@pytest.mark.parametrize("opset,shape,axis", HARDMAX)
def test_hardmax_forms(opset, shape, axis):
    """Hardmax at opset 13 (one axis) and before it (the operand seen as 2-D at ``axis``), ties included."""
    x = _rng_input(shape)
    x.reshape(-1)[1] = x.reshape(-1)[0] = abs(x).max() + 1  # a tie: the first maximum wins
    attrs = {} if axis is None else {"axis": axis}
    check_model(node_model("Hardmax", {"x": x}, attrs, opset=opset), {"x": x})


CENTER_CROP_PAD = [  # (shape, target, axes or None, target dtype)
    ((5, 8, 3), [3, 11, 3], None, np.int64), ((7, 6), [4, 9], None, np.int32), ((2, 9, 4), [5, 2], [1, -1], np.int64),
    ((4, 4), [4, 4], None, np.int64),
]


@pytest.mark.parametrize("shape,target,axes,tdtype", CENTER_CROP_PAD)
def test_center_crop_pad_forms(shape, target, axes, tdtype):
    """CenterCropPad cropping odd and even excess and padding on chosen axes, with an i32 or i64 target
    (onnxruntime, whose CenterCropPad rejects an i32 target, is given it as i64)."""
    x = _rng_input(shape)
    attrs = {} if axes is None else {"axes": axes}
    wide = {"x": x, "shape": np.asarray(target, dtype=np.int64)}
    feeds = {"x": x, "shape": np.asarray(target, dtype=tdtype)}
    expected = run_ort(node_model("CenterCropPad", wide, attrs, opset=18), wide)[0]
    model = node_model("CenterCropPad", feeds, attrs, opset=18)
    got = irc.compile(model).run(feeds)["out0"]
    assert_close(got, expected, what="vs onnxruntime")
    assert_close(got, interpret(import_onnx(model), feeds)[0], what="vs reference")


def test_backend_interface():
    """irc as an onnx Backend: devices, run_node (the model built around one node) and run_model."""
    from onnx import helper
    from irc.backend.onnx_backend import IrcBackend
    assert IrcBackend.supports_device("CPU") and not IrcBackend.supports_device("CUDA")
    x, y = _rng_input((2, 3)), _rng_input((3,), seed=1)
    (out,) = IrcBackend.run_node(helper.make_node("Sub", ["x", "y"], ["z"]), [x, y])
    assert out.dtype == np.float32 and np.array_equal(out, x - y)
    model = node_model("Sub", {"x": x, "y": y})
    rep = IrcBackend.prepare(model, "CPU")
    assert np.array_equal(rep.run([x, y])[0], x - y) and np.array_equal(rep.run({"y": y, "x": x})[0], x - y)
    x2 = _rng_input((2, 3), seed=2)
    assert np.array_equal(IrcBackend.run_model(model, [x2, y])[0], x2 - y)
    with pytest.raises(irc.IrcError):
        rep.run([x])
