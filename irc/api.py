"""The Python API: compile, load, InferenceSession."""
from __future__ import annotations

import os
import sys
from typing import Iterable, List, Optional, Sequence

import numpy as np

from .errors import IrcError, UnsupportedError
from .frontend import import_onnx
from .passes import PassManager, pipeline
from .quantize import SCHEMES, QuantConfig, calibration_feeds, check_method
from .quantize.calibrate import QRANGES
from .quantize.qdq import with_quantize
from .runtime.model import CompiledModel

TARGETS = ("cpu", "cuda")
PLANNED_TARGETS = ()


def optimize(graph, opt_level: int = 2, disable_passes: Sequence[str] = (), verify_each: bool = False,
             print_after: Sequence[str] = (), print_after_all: bool = False, time_passes: bool = False,
             out=None, on_pass=None, quant_config=None):
    """Run the -O pipeline on an imported graph; ``on_pass(name, index, count)`` is told of each pass.
    With ``quant_config`` (an irc.quantize.QuantConfig) the ``quantize`` pass runs too, unless disabled."""
    passes, options = pipeline(opt_level, disable_passes), {}
    if quant_config is not None and "quantize" not in disable_passes:
        passes, options = with_quantize(passes), {"quantize": {"config": quant_config}}
    pm = PassManager(passes, verify_each=verify_each, print_after=print_after,
                     print_after_all=print_after_all, time_passes=time_passes, out=out or sys.stderr,
                     on_pass=on_pass, options=options)
    return pm.run(graph)


def _quant_config(graph, quantize, calibration, method, percentile, fallback_sqnr, activation_type):
    """The QuantConfig of a compile (None without quantization); IrcError naming a bad option."""
    if quantize is None:
        if calibration is not None:
            raise IrcError("calibration data was given without quantize='int8'")
        return None
    if quantize not in SCHEMES:
        raise UnsupportedError(f"quantize={quantize!r} is not supported; quantization schemes are "
                               f"{', '.join(SCHEMES)}")
    check_method(method)
    if activation_type not in QRANGES:
        raise IrcError(f"activation type must be one of {', '.join(QRANGES)}, got {activation_type!r}")
    if not 0 < percentile <= 100:
        raise IrcError(f"percentile must be in (0, 100], got {percentile}")
    return QuantConfig(calibration_feeds(graph, calibration), method, float(percentile), activation_type,
                       None if fallback_sqnr is None else float(fallback_sqnr))


def compile(model, target: str = "cpu", opt_level: int = 2, quantize=None, calibration=None,
            disable_passes: Sequence[str] = (), *, verify_each: bool = False, print_after: Sequence[str] = (),
            print_after_all: bool = False, time_passes: bool = False, out=None, on_pass=None,
            calibration_method: str = "minmax", percentile: float = 99.999, fallback_sqnr: Optional[float] = 20.0,
            activation_type: str = "u8") -> CompiledModel:
    """Compile an ONNX model (path, bytes or onnx.ModelProto) for ``target``.

    ``quantize="int8"`` quantizes from ``calibration`` (an iterable of feed dicts, or a dict of arrays with
    samples on axis 0) calibrated by ``calibration_method`` (minmax, percentile at ``percentile``, or
    entropy); layers whose int8 output SQNR is below ``fallback_sqnr`` dB (None: never) stay fp32;
    activations are ``activation_type`` u8 or i8. The model's ``quant_report`` then holds the report.
    """
    if target in PLANNED_TARGETS:
        raise UnsupportedError(f"target {target!r} is not supported yet; targets are {', '.join(TARGETS)}")
    if target not in TARGETS:
        raise IrcError(f"unknown target {target!r}; targets are {', '.join(TARGETS)}")
    if target == "cuda":
        from .backend.cuda import check_supported
    else:
        from .backend.cpu import check_supported
    graph = import_onnx(model)
    quant = _quant_config(graph, quantize, calibration, calibration_method, percentile, fallback_sqnr,
                          activation_type)
    graph = optimize(graph, opt_level, disable_passes, verify_each, print_after, print_after_all,
                     time_passes, out, on_pass, quant)
    check_supported(graph)
    options = {"opt_level": opt_level, "disable_passes": list(disable_passes)}
    if quant is not None:
        options.update(quantize=quantize, calibration_method=calibration_method, activation_type=activation_type)
    compiled = CompiledModel(graph, target, options)
    if quant is not None:
        compiled.quant_report = quant.report
    return compiled


def load(path) -> CompiledModel:
    """Load a model.bin written by ``CompiledModel.save``."""
    from .runtime.artifact import read_artifact
    return read_artifact(path)


class NodeArg:
    """What InferenceSession.get_inputs()/get_outputs() return, as onnxruntime's NodeArg."""

    def __init__(self, name: str, shape, type: str):
        self.name, self.shape, self.type = name, shape, type

    def __repr__(self):
        return f"NodeArg(name={self.name!r}, type={self.type!r}, shape={self.shape})"


_ORT_TYPES = {"f32": "float", "f16": "float16", "f64": "double", "i8": "int8", "i16": "int16", "i32": "int32",
              "i64": "int64", "u8": "uint8", "u16": "uint16", "u32": "uint32", "u64": "uint64", "bool": "bool",
              "str": "string"}


class InferenceSession:
    """onnxruntime-style session over an .onnx (compiled on the fly) or a .bin artifact."""

    def __init__(self, path_or_model, providers=None, **compile_options):
        from .runtime.artifact import is_artifact
        if isinstance(path_or_model, (str, os.PathLike)) and (os.fspath(path_or_model).endswith(".bin")
                                                              or is_artifact(path_or_model)):
            self.model = load(path_or_model)
        else:
            self.model = compile(path_or_model, **compile_options)

    def _args(self, values, names) -> List[NodeArg]:
        return [NodeArg(n, None if v.type.shape is None else list(v.type.shape),
                        f"tensor({_ORT_TYPES[v.type.dtype]})") for v, n in zip(values, names)]

    def get_inputs(self) -> List[NodeArg]:
        g = self.model.graph
        return self._args(g.inputs, [v.name for v in g.inputs])

    def get_outputs(self) -> List[NodeArg]:
        g = self.model.graph
        return self._args(g.outputs, g.output_names)

    def run(self, output_names: Optional[Iterable[str]], feeds, run_options=None) -> List[np.ndarray]:
        res = self.model.run(feeds)
        names = self.model.output_names if output_names is None else list(output_names)
        unknown = [n for n in names if n not in res]
        if unknown:
            raise IrcError(f"unknown output(s) {unknown}; the model's outputs are {self.model.output_names}")
        return [res[n] for n in names]
