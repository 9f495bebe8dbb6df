"""dedup-filters: a conv2d whose output channels repeat a filter computes each distinct filter once.

Output channels whose filters (weight rows) and biases are equal, byte for byte, are the same function of the
input: the conv keeps one channel per distinct filter and a gather on axis 1 copies each to the channels that
share it. Repeats come from pruning (filters zeroed with their biases) and from constant-filled weights.
Besides the work it saves (each repeated filter is one GEMM row fewer), this makes channels that are equal
in exact arithmetic equal in float32 too: a BLAS kernel does not promise the same rounding in every row of
its tiles (OpenBLAS's Haswell SGEMM rounds some rows of a tile a last bit apart), and a result that compares
equal channels, such as a softmax over tied logits, turns that bit into a visible error.

It applies to an ungrouped conv2d with a constant weight and a constant bias (or none) before fusion, so
the gather stays a plain node between the conv and its readers. Filters with equal numbers but different
bytes (0.0 and -0.0) are kept apart.
"""
import numpy as np

from ..ir import Builder, Graph, Node
from .manager import register_pass
from .util import drop_unused_consts


def _distinct(node: Node):
    """(first, index): the channel of each distinct filter, in order, and for every output channel the
    position of its filter in ``first``; None when the conv does not qualify or no filter repeats."""
    w, b = node.inputs[1].const_value, node.input(2)
    if (node.attrs["group"] != 1 or w is None or node.attrs.get("epilogue") or node.attrs.get("algo")
            or node.outputs[0].type.shape is None):
        return None
    bias = None if b is None else b.const_value
    if b is not None and bias is None:
        return None
    rows = np.ascontiguousarray(w).reshape(w.shape[0], -1)
    seen = {}
    index = [seen.setdefault(rows[o].tobytes() + (b"" if bias is None else bias[o].tobytes()), len(seen))
             for o in range(w.shape[0])]
    if len(seen) == w.shape[0]:
        return None
    first = np.unique(index, return_index=True)[1]
    return first, np.asarray(index, np.int64)


def _rewrite(graph: Graph, node: Node, first: np.ndarray, index: np.ndarray) -> None:
    """conv(x, w[first], b[first]) then gather(axis 1, index) in place of ``node``."""
    x, w, b = node.inputs[0], node.inputs[1], node.input(2)
    build = Builder(graph, before=node, name=node.name)
    operands = [x, build.const(w.const_value[first])] + ([] if b is None else [build.const(b.const_value[first])])
    conv = build.op("conv2d", *operands, **node.attrs)
    graph.replace_all_uses(node.outputs[0], build.op("gather", conv, build.const(index), axis=1))
    graph.remove_node(node)
    drop_unused_consts(graph, [w, b])


@register_pass("dedup-filters", level=2)
def dedup_filters(graph: Graph) -> Graph:
    """Compute each distinct filter of a conv2d once and copy it to the channels that repeat it."""
    for node in [n for n in graph.nodes if n.op == "conv2d"]:
        found = _distinct(node)
        if found is not None:
            _rewrite(graph, node, *found)
    return graph
