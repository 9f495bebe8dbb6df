"""CompiledModel: the optimized graph with its target, ready to run, save, warm up and inspect."""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional

import numpy as np

from ..errors import IrcError
from ..ir import Graph
from .executor import Executor


def example_inputs(graph: Graph, random: bool = False, seed: int = 0, dim: int = 1) -> Dict[str, np.ndarray]:
    """One array per graph input, symbolic and unknown dims bound to ``dim``.

    Zeros, or with ``random`` standard-normal floats and random booleans; integer inputs stay zero
    either way, since they are often indices or shapes that only small values keep valid.
    """
    rng = np.random.default_rng(seed)
    feeds = {}
    for v in graph.inputs:
        t = v.type
        if t.shape is None:
            raise IrcError(f"input {v.name!r} has an unknown rank: give its value explicitly")
        shape = tuple(d if isinstance(d, int) else dim for d in t.shape)
        dt = t.numpy_dtype
        if random and dt.kind == "f":
            feeds[v.name] = rng.standard_normal(shape).astype(dt)
        elif random and dt.kind == "b":
            feeds[v.name] = rng.random(shape) < 0.5
        else:
            feeds[v.name] = np.zeros(shape, dt)
    return feeds


def _freeze_constants(graph: Graph) -> None:
    """Make every constant array read-only, as the artifact's memory-mapped ones are.

    An output may be a constant itself, which a caller must not be able to change; and numba compiles
    one kernel per signature, read-only-ness included, so a model compiled here and the same model
    loaded from its artifact then need the same kernels: the warm-up of one serves the other.
    """
    for n in graph.nodes:
        if n.op == "const" and isinstance(n.attrs.get("value"), np.ndarray):
            n.attrs["value"].flags.writeable = False


class CompiledModel:
    """A compiled model. ``run(feeds)`` returns a dict of output name -> array in graph output order."""

    def __init__(self, graph: Graph, target: str = "cpu", options: dict = None):
        self.graph = graph
        self.target = target
        self.options = dict(options or {})
        self.artifact = None  # set by irc.load: the file's manifest and facts (irc.runtime.artifact.Artifact)
        _freeze_constants(graph)
        self._executor = Executor(graph, target, plan_memory=self.plans_memory)

    @property
    def plans_memory(self) -> bool:
        """Whether the compile options' pipeline has plan-memory (runs then reuse one arena per plan)."""
        from ..passes import PASSES
        opts = self.options
        return (opts.get("opt_level", 2) >= PASSES["plan-memory"].level
                and "plan-memory" not in opts.get("disable_passes", ()))

    @property
    def input_names(self) -> List[str]:
        return [v.name for v in self.graph.inputs]

    @property
    def output_names(self) -> List[str]:
        return list(self.graph.output_names)

    def run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        outs = self._executor.run(feeds)
        return dict(zip(self.graph.output_names, outs))

    def plan(self, feeds: Optional[Mapping[str, np.ndarray]] = None):
        """The CPU execution plan for ``feeds`` (default: ``example_inputs``), without running it."""
        from .executor import check_feeds
        arrays = check_feeds(self.graph, example_inputs(self.graph) if feeds is None else feeds)
        return self._executor.plan_for(arrays)

    def memory(self, feeds: Optional[Mapping[str, np.ndarray]] = None) -> dict:
        """The activation memory of the plan for ``feeds`` (default ``example_inputs``: symbolic dims
        bound to 1): the input shapes it was made for and its ``MemoryPlan.summary()`` (peak bytes:
        the arena plus the most bytes of results of kernels that allocate their own live at once;
        intermediate bytes: every result that is not an output, summed). The CPU plan's own; for other
        targets what the IR implies."""
        from ..passes.plan_memory import plan_memory
        from .executor import check_feeds
        arrays = check_feeds(self.graph, example_inputs(self.graph) if feeds is None else feeds)
        if self.target == "cpu":
            mem = self._executor.plan_for(arrays).memory
        else:
            mem = plan_memory(self._executor.bind(arrays))
        shapes = {v.name: list(a.shape) for v, a in zip(self.graph.inputs, arrays)}
        return {"input_shapes": shapes, **mem.summary()}

    def warm(self) -> None:
        """Run on zero inputs so that every numba kernel the model needs is compiled into the on-disk
        kernel cache; later processes then load them instead of compiling.

        Symbolic dims are bound to 1, then (where there are any) to 2: a kernel may take another
        signature once a dim is no longer 1 (a broadcast loop that no longer collapses to one axis).
        """
        dynamic = any(t.shape is None or not t.is_static for t in (v.type for v in self.graph.inputs))
        for dim in (1, 2) if dynamic else (1,):
            try:
                with np.errstate(all="ignore"):
                    self.run(example_inputs(self.graph, dim=dim))
            except IrcError as e:
                raise type(e)(f"warm-up with symbolic dims bound to {dim}: {e}") from None

    def save(self, path) -> None:
        from .artifact import write_artifact
        write_artifact(self, path)

    def __repr__(self):
        return (f"CompiledModel(target={self.target!r}, inputs={self.input_names}, "
                f"outputs={self.output_names}, nodes={len(self.graph.nodes)})")
