"""fuse-qdq: quantize/dequantize patterns (the QDQ form of quantized models) become int8 kernels.

A quantized model computes in float between ``dequantize_linear`` (DQ) and ``quantize_linear`` (Q) nodes;
this pass moves that work onto integers:

1. ``DQ(x) -> conv2d/gemm/matmul(DQ(w), bias) [-> relu | clip] -> Q`` becomes one ``qconv2d``/``qgemm`` of
   the integers x and w with an int32 bias, requantized to Q's scale and zero point; the activation becomes
   the clamp [qmin, qmax] of the quantized result: ``Q(relu(v)) = max(Q(v), zp)`` and
   ``Q(clip(v, lo, hi)) = clamp(Q(v), Q(lo), Q(hi))`` because rounding is monotone. Without a Q after it
   (a float consumer) the fused op dequantizes its accumulator instead (``acc * x_scale * w_scale``).
   x must be quantized per tensor, w per tensor or per output channel (conv2d: axis 0; matmul, gemm: the
   column axis of B); the bias (a DQ of int32 or a float constant) is quantized with scale
   ``x_scale * w_scale``, exactly for a DQ bias of that scale. gemm needs alpha 1, beta 1 (or no C) and
   no transA. The accumulator is exact, so the result differs from the float graph's by the rounding of
   its float arithmetic: at most one quantization step.
2. ``DQ(x) -> op -> Q`` with Q's parameters equal to DQ's (per tensor), for an op that commutes with
   quantization (maxpool, reshape, flatten, squeeze, unsqueeze, transpose; concat of operands that share
   the parameters), becomes the op on the integers: these ops pick or move values, so
   ``Q(op(DQ(x))) = op(x)`` exactly. A relu there becomes ``clip(x, zero point)``: DQ maps the zero point
   to 0 and is increasing, so ``Q(relu(DQ(x))) = max(x, zp)``.
3. ``Q(DQ(x))`` with equal parameters is x.
4. Every remaining DQ of a constant is folded to a float constant (``fold-constants`` leaves them for this
   pass), and nodes whose results nothing reads any more are removed.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..ir import Builder, Graph, Node, Value
from ..ops import get, run_reference
from ..ops.quant import dtype_range, quantize
from .manager import register_pass
from .util import forward, only_reader

CORES = ("conv2d", "gemm", "matmul")
COMMUTING = ("maxpool", "reshape", "flatten", "squeeze", "unsqueeze", "transpose", "concat")
_INT8 = ("i8", "u8")


# -- matching helpers -------------------------------------------------------------------------------------------
def run_reference_of(n: Node) -> np.ndarray:
    """The result of a node whose operands are all constants."""
    return run_reference(get(n.op), [None if v is None else v.const_value for v in n.inputs], n.attrs)[0]


def _dq(v: Optional[Value]) -> Optional[Node]:
    """The dequantize_linear producing ``v`` with constant parameters, not blocked; else None."""
    p = None if v is None else v.producer
    if p is None or p.op != "dequantize_linear" or p.attrs["block_size"] or p.inputs[0].type.dtype not in _INT8:
        return None
    if p.inputs[1].const_value is None or (p.input(2) is not None and p.input(2).const_value is None):
        return None
    return p if p.outputs[0].type.dtype == "f32" else None


def _params(n: Node):
    """(scale, zero point) of a Q or DQ node as arrays (zero point 0 of the integer dtype when omitted)."""
    int_dtype = (n.inputs[0] if n.op == "dequantize_linear" else n.outputs[0]).type.numpy_dtype
    zp = n.input(2).const_value if n.input(2) is not None else np.zeros((), int_dtype)
    return np.asarray(n.inputs[1].const_value), np.asarray(zp, int_dtype)


def _per_tensor(n: Node) -> bool:
    return all(np.size(p) == 1 for p in _params(n))


def _q(v: Value, graph: Graph) -> Optional[Node]:
    """The one reader of ``v`` when it is a per-tensor quantize_linear to int8/uint8 with constant parameters."""
    u = only_reader(graph, v)
    if u is None or u.op != "quantize_linear" or u.attrs["block_size"] or u.outputs[0].type.dtype not in _INT8:
        return None
    if u.inputs[0] is not v or u.inputs[1].const_value is None or \
            (u.input(2) is not None and u.input(2).const_value is None):
        return None
    return u if _per_tensor(u) else None


def _same_params(a: Node, b: Node) -> bool:
    """Whether two per-tensor Q/DQ nodes have equal scales and zero points of one dtype."""
    (sa, za), (sb, zb) = _params(a), _params(b)
    return _per_tensor(a) and _per_tensor(b) and za.dtype == zb.dtype and \
        float(sa.reshape(-1)[0]) == float(sb.reshape(-1)[0]) and int(za.reshape(-1)[0]) == int(zb.reshape(-1)[0])


# -- 1. conv2d / gemm / matmul ----------------------------------------------------------------------------------
def _weight(core: Node) -> Optional[tuple]:
    """(integer weight, scale, zero point) in the fused op's layout, when the weight is a DQ of a constant
    quantized per tensor or per output channel."""
    dq = _dq(core.inputs[1])
    if dq is None or dq.inputs[0].const_value is None:
        return None
    w = dq.inputs[0].const_value
    scale, zp = _params(dq)
    per_channel = np.size(scale) > 1 or np.size(zp) > 1
    trans_b = core.op == "gemm" and core.attrs["transB"]
    channel_axis = 0 if core.op == "conv2d" or trans_b else 1
    if w.ndim != (4 if core.op == "conv2d" else 2) or (per_channel and dq.attrs["axis"] % w.ndim != channel_axis):
        return None
    return (np.ascontiguousarray(w.T) if trans_b else w), scale, zp


def _core_ok(core: Node) -> bool:
    if core.outputs[0].type.dtype != "f32" or core.attrs.get("epilogue") or core.attrs.get("algo"):
        return False
    if core.op == "gemm":
        a = core.attrs
        return a["alpha"] == 1.0 and not a["transA"] and (core.input(2) is None or a["beta"] == 1.0)
    return core.op == "conv2d" or len(core.inputs) == 2


def _bias(core: Node, acc_scale: np.ndarray, channels: int):
    """The bias as int32 [channels] in units of ``acc_scale``; None without one; False when not constant."""
    b = core.input(2)
    if b is None:
        return None
    p = b.producer
    folds = p is not None and p.op == "dequantize_linear" and all(v is None or v.is_const for v in p.inputs)
    value = run_reference_of(p) if folds else b.const_value
    if value is None or value.size not in (1, channels) or (value.ndim == 2 and value.shape[0] != 1):
        return False
    q = np.rint(np.broadcast_to(value.astype(np.float64).reshape(-1), (channels,)) / acc_scale.astype(np.float64))
    return np.clip(q, *dtype_range(np.int32)).astype(np.int32)


def _activation_bounds(act: Optional[Node], q: Node):
    """(qmin, qmax) that the quantized result is clamped to for ``act`` (None: the dtype's range)."""
    if act is None:
        return None, None
    scale, zp = _params(q)
    dtype = zp.dtype
    if act.op == "relu":
        return max(int(zp), dtype_range(dtype)[0]), None
    bound = [None if v is None else int(quantize(np.float32(v.const_value.reshape(-1)[0]), scale, zp, dtype))
             for v in (act.input(1), act.input(2))]
    return bound[0], bound[1]


def _activation(graph: Graph, v: Value) -> Optional[Node]:
    """The one reader of ``v`` when it is relu or clip with constant scalar bounds."""
    u = only_reader(graph, v)
    if u is None or u.op not in ("relu", "clip"):
        return None
    bounds = [u.input(1), u.input(2)] if u.op == "clip" else []
    if any(b is not None and (b.const_value is None or b.const_value.size != 1) for b in bounds):
        return None
    return u


def _consumer(graph: Graph, core: Node):
    """(activation or None, Q) reading the core's result, or (None, None) for a float consumer."""
    q = _q(core.outputs[0], graph)
    if q is not None:
        return None, q
    act = _activation(graph, core.outputs[0])
    q = _q(act.outputs[0], graph) if act is not None else None
    return (act, q) if q is not None else (None, None)


def _fuse_core(graph: Graph, core: Node) -> None:
    dq_x = _dq(core.inputs[0])
    weight = _weight(core) if dq_x is not None and _core_ok(core) and _per_tensor(dq_x) else None
    if weight is None:
        return
    w, w_scale, w_zp = weight
    x_scale, x_zp = _params(dq_x)
    channels = w.shape[0] if core.op == "conv2d" else w.shape[1]
    acc_scale = np.float32(x_scale.reshape(-1)[0]) * w_scale.astype(np.float32).reshape(-1)
    bias = _bias(core, acc_scale, channels)
    if bias is False:
        return
    act, q = _consumer(graph, core)
    where = q if q is not None else core
    b = Builder(graph, before=where, name=core.name)
    operands = [dq_x.inputs[0], b.const(x_scale.astype(np.float32)), b.const(x_zp), b.const(w),
                b.const(w_scale.astype(np.float32)), b.const(w_zp), None if bias is None else b.const(bias)]
    attrs = {k: core.attrs[k] for k in ("strides", "pads", "dilations", "group", "auto_pad")} \
        if core.op == "conv2d" else {}
    if q is not None:
        y_scale, y_zp = _params(q)
        operands += [b.const(y_scale.astype(np.float32)), b.const(y_zp)]
        attrs["qmin"], attrs["qmax"] = _activation_bounds(act, q)
    fused = b.node("qconv2d" if core.op == "conv2d" else "qgemm", operands, attrs)
    old = (q if q is not None else core).outputs[0]
    if not forward(graph, old, fused.outputs[0]):
        graph.remove_node(fused)


# -- 2, 3. integers through ops that commute with quantization --------------------------------------------------------
def _keep_int8(graph: Graph, n: Node) -> None:
    """Run ``n`` on the integers when its operands are DQs and its one reader a Q of the same parameters."""
    data = n.inputs if n.op == "concat" else n.inputs[:1]
    dqs = [_dq(v) for v in data]
    q = _q(n.outputs[0], graph) if len(n.outputs) == 1 else None
    if q is None or any(d is None or not _same_params(d, q) for d in dqs):
        return
    for i, d in enumerate(dqs):
        n.set_input(i, d.inputs[0])
    n.outputs[0].type = n.outputs[0].type.with_dtype(q.outputs[0].type.dtype)
    if not forward(graph, q.outputs[0], n.outputs[0]):
        n.outputs[0].type = n.outputs[0].type.with_dtype("f32")
        for i, d in enumerate(dqs):
            n.set_input(i, d.outputs[0])


def _relu_on_integers(graph: Graph, relu: Node) -> None:
    """DQ -> relu -> Q of equal parameters is max(x, zero point): a clip of the integers."""
    dq, q = _dq(relu.inputs[0]), _q(relu.outputs[0], graph)
    if dq is None or q is None or not _same_params(dq, q):
        return
    b = Builder(graph, before=q, name=relu.name)
    forward(graph, q.outputs[0], b.op("clip", dq.inputs[0], b.const(_params(q)[1].reshape(()))))


def _drop_round_trip(graph: Graph, q: Node) -> None:
    """Q(DQ(x)) with equal parameters is x."""
    dq = _dq(q.inputs[0])
    if dq is not None and q.attrs["block_size"] == 0 and _same_params(dq, q) and \
            q.outputs[0].type.dtype == dq.inputs[0].type.dtype:
        forward(graph, q.outputs[0], dq.inputs[0])


# -- 4. cleanup ------------------------------------------------------------------------------------------------------
def _fold_constant_dequantize(graph: Graph, n: Node) -> None:
    if all(v is None or v.const_value is not None for v in n.inputs):
        c = graph.add_const(run_reference_of(n), name=n.name, before=n)
        forward(graph, n.outputs[0], c)


def _remove_dead(graph: Graph) -> None:
    """Drop the nodes whose results nothing reads (every op is pure), last first."""
    outputs = {id(v) for v in graph.outputs}
    for n in reversed(list(graph.nodes)):
        if all(not v.uses and id(v) not in outputs for v in n.outputs):
            graph.remove_node(n)


@register_pass("fuse-qdq", level=2)
def fuse_qdq(graph: Graph) -> Graph:
    """Fuse DQ -> conv2d/gemm/matmul -> Q into qconv2d/qgemm, keep integers through ops that commute with
    quantization, drop Q(DQ) round trips, fold constant DQs and remove what became dead."""
    for n in [n for n in graph.nodes if n.op in CORES]:
        _fuse_core(graph, n)
    for n in [n for n in graph.nodes if n.op in COMMUTING]:
        _keep_int8(graph, n)
    for n in [n for n in graph.nodes if n.op == "relu"]:
        _relu_on_integers(graph, n)
    for n in [n for n in graph.nodes if n.op == "quantize_linear"]:
        _drop_round_trip(graph, n)
    for n in [n for n in graph.nodes if n.op == "dequantize_linear"]:
        _fold_constant_dequantize(graph, n)
    _remove_dead(graph)
    return graph
