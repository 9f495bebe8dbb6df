"""The IR: typed SSA values, nodes and graphs, their text form and the verifier."""
from .builder import Builder
from .graph import Graph, Node, Value
from .parser import parse_graph
from .printer import print_graph
from .types import DTYPES, TensorType, broadcast_shapes, from_numpy_dtype, to_numpy_dtype
from .verifier import verify

__all__ = ["Builder", "Graph", "Node", "Value", "parse_graph", "print_graph", "DTYPES", "TensorType",
           "broadcast_shapes", "from_numpy_dtype", "to_numpy_dtype", "verify"]
