"""winograd: a 3x3, stride-1, undilated, ungrouped float32 conv2d with a constant weight becomes
``algo="winograd"`` with output tiles of ``winograd_m`` = 4 or 2 (F(4x4, 3x3) or F(2x2, 3x3)).

The weight operand is replaced by its transform U = G g G^T ([a*a, O, C], a = m + 2), computed here once
in float64, so the artifact stores it and the kernel only transforms inputs and outputs. Per output tile,
Winograd's minimal filtering needs a*a multiplies per (input, output) channel pair where the direct
convolution needs 9*m*m: 2.25x fewer for F(2,3), 4x for F(4,3).

Sound: F(m, 3) computes the same correlation exactly in real arithmetic; in floating point its transforms
amplify rounding (the larger interpolation points of F(4,3) more than F(2,3)), which the kernel's tests
bound. The conv2d reference recovers the weight exactly (up to float64 rounding) from U with G's
pseudo-inverse, so the graph keeps its meaning for the interpreter.

Cost rule (``choose_tile``): the transforms cost per channel and tile, the saved multiplies per channel
pair, so few channels do not pay; F(4,3) wastes tile area on small outputs (a 7x7 output is 4 tiles of
16 positions), so they take F(2,3); below 8x8 outputs (16 tiles of F(2,3) or fewer) the parallel im2col
kernel wins: its GEMM reads the plain weight once, where the per-frequency GEMMs read a transform 1.8x
larger for few tiles, and the per-channel transforms of so few tiles are mostly overhead (at 7x7 it won at
every channel count measured; at 10x10 it depends on the channels, so F(2,3) stays there). Measured per
layer (batch 1, 3x3 pad 1, min of 80 runs interleaved on 2 threads, ms, im2col / F(2,3) / F(4,3)):
128ch 28x28 1.90 / 1.29 / 1.25; 256ch 14x14 1.86 / 1.52 / 2.12; 128ch 10x10 0.31 / 0.25 / 0.38;
256ch 10x10 0.91 / 1.33 / 1.50;
7x7: 64ch 0.10 / 0.13 / 0.23, 128ch 0.26 / 0.28 / 0.54, 256ch 0.72 / 0.93 / 1.41, 512ch 2.52 / 2.93 / 5.86.
(Those runs shared the machine with other work: compare within a row, not across rows.)
"""
from typing import Optional

from ..ir import Graph, Node
from ..ops.nn import resolve_auto_pad, winograd_filter
from .manager import register_pass
from .util import drop_unused_consts

MIN_CHANNELS = 16        # input and output channels below this: the transforms cost more than they save
MIN_SIZE_F4 = 20         # outputs smaller than this (either side) use F(2,3)
MIN_SIZE = 8             # outputs smaller than this (either side) stay with im2col


def _eligible(node: Node) -> bool:
    a = node.attrs
    if node.op != "conv2d" or a.get("algo") or a["group"] != 1 or list(a["strides"]) != [1, 1] \
            or list(a["dilations"]) != [1, 1] or node.outputs[0].type.dtype != "f32":
        return False
    w = node.inputs[1].const_value
    return w is not None and w.shape[2:] == (3, 3)


def choose_tile(node: Node) -> Optional[int]:
    """The output tile size m of the Winograd form that pays for ``node`` (see the module docstring), or
    None when none does or a size is not static."""
    c, o = node.inputs[1].type.shape[1], node.inputs[1].type.shape[0]
    oh, ow = node.outputs[0].type.shape[2:]
    if not all(isinstance(d, int) for d in (oh, ow)) or min(c, o) < MIN_CHANNELS or min(oh, ow) < MIN_SIZE:
        return None
    return 4 if min(oh, ow) >= MIN_SIZE_F4 else 2


@register_pass("winograd", level=2)
def winograd(graph: Graph) -> Graph:
    """Give every eligible conv2d its Winograd form, the filter transformed here."""
    for node in list(graph.nodes):
        m = choose_tile(node) if _eligible(node) else None
        if m is None:
            continue
        x, a = node.inputs[0].type.shape, node.attrs
        pads = resolve_auto_pad(a["auto_pad"], x[2:], (3, 3), a["strides"], a["dilations"], a["pads"])
        if pads is None:
            continue
        w = node.inputs[1]
        node.set_input(1, graph.add_const(winograd_filter(w.const_value, m), before=node))
        drop_unused_consts(graph, [w])
        a.update(algo="winograd", winograd_m=m, pads=pads, auto_pad="NOTSET")
    return graph
