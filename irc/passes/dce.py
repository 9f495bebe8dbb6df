"""dce: remove nodes none of whose results reach a graph output.

Sound because every op is pure: a result nobody reads cannot change the outputs.
"""
from .manager import register_pass


@register_pass("dce", level=1)
def dce(graph):
    """Drop nodes whose results are unused, walking backwards so chains go at once."""
    live = {id(v) for v in graph.outputs}
    keep = []
    for n in reversed(graph.nodes):
        if any(id(v) in live for v in n.outputs):
            keep.append(n)
            live.update(id(v) for v in n.inputs if v is not None)
    kept = {id(n) for n in keep}
    graph.remove_nodes([n for n in graph.nodes if id(n) not in kept])
    return graph
