"""depthwise: a conv2d whose every group reads one input channel gets ``algo="depthwise"``.

group == input channels (any channel multiplier: output channels = multiplier x group) means each output
channel is the 2-D correlation of a single input channel, which the direct depthwise kernel computes
without the per-group GEMMs (one tiny GEMM per channel would cost far more than its work). The attribute
only selects the kernel; the arithmetic is the convolution's, so the outputs are unchanged.
"""
from ..ir import Graph, Node
from .manager import register_pass


def is_depthwise(node: Node) -> bool:
    """A conv2d of group > 1 whose input channel count equals its group (one channel per group)."""
    if node.op != "conv2d" or node.attrs.get("algo"):
        return False
    x = node.inputs[0].type.shape
    group = node.attrs["group"]
    return group > 1 and x is not None and x[1] == group


@register_pass("depthwise", level=2)
def depthwise(graph: Graph) -> Graph:
    """Mark every depthwise conv2d with algo="depthwise"."""
    for node in graph.nodes:
        if is_depthwise(node):
            node.attrs["algo"] = "depthwise"
    return graph
