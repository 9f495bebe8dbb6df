"""Passes over the IR: each a named ``Graph -> Graph`` function, run by the pass manager.

ORDER is the one pipeline; each -O level runs the passes registered at or below it (-O0 runs none, -O1 the
cleanups below). ``simplify`` runs before folding (fewer nodes to look at) and after it (folded shapes
turn reshapes into no-ops); ``cse`` then merges what folding made equal and ``dce`` drops the rest.
"""
from . import cse, dce, fold_constants, infer_shapes, simplify  # noqa: F401  (registration)
from .manager import ORDER, PASSES, PassManager, pipeline, register_pass

ORDER.extend(["simplify", "fold-constants", "simplify", "cse", "dce"])

__all__ = ["ORDER", "PASSES", "PassManager", "pipeline", "register_pass"]
