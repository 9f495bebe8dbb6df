"""CompiledModel: the optimized graph with its target, ready to run, save and inspect."""
from __future__ import annotations

from typing import Dict, List, Mapping

import numpy as np

from ..ir import Graph
from .executor import Executor


class CompiledModel:
    """A compiled model. ``run(feeds)`` returns a dict of output name -> array in graph output order."""

    def __init__(self, graph: Graph, target: str = "cpu", options: dict = None):
        self.graph = graph
        self.target = target
        self.options = dict(options or {})
        self._executor = Executor(graph)

    @property
    def input_names(self) -> List[str]:
        return [v.name for v in self.graph.inputs]

    @property
    def output_names(self) -> List[str]:
        return list(self.graph.output_names)

    def run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        outs = self._executor.run(feeds)
        return dict(zip(self.graph.output_names, outs))

    def save(self, path) -> None:
        from .artifact import write_artifact
        write_artifact(self, path)

    def __repr__(self):
        return (f"CompiledModel(target={self.target!r}, inputs={self.input_names}, "
                f"outputs={self.output_names}, nodes={len(self.graph.nodes)})")
