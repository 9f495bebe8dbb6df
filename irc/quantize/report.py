"""Calibration run, per-layer SQNR, automatic fp32 fallback, and the report of it all.

Each layer of the QDQ placement is simulated alone on the first calibration feeds (``REPORT_SAMPLES``
samples at least): its float operands as the calibration run computed them, quantized and dequantized
with their calibrated parameters; its weight and bias as their int8/int32 forms; its result quantized
and dequantized. The SQNR of that result against the fp32 one, ``10 log10(sum(ref^2) / sum((ref - int8)^2))``
dB per sample (capped at ``MAX_DB``) and averaged over the samples, isolates what quantizing this one layer
costs, so a fragile layer is found wherever it sits; taken per sample, a few samples of large values cannot
hide that the rest lost their signal. Layers below the threshold stay fp32 and the placement is made
again without them; the report then also gives the SQNR of each model output, int8 graph against fp32.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from ..ir import Builder, Graph, Value
from . import calibrate
from .qdq import ParamConsts, Plan, QuantConfig, activation_params, place, qdq, quantize_operands

REPORT_SAMPLES = 64
MAX_DB = 100.0


@dataclass
class LayerResult:
    """One layer of the report: its node name and op, its simulated int8 SQNR, whether it stayed int8."""
    name: str
    op: str
    sqnr_db: float
    int8: bool


@dataclass
class QuantReport:
    """Per-layer SQNR (dB) of the layers the QDQ placement found, which stayed fp32, and the SQNR of
    each model output (int8 graph against fp32) on the calibration feeds the report used."""
    method: str
    threshold_db: Optional[float]
    samples: int
    layers: List[LayerResult] = field(default_factory=list)
    outputs: Dict[str, float] = field(default_factory=dict)
    _feeds: List[dict] = field(default_factory=list, repr=False)
    _fp32: List[list] = field(default_factory=list, repr=False)

    @property
    def fallback(self) -> List[str]:
        """Names of the layers left in fp32."""
        return [r.name for r in self.layers if not r.int8]

    def measure_outputs(self, graph: Graph) -> None:
        """SQNR of each output of the rewritten ``graph`` against the fp32 outputs of the report feeds
        (which are then let go)."""
        if not self._feeds:
            return
        model = _cpu_model(graph.clone())
        per_sample = [[] for _ in graph.output_names]
        for feed, ref in zip(self._feeds, self._fp32):
            outs = model.run(feed)
            for acc, name, r in zip(per_sample, graph.output_names, ref):
                acc.extend(sample_sqnr(r, outs[name]))
        self.outputs = {n: _mean(acc) for n, acc in zip(graph.output_names, per_sample)}
        self._feeds, self._fp32 = [], []

    def to_dict(self) -> dict:
        return {"method": self.method, "threshold_db": self.threshold_db, "samples": self.samples,
                "layers": [vars(r) for r in self.layers], "outputs": dict(self.outputs)}

    def __str__(self) -> str:
        width = max([len(r.name) for r in self.layers] + [5])
        fallback = "no fp32 fallback" if self.threshold_db is None else f"fp32 fallback below {self.threshold_db} dB"
        lines = [f"int8 quantization ({self.method} calibration; per-layer SQNR on {self.samples} samples; "
                 f"{fallback})",
                 f"{'layer':<{width}}  {'op':<14} {'SQNR dB':>8}  kept as"]
        for r in self.layers:
            lines.append(f"{r.name:<{width}}  {r.op:<14} {r.sqnr_db:8.2f}  {'int8' if r.int8 else 'fp32 (fallback)'}")
        for name, db in self.outputs.items():
            lines.append(f"output {name!r}: SQNR {db:.2f} dB")
        return "\n".join(lines)


def sample_sqnr(ref: np.ndarray, got: np.ndarray) -> List[float]:
    """SQNR in dB of each sample (slice along axis 0; the whole array below rank 2), capped at MAX_DB."""
    ref, got = ref.astype(np.float64), got.astype(np.float64)
    if ref.ndim < 2:
        ref, got = ref.reshape(1, -1), got.reshape(1, -1)
    axes = tuple(range(1, ref.ndim))
    signal, noise = np.sum(ref * ref, axis=axes), np.sum((ref - got) ** 2, axis=axes)
    with np.errstate(divide="ignore", invalid="ignore"):
        db = 10 * np.log10(signal / noise)
    db = np.where(noise == 0, MAX_DB, np.where(signal == 0, -MAX_DB, db))
    return np.minimum(db, MAX_DB).tolist()


def _mean(values: List[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def _exposing(graph: Graph, values: List[Value]):
    """A clone of ``graph`` with ``values`` (of ``graph``) as extra outputs, their names, and the value map."""
    clone = graph.clone()
    cmap = dict(zip(graph.values(), clone.values()))
    names = [f"__quantize{i}" for i in range(len(values))]
    for v, name in zip(values, names):
        clone.add_output(cmap[v], name)
    return clone, names, cmap


def _cpu_model(graph: Graph):
    from ..runtime.model import CompiledModel
    return CompiledModel(graph, "cpu")


class FloatRunner:
    """Runs the float graph on the CPU backend and returns the arrays of chosen values, by Value."""

    def __init__(self, graph: Graph, values: List[Value]):
        clone, self.names, _ = _exposing(graph, values)
        self.values, self.model = values, _cpu_model(clone)

    def __call__(self, feed) -> Dict[Value, np.ndarray]:
        outs = self.model.run(feed)
        return {v: outs[n] for v, n in zip(self.values, self.names)}


def simulation_graph(graph: Graph, plan: Plan, params):
    """``graph`` plus, beside each layer, an int8 shadow of it: its quantized operands through
    quantize/dequantize, its integer constants through dequantize, its result through quantize/dequantize.
    Exposes the fp32 result (of the removed activation, where one was absorbed) and the shadow's, per layer."""
    targets = [plan.ranges[n.output] for n in plan.layers]
    sim, names, cmap = _exposing(graph, targets)
    consts = ParamConsts(sim, params)
    for node, target_name in zip(plan.layers, names):
        b = Builder(sim, name=f"{node.name}.int8")
        args = [None if v is None else qdq(b, cmap[v], *consts[plan.ranges[plan.actual(v)]])
                if plan.quantized(v) else cmap[v] for v in node.inputs]
        shadow = b.node(node.op, args, dict(node.attrs))
        quantize_operands(sim, plan, node, params, into=shadow)
        sim.add_output(qdq(b, shadow.output, *consts[plan.ranges[node.output]]), f"{target_name}.int8")
    sim.topological_sort()
    return sim, names


