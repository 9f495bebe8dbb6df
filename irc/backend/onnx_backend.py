"""irc as an ``onnx.backend.base.Backend``: the interface the onnx package's conformance runner drives.

``prepare`` compiles a model with ``irc.compile`` for the CPU (the whole path: import, passes, kernels,
executor); the returned ``IrcRep.run(inputs)`` takes the inputs positionally, in the order of the ONNX
graph's inputs that are not initializers, and returns the outputs as a list in graph output order.
"""
from __future__ import annotations

from typing import Any, List, Sequence

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep

from ..errors import InputError

_DEVICES = ("CPU",)


def feed_names(model: onnx.ModelProto) -> List[str]:
    """The names of the ONNX graph's inputs that are fed at run time (initializers excluded)."""
    inits = {t.name for t in model.graph.initializer} | {t.name for t in model.graph.sparse_initializer}
    return [vi.name for vi in model.graph.input if vi.name not in inits]


class IrcRep(BackendRep):
    """A compiled model behind the BackendRep interface."""

    def __init__(self, compiled, names: Sequence[str]):
        self.compiled = compiled
        self.names = list(names)

    def run(self, inputs: Any, **kwargs: Any) -> List[np.ndarray]:
        """Run on ``inputs`` (a list in graph-input order, a dict by name, or one array)."""
        if isinstance(inputs, dict):
            feeds = dict(inputs)
        else:
            if isinstance(inputs, np.ndarray):
                inputs = [inputs]
            if len(inputs) != len(self.names):
                raise InputError(f"expected {len(self.names)} input(s) {self.names}, got {len(inputs)}")
            feeds = dict(zip(self.names, inputs))
        out = self.compiled.run(feeds)
        return [out[n] for n in self.compiled.output_names]


class IrcBackend(Backend):
    """Compiles with irc on the CPU target."""

    @classmethod
    def is_compatible(cls, model, device: str = "CPU", **kwargs: Any) -> bool:
        return cls.supports_device(device)

    @classmethod
    def prepare(cls, model, device: str = "CPU", **kwargs: Any) -> IrcRep:
        """Compile ``model`` (a ModelProto, path or bytes); ``kwargs`` go to ``irc.compile``."""
        from ..api import compile as irc_compile
        from ..errors import IrcError
        if not cls.supports_device(device):
            raise IrcError(f"device {device!r} is not supported; devices are {', '.join(_DEVICES)}")
        if not isinstance(model, onnx.ModelProto):
            from ..frontend.onnx import load_onnx
            model = load_onnx(model)
        return IrcRep(irc_compile(model, target="cpu", **kwargs), feed_names(model))

    @classmethod
    def run_model(cls, model, inputs: Any, device: str = "CPU", **kwargs: Any) -> List[np.ndarray]:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node: onnx.NodeProto, inputs: Any, device: str = "CPU", outputs_info=None,
                 **kwargs: Any) -> List[np.ndarray]:
        """Run one node on ``inputs`` (arrays in the node's input order); the model is built around it."""
        arrays = [np.asarray(a) for a in inputs]
        names = [n for n in node.input if n]
        if len(names) != len(arrays):
            raise InputError(f"node {node.name or node.op_type!r} has {len(names)} input(s), got {len(arrays)}")
        graph_inputs = [onnx.helper.make_tensor_value_info(n, onnx.helper.np_dtype_to_tensor_dtype(a.dtype),
                                                           a.shape) for n, a in zip(names, arrays)]
        graph_outputs = [onnx.helper.make_empty_tensor_value_info(n) for n in node.output if n]
        graph = onnx.helper.make_graph([node], "run_node", graph_inputs, graph_outputs)
        opset = kwargs.pop("opset_version", onnx.defs.onnx_opset_version())
        model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
        return cls.prepare(model, device, **kwargs).run(arrays)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return str(device).upper().split(":")[0] in _DEVICES


prepare = IrcBackend.prepare
run_model = IrcBackend.run_model
run_node = IrcBackend.run_node
supports_device = IrcBackend.supports_device


# ------------------------------------------------------------------------------ the node conformance cases

def as_array(x) -> np.ndarray:
    """A case's input or expected output as an array (the cases hold some as TensorProtos)."""
    return onnx.numpy_helper.to_array(x) if isinstance(x, onnx.TensorProto) else x


def compare_outputs(expected: Sequence, actual: Sequence, rtol: float, atol: float) -> None:
    """Compare as onnx's backend test runner does: same count; per output the same shape and dtype, then
    ``assert_allclose(rtol, atol)`` (exact for integers and bools, equality for strings).
    Raises AssertionError whose first line says what differs."""
    if len(actual) != len(expected):
        raise AssertionError(f"output count: got {len(actual)}, expected {len(expected)}")
    for i, (out, ref) in enumerate(zip(actual, expected)):
        if isinstance(ref, (list, tuple)) or isinstance(out, (list, tuple)):
            if not (isinstance(ref, (list, tuple)) and isinstance(out, (list, tuple))):
                raise AssertionError(f"output {i}: got {type(out).__name__}, expected {type(ref).__name__}")
            compare_outputs(ref, out, rtol, atol)
            continue
        out, ref = np.asarray(out), as_array(ref)
        if out.shape != ref.shape:
            raise AssertionError(f"output {i}: shape {list(out.shape)}, expected {list(ref.shape)}")
        if ref.dtype == object:
            np.testing.assert_array_equal(out, ref, err_msg=f"output {i}")
            continue
        if out.dtype != ref.dtype:
            raise AssertionError(f"output {i}: dtype {out.dtype}, expected {ref.dtype}")
        if ref.dtype.kind not in "fc":
            if not np.array_equal(out, ref):
                bad = int(np.count_nonzero(out != ref))
                raise AssertionError(f"mismatch: output {i}: {bad} of {ref.size} elements differ (exact dtype "
                                     f"{ref.dtype})")
            continue
        if not np.allclose(out, ref, rtol=rtol, atol=atol, equal_nan=True):
            with np.errstate(invalid="ignore"):
                err = np.abs(out.astype(np.float64) - ref.astype(np.float64))
            worst = float(np.nanmax(err)) if np.isfinite(err).any() else float("nan")
            raise AssertionError(f"mismatch: output {i}: max abs error {worst:.3g} (rtol {rtol:g}, atol {atol:g})")
