"""fuse: run elementwise work inside the node that produces its operand, saving a pass over memory and a
node per fused op. Each kind of fusion is a module of its own, run here in turn:
- ``fuse_patterns``: subgraphs exporters write out op by op (GELU, LayerNorm, attention) become the
  one op they spell;
- ``fuse_epilogue``: bias/residual adds and activations after conv2d, gemm and matmul;
- ``fuse_elementwise``: the remaining chains of elementwise ops become one fused_elementwise node (the
  pass ``fuse-elementwise``, after this one, so that each can be disabled and tested alone).
"""
from ..ir import Graph
from .fuse_elementwise import fuse_elementwise
from .fuse_epilogue import fuse_epilogues
from .fuse_patterns import fuse_patterns
from .manager import register_pass


@register_pass("fuse", level=2)
def fuse(graph: Graph) -> Graph:
    """Fuse written-out patterns into their ops, then epilogues into their conv2d/gemm/matmul producers."""
    return fuse_epilogues(fuse_patterns(graph))


register_pass("fuse-elementwise", level=2)(fuse_elementwise)
