"""fold-batchnorm: a batchnorm after conv2d, conv_transpose2d, gemm or matmul goes into the producer's
weight and bias.

A per-channel batchnorm computes ``y * s + t`` with ``s = scale / sqrt(var + epsilon)`` and
``t = bias - mean * s``; when ``y = W x + b`` is linear in its weight with channel ``c`` of ``y`` coming
from one slice of ``W``, that is ``(W * s) x + (b * s + t)``:
- conv2d: output channel o is weight row ``W[o]``;
- conv_transpose2d: output channel ``g * og + j`` is ``W[g * cg:(g + 1) * cg, j]``;
- gemm ``alpha A' B' + beta C``: column n of the [M, N] result is column n of B'; the new C is
  ``(beta C) * s + t`` with beta 1;
- matmul of a matrix by a constant [K, N] matrix: as gemm, and becomes one (matmul has no bias).
It applies only when the weight (and bias) and the batchnorm's parameters are constants, the parameters
are per channel (axis 1 of the result) and the producer's result has no other reader, so nothing else sees
the unscaled values. Folding is done in float64 and rounded once to the weight's dtype. A batchnorm after
anything else stays.
"""
from typing import Optional

import numpy as np

from ..ir import Graph, Node
from ..ops.registry import get
from .manager import register_pass
from .util import drop_unused_consts, forward

FOLDABLE = ("conv2d", "conv_transpose2d", "gemm", "matmul")


def _affine(bn: Node):
    """(s, t) of a batchnorm with constant per-channel [C] parameters, else None."""
    params = [v.const_value if v is not None else None for v in bn.inputs[1:5]]
    if any(p is None or p.ndim != 1 for p in params):
        return None
    scale, bias, mean, var = (p.astype(np.float64) for p in params)
    s = scale / np.sqrt(var + bn.attrs["epsilon"])
    return s, bias - mean * s


def _producer(graph: Graph, bn: Node) -> Optional[Node]:
    """The foldable producer of the batchnorm's operand, when the batchnorm is its only reader."""
    y = bn.inputs[0]
    p = y.producer
    if p is None or p.op not in FOLDABLE or p.attrs.get("epilogue") or p.attrs.get("algo"):
        return None
    if len(y.uses) != 1 or any(o is y for o in graph.outputs) or y.type.dtype not in ("f16", "f32", "f64"):
        return None
    if p.inputs[1].const_value is None or (len(p.inputs) > 2 and p.inputs[2] is not None
                                          and p.inputs[2].const_value is None):
        return None
    if p.op in ("gemm", "matmul") and (y.type.rank != 2 or p.inputs[1].type.rank != 2):
        return None
    return p


def _scaled_weight(p: Node, s: np.ndarray) -> np.ndarray:
    """The producer's weight with output channel c scaled by s[c]."""
    w = p.inputs[1].const_value.astype(np.float64)
    if p.op == "conv2d":
        return w * s.reshape(-1, 1, 1, 1)
    if p.op == "conv_transpose2d":
        g = p.attrs["group"]
        cg, og = w.shape[0] // g, w.shape[1]
        return (w.reshape(g, cg, og, *w.shape[2:]) * s.reshape(g, 1, og, 1, 1)).reshape(w.shape)
    if p.op == "gemm" and p.attrs["transB"]:
        return w * s[:, None]
    return w * s


def _new_bias(p: Node, s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Bias (conv) or C (gemm, beta 1) of the folded producer."""
    b = p.input(2).const_value if p.input(2) is not None else None
    if b is None:
        return t
    b = b.astype(np.float64)
    if p.op == "gemm":
        b = p.attrs["beta"] * b
    return b * s + t


def _fold(graph: Graph, bn: Node, p: Node, s: np.ndarray, t: np.ndarray):
    """Rewrite p to compute the batchnorm's result; returns the operands it no longer reads."""
    dtype = p.inputs[1].type.numpy_dtype
    w = graph.add_const(_scaled_weight(p, s).astype(dtype), before=p)
    b = graph.add_const(_new_bias(p, s, t).astype(dtype), before=p)
    if p.op == "matmul":
        p.op = "gemm"
        p.attrs = get("gemm").full_attrs({})
    if p.op == "gemm":
        p.attrs["beta"] = 1.0
    old = p.inputs[1:] + bn.inputs[1:]
    p.set_inputs([p.inputs[0], w, b])
    return old


@register_pass("fold-batchnorm", level=2)
def fold_batchnorm(graph: Graph) -> Graph:
    """Fold each per-channel batchnorm with constant parameters into its linear producer."""
    for bn in [n for n in graph.nodes if n.op == "batchnorm"]:
        p = _producer(graph, bn)
        affine = _affine(bn) if p is not None else None
        if affine is None or affine[0].shape[0] != bn.inputs[0].type.shape[1]:
            continue
        if forward(graph, bn.outputs[0], p.outputs[0]):   # p's result then means the batchnorm's
            old = _fold(graph, bn, p, *affine)
            graph.remove_node(bn)
            drop_unused_consts(graph, old)
    return graph