def _samples(feed) -> int:
    a = next(iter(feed.values()))
    return int(a.shape[0]) if a.ndim else 1


def calibrate_and_plan(graph: Graph, config: QuantConfig):
    """Calibrate, measure every layer, fall back the fragile ones: (plan, activation params, report)."""
    full = place(graph, config.activation_dtype)
    report = QuantReport(config.method, config.fallback_sqnr, 0)
    if not full.layers:
        return full, {}, report
    values = [v for v in graph.values() if v.type.dtype == "f32" and not v.is_const]
    run = FloatRunner(graph, values)
    stats = calibrate.collect((run(f) for f in config.feeds), config.method, (run(f) for f in config.feeds))
    params = activation_params(full, stats, config)
    sim, names = simulation_graph(graph, full, params)
    model = _cpu_model(sim)
    per_sample = {n: [] for n in full.layers}
    for feed in config.feeds:
        outs = model.run(feed)
        for node, name in zip(full.layers, names):
            per_sample[node].extend(sample_sqnr(outs[name], outs[f"{name}.int8"]))
        report._feeds.append(feed)
        report._fp32.append([outs[n] for n in graph.output_names])
        report.samples += _samples(feed)
        if report.samples >= REPORT_SAMPLES:
            break
    sqnr = {n: _mean(acc) for n, acc in per_sample.items()}
    fragile = {n for n, db in sqnr.items() if config.fallback_sqnr is not None and db < config.fallback_sqnr}
    report.layers = [LayerResult(n.name or f"{n.op}#{i}", n.op, sqnr[n], n not in fragile)
                     for i, n in enumerate(full.layers)]
    if fragile:
        full = place(graph, config.activation_dtype, fragile)
        params = activation_params(full, stats, config)
    return full, params, report
