"""Helpers shared by the tests: build one-node ONNX models, run onnxruntime, compare at irc's tolerance."""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import irc
from irc.cli import main
from irc.frontend import import_onnx
from irc.ops.interpret import interpret

NP_TO_ONNX = {np.dtype(k): v for k, v in {
    np.float32: TensorProto.FLOAT, np.float16: TensorProto.FLOAT16, np.float64: TensorProto.DOUBLE,
    np.int8: TensorProto.INT8, np.int16: TensorProto.INT16, np.int32: TensorProto.INT32,
    np.int64: TensorProto.INT64, np.uint8: TensorProto.UINT8, np.uint16: TensorProto.UINT16,
    np.uint32: TensorProto.UINT32, np.uint64: TensorProto.UINT64, np.bool_: TensorProto.BOOL}.items()}


def node_model(op_type: str, inputs: Dict[str, np.ndarray], attrs: Optional[dict] = None,
               consts: Optional[Dict[str, np.ndarray]] = None, n_outputs: int = 1, opset: int = 17,
               input_order: Optional[Sequence[str]] = None, symbolic: Optional[Dict[str, list]] = None
               ) -> onnx.ModelProto:
    """A model of one node: ``inputs`` become graph inputs, ``consts`` initializers; operand order is
    ``input_order`` (names; '' for an omitted optional operand) or inputs then consts."""
    consts = consts or {}
    order = list(input_order) if input_order is not None else list(inputs) + list(consts)
    outs = [f"out{i}" for i in range(n_outputs)]
    node = helper.make_node(op_type, order, outs, name=f"{op_type.lower()}_node", **(attrs or {}))
    g_inputs = [helper.make_tensor_value_info(k, NP_TO_ONNX[v.dtype], (symbolic or {}).get(k, list(v.shape)))
                for k, v in inputs.items()]
    g_outputs = [helper.make_empty_tensor_value_info(o) for o in outs]
    inits = [numpy_helper.from_array(v, k) for k, v in consts.items()]
    graph = helper.make_graph([node], "test", g_inputs, g_outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def graph_model(name: str, nodes: Sequence[onnx.NodeProto], inputs: Dict[str, list],
                outputs: Dict[str, Optional[list]], consts: Dict[str, np.ndarray], opset: int = 17
                ) -> onnx.ModelProto:
    """A model of ``nodes``: float32 graph ``inputs`` and ``outputs`` by name -> shape (an output shape of
    None leaves its type to shape inference), ``consts`` as initializers."""
    g_inputs = [helper.make_tensor_value_info(k, TensorProto.FLOAT, s) for k, s in inputs.items()]
    g_outputs = [helper.make_tensor_value_info(k, TensorProto.UNDEFINED, None) if s is None
                 else helper.make_tensor_value_info(k, TensorProto.FLOAT, s) for k, s in outputs.items()]
    inits = [numpy_helper.from_array(v, k) for k, v in consts.items()]
    graph = helper.make_graph(list(nodes), name, g_inputs, g_outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def model_file(tmp_path_factory, folder: str, model: onnx.ModelProto) -> str:
    """``model`` saved as ``<graph name>.onnx`` in a fresh temporary folder named after ``folder``; its path."""
    path = tmp_path_factory.mktemp(folder) / f"{model.graph.name}.onnx"
    path.write_bytes(model.SerializeToString())
    return str(path)


def irc_cli(capsys, *argv):
    """(exit status, stdout, stderr) of ``irc argv``; usage errors exit through SystemExit."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def run_ort(model: onnx.ModelProto, feeds: Dict[str, np.ndarray]):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def assert_close(actual, expected, tol: float = 1e-3, what: str = "output"):
    """|actual - expected| <= tol * max(1, max|expected|), dtypes and shapes equal (exact for non-floats)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    if expected.dtype.kind not in "fc":
        np.testing.assert_array_equal(actual, expected, err_msg=what)
        return
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg=f"{what}: NaNs differ")
    np.testing.assert_array_equal(actual[~finite & ~np.isnan(expected)], expected[~finite & ~np.isnan(expected)],
                                  err_msg=f"{what}: infinities differ")
    if finite.any():
        scale = max(1.0, float(np.abs(expected[finite]).max()))
        err = float(np.abs(actual[finite].astype(np.float64) - expected[finite]).max())
        assert err <= tol * scale, f"{what}: max abs error {err:.3g} > {tol} x {scale:.3g}"


def check_model(model: onnx.ModelProto, feeds: Dict[str, np.ndarray], tol: float = 1e-3, opt_level: int = 2,
                reference: bool = True):
    """Compile with irc and compare every output with onnxruntime and with the reference interpreter."""
    expected = run_ort(model, feeds)
    compiled = irc.compile(model, opt_level=opt_level)
    got = compiled.run(feeds)
    assert list(got) == [o.name for o in model.graph.output]
    for (name, a), e in zip(got.items(), expected):
        assert_close(a, e, tol, f"{name} vs onnxruntime")
    if reference:
        ref = interpret(import_onnx(model), feeds)
        for (name, a), r in zip(got.items(), ref):
            assert_close(a, r.astype(a.dtype) if a.dtype != r.dtype else r, tol, f"{name} vs reference")
    return got
