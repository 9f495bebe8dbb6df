"""The ``quantize`` pass: rewrite a float graph into the QDQ form, from ranges calibrated on sample data.

Every quantized tensor ``t`` becomes ``dequantize_linear(quantize_linear(t))`` and every reader of ``t``
reads the dequantized value, so the graph still computes in float (each tensor now rounded to its int8
grid) until ``fuse-qdq`` turns the patterns into integer kernels. The tensors are chosen as
onnxruntime's ``quantize_static`` (QDQ format, per-channel weights) chooses them, node by node in order:

- a layer ``conv2d`` / ``gemm`` / ``matmul``: its activation operands and its result are quantized; a
  constant weight becomes int8 symmetric per output channel (conv2d axis 0, gemm axis 0 or 1 after
  ``transB``, matmul axis 1) and a constant bias int32 with scale ``x_scale * w_scale`` (zero point 0),
  both through a ``dequantize_linear`` of an integer constant;
- a layer ``add`` / ``mul`` / ``concat`` / ``global_avgpool`` / ``sigmoid`` / ``leaky_relu`` / ``softmax``:
  its non-constant float operands and its result are quantized;
- ``relu`` / ``clip`` (lower bound <= 0) whose operand is quantized and produced for it alone is removed:
  the producer's result takes its place and the activation's calibrated range, whose zero point clamps
  as it did. Otherwise its result is quantized;
- ``reshape`` / ``flatten`` / ``transpose`` / ``squeeze`` / ``unsqueeze`` / ``slice`` / ``maxpool`` /
  ``avgpool`` of a quantized tensor: the result is quantized with the operand's scale and zero point.

Activations are asymmetric per tensor (``u8`` by default, or ``i8``). Each layer is first simulated
alone (its float operands from the calibration run, quantized, its result quantized) and its output's
SQNR against fp32 measured; a layer below ``fallback_sqnr`` dB stays fp32 (see report.py).
The pass runs only when quantization is requested: ``irc.compile(quantize="int8", calibration=...)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set, Tuple

import numpy as np

from ..errors import IrcError
from ..ir import Builder, Graph, Node, Value
from ..passes.manager import register_pass
from ..ops.quant import quantize as quantize_array
from .calibrate import activation_qparams, choose_range, quantize_bias, weight_qparams

COMPUTE_OPS = ("conv2d", "gemm", "matmul")
GENERIC_OPS = ("add", "mul", "concat", "global_avgpool", "sigmoid", "leaky_relu", "softmax")
REMOVABLE_OPS = ("relu", "clip")
SAME_AS_INPUT_OPS = ("reshape", "flatten", "transpose", "squeeze", "unsqueeze", "slice", "maxpool", "avgpool")


@dataclass
class QuantConfig:
    """What the quantize pass needs: the checked calibration feeds and the options. ``report`` is
    filled in by the pass."""
    feeds: List[dict]
    method: str = "minmax"
    percentile: float = 99.999
    activation_dtype: str = "u8"
    fallback_sqnr: Optional[float] = 20.0
    report: Optional[object] = None


@dataclass
class QConst:
    """An integer constant and the scale/zero point that dequantize it (per slice along ``axis`` when
    ``scale`` is a vector)."""
    q: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int = 1


@dataclass
class Plan:
    """Which tensors the QDQ form quantizes.

    ``ranges`` maps each quantized activation to the value whose calibrated range it takes (itself, a
    removed activation's result, or the operand whose parameters it shares); ``removed`` maps each removed
    activation to the value that takes its place (``alias`` the other way: its result to that value).
    ``weight_axes`` gives the channel axis of each layer's per-channel int8 weight (operand 1), ``biased``
    the layers whose bias (operand 2) becomes int32, ``const_operands`` the (layer, operand) constants
    quantized per tensor."""
    layers: List[Node] = field(default_factory=list)
    ranges: Dict[Value, Value] = field(default_factory=dict)
    removed: Dict[Node, Value] = field(default_factory=dict)
    alias: Dict[Value, Value] = field(default_factory=dict)
    weight_axes: Dict[Node, int] = field(default_factory=dict)
    biased: Set[Node] = field(default_factory=set)
    const_operands: Set[Tuple[Node, int]] = field(default_factory=set)
    activation_dtype: str = "u8"

    def actual(self, v: Value) -> Value:
        """``v``, or the value standing in for it once removed activations are gone."""
        return self.alias.get(v, v)

    def quantized(self, v: Optional[Value]) -> bool:
        return v is not None and self.actual(v) in self.ranges

    def act(self, v: Optional[Value]) -> None:
        if v is not None and not v.is_const and v.type.dtype == "f32":
            self.ranges.setdefault(self.actual(v), self.actual(v))


# -- placement ---------------------------------------------------------------------------------------

def _weight_axis(node: Node) -> Optional[int]:
    """The output-channel axis of a layer's constant 2nd operand (None: not quantized as a weight)."""
    w = node.inputs[1]
    if w is None or not w.is_const or w.type.dtype != "f32":
        return None
    if node.op == "conv2d" and w.type.rank == 4:
        return 0
    if node.op == "gemm":
        return 0 if node.attrs["transB"] else 1
    if node.op == "matmul" and w.type.rank == 2:
        return 1
    return None


def _is_layer(node: Node) -> bool:
    """An elementwise layer with a float result, or an unfused conv2d/gemm/matmul of a float activation
    (conv2d and gemm with a constant weight)."""
    if node.op in GENERIC_OPS:
        return node.output.type.dtype == "f32"
    if node.op not in COMPUTE_OPS or node.attrs.get("epilogue") or node.attrs.get("algo"):
        return False
    x = node.inputs[0]
    return x is not None and not x.is_const and x.type.dtype == "f32" and (
        _weight_axis(node) is not None or node.op == "matmul")


def _int32_bias(node: Node, axis: Optional[int]) -> bool:
    """Whether a conv2d or gemm has a constant bias, one per output channel, to make int32."""
    if node.op not in ("conv2d", "gemm") or axis is None or len(node.inputs) < 3:
        return False
    b, w = node.inputs[2], node.inputs[1]
    return b is not None and b.is_const and b.type.rank == 1 and b.type.shape[0] == w.type.shape[axis]


def _place_layer(plan: Plan, node: Node) -> None:
    """A layer: its activation operands and result, its weight, bias and constant operands."""
    plan.layers.append(node)
    axis = _weight_axis(node) if node.op in COMPUTE_OPS else None
    for i, v in enumerate(node.inputs):
        if axis is not None and i == 1:
            plan.weight_axes[node] = axis
        elif node.op in GENERIC_OPS and v is not None and v.is_const and v.type.dtype == "f32":
            plan.const_operands.add((node, i))
        elif not (node.op in COMPUTE_OPS and i >= 2):
            plan.act(v)
    if _int32_bias(node, axis):
        plan.biased.add(node)
    plan.act(node.output)


def _removable(plan: Plan, node: Node, graph: Graph) -> bool:
    """A relu/clip clamping at or below 0 whose operand is a quantized result with its own range, produced
    for this activation alone (onnxruntime's condition): the operand's zero point can clamp instead."""
    x = node.inputs[0]
    if node.op == "clip":
        lo = node.input(1)
        if lo is not None and (lo.const_value is None or float(lo.const_value) > 0):
            return False
    x = plan.actual(x)
    return (x.producer is not None and len(x.uses) == 1 and all(o is not x for o in graph.outputs)
            and plan.ranges.get(x) is x)


def _place_activation(plan: Plan, node: Node, graph: Graph) -> None:
    """A relu/clip of a quantized tensor: removed where it can be, else its result quantized."""
    x = node.inputs[0]
    if not plan.quantized(x):
        return
    if _removable(plan, node, graph):
        up = plan.actual(x)
        plan.removed[node] = up
        plan.alias[node.output] = up
        plan.ranges[up] = node.output
    else:
        plan.act(node.output)


def _place_same_as_input(plan: Plan, node: Node) -> None:
    """A data-movement op (or max/average pool) of a quantized tensor: its result shares the parameters."""
    x = node.inputs[0]
    if plan.quantized(x) and node.output.type.dtype == "f32":
        plan.ranges.setdefault(node.output, plan.ranges[plan.actual(x)])


def place(graph: Graph, activation_dtype: str = "u8", skip: Set[Node] = frozenset()) -> Plan:
    """The QDQ placement of ``graph`` with the layers in ``skip`` left in float."""
    plan = Plan(activation_dtype=activation_dtype)
    for node in graph.nodes:
        if node.op in REMOVABLE_OPS:
            _place_activation(plan, node, graph)
        elif node.op in SAME_AS_INPUT_OPS:
            _place_same_as_input(plan, node)
        elif _is_layer(node) and node not in skip:
            _place_layer(plan, node)
    return plan


# -- parameters ----------------------------------------------------------------------------------------

def activation_params(plan: Plan, stats, config: QuantConfig) -> Dict[Value, tuple]:
    """(scale, zero point) of every range source of the plan."""
    out = {}
    for src in set(plan.ranges.values()):
        lo, hi = choose_range(stats[src], config.method, config.percentile, config.activation_dtype)
        out[src] = activation_qparams(lo, hi, config.activation_dtype)
    return out


def _const_operand(plan: Plan, c: np.ndarray) -> QConst:
    """A constant operand of an elementwise layer: per tensor over its own range, as an activation."""
    scale, zp = activation_qparams(c.min(initial=0), c.max(initial=0), plan.activation_dtype)
    return QConst(quantize_array(c, scale, zp, zp.dtype), np.asarray(scale), np.asarray(zp))


def layer_consts(plan: Plan, node: Node, params) -> Dict[int, QConst]:
    """The integer constants that replace a layer's weight, bias and constant operands, by operand index."""
    out = {i: _const_operand(plan, node.inputs[i].const_value) for n, i in plan.const_operands if n is node}
    if node not in plan.weight_axes:
        return out
    axis = plan.weight_axes[node]
    w = node.inputs[1].const_value
    w_scale, w_zp = weight_qparams(w, axis)
    out[1] = QConst(quantize_array(w, w_scale, w_zp, np.int8, axis), w_scale, w_zp, axis)
    if node in plan.biased:
        b = node.inputs[2].const_value.astype(np.float32)
        if node.op == "gemm":
            b = b * np.float32(node.attrs["beta"])
        x_scale = params[plan.ranges[plan.actual(node.inputs[0])]][0]
        bq, b_scale = quantize_bias(b, x_scale, w_scale)
        out[2] = QConst(bq, b_scale, np.zeros(b_scale.shape, np.int32), 0)
    return out


# -- rewriting -----------------------------------------------------------------------------------------

def _dequantized_const(b: Builder, c: QConst) -> Value:
    return b.op("dequantize_linear", b.const(c.q), b.const(c.scale), b.const(c.zero_point), axis=c.axis)


def qdq(b: Builder, v: Value, s: Value, zp: Value) -> Value:
    """dequantize_linear(quantize_linear(v, s, zp), s, zp)."""
    return b.op("dequantize_linear", b.op("quantize_linear", v, s, zp), s, zp)


class ParamConsts:
    """The scale and zero point constants of each range source, made once: tensors sharing parameters
    share their constants."""

    def __init__(self, graph: Graph, params):
        self.graph, self.params, self.made = graph, params, {}

    def __getitem__(self, src: Value):
        if src not in self.made:
            scale, zero_point = self.params[src]
            self.made[src] = (self.graph.add_const(np.asarray(scale, np.float32)),
                              self.graph.add_const(np.asarray(zero_point)))
        return self.made[src]


def quantize_operands(graph: Graph, plan: Plan, node: Node, params, into: Optional[Node] = None) -> None:
    """Put a layer's integer weight, bias and constant operands behind dequantize_linear, in the layer
    or in ``into``, a copy of it in ``graph``."""
    into = into or node
    consts = layer_consts(plan, node, params)
    for i, c in consts.items():
        old = into.inputs[i]
        into.set_input(i, _dequantized_const(Builder(graph, name=node.name), c))
        if not old.uses and all(o is not old for o in graph.outputs):
            graph.remove_node(old.producer)     # the float constant it replaced
    if 2 in consts and node.op == "gemm":
        into.attrs["beta"] = 1.0   # folded into the int32 bias


def rewrite(graph: Graph, plan: Plan, params) -> None:
    """Apply ``plan``: remove the absorbed activations, put integer weights and biases behind
    dequantize_linear, and a quantize/dequantize pair after every quantized activation."""
    for node, up in plan.removed.items():
        graph.replace_all_uses(node.output, up)
        graph.remove_node(node)
    for node in plan.layers:
        quantize_operands(graph, plan, node, params)
    consts = ParamConsts(graph, params)
    for v, src in plan.ranges.items():
        dq = qdq(Builder(graph, name=v.name or (v.producer.name if v.producer else "")), v, *consts[src])
        graph.replace_all_uses(v, dq)
        dq.producer.inputs[0].producer.set_input(0, v)   # the quantize_linear reads v itself
    graph.topological_sort()


@register_pass("quantize", 0)
def quantize(graph: Graph, config: Optional[QuantConfig] = None) -> Graph:
    """Rewrite the float graph into the QDQ int8 form from calibrated ranges; layers whose simulated
    int8 output falls below the SQNR threshold stay fp32. Runs only when quantization is requested."""
    if config is None:
        raise IrcError("the quantize pass runs only when quantization is requested "
                       "(quantize='int8' with calibration data)")
    from .report import calibrate_and_plan
    plan, params, report = calibrate_and_plan(graph, config)
    rewrite(graph, plan, params)
    report.measure_outputs(graph)
    config.report = report
    return graph


def with_quantize(passes: List[str]) -> List[str]:
    """The pipeline ``passes`` (in ORDER's order) with ``quantize`` inserted after the cleanups and
    ``fold-batchnorm`` (weights final) and before fusion (which would hide the layers' operands)."""
    from ..passes import ORDER
    j = 0
    for name in ORDER[:ORDER.index("fold-batchnorm") + 1]:
        if j < len(passes) and passes[j] == name:
            j += 1
    return passes[:j] + ["quantize"] + passes[j:]
